"""IID (Huang et al., CVPR 2023): the ArcFace margin and the EIC loss against hand computations, identities
from FF++ video ids, the iresnet identity network (layout against DeepfakeBench's, local checkpoint, seeded
stand-in, frozen), one update reaching every trainable parameter with each loss logged, evaluation on
images alone, both recipes' configs, and a smoke run on the synthetic benchmark."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import compose, cpu_step_context, train_in_process
from step_probe import hook_last_gradients, without_gradient

from detect.data.identity_view import IdentityFrameDataset, identity_labels, identity_of
from detect.data.index import DatasetSpec, load_split
from detect.data.synthetic import SyntheticConfig, dataset_config, ensure_synthetic
from detect.data.transforms import Pipeline
from detect.engine.data_needs import method_needs
from detect.methods.iid import IID, arcface_logits, eic_loss
from detect.methods.iid_iresnet import IResNet, load_identity_network

TINY = {"name": "tiny", "timm_name": "test_efficientnet", "input_size": 64, "pretrained": False}
ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}
SMALL_ID = {"layers": [1, 1, 1, 1], "checkpoint": None, "seed": 0}
MANIFEST = Path(__file__).parent / "data" / "dfb_manifests" / "dfb_iid.json"


# -- losses by hand -------------------------------------------------------------------------------------
def test_arcface_logits_by_hand():
    kernel = torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # class directions (1,0), (0,1), (-1,0)
    e = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 2, 0])
    s, m = 64.0, 0.4
    got = arcface_logits(e, kernel, labels, s, m)
    want = torch.tensor(
        [
            [s * math.cos(m), 0.0, -s],  # θ_y = 0 -> cos(m)
            [0.0, s, s * -math.sin(m)],  # θ_y = π/2 -> cos(π/2 + m) = −sin m
            [s * (-1.0 - math.sin(math.pi - m) * m), 0.0, s],  # θ_y = π: θ + m > π -> cos θ − m sin m
        ]
    )
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_eic_loss_by_hand():
    imp = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    exp = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    labels = torch.tensor([0.0, 0.0, 1.0, 1.0])  # cos: 1, 1/√2 (reals), 0, −1 (fakes)
    want = (0.0 + -1.0) / 2 - (1.0 + 1 / math.sqrt(2)) / 2
    torch.testing.assert_close(eic_loss(imp, exp, labels).mean(), torch.tensor(want))
    reals_only = eic_loss(imp[:2], exp[:2], labels[:2]).mean()  # no fake: the fake term is 0
    torch.testing.assert_close(reals_only, torch.tensor(-(1.0 + 1 / math.sqrt(2)) / 2))


# -- identities -----------------------------------------------------------------------------------------
def test_identities_from_ff_video_ids():
    assert identity_of("071") == 71 and identity_of("071_054") == 54
    table = pd.DataFrame({"video_id": ["000", "000_003", "id7"], "path": ["a.png", "b.png", "c.png"]})
    with pytest.raises(ValueError, match="c.png: video id 'id7' does not end in a numeric identity"):
        identity_labels(table, 1000)
    assert identity_labels(table[:2], 1000).tolist() == [0, 3]
    with pytest.raises(ValueError, match="b.png: identity 3 .* outside \\[0, 3\\)"):
        identity_labels(table[:2], 3)


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> pd.DataFrame:
    cfg = SyntheticConfig(n_source_videos=4, frames_per_video=1, methods=("DF",), standins=())
    root = ensure_synthetic(tmp_path_factory.mktemp("iid"), cfg, workers=1)
    return load_split(DatasetSpec.from_config(dataset_config("FaceForensics++", root)), "train")


def test_identity_view_labels_the_swapped_in_face(table):
    ds = IdentityFrameDataset(table, Pipeline(32, [0.5] * 3, [0.5] * 3), 1000, train=False)
    for i in range(len(ds)):
        item = ds[i]
        vid = str(table.at[i, "video_id"])
        assert item["identity"].dtype == torch.int64 and int(item["identity"]) == int(vid.split("_")[-1])
        assert item["image"].shape == (3, 32, 32) and float(item["label"]) == float(table.at[i, "label"])
    assert {int(table.at[i, "label"]) for i in range(len(ds))} == {0, 1}


# -- the identity network -------------------------------------------------------------------------------
def test_iresnet50_has_deepfakebench_s_layout_and_parameter_count():
    keys = json.loads(MANIFEST.read_text())["keys"]
    theirs = {k.removeprefix("explicit_extractor."): v for k, v in keys.items() if "explicit_extractor." in k}
    net = IResNet()
    assert {k: list(v.shape) for k, v in net.state_dict().items()} == theirs
    assert sum(p.numel() for p in net.parameters()) == 43_590_848  # iresnet50: 43.6 M


def test_identity_network_loads_a_local_checkpoint_or_a_seeded_stand_in(tmp_path):
    a, info = load_identity_network(SMALL_ID)
    b, _ = load_identity_network(SMALL_ID)
    c, _ = load_identity_network({**SMALL_ID, "seed": 1})
    assert info == {"layers": [1, 1, 1, 1], "checkpoint": None, "random_init": True, "seed": 0}
    assert torch.equal(a.fc.weight, b.fc.weight) and not torch.equal(a.fc.weight, c.fc.weight)
    torch.save({"module." + k: v for k, v in c.state_dict().items()}, tmp_path / "backbone.pth")
    d, info = load_identity_network({**SMALL_ID, "checkpoint": str(tmp_path / "backbone.pth")})
    assert torch.equal(d.fc.weight, c.fc.weight) and info["random_init"] is False
    with pytest.raises(FileNotFoundError, match="missing.pth not found: set method.id_network.checkpoint"):
        load_identity_network({**SMALL_ID, "checkpoint": str(tmp_path / "missing.pth")})


# -- the method -----------------------------------------------------------------------------------------
def _batch(b: int = 4) -> dict:
    g = torch.Generator().manual_seed(2)
    return {
        "image": torch.randn(b, 3, 64, 64, generator=g),
        "label": torch.tensor([0.0, 1.0] * (b // 2)),
        "identity": torch.tensor([3, 5, 7, 5])[:b],
        "index": torch.arange(10, 10 + b),
    }


@pytest.mark.parametrize("frozen", [True, False])
def test_one_step_reaches_every_parameter_and_logs_each_loss(frozen):
    torch.manual_seed(0)
    m = IID(TINY, ADAM, id_network=SMALL_ID, freeze_id_network=frozen, num_identities=10)
    m.configure_optimizers(1, 1)
    m.train()
    assert m.identity.training is not frozen  # a frozen identity network stays in eval mode
    stats = m.identity.bn1.running_mean.clone()
    grads = hook_last_gradients(m)
    out = m.fit_step(_batch(), cpu_step_context())
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert without_gradient(m, grads) == []
    assert any(n.startswith("identity.") for n in trainable) is not frozen
    assert set(out.logs) == {"cls", "iie", "eic"}
    assert torch.equal(stats, m.identity.bn1.running_mean) is frozen
    torch.testing.assert_close(out.sample_losses.mean(), out.loss)


def test_the_loss_is_cls_plus_weighted_iie_and_eic():
    torch.manual_seed(0)
    m = IID(TINY, ADAM, id_network=SMALL_ID, num_identities=10, iie_weight=0.5, eic_weight=2.0).eval()
    batch = _batch()
    per_sample, logs = m.training_losses(batch, cpu_step_context())
    logit, e_imp, e_exp = m.forward_parts(batch["image"])
    cls = torch.nn.functional.binary_cross_entropy_with_logits(logit, batch["label"], reduction="none")
    logits = arcface_logits(e_imp, m.kernel, batch["identity"], 64.0, 0.4)
    iie = torch.nn.functional.cross_entropy(logits, batch["identity"], reduction="none")
    cos = torch.nn.functional.cosine_similarity(e_imp, e_exp)
    eic = cos[1::2].mean() - cos[0::2].mean()
    torch.testing.assert_close(per_sample.mean(), (cls + 0.5 * iie).mean() + 2.0 * eic)
    torch.testing.assert_close(logs["eic"], eic)
    # the logit reads the difference of the implicit and the explicit identity
    torch.testing.assert_close(logit, m.head(e_imp - e_exp).squeeze(1))
    torch.testing.assert_close(m.predict(batch["image"]), torch.sigmoid(logit))


def test_evaluation_takes_images_only():
    torch.manual_seed(0)
    m = IID(TINY, ADAM, id_network=SMALL_ID, num_identities=10).eval()
    p = m.predict(torch.randn(3, 3, 64, 64))
    assert p.shape == (3,) and bool(((p >= 0) & (p <= 1)).all())
    assert m.run_info()["identity_network"]["random_init"] is True


def test_configs_hold_both_recipes():
    paper, dfb = compose(["method=iid"]), compose(["method=iid/dfb"])
    for c in (paper, dfb):
        assert c.backbone.timm_name == "legacy_xception" and c.input.size == 256
        assert list(c.input.mean) == list(c.input.std) == [0.5, 0.5, 0.5]
        assert (c.method.iie_weight, c.method.eic_weight, c.method.num_identities) == (0.05, 0.1, 1000)
        assert (c.method.arcface_scale, c.method.arcface_margin, c.method.embedding_size) == (64.0, 0.4, 512)
        assert list(c.method.id_network.layers) == [3, 4, 14, 3] and c.method.id_network.checkpoint is None
        assert (c.method.optim.lr, c.method.optim.weight_decay, c.trainer.batch_size) == (2e-4, 5e-4, 32)
        assert c.trainer.epochs == 10 and len(c.augment.train) == 5
    assert (paper.method.freeze_id_network, dfb.method.freeze_id_network) == (True, False)
    assert dfb.method.name == "iid_dfb" and dfb.protocol.frames.train == 32
    assert method_needs(paper.method) == frozenset()


@pytest.mark.e2e
@pytest.mark.long
def test_smoke_run_on_the_synthetic_benchmark(synthetic_cache: Path, tmp_path):
    trainer = train_in_process(synthetic_cache, tmp_path, ["method=iid", "+scale=smoke"])
    metrics = trainer.results["metrics"]
    assert metrics and all(np.isfinite(v["frame_auc"]) for v in metrics.values())


def test_smoke_scale_uses_a_small_face_recogniser_and_the_recipes_iresnet50() -> None:
    """iresnet50 in both recipes; at scale=smoke (backbone=tiny) a 4-block iresnet keeps the sweeps short."""
    for option in ("iid", "iid/dfb"):
        assert list(compose([f"method={option}"]).method.id_network.layers) == [3, 4, 14, 3]
        assert list(compose([f"method={option}", "+scale=smoke"]).method.id_network.layers) == [1, 1, 1, 1]
