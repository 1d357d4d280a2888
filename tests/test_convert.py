"""Checkpoint converters (detect.convert, scripts/convert_checkpoint.py): each source architecture is
built from its own pip package on random weights with randomised batch-norm statistics, saved in the
source's format, converted, and its fake probabilities compared with the converted detector's on the
same images (max abs difference <= 1e-4)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from efficientnet_pytorch import EfficientNet
from helpers import compose
from source_models import DfbXception, convert, randomise
from torch import nn

from detect.convert.common import ConversionError, efficientnet_pytorch_key
from detect.inference.load import load_detector
from detect.models.backbone import build_backbone

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-4


def images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random RGB uint8 images (so the probabilities spread rather than saturate)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        low = rng.integers(0, 255, (8, 8, 3)).astype(np.float32)
        img = torch.nn.functional.interpolate(
            torch.from_numpy(low).permute(2, 0, 1)[None], size=(size, size), mode="bilinear"
        )[0].permute(1, 2, 0)
        out.append(img.clamp(0, 255).round().numpy().astype(np.uint8))
    return out


def to_tensor(imgs: list[np.ndarray], mean: float, std: float) -> torch.Tensor:
    """The source's preprocessing, in float64."""
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).double() / 255.0
    return (x - mean) / std


def converted_probs(ckpt: Path, imgs: list[np.ndarray], source_input: torch.Tensor) -> np.ndarray:
    """The converted detector's P(fake) on the source's float64 input (so the comparison checks the
    architecture and the mapping, not float32 rounding amplified by the tests' steep heads), after
    checking that the checkpoint's recorded pipeline prepares the images as the source does."""
    det = load_detector(ckpt)
    ours = torch.stack([det.pipeline(im, augment=False) for im in imgs]).double()
    assert (ours - source_input).abs().max().item() < 1e-5
    with torch.no_grad():
        return det.method.double().predict(source_input).numpy()


# ------------------------------------------------------------------ source architectures


class DfbEfficientNetB4(nn.Module):
    """DeepfakeBench's EfficientNet-B4 detector's parameter layout: efficientnet_pytorch's B4 with an
    unpadded stem and no ``_fc``, a ``last_layer`` Linear(1792, 2) on the average-pooled features."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.efficientnet = EfficientNet.from_name("efficientnet-b4")
        self.backbone.efficientnet._conv_stem = nn.Conv2d(3, 48, kernel_size=3, stride=2, bias=False)
        self.backbone.efficientnet._fc = nn.Identity()
        self.backbone.last_layer = nn.Linear(1792, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = F.adaptive_avg_pool2d(self.backbone.efficientnet.extract_features(x), 1).flatten(1)
        return self.backbone.last_layer(f).softmax(1)[:, 1]


class SbiDetector(nn.Module):
    """SBI's released model: ``net`` = efficientnet_pytorch's B4 with a 2-way ``_fc``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = EfficientNet.from_name("efficientnet-b4", num_classes=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).softmax(1)[:, 1]


