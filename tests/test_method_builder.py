"""The engine builds a method, and a wrapper around it, from config ``_target_`` strings alone."""

from __future__ import annotations

import pytest
import torch
from helpers import compose

from detect.engine.method_builder import build_method
from detect.engine.method_contract import Method

PROBE = {"_target_": "scripted.LinearProbe", "optim": {"_target_": "torch.optim.SGD", "lr": 0.1}}


class Doubled(Method):
    """A stand-in wrapper: the detector's P(fake), squared (any class a ``_target_`` names will do)."""

    def __init__(self, detector: Method, power: int = 2) -> None:
        super().__init__()
        self.detector, self.power = detector, power

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.detector.predict(images) ** self.power


def test_the_wrapper_named_by_target_wraps_the_method() -> None:
    wrapper = {"_target_": f"{__name__}.Doubled", "power": 3}
    method = build_method(PROBE, {"name": "none"}, wrapper)
    assert type(method) is Doubled and method.power == 3
    assert type(method.detector).__name__ == "LinearProbe"
    assert type(build_method(PROBE, {"name": "none"})).__name__ == "LinearProbe"


def test_the_dffc_config_names_its_wrapper() -> None:
    cfg = compose(["method=baseline", "backbone=tiny", "curriculum=dffc"])
    assert cfg.curriculum._target_ == "detect.methods.curriculum.Curriculum"
    method = build_method(cfg.method, cfg.backbone, cfg.curriculum)
    assert type(method).__name__ == "Curriculum" and type(method.detector).__name__ == "Baseline"


def test_configs_without_target_are_named_errors() -> None:
    with pytest.raises(ValueError, match="method config has no _target_"):
        build_method({"optim": {}}, {"name": "none"})
    with pytest.raises(ValueError, match=r"curriculum config has no _target_.*curriculum\._target_"):
        build_method(PROBE, {"name": "none"}, {"kind": "dffc"})
    with pytest.raises(TypeError, match="curriculum._target_ must build"):
        build_method(PROBE, {"name": "none"}, {"_target_": "collections.OrderedDict"})
