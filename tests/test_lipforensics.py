"""LipForensics (Haliassos et al., CVPR 2021): grayscale mouth clips, the MS-TCN's branches and blocks by
hand, one fine-tuning step with the feature extractor frozen, the lipreading checkpoint, the release's
layout (a hand-built manifest), both recipes' configs, a smoke run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import compose, train_in_process
from step_probe import one_step_gradients

from detect.convert.common import ConversionError, check_against
from detect.convert.lipforensics_release import convert
from detect.data.clip_view import mouth_box
from detect.data.mouth_clips import LRW_EYE_RATIO, MouthClipDataset
from detect.data.sample_table import COLUMNS
from detect.data.transforms import Pipeline
from detect.engine.clip_scoring import predict_for_method
from detect.engine.method_builder import build_method
from detect.engine.runtime import Runtime
from detect.engine.schema import validate_config
from detect.methods.lipforensics import LipForensics, authors_key
from detect.methods.lipforensics_net import (
    LipForensicsNet,
    MultiscaleTCN,
    MultiscaleTemporalBlock,
    TemporalBranch,
    to_grayscale,
)

ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}
TINY = {
    "frontend_width": 4,
    "trunk_widths": [4, 8, 8, 8],
    "tcn_branch_width": 2,
    "tcn_kernels": [3, 5, 7],
    "tcn_layers": 2,
    "tcn_dropout": 0.0,
}
MANIFEST = Path(__file__).parent / "data" / "release_manifests" / "lipforensics.json"


def _prelu(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, x, a[:, None] * x)


def _branch_by_hand(branch: TemporalBranch, x: np.ndarray) -> np.ndarray:
    """Eval-mode branch on ``x [C, T]``: y[o, t] = b[o] + sum_{c, j} w[o, c, j] x[c, t + (j - (k-1)/2) d]
    (zeros outside the clip), then the batch norm's running affine, then PReLU."""
    w, b = branch.conv.weight.detach().numpy(), branch.conv.bias.detach().numpy()
    k, d = branch.conv.kernel_size[0], branch.conv.dilation[0]
    c_out, (c_in, t_len) = w.shape[0], x.shape
    y = np.zeros((c_out, t_len))
    for o in range(c_out):
        for t in range(t_len):
            acc = b[o]
            for c in range(c_in):
                for j in range(k):
                    s = t + (j - (k - 1) // 2) * d
                    if 0 <= s < t_len:
                        acc += w[o, c, j] * x[c, s]
            y[o, t] = acc
    bn = branch.bn
    mean, var = bn.running_mean.numpy()[:, None], bn.running_var.numpy()[:, None]
    y = (y - mean) / np.sqrt(var + bn.eps) * bn.weight.detach().numpy()[:, None] + bn.bias.detach().numpy()[
        :, None
    ]
    return _prelu(y, branch.act.weight.detach().numpy())


def _randomise(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def test_a_branch_is_a_centred_dilated_convolution_by_hand():
    branch = TemporalBranch(2, 3, kernel=5, dilation=2).eval()
    _randomise(branch, 0)
    assert branch.conv.padding == (8,) and branch.trim == 4  # (k - 1) d both sides, half of it trimmed
    x = torch.randn(1, 2, 9, generator=torch.Generator().manual_seed(1))
    got = branch(x).detach().numpy()[0]
    np.testing.assert_allclose(got, _branch_by_hand(branch, x.numpy()[0]), rtol=1e-5, atol=1e-5)
    # not causal: a change at step 6 reaches steps 2..8 (6 - 4 .. 6 + 4 within the clip), nothing else
    y = x.clone()
    y[0, :, 6] += 1.0
    moved = (branch(y) - branch(x)).abs().sum(dim=(0, 1)) > 0
    assert moved.tolist() == [False, False, True, False, True, False, True, False, True]  # dilation 2


def test_a_training_branch_normalises_over_the_padded_length_before_trimming():
    # the authors' order: BatchNorm1d on the convolution's T + (k - 1) d outputs, then the trim
    branch = TemporalBranch(1, 1, kernel=3, dilation=1)
    with torch.no_grad():
        branch.conv.weight.fill_(1.0)
        branch.conv.bias.zero_()
    branch.bn.momentum = 1.0  # the running mean becomes this batch's mean
    x = torch.arange(1.0, 5.0).view(1, 1, 4)  # 1 2 3 4, padded by 2 on each side
    branch(x)
    padded_outputs = torch.tensor([1.0, 3, 6, 9, 7, 4])  # window sums at the 6 positions
    assert branch.bn.running_mean.item() == pytest.approx(padded_outputs.mean().item())


def test_a_block_by_hand_and_the_tcn_dilations():
    torch.manual_seed(0)
    block = MultiscaleTemporalBlock(4, 6, kernels=(3, 5, 7), dilation=2, dropout=0.0).eval()
    _randomise(block, 3)
    x = torch.randn(1, 4, 7, generator=torch.Generator().manual_seed(4))
    xs = x.numpy()[0]
    first = np.concatenate([_branch_by_hand(b, xs) for b in block.first])
    second = np.concatenate([_branch_by_hand(b, first) for b in block.second])
    w, b = block.residual.weight.detach().numpy()[:, :, 0], block.residual.bias.detach().numpy()
    hand = _prelu(second + w @ xs + b[:, None], block.act.weight.detach().numpy())
    np.testing.assert_allclose(block(x).detach().numpy()[0], hand, rtol=1e-4, atol=1e-4)
    # the paper's sizes: 4 blocks, dilations 1, 2, 4, 8, kernels 3/5/7 of 256 channels, 768 out, T kept,
    # every block with a 1x1 residual projection (the authors' test c_in // 3 != c_out holds for 512 and 768)
    with torch.device("meta"):
        tcn = MultiscaleTCN(512, 768)
    assert [blk.first[0].conv.dilation[0] for blk in tcn.blocks] == [1, 2, 4, 8]
    assert [br.conv.kernel_size[0] for br in tcn.blocks[0].second] == [3, 5, 7]
    assert all(isinstance(blk.residual, torch.nn.Conv1d) for blk in tcn.blocks)
    assert [br.conv.out_channels for br in tcn.blocks[3].first] == [256] * 3
    small = MultiscaleTCN(3, 6, layers=2).eval()
    assert small(torch.randn(2, 3, 5)).shape == (2, 6, 5)


def test_grayscale_of_equally_normalised_rgb_is_the_normalised_luma():
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(2, 3, 3, 4, 4, generator=g)  # [B, T, 3, H, W] in [0, 1]
    luma = 0.299 * rgb[:, :, 0] + 0.587 * rgb[:, :, 1] + 0.114 * rgb[:, :, 2]
    gray = to_grayscale((rgb - 0.421) / 0.165)
    assert gray.shape == (2, 1, 3, 4, 4)
    assert torch.allclose(gray[:, 0], (luma - 0.421) / 0.165, atol=1e-5)
    assert torch.equal(to_grayscale(rgb[:, :, :1]), rgb[:, :, :1].transpose(1, 2))
    with pytest.raises(ValueError, match="expected"):
        to_grayscale(torch.zeros(1, 3, 2, 4, 4))


def test_the_frontend_is_the_only_layer_across_frames_before_the_tcn():
    net = LipForensicsNet(**TINY).eval()
    conv = net.frontend.conv
    assert conv.kernel_size == (5, 7, 7) and conv.stride == (1, 2, 2) and conv.in_channels == 1
    x = torch.randn(1, 1, 9, 32, 32)
    y = x.clone()
    y[0, 0, 6] += 1.0  # frame 6: features of frames 4..8 change (temporal kernel 5), no others
    with torch.no_grad():
        moved = (net.frame_features(y) - net.frame_features(x)).abs().sum(dim=(0, 1)) > 0
    assert moved.tolist() == [False] * 4 + [True] * 5


def _clips(b: int = 2, t: int = 4, size: int = 32, seed: int = 2) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "clip": torch.randn(b, t, 3, size, size, generator=g),
        "label": torch.tensor([0.0, 1.0] * (b // 2)),
    }


def _before_bn(name: str) -> bool:
    return name.startswith("net.tcn.") and name.endswith(".conv.bias")


def test_one_fit_step_trains_the_temporal_network_and_leaves_the_feature_extractor_alone():
    m = LipForensics({}, ADAM, clip_len=4, net=TINY)
    frozen = {k: v.clone() for k, v in m.net.state_dict().items() if k.startswith(("frontend.", "trunk."))}
    out, grads = one_step_gradients(m, _clips())
    assert grads and all(n.startswith(("net.tcn.", "net.head.")) for n in grads)  # only these are trainable
    # the branches' convolution biases precede a training-mode batch norm, which subtracts them again: their
    # gradient is 0 up to rounding (kept for the authors' layout, where Conv1d has its default bias)
    assert [n for n, g in grads.items() if g == 0.0 and not _before_bn(n)] == []
    assert max(g for n, g in grads.items() if _before_bn(n)) < 1e-4 * max(grads.values())
    assert all(p.grad is None for n, p in m.named_parameters() if n.startswith(("net.frontend", "net.trunk")))
    after = m.net.state_dict()
    assert all(torch.equal(after[k], v) for k, v in frozen.items())  # weights AND batch-norm statistics
    assert m.net.trunk.training is False and m.net.tcn.training is True
    assert set(out.logs) == {"bce"} and torch.isfinite(out.loss) and out.sample_losses.shape == (2,)
    assert {id(p) for g in m.optimizer.param_groups for p in g["params"]} == {
        id(p) for p in m.parameters() if p.requires_grad
    }
    m.eval()
    batch = _clips()
    with torch.no_grad():
        p = m.predict(batch["clip"])  # clips only: no landmarks, masks or pairs at evaluation
    assert p.shape == (2,) and torch.allclose(p, torch.sigmoid(m.logits(batch["clip"])))
    # unfrozen, every part trains
    m2 = LipForensics({}, ADAM, clip_len=4, net=TINY, freeze=[])
    _, grads2 = one_step_gradients(m2, _clips())
    assert any(n.startswith("net.frontend.") for n in grads2) and all(
        g > 0 for n, g in grads2.items() if not _before_bn(n)
    )
    with pytest.raises(ValueError, match="unknown parts"):
        LipForensics({}, ADAM, net=TINY, freeze=["resnet"])


def test_a_bf16_cpu_step_keeps_every_gradient_finite():
    m = LipForensics({}, ADAM, clip_len=4, net=TINY, freeze=[])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = m.logits(torch.randn(2, 4, 3, 32, 32)).float().sum()
    loss.backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in m.parameters())


def _manifest() -> dict:
    return json.loads(MANIFEST.read_text())


def test_parameter_count_and_layout_are_the_authors_network():
    spec = _manifest()
    with torch.device("meta"):
        net = LipForensicsNet()
    assert sum(p.numel() for p in net.parameters()) == spec["parameters"] == 35_990_785
    source = {k: torch.empty(s, device="meta") for k, s in spec["keys"].items()}
    with torch.device("meta"):
        method = LipForensics({}, ADAM)  # the paper's sizes
    check_against(convert(source), method.state_dict(), "the hand-built manifest")  # strict: every key, shape
    trainable = sum(p.numel() for p in method.parameters() if p.requires_grad)
    assert trainable == sum(
        math.prod(s)
        for k, s in spec["keys"].items()
        if k.startswith("tcn.") and "running" not in k and "num_batches" not in k
    )


def test_the_converter_refuses_a_word_classifier_and_unknown_keys():
    spec = _manifest()
    source = {k: torch.empty(s, device="meta") for k, s in spec["keys"].items()}
    words = {**source, "tcn.tcn_output.weight": torch.empty(500, 768, device="meta")}
    with pytest.raises(ConversionError, match="500 outputs"):
        convert(words)
    with pytest.raises(ConversionError, match="does not map"):
        convert({**source, "trunk.conv1.weight": torch.empty(64, 1, 7, 7, device="meta")})
    assert authors_key("tcn.mb_ms_tcn.network.2.cbcr1_2.non_lin.weight") == "tcn.blocks.2.second.2.act.weight"
    assert authors_key("trunk.layer3.0.downsample.1.running_var") == "trunk.stages.2.0.shortcut.1.running_var"
    assert authors_key("frontend3D.2.weight") == "frontend.act.weight"


def _lipreading_file(tmp_path: Path, donor: LipForensicsNet, wrapper: str = "model_state_dict") -> Path:
    """``donor``'s weights under the authors' keys, with a 500-word classifier, as Martinez et al. save."""
    ours_to_authors = {authors_key(k): k for k in _manifest()["keys"]}
    state = {ours_to_authors[k]: v for k, v in donor.state_dict().items() if not k.startswith("head.")}
    state["tcn.tcn_output.weight"] = torch.randn(500, donor.head.in_features)
    state["tcn.tcn_output.bias"] = torch.randn(500)
    path = tmp_path / "lrw_resnet18_mstcn.pth.tar"
    torch.save({wrapper: state, "epoch_idx": 3}, path)
    return path


def test_the_lipreading_network_loads_from_a_local_file_and_the_head_stays_new(tmp_path):
    torch.manual_seed(5)
    donor = LipForensicsNet(**TINY)
    _randomise(donor, 6)
    path = _lipreading_file(tmp_path, donor)
    m = LipForensics({}, ADAM, clip_len=4, net=TINY, lipreading=str(path), lipreading_seed=0)
    got, want = m.net.state_dict(), donor.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want if not k.startswith("head."))
    assert not torch.equal(got["head.weight"], want["head.weight"])
    info = m.run_info()["lipreading"]
    assert (
        info["random_init"] is False and info["checkpoint"] == str(path) and info["tensors"] == len(want) - 2
    )
    # a checkpoint without the PReLUs (a swish lipreading network) or of other widths is refused by name
    state = torch.load(path, weights_only=True)["model_state_dict"]
    swish = {
        k: v
        for k, v in state.items()
        if "relu" not in k and "non_lin" not in k and k != "frontend3D.2.weight"
    }
    torch.save(swish, tmp_path / "swish.pth")
    with pytest.raises(ValueError, match="missing.*act"):
        LipForensics({}, ADAM, net=TINY, lipreading=str(tmp_path / "swish.pth"))
    with pytest.raises(ValueError, match="wrong shapes"):
        LipForensics({}, ADAM, net={**TINY, "tcn_branch_width": 3}, lipreading=str(path))


def test_no_checkpoint_is_a_named_error_and_null_a_seeded_stand_in(tmp_path):
    with pytest.raises(FileNotFoundError, match="lrw.pth.*method.lipreading=null"):
        LipForensics({}, ADAM, net=TINY, lipreading=str(tmp_path / "lrw.pth"))
    a = LipForensics({}, ADAM, net=TINY, lipreading=None, lipreading_seed=3)
    b = LipForensics({}, ADAM, net=TINY, lipreading="random", lipreading_seed=3)
    c = LipForensics({}, ADAM, net=TINY, lipreading=None, lipreading_seed=4)
    assert torch.equal(a.net.frontend.conv.weight, b.net.frontend.conv.weight)
    assert not torch.equal(a.net.frontend.conv.weight, c.net.frontend.conv.weight)
    assert a.run_info()["lipreading"] == {"checkpoint": None, "random_init": True, "seed": 3}
    release = LipForensics({}, ADAM, net=TINY, lipreading="release")
    assert release.run_info()["lipreading"]["random_init"] is False
    with pytest.raises(ValueError, match="converted LipForensics checkpoint"):
        release.configure_optimizers(1, 1)


def _mouth_table(tmp_path: Path, frames: int = 4) -> tuple:
    # pixels encode their coordinates (R = x, G = y); the mouth moves 1 px per frame, the eyes 20 px apart
    yy, xx = np.mgrid[0:96, 0:96]
    coords = np.stack([xx * 2, yy * 2, np.zeros_like(xx)], -1).astype(np.uint8)
    rows, centres = [], []
    for k in range(frames):
        path = tmp_path / f"{k:03d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(coords, cv2.COLOR_RGB2BGR))
        lm = np.zeros((68, 2), np.float32)
        centre = np.array([50.0 + k, 60.0])
        lm[48:68] = centre
        lm[36], lm[45] = (30.0, 30.0), (50.0 + 2 * k, 30.0)  # eye corners 20 + 2k apart
        np.save(tmp_path / f"{k:03d}.npy", lm)
        centres.append(centre)
        rows.append(
            {"path": str(path), "label": 1, "label_name": "fake", "dataset": "toy", "domain": "DF",
             "compression": "-", "split": "test", "video": "toy/a", "video_id": "a", "source_video": "toy/a",
             "frame": k, "landmark_path": str(tmp_path / f"{k:03d}.npy"), "mask_path": None}
        )  # fmt: skip
    import pandas as pd

    return pd.DataFrame(rows, columns=list(COLUMNS)), np.mean(centres, axis=0)


def test_mouth_clips_are_squares_centred_on_the_mouth_sized_by_the_eyes(tmp_path):
    table, centre = _mouth_table(tmp_path)
    side = round(LRW_EYE_RATIO * 23.0)  # mean eye distance 20, 22, 24, 26 -> 23; 96/74.16 of it = 30 px
    x0, y0, got_side = mouth_box([np.load(p) for p in table["landmark_path"]], None, LRW_EYE_RATIO)
    assert (got_side, x0, y0) == (
        side,
        int(np.rint(centre[0] - side / 2)),
        int(np.rint(centre[1] - side / 2)),
    )
    ds = MouthClipDataset(table, Pipeline(side, [0, 0, 0], [1 / 255] * 3), clip_len=4, train=False)
    clip = ds[0]["clip"]  # raw 0-255 values (mean 0, std 1/255), not resized (size = side)
    assert clip.shape == (4, 3, side, side)
    for t in range(4):  # one square for the clip, centred on the mean mouth: the same window every frame
        assert clip[t, 0, 0, 0].item() == pytest.approx(2 * x0) and clip[t, 1, 0, 0].item() == pytest.approx(
            2 * y0
        )
        assert clip[t, 0, 0, side - 1].item() == pytest.approx(2 * (x0 + side - 1))
    # the model sees one grayscale square per frame
    gray = to_grayscale(clip.unsqueeze(0))
    assert gray.shape == (1, 1, 4, side, side)
    fixed = MouthClipDataset(
        table, Pipeline(16, [0, 0, 0], [1 / 255] * 3), clip_len=4, train=False, mouth_size=16
    )
    assert fixed[0]["clip"][0, 0, 0, 0].item() == pytest.approx(2 * int(np.rint(centre[0] - 8)))
    with pytest.raises(ValueError, match="landmark_path"):
        MouthClipDataset(
            table.drop(columns=["landmark_path"]), Pipeline(16, [0] * 3, [1] * 3), 4, train=False
        )
    # the method's evaluation view is this one, with the method's clip settings, and the engine scores it
    m = LipForensics({}, ADAM, clip_len=2, net=TINY, eval_clips_per_video=1).eval()
    pipe = Pipeline(32, [0.421] * 3, [0.165] * 3)
    view = m.build_eval_clip_dataset(table, pipe, None)
    assert isinstance(view, MouthClipDataset) and len(view) == 1 and view[0]["clip"].shape == (2, 3, 32, 32)
    rt = Runtime(torch.device("cpu"), "fp32")
    preds = predict_for_method(m, table, pipe, rt, 2, 0, None, None, progress=False)
    with torch.no_grad():
        want = float(m.predict(view[0]["clip"][None]))
    assert len(preds) == 1 and preds["n_frames"].tolist() == [2]
    assert preds["prob"][0] == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize(
    "extra,clip_len,rule,size,crop,batch,epochs,net_width",
    [([], 25, "consecutive", 96, 88, 32, 20, 256), (["+scale=smoke"], 4, "consecutive", 64, None, 32, 2, 4)],
)
def test_both_recipes_compose(extra, clip_len, rule, size, crop, batch, epochs, net_width):
    cfg = compose(["method=lipforensics", *extra])
    m = cfg.method
    assert (m.clip_len, m.clip_rule, m.net.tcn_branch_width, m.lipreading) == (
        clip_len,
        rule,
        net_width,
        None,
    )
    assert (cfg.input.size, cfg.input.crop, cfg.trainer.batch_size, cfg.trainer.epochs) == (
        size,
        crop,
        batch,
        epochs,
    )
    assert list(cfg.input.mean) == [0.421] * 3 and list(cfg.input.std) == [0.165] * 3
    assert list(m.freeze) == ["frontend", "trunk"] and m.optim.lr == 2e-4 and m.eval_clips_per_video is None
    validate_config(cfg)  # frames: null (every stored clip) passes the command line's check
    assert cfg.protocol.frames.train is None
    method = build_method(m, cfg.backbone)
    assert isinstance(method, LipForensics) and method.clip_len == clip_len and "clips" in method.data_needs
    assert method.run_info()["lipreading"]["random_init"] is True


@pytest.mark.e2e
@pytest.mark.long
def test_smoke_run_trains_and_evaluates_videos_from_mouth_clips(synthetic_cache, tmp_path):
    results = train_in_process(synthetic_cache, tmp_path, ["method=lipforensics", "+scale=smoke"]).results
    m = results["metrics"]["FF++"]
    assert 0.0 <= m["video_auc"] <= 1.0 and m["n_clips"] > 0
    info = results["method_info"]
    assert info["clip_len"] == 4 and info["lipreading"]["random_init"] is True
    assert info["frozen"] == ["frontend", "trunk"]


def test_predict_scores_mouth_squares_of_each_tracked_clip(tmp_path):
    from helpers import face_video_frames, save_random_checkpoint, write_h264

    from detect.data.preprocess.face_detection import build_face_models
    from detect.engine.runtime import setup_runtime
    from detect.inference.clip_sampling import clips_of, sample_clips
    from detect.inference.load import load_detector
    from detect.inference.prediction import face_models_config, predict_sources
    from detect.inference.sources import find_sources

    ckpt = save_random_checkpoint(tmp_path / "lip.pt", ("method=lipforensics",))
    video = tmp_path / "videos" / "face.mp4"
    write_h264(video, face_video_frames(0.3, 8))
    cfg = compose([f"ckpt={ckpt}", f"input={video}", "progress=false", "clips=1"], "predict")
    detector = load_detector(ckpt)
    torch.set_num_threads(1)
    result = predict_sources(detector, find_sources(str(video)), cfg, setup_runtime(cfg.runtime))
    (row,) = result.faces.to_dict("records")
    sampled = sample_clips(find_sources(str(video))[0], 4, 1, None)
    (clip,) = clips_of(sampled, "largest", detector.crop, build_face_models(face_models_config(cfg.detector)))
    size = detector.crop.size
    mouth = np.mean([lm[48:68].mean(0) for lm in clip.landmarks], axis=0)  # landmarks in crop pixels
    assert 0.25 * size < mouth[0] < 0.75 * size and 0.5 * size < mouth[1] < 0.95 * size
    squares = detector.method.clip_region_crops(clip.crops, clip.landmarks)
    x0, y0, side = mouth_box(clip.landmarks, None, LRW_EYE_RATIO)
    assert squares[0].shape[:2] == (side, side) and np.array_equal(
        squares[0], clip.crops[0][y0 : y0 + side, x0 : x0 + side]
    )
    frames, _ = detector.pipeline.apply_shared(squares, augment=False)
    with torch.no_grad():
        p = float(detector.method.predict(torch.stack(frames)[None]).reshape(()))
    assert row["score"] == pytest.approx(p, abs=1e-5)
    crops_cfg = compose([f"ckpt={ckpt}", f"input={video}", "progress=false", "faces=crops"], "predict")
    with pytest.raises(ValueError, match="faces=largest"):
        predict_sources(detector, find_sources(str(video)), crops_cfg, setup_runtime(crops_cfg.runtime))


@pytest.mark.long
def test_a_release_shaped_checkpoint_converts_loads_and_scores(tmp_path):
    from source_models import convert as convert_file_for

    from detect.inference.load import load_detector

    spec = _manifest()
    g = torch.Generator().manual_seed(0)
    source = {}
    for key, shape in spec["keys"].items():
        if key.endswith("num_batches_tracked"):
            source[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            source[key] = torch.rand(shape, generator=g) + 0.5
        else:
            source[key] = torch.randn(shape, generator=g) * 0.05
    torch.save({"model": source}, tmp_path / "lipforensics_ff.pth")
    dst = convert_file_for("lipforensics", tmp_path / "lipforensics_ff.pth", tmp_path / "converted.pt")
    det = load_detector(dst)
    ours = det.method.state_dict()
    assert all(torch.equal(ours["net." + authors_key(k)], v) for k, v in source.items())
    assert det.method.run_info()["lipreading"] == {
        "checkpoint": "release",
        "random_init": False,
        "seed": None,
    }
    assert det.pipeline.spec["size"] == 96 and det.pipeline.spec["crop"] == 88
    with torch.no_grad():
        p = det.method.predict(torch.randn(1, 25, 3, 88, 88, generator=g))
    assert p.shape == (1,) and 0.0 < float(p) < 1.0
