"""detect: a research runner for face-forgery detection."""
