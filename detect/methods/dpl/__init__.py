"""DPL (Zhang et al., ACCV 2024): dual progressive learning for cross-quality deepfake detection."""

from detect.methods.dpl.dpl_method import DPL

__all__ = ["DPL"]
