"""detect: a research runner for face-forgery detection."""

from detect.utils.run_names import register_resolvers

register_resolvers()