def release_head() -> nn.Sequential:
    """ProDet's release heads: GAP, flatten, Linear(512, 256), LeakyReLU, Linear(256, 2)."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 256), nn.LeakyReLU(), nn.Linear(256, 2)
    )


def release_lift() -> nn.Sequential:
    """Linear(2, 256), LeakyReLU, Linear(256, 512), reshape to 512x1x1, ConvTranspose2d(512, 512, 8)."""
    return nn.Sequential(
        nn.Linear(2, 256), nn.LeakyReLU(), nn.Linear(256, 512), nn.Unflatten(1, (512, 1, 1)),
        nn.ConvTranspose2d(512, 512, kernel_size=8),
    )  # fmt: skip


class ReleaseTransition(nn.Module):
    """The release's transition block: ``concat_process(cat(feature, noise_process(noise)))``."""

    def __init__(self) -> None:
        super().__init__()
        self.noise_process = nn.Sequential(
            nn.Conv2d(512, 512, 3, 1, 1), nn.LeakyReLU(), nn.Conv2d(512, 512, 3, 1, 1), nn.LeakyReLU()
        )
        self.concat_process = nn.Sequential(
            nn.Conv2d(1024, 512, 1), nn.LeakyReLU(), nn.Conv2d(512, 512, 3, 1, 1), nn.LeakyReLU()
        )

    def forward(self, feature: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.concat_process(torch.cat([feature, self.noise_process(noise)], dim=1))


class ReleaseProDet(nn.Module):
    """ProDet's released detector layout: DeepfakeBench's EfficientNet-B4 (with its unused 2-way
    ``last_layer``), ``adjust_feature``, four heads, ``fea_att`` and three transition blocks; prediction
    ``softmax(final_classifier(F * attention(cat(lift_df, lift_blend, lift_id, F))))[:, 1]``."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = DfbEfficientNetB4().backbone
        self.adjust_feature = nn.Conv2d(1792, 512, 1)
        self.blend_classifier = release_head()
        self.ID_inconsistency_classifier = release_head()
        self.deepfake_classifier = release_head()
        self.final_classifier = release_head()
        self.fea_att = nn.Module()
        for i in (1, 2, 3):
            setattr(self.fea_att, f"inverse_conv{i}", release_lift())
        self.fea_att.attention = nn.Sequential(
            nn.Conv2d(2048, 512, 1), nn.BatchNorm2d(512), nn.ReLU(), nn.Conv2d(512, 512, 1),
            nn.BatchNorm2d(512), nn.ReLU(), nn.Conv2d(512, 512, 3, padding=1), nn.Sigmoid(),
        )  # fmt: skip
        self.real2sbi, self.sbi2bi, self.bi2fake = (
            ReleaseTransition(),
            ReleaseTransition(),
            ReleaseTransition(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.adjust_feature(self.backbone.efficientnet.extract_features(x))
        df, bld, bi = (
            self.deepfake_classifier(f),
            self.blend_classifier(f),
            self.ID_inconsistency_classifier(f),
        )
        a = self.fea_att
        maps = [a.inverse_conv1(df), a.inverse_conv2(bld), a.inverse_conv3(bi), f]
        att = a.attention(torch.cat(maps, dim=1))
        return self.final_classifier(f * att).softmax(1)[:, 1]


# ------------------------------------------------------------------ tests


def test_dfb_efficientnetb4_matches_the_source(tmp_path: Path) -> None:
    src = randomise(DfbEfficientNetB4(), 0, 256, 0.5, 0.5)
    torch.save({"module." + k: v for k, v in src.state_dict().items()}, tmp_path / "effnb4_best.pth")
    dst = convert("dfb_efficientnetb4", tmp_path / "effnb4_best.pth", tmp_path / "effb4.pt")
    imgs = images(2, 256)
    with torch.no_grad():
        want = src.double()(to_tensor(imgs, 0.5, 0.5)).numpy()
    got = converted_probs(dst, imgs, to_tensor(imgs, 0.5, 0.5))
    print(f"P(fake) source {np.round(want, 4)}, max abs diff {np.abs(got - want).max():.2e}")
    assert np.abs(got - want).max() <= TOL, (got, want)
    assert want.std() > 1e-3 and ((want > 1e-3) & (want < 1 - 1e-3)).all()  # not constants, not saturated
    # the architecture's quirk is reproduced: 127/63/32/16/8 feature maps at 256 px
    det = load_detector(dst)
    sizes = []
    hooks = [
        stage.register_forward_hook(lambda m, a, o: sizes.append(o.shape[-1]))
        for stage in det.method.backbone.model.blocks
    ]
    with torch.no_grad():
        det.method.backbone.forward_features(torch.zeros(1, 3, 256, 256))
    for h in hooks:
        h.remove()
    assert sizes == [127, 63, 32, 16, 16, 8, 8]


def test_dfb_xception_matches_the_source(tmp_path: Path) -> None:
    src = randomise(DfbXception(), 1, 256, 0.5, 0.5)
    torch.save({"module." + k: v for k, v in src.state_dict().items()}, tmp_path / "xception_best.pth")
    dst = convert("dfb_xception", tmp_path / "xception_best.pth", tmp_path / "xception.pt")
    imgs = images(2, 256)
    with torch.no_grad():
        want = src.double()(to_tensor(imgs, 0.5, 0.5)).numpy()
    got = converted_probs(dst, imgs, to_tensor(imgs, 0.5, 0.5))
    print(f"P(fake) source {np.round(want, 4)}, max abs diff {np.abs(got - want).max():.2e}")
    assert np.abs(got - want).max() <= TOL, (got, want)
    assert want.std() > 1e-3 and ((want > 1e-3) & (want < 1 - 1e-3)).all()  # not constants, not saturated
    assert want.std() > 1e-3


def test_sbi_matches_the_source(tmp_path: Path) -> None:
    src = randomise(SbiDetector(), 2, 380, 0.0, 1.0)
    torch.save({"model": src.state_dict(), "optimizer": {}, "epoch": 99}, tmp_path / "FFraw.tar")
    dst = convert("sbi", tmp_path / "FFraw.tar", tmp_path / "sbi.pt")
    imgs = images(2, 380)
    with torch.no_grad():
        want = src.double()(to_tensor(imgs, 0.0, 1.0)).numpy()
    got = converted_probs(dst, imgs, to_tensor(imgs, 0.0, 1.0))
    print(f"P(fake) source {np.round(want, 4)}, max abs diff {np.abs(got - want).max():.2e}")
    assert np.abs(got - want).max() <= TOL, (got, want)
    assert want.std() > 1e-3 and ((want > 1e-3) & (want < 1 - 1e-3)).all()  # not constants, not saturated
    det = load_detector(dst)
    assert (det.crop.mode, det.crop.size, det.aggregate) == ("rect", 380, "mean_of_frame_max")


def test_efficientnet_pytorch_weights_as_a_backbone(tmp_path: Path) -> None:
    src = randomise(EfficientNet.from_name("efficientnet-b4"), 3, 380, 0.45, 0.225)
    torch.save(src.state_dict(), tmp_path / "efficientnet-b4.pth")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    dst = tmp_path / "b4.safetensors"
    proc = subprocess.run(
        [sys.executable, "scripts/convert_checkpoint.py", "from=efficientnet_pytorch",
         f"src={tmp_path / 'efficientnet-b4.pth'}", f"dst={dst}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = compose(["logger=none", "backbone=effb4_ep", f"backbone.pretrained={dst}"])
    backbone = build_backbone(cfg.backbone).eval()
    x = to_tensor(images(2, 380), 0.45, 0.225)
    with torch.no_grad():  # float64: the random net's features are large, float32 rounding is not the point
        want = src.double().extract_features(x)
        got = backbone.double().forward_features(x)
    assert got.shape == want.shape == (2, 1792, 12, 12)
    print(
        f"features: max abs {want.abs().max().item():.3g}, max abs diff {(got - want).abs().max().item():.2e}"
    )
    assert (got - want).abs().max().item() <= TOL * max(1.0, want.abs().max().item())


def test_prodet_release_matches_the_source(tmp_path: Path) -> None:
    src = randomise(ReleaseProDet(), 4, 256, 0.5, 0.5, calibrate=256)
    torch.save({"module." + k: v for k, v in src.state_dict().items()}, tmp_path / "ProDet_best.pth")
    dst = convert("prodet", tmp_path / "ProDet_best.pth", tmp_path / "prodet.pt")
    imgs = images(2, 256)
    with torch.no_grad():
        want = src.double()(to_tensor(imgs, 0.5, 0.5)).numpy()
    got = converted_probs(dst, imgs, to_tensor(imgs, 0.5, 0.5))
    print(f"P(fake) source {np.round(want, 4)}, max abs diff {np.abs(got - want).max():.2e}")
    assert np.abs(got - want).max() <= TOL, (got, want)
    assert want.std() > 1e-3 and ((want > 1e-3) & (want < 1 - 1e-3)).all()  # not constants, not saturated
    # the transition modules (not on the prediction path) agree too, given the same noise
    method = load_detector(dst).method.double()
    g = torch.Generator().manual_seed(5)
    feature, noise = (
        torch.randn(1, 512, 8, 8, generator=g).double(),
        torch.randn(1, 512, 8, 8, generator=g).double(),
    )
    with torch.no_grad():
        ours = method.transitions["sbi_to_cbi"](feature, noise)
        theirs = src.sbi2bi(feature, noise)
    assert (ours - theirs).abs().max().item() <= TOL


def test_unmapped_and_missing_keys_are_listed(tmp_path: Path) -> None:
    src = DfbEfficientNetB4().state_dict()
    src["backbone.extra_branch.weight"] = torch.zeros(3)
    torch.save(src, tmp_path / "extra.pth")
    with pytest.raises(ConversionError, match="backbone.extra_branch.weight"):
        convert("dfb_efficientnetb4", tmp_path / "extra.pth", tmp_path / "x.pt")
    src = DfbEfficientNetB4().state_dict()
    del src["backbone.efficientnet._blocks.3._bn1.running_var"]
    torch.save(src, tmp_path / "short.pth")
    with pytest.raises(ConversionError, match=r"missing 1: backbone\.model\.blocks\.1\.1\.bn2\.running_var"):
        convert("dfb_efficientnetb4", tmp_path / "short.pth", tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_efficientnet_pytorch_key_names() -> None:
    assert efficientnet_pytorch_key("_blocks.0._depthwise_conv.weight") == "blocks.0.0.conv_dw.weight"
    assert efficientnet_pytorch_key("_blocks.2._expand_conv.weight") == "blocks.1.0.conv_pw.weight"
    assert efficientnet_pytorch_key("_blocks.31._bn2.bias") == "blocks.6.1.bn3.bias"
    assert efficientnet_pytorch_key("_bn1.running_mean") == "bn2.running_mean"
    assert efficientnet_pytorch_key("_fc.weight") is None
    assert efficientnet_pytorch_key("_blocks.32._bn2.bias") is None
