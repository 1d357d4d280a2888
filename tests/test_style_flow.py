"""Style-latent flows (Choi et al., CVPR 2024): the style flow, the StyleGRU's pieces, the triplet loss and
its in-batch triplets, the style attention module, the frozen pSp encoder and its loading, both training
stages' gradients, the recipes, a smoke run."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import compose, face_video_frames, save_random_checkpoint, train_in_process, write_h264
from step_probe import one_step_gradients

from detect.engine.method_builder import build_method
from detect.engine.runtime import setup_runtime
from detect.inference.load import load_detector
from detect.inference.prediction import predict_sources
from detect.inference.sources import find_sources
from detect.methods.style_flow import ContentNetwork, StyleAttention, StyleFlow
from detect.methods.style_flow_encoder import GradualStyleEncoder, load_style_encoder
from detect.methods.style_flow_gru import (
    LatentDropout,
    StyleGRU,
    pick_triplets,
    style_flow,
    triplet_loss,
)

ADAM = {"_target_": "torch.optim.Adam", "lr": 1e-3}
TINY_ENCODER = {"input_size": 32, "stand_in": {"units": [1, 1, 1, 1], "widths": [4, 4, 4, 4]}}
#: clip_len 4 -> 2 content tokens of 1024 -> E_style of 2048 = 2 directions x 2 layers x 512
TINY_GRU = {"hidden": 512, "layers": 2, "head_hidden": 16}
SMALL_HEAD = {"heads": 2, "dim_head": 4, "mlp_dim": 16, "dropout": 0.0, "emb_dropout": 0.0}


def _method(**kw) -> StyleFlow:
    args = {"encoder_net": TINY_ENCODER, "style_gru": TINY_GRU, "transformer": SMALL_HEAD, "clip_len": 4}
    return StyleFlow({}, ADAM, **{**args, **kw})


def _clips(b: int = 4, t: int = 4, size: int = 32, seed: int = 2) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "clip": torch.randn(b, t, 3, size, size, generator=g).clamp(-1, 1),
        "label": torch.tensor([0.0, 1.0] * (b // 2)),
        "index": torch.arange(b),
    }


def test_style_flow_is_the_difference_of_consecutive_latents_by_hand():
    lat = torch.tensor([[[[1.0, 2.0]], [[4.0, 0.0]], [[4.5, -1.0]]]])  # [B=1, T=3, n_styles=1, dim=2]
    flow = style_flow(lat)
    assert flow.shape == (1, 2, 2)
    assert torch.equal(flow, torch.tensor([[[3.0, -2.0], [0.5, -1.0]]]))
    two_styles = torch.arange(24.0).view(1, 3, 2, 4)  # flattening keeps style-major order
    assert torch.equal(style_flow(two_styles)[0, 0], torch.full((8,), 8.0))
    with pytest.raises(ValueError, match="T >= 2"):
        style_flow(torch.zeros(1, 1, 2, 4))


def test_triplet_loss_by_hand_and_its_triplets_respect_labels():
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    p = torch.tensor([[3.0, 4.0], [1.0, 1.0]])  # distances 5 and 0
    n = torch.tensor([[0.0, 1.0], [1.0, 3.0]])  # distances 1 and 2
    # max(0, 5 - 1 + 1) = 5; max(0, 0 - 2 + 1) = 0
    assert torch.allclose(triplet_loss(a, p, n, margin=1.0), torch.tensor([5.0, 0.0]))
    assert torch.allclose(triplet_loss(a, p, n, margin=3.0), torch.tensor([7.0, 1.0]))
    labels = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    tri = pick_triplets(labels, torch.Generator().manual_seed(0))
    assert tri.shape == (5, 3)
    for a_, p_, n_ in tri.tolist():
        assert a_ != p_ and labels[a_] == labels[p_] and labels[a_] != labels[n_]
    # an anchor with no other clip of its label (or none of the other label) forms no triplet
    assert pick_triplets(torch.tensor([0.0, 1.0, 1.0])).tolist() == [[1, 2, 0], [2, 1, 0]]
    assert pick_triplets(torch.tensor([1.0, 1.0])).shape == (0, 3)


def test_latent_dropout_shares_its_mask_over_time_and_both_halves():
    torch.manual_seed(0)
    drop = LatentDropout(0.5).train()
    x = torch.ones(2, 3, 8)
    y = drop(x)
    first = y[0, 0]
    assert set(first.unique().tolist()) <= {0.0, 2.0}  # kept positions scaled by 1 / (1 - p)
    assert torch.equal(first[:4], first[4:]) and all(
        torch.equal(first, y[b, t]) for b in (0, 1) for t in (0, 1, 2)
    )
    assert torch.equal(drop.eval()(x), x)


def test_style_gru_feature_is_the_concatenated_final_hidden_states():
    torch.manual_seed(0)
    gru = StyleGRU(feature_size=6, steps=3, hidden=5, layers=2, head_hidden=7).eval()
    flows = torch.randn(2, 3, 6)
    logit, e = gru(flows)
    assert logit.shape == (2,) and e.shape == (2, 20) and gru.out_dim == 20
    x = gru.bn(flows)  # eval: running statistics; no latent dropout
    _, h_n = gru.gru(x, gru.hidden_state.expand(-1, 2, -1).contiguous())
    assert torch.allclose(e, torch.cat(list(h_n), dim=1), atol=1e-6)  # layer-major, forward then backward
    assert torch.allclose(logit, gru.dense(e).squeeze(1))
    # the authors' key layout, so their stage-1 state dict loads as is
    keys = set(gru.state_dict())
    assert {"hidden_state", "gru.weight_ih_l0", "gru.weight_hh_l1_reverse", "bn.running_mean"} <= keys
    assert {"dense.1.fn.net.0.weight", "dense.1.fn.net.3.bias", "dense.3.weight"} <= keys
    with pytest.raises(ValueError, match="clip_len - 1"):
        gru(torch.randn(2, 4, 6))


def test_style_attention_by_hand():
    torch.manual_seed(0)
    sam = StyleAttention(dim=4)
    assert torch.count_nonzero(sam.w_o.weight) == 0  # zero-initialised output projection
    torch.nn.init.normal_(sam.w_o.weight)
    content, style = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    weights = sam.weights(content, style)
    assert weights.shape == (2, 3, 5) and torch.allclose(weights.sum(-1), torch.ones(2, 3))
    q = content @ sam.w_q.weight.T + sam.w_q.bias
    k = style @ sam.w_k.weight.T + sam.w_k.bias
    v = style @ sam.w_v.weight.T + sam.w_v.bias
    hand = torch.exp(q @ k.transpose(1, 2) / 2.0)  # sqrt(d) = 2
    hand = hand / hand.sum(-1, keepdim=True)
    assert torch.allclose(weights, hand, atol=1e-6)
    out = content + (hand @ v) @ sam.w_o.weight.T + sam.w_o.bias
    assert torch.allclose(sam(content, style), out, atol=1e-5)


def test_content_network_pools_time_once_and_ends_at_1024():
    net = ContentNetwork().eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 4, 32, 32)).shape == (1, 2, 1024)


def test_the_encoder_gives_w_plus_codes_from_three_pyramid_levels():
    enc, info = load_style_encoder(None, 0, **TINY_ENCODER)
    assert info["random_init"] is True and info["checkpoint"] is None
    assert not any(p.requires_grad for p in enc.parameters()) and not enc.training
    x = torch.randn(2, 3, 48, 48)
    codes = enc.encode_frames(x)  # resized to 32 px as pSp's transform
    assert codes.shape == (2, 18, 4)
    # seeded: the same stand-in twice
    assert torch.equal(load_style_encoder(None, 0, **TINY_ENCODER)[0].encode_frames(x), codes)
    # coarse styles read the stride-16 map: 2x2 at 32 px -> one conv; fine styles the stride-4 map: 3 convs
    assert len(enc.styles[0].convs) == 2 and len(enc.styles[17].convs) == 6
    # pSp's full encoder: IR-SE-50 (24 units) and 18 map2style blocks
    with torch.device("meta"):  # 230 M parameters: shapes only
        full = GradualStyleEncoder()
    assert len(full.body) == 24 and full.style_dim == 512 and len(full.styles[8].convs) == 12
    # pSp's key names and shapes (models/encoders/psp_encoders.py, helpers.py), written out by hand
    shapes = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    assert {
        "input_layer.0.weight": (64, 3, 3, 3),
        "input_layer.2.weight": (64,),
        "body.0.res_layer.5.fc1.weight": (4, 64, 1, 1),
        "body.3.shortcut_layer.0.weight": (128, 64, 1, 1),
        "body.3.res_layer.3.weight": (128, 128, 3, 3),
        "body.23.res_layer.4.running_var": (512,),
        "styles.2.convs.6.weight": (512, 512, 3, 3),
        "styles.6.convs.8.bias": (512,),
        "styles.17.convs.10.weight": (512, 512, 3, 3),
        "styles.17.linear.weight": (512, 512),
        "latlayer1.weight": (512, 256, 1, 1),
        "latlayer2.weight": (512, 128, 1, 1),
    }.items() <= shapes.items()
    assert "body.0.shortcut_layer.0.weight" not in shapes and "styles.2.convs.8.weight" not in shapes


def test_a_psp_checkpoint_loads_strictly_and_a_missing_file_is_named(tmp_path):
    size = {"units": [1, 1, 1, 1], "widths": [4, 4, 4, 4]}
    with pytest.raises(FileNotFoundError, match="psp_ffhq_encode.pt"):
        load_style_encoder(str(tmp_path / "psp_ffhq_encode.pt"))
    # a pSp-layout file: encoder.* keys in state_dict (decoder keys ignored) and a latent_avg
    torch.manual_seed(1)
    ref = GradualStyleEncoder(size["units"], size["widths"], 32)
    state = {f"encoder.{k}": v for k, v in ref.state_dict().items() if k != "latent_avg"}
    state["decoder.conv1.weight"] = torch.zeros(1)
    path = tmp_path / "psp.pt"
    torch.save({"state_dict": state, "latent_avg": torch.ones(4) * 0.5, "opts": {"n_styles": 18}}, path)
    import detect.methods.style_flow_encoder as module

    original = module.GradualStyleEncoder
    module.GradualStyleEncoder = lambda input_size=256: original(size["units"], size["widths"], input_size)
    try:
        enc, info = load_style_encoder(str(path), input_size=32)
        assert info == {"checkpoint": str(path), "random_init": False, "seed": None}
        assert torch.equal(enc.latent_avg, torch.full((18, 4), 0.5))  # one W vector, added to every style
        x = torch.randn(1, 3, 32, 32)
        with torch.no_grad():
            assert torch.allclose(enc(x), ref.eval()(x) + 0.5, atol=1e-6)
        del state["encoder.latlayer1.weight"]
        torch.save({"state_dict": state}, path)
        with pytest.raises(ValueError, match="latlayer1"):
            load_style_encoder(str(path), input_size=32)
    finally:
        module.GradualStyleEncoder = original


def test_stage_one_trains_the_style_gru_only_and_stage_two_the_rest():
    torch.manual_seed(0)
    m = _method(stage1_steps=1)
    assert m.stage_at(0) == 1 and m.stage_at(1) == 2
    batch = _clips()
    out, grads = one_step_gradients(m, batch)  # global step 0: stage 1
    style = {n for n in grads if n.startswith("style_gru.")}
    assert [n for n in style if grads[n] == 0.0] == []
    assert [n for n in grads if n not in style and grads[n] != 0.0] == []
    assert set(out.logs) == {"stage", "cls", "tri", "triplets"} and out.logs["triplets"] == 4.0
    assert all(not p.requires_grad for p in m.encoder.parameters())  # frozen: never in the optimisers
    # stage 2 (the StyleGRU frozen); SAM's output projection starts at zero, which blocks its q/k/v gradients
    # on the first step, so a nonzero projection shows that every stage-2 parameter is reached
    m2 = _method(stage1_steps=0)
    torch.nn.init.normal_(m2.sam.w_o.weight, std=0.02)
    out2, grads2 = one_step_gradients(m2, batch)
    assert [n for n, g in grads2.items() if not n.startswith("style_gru.") and g == 0.0] == []
    assert [n for n, g in grads2.items() if n.startswith("style_gru.") and g != 0.0] == []
    assert not m2.style_gru.training and m2.training  # frozen StyleGRU: eval mode in stage 2
    assert set(out2.logs) == {"stage", "bce"} and out2.sample_losses.shape == (4,)
    # with the paper's zero initialisation, the first stage-2 step moves only W_o among SAM's weights
    _, grads3 = one_step_gradients(_method(stage1_steps=0), batch)
    assert grads3["sam.w_o.weight"] > 0 and grads3["sam.w_q.weight"] == grads3["sam.w_k.weight"] == 0.0


def test_evaluation_takes_clips_only():
    torch.manual_seed(0)
    m = _method().eval()
    batch = _clips(b=2)
    p = m.predict(batch["clip"])  # clips only: no masks, landmarks or pairs
    assert p.shape == (2,) and torch.allclose(p, torch.sigmoid(m.logits(batch["clip"])))
    with pytest.raises(ValueError, match="clip_len=4"):
        m.predict(batch["clip"][:, :3])


def test_mismatched_style_and_content_sizes_name_the_fix():
    with pytest.raises(ValueError, match="method.style_gru.hidden to 512"):
        _method(style_gru={"hidden": 64, "layers": 2})


def test_a_stage_one_state_dict_of_the_authors_layout_loads(tmp_path):
    torch.manual_seed(0)
    src = _method().style_gru
    path = tmp_path / "checkpoint_100"
    torch.save(
        {"epoch": 101, "state_dict": {f"module.model.{k}": v for k, v in src.state_dict().items()}}, path
    )
    m = _method(style_gru_checkpoint=str(path), stage1_steps=0)
    assert torch.equal(m.style_gru.hidden_state, src.hidden_state)
    assert m.run_info()["style_gru"] == {"checkpoint": str(path)}
    with pytest.raises(FileNotFoundError, match="style_gru_checkpoint"):
        _method(style_gru_checkpoint=str(tmp_path / "g_temp.pth"))


def test_a_bf16_cpu_step_stays_finite():
    torch.manual_seed(0)
    m = _method(stage1_steps=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = m.logits(_clips(b=2)["clip"]).float().sum()
    loss.backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in m.parameters() if p.grad is not None)


def test_configs_compose_with_the_paper_recipe_and_the_smoke_scale():
    cfg = compose(["method=style_flow"])
    m = cfg.method
    assert (m.clip_len, m.clip_rule, m.stage1_steps, m.eval_clips_per_video) == (
        32,
        "consecutive",
        39000,
        None,
    )
    assert m.encoder is None and m.encoder_net.input_size == 256 and m.encoder_seed == cfg.seed
    assert dict(m.style_gru) == {
        "hidden": 4096,
        "layers": 2,
        "latent_dropout": 0.2,
        "gru_dropout": 0.1,
        "head_dropout": 0.5,
        "head_hidden": 4096,
    }
    assert (m.style_optim.lr, m.optim.lr, m.triplet_margin) == (5e-4, 3e-4, 1.0)
    assert (cfg.input.size, cfg.trainer.batch_size, cfg.trainer.max_steps) == (224, 16, 239000)
    assert list(cfg.input.mean) == [0.5] * 3 and list(cfg.input.std) == [0.5] * 3
    assert m.transformer.depth == 1 and m.transformer.heads == 16 and m.scheduler.step_size == 139000
    smoke = compose(["method=style_flow", "+scale=smoke"])
    s = smoke.method
    assert (s.clip_len, s.clip_rule, s.stage1_steps, smoke.input.size) == (4, "consecutive", 1, 64)
    assert (smoke.data.generator.clips, smoke.data.generator.clip_len) == (2, 4)  # synthetic clips
    assert s.encoder_net.input_size == 64 and list(s.encoder_net.stand_in.widths) == [4, 8, 8, 8]
    built = build_method(s, smoke.backbone)
    assert isinstance(built, StyleFlow) and "clips" in built.data_needs
    assert built.run_info()["encoder"]["random_init"] is True


def test_predict_scores_a_video_as_the_mean_of_its_clips(tmp_path):
    ckpt = save_random_checkpoint(tmp_path / "style_flow.pt", ("method=style_flow",))
    write_h264(tmp_path / "videos" / "face.mp4", face_video_frames(0.3, 12))
    cfg = compose([f"ckpt={ckpt}", f"input={tmp_path / 'videos'}", "progress=false", "clips=2"], "predict")
    detector = load_detector(ckpt)
    assert isinstance(detector.method, StyleFlow) and detector.method.clip_len == 4
    torch.set_num_threads(1)
    sources = find_sources(str(tmp_path / "videos" / "face.mp4"))
    result = predict_sources(detector, sources, cfg, setup_runtime(cfg.runtime))
    clips = result.faces
    assert clips["frame"].tolist() == [0, 8] and clips["n_frames"].tolist() == [4, 4]
    (video,) = result.videos.to_dict("records")
    assert video["aggregate"] == "mean_of_clips" and video["n_clips"] == 2
    assert video["score"] == pytest.approx(float(clips["score"].mean()), abs=1e-12)


@pytest.mark.e2e
@pytest.mark.long
def test_smoke_run_trains_both_stages_and_evaluates_videos_from_clips(synthetic_cache, tmp_path):
    results = train_in_process(synthetic_cache, tmp_path, ["method=style_flow", "+scale=smoke"]).results
    m = results["metrics"]["FF++"]
    assert 0.0 <= m["video_auc"] <= 1.0 and m["n_clips"] > 0
    info = results["method_info"]
    assert info["clip_len"] == 4 and info["encoder"]["random_init"] is True and info["stage1_steps"] == 1


def test_the_sam_scale_is_the_key_width():
    # softmax(q k^T / sqrt(d)) with d the token width (1024 in the paper: / 32)
    sam = StyleAttention(dim=16)
    with torch.no_grad():
        for lin in (sam.w_q, sam.w_k):
            lin.weight.copy_(torch.eye(16))
            lin.bias.zero_()
    c = torch.zeros(1, 1, 16)
    c[0, 0, 0] = 1.0
    s = torch.zeros(1, 2, 16)
    s[0, 0, 0] = 8.0  # q.k = 8 -> / sqrt(16) = 2
    w = sam.weights(c, s)[0, 0]
    assert torch.allclose(w, torch.tensor([math.exp(2) / (math.exp(2) + 1), 1 / (math.exp(2) + 1)]))
