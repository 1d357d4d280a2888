"""DFFC's quality prior: the IFQA architecture against the authors' checkpoint manifest, strict loading and
its errors, the classical no-weights score, and quality_scores through the per-sample score cache."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import skimage.data
import torch

from detect.data.jpeg import jpeg_compress
from detect.quality import classical, priors
from detect.quality.clip_indicators import (
    VQI_PROMPTS,
    drop_attnpool_positional_embedding,
    load_clip,
    score_images,
)
from detect.quality.ifqa import (
    IFQA,
    N_PARAMETERS,
    N_TENSORS,
    IFQACheckpointError,
    IFQAWeightsUnavailable,
    _state_dict_of,
    ifqa_score,
    load_ifqa,
    preprocess,
)
from detect.quality.priors import CHECKPOINT_KEY, QualityResult, QualityWeightsUnavailable, quality_scores

MANIFEST = Path(__file__).parent / "data" / "ifqa_state_dict_shapes.json"
"""The authors' IFQA_Metric.pth state dict (key ``D``): every tensor name and shape, in order."""


@pytest.fixture(scope="module")
def ifqa_ckpt(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """One randomly initialised IFQA (seeded), saved as the authors' file layout {"D": state_dict}."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        sd = IFQA().state_dict()
    path = tmp_path_factory.mktemp("ifqa") / "IFQA_Metric.pth"
    torch.save({"D": sd}, path)
    return path, sd


@pytest.fixture(scope="module")
def ifqa_model(ifqa_ckpt) -> IFQA:
    return load_ifqa(ifqa_ckpt[0])


def _face(size: int = 96, offset: int = 0) -> np.ndarray:
    """A sharp natural RGB crop (the astronaut's face region), ``size`` px."""
    img = skimage.data.astronaut()[30 + offset : 230 + offset, 150:350]
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


# -- IFQA ----------------------------------------------------------------------------------------------
def test_ifqa_state_dict_matches_the_authors_manifest_key_for_key():
    manifest = json.loads(MANIFEST.read_text())
    with torch.device("meta"):
        model = IFQA()
    sd = model.state_dict()
    assert list(sd) == list(manifest)  # same keys, same order
    for key, shape in manifest.items():
        assert tuple(sd[key].shape) == tuple(shape), key
    n = sum(math.prod(s) for s in manifest.values())
    assert len(sd) == len(manifest) == N_TENSORS == 122
    assert sum(p.numel() for p in model.parameters()) == n == N_PARAMETERS
    assert round(n / 1e6, 1) == 105.2
    assert not list(model.buffers())  # affine InstanceNorm keeps no running statistics


def test_load_ifqa_is_strict_and_takes_the_saved_weights(ifqa_ckpt, ifqa_model):
    _, sd = ifqa_ckpt
    loaded = ifqa_model.state_dict()
    assert list(loaded) == list(sd)
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)
    assert not ifqa_model.training and not any(p.requires_grad for p in ifqa_model.parameters())
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in ifqa_model.parameters())


def test_state_dict_layouts_accepted():
    sd = {"encoder128.conv1.bias": torch.zeros(3)}
    assert _state_dict_of({"D": sd, "G": {}}, "f.pth") is sd
    assert _state_dict_of(sd, "f.pth") is sd  # a bare state dict
    assert list(_state_dict_of({"D": {"module.encoder128.conv1.bias": torch.zeros(3)}}, "f.pth")) == list(sd)


