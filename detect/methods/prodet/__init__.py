"""ProDet (Cheng et al., NeurIPS 2024): oriented progressive regularizer, bridging, transition loss."""

from detect.methods.prodet.prodet_method import ProDet

__all__ = ["ProDet"]
