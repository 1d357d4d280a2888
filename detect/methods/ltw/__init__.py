"""LTW (Sun et al., AAAI 2021): weight-aware network, meta-split, second-order meta update, ICC loss."""

from detect.methods.ltw.ltw_method import LTW

__all__ = ["LTW"]