def test_load_ifqa_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope" / "IFQA_Metric.pth"
    with pytest.raises(IFQAWeightsUnavailable, match="cannot be downloaded") as err:
        load_ifqa(missing)
    assert str(missing) in str(err.value) and isinstance(err.value, FileNotFoundError)

    no_d = tmp_path / "no_d.pth"
    torch.save({"G": {"w": torch.zeros(1)}, "epoch": 3}, no_d)
    with pytest.raises(IFQACheckpointError, match="no 'D' entry") as err:
        load_ifqa(no_d)
    assert str(no_d) in str(err.value)

    wrong = tmp_path / "wrong.pth"
    torch.save(
        {"D": {"encoder128.conv1.weight": torch.zeros(3, 3, 5, 5), "foo.weight": torch.zeros(1)}}, wrong
    )
    with pytest.raises(IFQACheckpointError) as err:
        load_ifqa(wrong)
    msg = str(err.value)
    assert str(wrong) in msg and "121 missing: encoder128.conv1.bias" in msg and "(+116 more)" in msg
    assert "1 unexpected: foo.weight" in msg
    assert "encoder128.conv1.weight: (3, 3, 5, 5) vs (3, 3, 3, 3)" in msg

    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(IFQACheckpointError, match="holds a Tensor"):
        load_ifqa(tensor)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(IFQACheckpointError, match=str(junk)):
        load_ifqa(junk)


def test_ifqa_preprocess_and_score(ifqa_model):
    imgs = [_face(300), _face(256, offset=5)]
    x = preprocess(imgs)
    assert x.shape == (2, 3, 256, 256) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    expected = torch.from_numpy(imgs[1]).permute(2, 0, 1).float() / 127.5 - 1  # 256 px: no resize
    torch.testing.assert_close(x[1], expected)
    with torch.inference_mode():
        logits = ifqa_model(x)  # the one forward at 256 px (~3 s on 2 CPU cores, whatever the size)
    assert logits.shape == (2, 1, 256, 256) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all() and logits[0].mean() != logits[1].mean()


def test_ifqa_score_is_the_mean_of_the_sigmoid_map():
    stub = torch.nn.Conv2d(3, 1, 1)  # ifqa_score only needs a module giving [N, 1, H, W] logits
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    s = ifqa_score(stub, x)
    with torch.no_grad():
        expected = torch.sigmoid(stub(x)).mean(dim=(1, 2, 3))
    assert s.shape == (3,) and ((s >= 0) & (s <= 1)).all()
    torch.testing.assert_close(s, expected)
    torch.testing.assert_close(ifqa_score(stub, x, divide_by=3), expected / 3)
    with pytest.raises(ValueError, match="divide_by"):
        ifqa_score(stub, x, divide_by=2)
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        ifqa_score(stub, x[0])


def test_ifqa_shapes_on_the_meta_device_and_bad_sizes():
    with torch.device("meta"):
        model = IFQA()
    x = torch.zeros(4, 3, 256, 256, device="meta")
    assert model(x).shape == (4, 1, 256, 256)  # shapes only, no compute
    assert model(x[:, :, :64, :96]).shape == (4, 1, 64, 96)
    for bad in (x[:, :, :40, :40], x[:, :, :32, :32], x[:, :2]):
        with pytest.raises(ValueError, match="multiples of 32"):
            model(bad)


# -- the classical score -------------------------------------------------------------------------------
def test_laplacian_variance_by_hand():
    g = np.array([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=float)
    # interior (1,1): 0+0+0+0-4*1 = -4; (1,2): 0+0+1+0-0 = 1 -> mean -1.5, variance 6.25
    assert classical.laplacian_variance(g) == pytest.approx(6.25)
    ramp = np.add.outer(np.arange(6.0), 2 * np.arange(5.0))  # linear: the Laplacian is 0
    assert classical.laplacian_variance(ramp) == 0.0
    with pytest.raises(ValueError, match="3x3"):
        classical.laplacian_variance(np.zeros((2, 5)))
    y = classical.luminance(_face(256))
    v = classical.laplacian_variance(y)
    assert classical.sharpness(y) == pytest.approx(v / (v + classical.SHARPNESS_C))


def test_blockiness_ratio_sees_a_shifted_block_grid():
    rng = np.random.default_rng(0)
    smooth = cv2.GaussianBlur(rng.uniform(0, 255, (64, 64)), (0, 0), 1.5)
    assert classical.blockiness_ratio(smooth) == pytest.approx(1.0, abs=0.15)
    blocks = np.kron(rng.uniform(0, 255, (9, 9)), np.ones((8, 8)))[3:67, 5:69]  # grid origin not at 0
    assert classical.blockiness_ratio(blocks + rng.normal(0, 1, blocks.shape)) > 5
    assert classical.blockiness_ratio(np.zeros((10, 10))) == 1.0  # under 2 blocks: no evidence
    assert classical.blockiness_quality(0.8) == 1.0 and classical.blockiness_quality(2.0) == pytest.approx(
        math.exp(-1.0)
    )


def test_classical_quality_prefers_sharp_unblocked_faces():
    sharp = _face(256)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 1.5)
    q10 = jpeg_compress(sharp, 10)
    s, b, j = (classical.classical_quality(im) for im in (sharp, blurred, q10))
    assert s > b + 0.1 and s > j + 0.1
    assert classical.classical_quality(sharp) == s  # deterministic
    rng = np.random.default_rng(1)
    others = [
        rng.integers(0, 256, (50, 70, 3), dtype=np.uint8),
        np.zeros((5, 5, 3), np.uint8),
        np.full((300, 300, 3), 255, np.uint8),
        q10,
        blurred,
    ]
    batch = classical.classical_quality_batch([sharp, *others])
    assert batch.dtype == np.float64 and batch[0] == s
    assert ((batch >= 0) & (batch <= 1)).all()
    with pytest.raises(ValueError, match="uint8"):
        classical.classical_quality(sharp.astype(np.float32))


