"""Backbone factory and local weight loading (no downloads; random init everywhere)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import timm
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

from detect.models.backbone import Backbone, build_backbone
from detect.models.weights import WeightsError

CONF = Path(__file__).resolve().parents[1] / "conf" / "backbone"
#: options describing the input only (timm_name: null), for methods with their own network (MesoNet)
INPUT_ONLY = {"none"}
CONFIGS = sorted(p.stem for p in CONF.glob("*.yaml") if p.stem not in INPUT_ONLY)
SMALL = {"tiny", "small"}  # cheap enough for a forward pass in every test run


def cfg(config: str, /, **over: object) -> dict:
    """A backbone config from conf/backbone as a plain dict, with overrides."""
    out = OmegaConf.to_container(OmegaConf.load(CONF / f"{config}.yaml"), resolve=True)
    out.update(over)
    return out


@pytest.fixture(scope="module")
def tiny() -> Backbone:
    return build_backbone(cfg("tiny")).eval()


def test_expected_configs_exist() -> None:
    expected = {
        "effb0", "effb2", "effb4", "xception", "convnext_t", "convnext_s", "convnext_b", "swin_t",
        "swinv2_t", "resnet50", "seresnet50", "vgg19_bn", "tiny", "small",
    }  # fmt: skip
    assert expected <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds(name: str) -> None:
    c = OmegaConf.load(CONF / f"{name}.yaml")  # a DictConfig, as Hydra passes it
    assert c.name == name and c.pretrained is False and len(c.mean) == len(c.std) == 3
    b = build_backbone(c)
    assert isinstance(b, Backbone) and b.num_features > 0 and b.load_report is None
    assert b.input_size == c.input_size and b.timm_name == c.timm_name
    if name in SMALL:
        x = torch.randn(2, 3, b.input_size, b.input_size)
        fmap = b.eval().forward_features(x)
        assert fmap.shape[:2] == (2, b.num_features)
        assert b(x).shape == (2, b.num_features)


def test_an_input_only_option_builds_no_backbone_and_says_so() -> None:
    c = OmegaConf.load(CONF / "none.yaml")
    assert c.timm_name is None and c.name == "none" and c.pretrained is False and len(c.mean) == 3
    with pytest.raises(ValueError, match="describes the input only.*choose one with backbone="):
        build_backbone(c)


def test_tiny_shapes(tiny: Backbone) -> None:
    x = torch.randn(3, 3, 64, 64)
    fmap = tiny.forward_features(x)
    assert tuple(fmap.shape) == (3, 256, 2, 2) and tiny.num_features == 256
    assert tuple(tiny.pool(fmap).shape) == (3, 256)
    assert torch.allclose(tiny(x), tiny.pool(fmap))
    assert tiny.feature_shape(64) == (256, 2, 2) and tiny.feature_shape(128) == (256, 4, 4)
    assert tiny.feature_shape() == (256, 2, 2)  # default: input_size


def test_feature_shape_keeps_mode_and_stats() -> None:
    b = build_backbone(cfg("tiny")).train()
    before = {k: v.clone() for k, v in b.state_dict().items()}
    b.feature_shape(96)
    assert b.training and all(m.training for m in b.modules())
    assert all(torch.equal(before[k], v) for k, v in b.state_dict().items())


def test_paper_feature_shapes() -> None:
    assert build_backbone(cfg("effb4")).feature_shape(256) == (1792, 8, 8)  # ProDet
    assert build_backbone(cfg("convnext_t")).feature_shape(224) == (768, 7, 7)  # DPL


def test_swin_is_nchw() -> None:
    b = build_backbone(cfg("swin_t")).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        nhwc = b.model.forward_features(x)
        fmap = b.forward_features(x)
        pooled = b.pool(fmap)
    assert tuple(nhwc.shape) == (1, 7, 7, 768) and tuple(fmap.shape) == (1, 768, 7, 7)
    assert torch.equal(fmap, nhwc.permute(0, 3, 1, 2))
    assert torch.allclose(pooled, b.model.forward_head(nhwc, pre_logits=True), atol=1e-5)


def test_swin_other_resolution_gets_img_size() -> None:
    b = build_backbone(cfg("swin_t", input_size=256))
    assert b.model.patch_embed.img_size == (256, 256)


def _random_like(b: Backbone, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g).to(v.dtype) for k, v in b.model.state_dict().items()}


def _assert_equal(sd: dict[str, torch.Tensor], b: Backbone) -> None:
    own = b.model.state_dict()
    assert set(sd) == set(own)
    assert all(torch.equal(sd[k], own[k]) for k in own)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    sd = _random_like(build_backbone(cfg("tiny")))
    path = tmp_path / f"w{suffix}"
    save_file(sd, str(path)) if suffix == ".safetensors" else torch.save(sd, path)
    b = build_backbone(cfg("tiny", pretrained=str(path)))
    _assert_equal(sd, b)
    assert b.load_report is not None and len(b.load_report.loaded) == len(sd)


def test_containers_and_prefixes(tmp_path: Path) -> None:
    src = build_backbone(cfg("tiny"))
    sd = _random_like(src)
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    _assert_equal(sd, build_backbone(cfg("tiny", pretrained=str(path))))
    torch.save({"model": {f"model.{k}": v for k, v in sd.items()}}, path)  # e.g. a saved Backbone
    _assert_equal(sd, build_backbone(cfg("tiny", pretrained=str(path))))


def test_classifier_head_ignored_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sd = _random_like(build_backbone(cfg("tiny")))
    sd["classifier.weight"] = torch.randn(1000, 256)
    sd["classifier.bias"] = torch.randn(1000)
    path = tmp_path / "w.safetensors"
    save_file(sd, str(path))
    with caplog.at_level(logging.INFO, logger="detect.models.weights"):
        b = build_backbone(cfg("tiny", pretrained=str(path)))
    assert b.load_report.ignored == {"classifier head": ["classifier.bias", "classifier.weight"]}
    assert "ignored (classifier head): classifier.bias, classifier.weight" in caplog.text


def test_shape_mismatch_raises(tmp_path: Path) -> None:
    sd = _random_like(build_backbone(cfg("tiny")))
    sd["conv_stem.weight"] = torch.randn(5, 3, 3, 3)
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    fresh = build_backbone(cfg("tiny"))
    before = fresh.model.conv_stem.weight.clone()
    with pytest.raises(WeightsError, match=r"conv_stem\.weight: checkpoint \(5, 3, 3, 3\)"):
        build_backbone(cfg("tiny", pretrained=str(path)))
    assert torch.equal(before, fresh.model.conv_stem.weight)


def test_missing_key_raises_unless_allowed(tmp_path: Path) -> None:
    sd = _random_like(build_backbone(cfg("tiny")))
    gone = sd.pop("conv_head.weight")
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError, match=r"missing.*conv_head\.weight"):
        build_backbone(cfg("tiny", pretrained=str(path)))
    b = build_backbone(cfg("tiny", pretrained=str(path), allow_missing=True))
    assert b.load_report.missing == ["conv_head.weight"]
    assert not torch.equal(b.model.conv_head.weight, gone)
    assert torch.equal(b.model.conv_stem.weight, sd["conv_stem.weight"])


def test_unexpected_key_raises_unless_allowed(tmp_path: Path) -> None:
    sd = _random_like(build_backbone(cfg("tiny")))
    sd["extra.weight"] = torch.zeros(3)
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError, match=r"unexpected.*extra\.weight"):
        build_backbone(cfg("tiny", pretrained=str(path)))
    b = build_backbone(cfg("tiny", pretrained=str(path), allow_unexpected=True))
    assert b.load_report.unexpected == ["extra.weight"]


def test_linear_pointwise_reshaped(tmp_path: Path) -> None:
    sd = _random_like(build_backbone(cfg("tiny")))
    w = sd["conv_head.weight"]  # [256, C, 1, 1]
    sd["conv_head.weight"] = w[:, :, 0, 0].clone()  # stored as a linear weight (Cadene's Xception)
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    b = build_backbone(cfg("tiny", pretrained=str(path)))
    assert b.load_report.reshaped == ["conv_head.weight"] and torch.equal(b.model.conv_head.weight, w)


@pytest.mark.parametrize("value", ["imagenet", "timm/efficientnet_b4.ra2_in1k", "true", True])
def test_hub_names_fail(value: object) -> None:
    with pytest.raises(WeightsError, match="cannot be fetched here") as err:
        build_backbone(cfg("tiny", pretrained=value))
    assert "backbone.pretrained=/path/to/weights.safetensors" in str(err.value)
    assert "backbone.pretrained=false" in str(err.value) and "test_efficientnet" in str(err.value)


def test_missing_file_fails(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "weights.safetensors"
    with pytest.raises(WeightsError, match="cannot be fetched here") as err:
        build_backbone(cfg("tiny", pretrained=str(path)))
    assert str(path) in str(err.value)


@pytest.mark.parametrize("value", [False, None, "false", "null"])
def test_random_init_values(value: object) -> None:
    assert build_backbone(cfg("tiny", pretrained=value)).load_report is None


def test_vgg_pool_matches_feature_channels() -> None:
    b = build_backbone(cfg("vgg19_bn"))
    assert b.num_features == 512 and isinstance(b.model.pre_logits, torch.nn.Identity)
    assert tuple(b.pool(torch.randn(2, 512, 7, 7)).shape) == (2, 512)


def test_post_pool_head_dropped(tmp_path: Path) -> None:
    """MobileNetV3's pooled 1x1 conv_head is dropped; a full timm checkpoint loads, its extras reported."""
    full = timm.create_model("mobilenetv3_small_050", pretrained=False)  # with conv_head and classifier
    path = tmp_path / "mnv3.safetensors"
    save_file(full.state_dict(), str(path))
    c = cfg("tiny", name="mnv3", timm_name="mobilenetv3_small_050", pretrained=str(path))
    b = build_backbone(c).eval()
    assert b.num_features == 288 and b(torch.randn(2, 3, 64, 64)).shape == (2, 288)
    assert b.load_report.ignored == {
        "classifier head": ["classifier.bias", "classifier.weight"],
        "unused post-pooling head": ["conv_head.bias", "conv_head.weight"],
    }
    assert torch.equal(b.model.conv_stem.weight, full.conv_stem.weight)


def test_reserved_kwargs_rejected() -> None:
    with pytest.raises(ValueError, match="must not set"):
        build_backbone(cfg("tiny", kwargs={"pretrained": True}))
