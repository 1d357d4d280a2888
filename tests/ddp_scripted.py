"""Methods for the data-parallel equality tests (importable by Hydra ``_target_`` from the tests folder)."""

from __future__ import annotations

from torch import nn

from detect.methods.ltw.ltw_method import LTW


def _group_norm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm2d replaced by a GroupNorm of one group (per-sample statistics)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.GroupNorm(1, child.num_features))
        else:
            _group_norm(child)
    return module


class LTWWithoutBatchNorm(LTW):
    """LTW whose weight-aware network normalises per sample: BatchNorm's batch statistics differ between
    one process with batch 2B and two with batch B by definition, so the equality test of the explicit
    gradient path (second-order meta update over the global batch) runs on this variant; the detector's
    backbone is chosen without BatchNorm on the command line."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        _group_norm(self.weights)