# -- quality_scores through the cache ------------------------------------------------------------------
def _write_faces(root: Path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        p = root / "faces" / f"{i:02d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), cv2.cvtColor(_face(64 + 8 * i, offset=4 * i), cv2.COLOR_RGB2BGR))
        paths.append(str(p))
    return paths


class _Counting:
    def __init__(self, fn) -> None:
        self.fn, self.calls, self.images = fn, 0, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        images = args[0] if args and isinstance(args[0], list) else args[2]
        self.images += len(images)
        return self.fn(*args, **kwargs)


def test_classical_prior_computes_once_per_image_and_level(tmp_path, monkeypatch):
    paths = _write_faces(tmp_path, 3)
    table = pd.DataFrame(
        {"path": paths + paths[:2] + [paths[0]], "compression": ["c23"] * 3 + ["c23+jpeg10"] * 2 + ["c23"]}
    )
    counter = _Counting(priors.classical_quality_batch)
    monkeypatch.setattr(priors, "classical_quality_batch", counter)
    cfg = {"kind": "classical", "batch_size": 2}
    first = quality_scores(table, cfg, tmp_path / "cache", "cpu")
    assert isinstance(first, QualityResult) and first.scores.shape == (6,)
    assert counter.images == 5 and counter.calls == 3  # 5 distinct (image, level) pairs in batches of 2
    assert first.n_scored == 5 and first.n_cached == 0 and first.images_per_s > 0
    assert ((first.scores >= 0) & (first.scores <= 1)).all() and first.scores[5] == first.scores[0]
    direct = [classical.classical_quality(_face(64 + 8 * i, offset=4 * i)) for i in range(3)]
    np.testing.assert_allclose(first.scores[:3], direct)
    # the jpeg10 level is scored after a JPEG round trip at quality 10, keyed apart from c23
    assert (first.scores[3:5] < first.scores[:2]).all()
    assert {f.name for f in (tmp_path / "cache").glob("*.csv")} == {
        "dffc-quality-classical__c23.csv",
        "dffc-quality-classical__c23+jpeg10.csv",
    }
    counter.calls = counter.images = 0
    second = quality_scores(table, cfg, tmp_path / "cache", "cpu")
    assert counter.calls == 0 and second.n_scored == 0 and second.images_per_s is None
    np.testing.assert_array_equal(second.scores, first.scores)
    np.testing.assert_array_equal(np.asarray(second), first.scores)
    more = pd.concat([table, pd.DataFrame({"path": [paths[2]], "compression": ["c40"]})], ignore_index=True)
    third = quality_scores(more, cfg, tmp_path / "cache", "cpu")
    assert counter.images == 1 and third.n_scored == 1 and third.n_cached == 5


def test_clip_iqa_prior_with_the_tiny_random_clip(tmp_path, monkeypatch):
    paths = _write_faces(tmp_path, 3)
    table = pd.DataFrame({"path": paths, "compression": ["c23", "c23", "c40"]})
    counter = _Counting(priors.score_images)
    monkeypatch.setattr(priors, "score_images", counter)
    cfg = {"kind": "clip_iqa", "allow_random": True}
    first = quality_scores(table, cfg, tmp_path / "cache", "cpu")
    assert counter.images == 3 and first.n_scored == 3 and first.info["random_init"] is True
    model, norm, tok = load_clip("RN50", None, allow_random=True, seed=0)
    drop_attnpool_positional_embedding(model)
    imgs = [_face(64 + 8 * i, offset=4 * i) for i in range(3)]
    expected, _ = score_images(model, tok, imgs, VQI_PROMPTS, size=norm["image_size"])
    np.testing.assert_allclose(first.scores, expected / 100, rtol=1e-5, atol=1e-6)
    assert ((first.scores >= 0) & (first.scores <= 1)).all()
    counter.calls = counter.images = 0
    second = quality_scores(table, cfg, tmp_path / "cache", "cpu")
    assert counter.calls == 0 and second.n_cached == 3
    np.testing.assert_array_equal(second.scores, first.scores)
    other = quality_scores(table, {**cfg, "seed": 1}, tmp_path / "cache", "cpu")  # another model: new key
    assert counter.images == 3 and other.version != first.version
    with pytest.raises(QualityWeightsUnavailable, match=CHECKPOINT_KEY.replace(".", r"\.")) as err:
        quality_scores(table, {"kind": "clip_iqa"}, tmp_path / "cache", "cpu")
    assert "cannot be downloaded" in str(err.value) and "classical" in str(err.value)


def test_ifqa_prior_through_the_cache(tmp_path, ifqa_ckpt, monkeypatch):
    path = _write_faces(tmp_path, 1)
    table = pd.DataFrame({"path": path, "compression": ["c23"]})
    loads = []

    def counting_load(*args, **kwargs):
        loads.append(args)
        return load_ifqa(*args, **kwargs)

    monkeypatch.setattr(priors.ifqa_mod, "load_ifqa", counting_load)
    cfg = {"kind": "ifqa", "checkpoint": str(ifqa_ckpt[0])}
    first = quality_scores(table, cfg, tmp_path / "cache", "cpu")
    assert first.n_scored == 1 and 0 <= first.scores[0] <= 1 and len(loads) == 1
    thirds = quality_scores(table, {**cfg, "divide_by": 3}, tmp_path / "cache", "cpu")
    assert thirds.n_scored == 0 and len(loads) == 1  # the cache holds the undivided score; no model load
    assert thirds.scores[0] == pytest.approx(first.scores[0] / 3)
    with pytest.raises(ValueError, match="divide_by"):
        quality_scores(table, {**cfg, "divide_by": 2}, tmp_path / "cache", "cpu")


def test_ifqa_prior_without_weights_says_what_to_do(tmp_path):
    table = pd.DataFrame({"path": _write_faces(tmp_path, 1), "compression": ["c23"]})
    for cfg in ({"kind": "ifqa"}, {"kind": "ifqa", "checkpoint": None}):
        with pytest.raises(QualityWeightsUnavailable) as err:
            quality_scores(table, cfg, tmp_path / "cache", "cpu")
        msg = str(err.value)
        assert CHECKPOINT_KEY in msg and "cannot be downloaded" in msg and "classical" in msg
        assert "clip_iqa" in msg and "IFQA_Metric.pth" in msg
    missing = tmp_path / "w" / "IFQA_Metric.pth"
    with pytest.raises(QualityWeightsUnavailable, match=str(missing)):
        quality_scores(table, {"kind": "ifqa", "checkpoint": str(missing)}, tmp_path / "cache", "cpu")
    with pytest.raises(ValueError, match="classical"):
        quality_scores(table, {"kind": "auto"}, tmp_path / "cache", "cpu")
    assert not (tmp_path / "cache").exists()  # nothing was scored
