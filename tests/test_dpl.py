"""DPL (Zhang et al., ACCV 2024): losses against hand computations, the feature selection arithmetic, the
per-sample GRU steps, PPO, Stage II's freezing, the indicator cache and every preset's effect."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import compose, cpu_step_context

from detect.engine.method_builder import build_method
from detect.methods.dpl.dpl_losses import (
    discounted_returns,
    entropy,
    entropy_regulariser,
    focal_loss,
    hard_mask,
    ppo_loss,
)
from detect.methods.dpl.dpl_modules import AFF, Fusion, ProgressiveBranch, select_features, window_mask

# -- losses ------------------------------------------------------------------------------------------


def test_focal_loss_hand_computation():
    # p_true = 3/4 for sample 0 (label 1), 1/2 for sample 1 (label 0)
    logits = torch.tensor([[0.0, math.log(3.0)], [1.0, 1.0]])
    labels = torch.tensor([1, 0])
    got = focal_loss(logits, labels, gamma=2.0, alpha=1.0)
    want = torch.tensor([-(0.25**2) * math.log(0.75), -(0.5**2) * math.log(0.5)])
    assert torch.allclose(got, want, atol=1e-6)
    # γ = 0, α = 1 is the cross-entropy; α scales
    assert torch.allclose(
        focal_loss(logits, labels, 0.0, 1.0),
        torch.nn.functional.cross_entropy(logits, labels, reduction="none"),
    )
    assert torch.allclose(focal_loss(logits, labels, 2.0, 0.5), 0.5 * want)


def test_entropy_regulariser_maximises_hard_samples_entropy():
    # hardness: CE of the final prediction > ln 2 (true class below 1/2)
    final = torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    labels = torch.tensor([1, 1, 0])
    assert hard_mask(final, labels).tolist() == [True, False, False]  # [0,0] is CE = ln 2 exactly: not hard
    # two steps, sample 0 valid on both, sample 1 on the first only
    step = torch.tensor(
        [[[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]], [[math.log(3.0), 0.0], [0.0, 0.0], [0.0, 0.0]]]
    )
    valid = torch.tensor([[True, True, True], [True, False, True]])
    hard = torch.tensor([True, True, False])
    h = lambda p: -(p * math.log(p) + (1 - p) * math.log(1 - p))  # noqa: E731
    s0 = (h(0.5) + h(0.75)) / 2  # sample 0: mean over its two valid steps
    s1 = h(1 / (1 + math.exp(-1.0)))  # sample 1: its first step only
    want = -(s0 + s1) / 2  # mean over the two hard samples, negated (entropy maximised)
    assert entropy_regulariser(step, valid, hard).item() == pytest.approx(want, abs=1e-6)
    assert entropy(torch.zeros(1, 2)).item() == pytest.approx(math.log(2.0))
    # no hard sample: 0; and the gradient raises the entropy of hard samples
    assert entropy_regulariser(step, valid, torch.zeros(3, dtype=torch.bool)).item() == 0.0
    x = torch.tensor([[[3.0, 0.0]]], requires_grad=True)
    entropy_regulariser(x, torch.ones(1, 1, dtype=torch.bool), torch.ones(1, dtype=torch.bool)).backward()
    assert x.grad[0, 0, 0] > 0 > x.grad[0, 0, 1]  # descending moves the logits together: higher entropy


def test_discounted_returns_hand_computation():
    rewards = torch.tensor([[1.0, 1.0], [2.0, 5.0], [3.0, 7.0]])
    valid = torch.tensor([[True, True], [True, False], [True, False]])
    got = discounted_returns(rewards, valid, gamma=0.5, normalise=False)
    assert got[:, 0].tolist() == [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0]
    assert got[:, 1].tolist() == [1.0, 0.0, 0.0]  # invalid steps neither count nor get a return
    plain = discounted_returns(rewards, valid, gamma=1.0, normalise=False)  # the paper: plain sums
    assert plain[:, 0].tolist() == [6.0, 5.0, 3.0]
    norm = discounted_returns(rewards, valid, gamma=1.0, normalise=True)
    sel = torch.tensor([6.0, 1.0, 5.0, 3.0])  # row-major order of the valid entries
    assert torch.allclose(norm[valid], (sel - sel.mean()) / (sel.std() + 1e-5))


def test_ppo_loss_hand_computation():
    # two steps x one sample; the second entry's ratio is clipped
    logp = torch.tensor([[math.log(0.5)], [math.log(0.9)]])
    old = torch.tensor([[math.log(0.5)], [math.log(0.5)]])
    values = torch.tensor([[0.2], [0.1]])
    returns = torch.tensor([[1.0], [0.6]])
    ent = torch.tensor([[0.3], [0.4]])
    valid = torch.ones(2, 1, dtype=torch.bool)
    out = ppo_loss(logp, old, values, returns, ent, valid, clip=0.2, value_weight=0.5, entropy_weight=0.01)
    a = [0.8, 0.5]  # R - V
    rew = [-min(1.0 * a[0], 1.0 * a[0]), -min(1.8 * a[1], 1.2 * a[1])]
    se = [0.8**2, 0.5**2]
    want = np.mean([rew[i] + 0.5 * se[i] - 0.01 * [0.3, 0.4][i] for i in range(2)])
    assert out["loss"].item() == pytest.approx(want, abs=1e-6)
    assert out["reward_loss"].item() == pytest.approx(np.mean(rew), abs=1e-6)
    assert out["value_loss"].item() == pytest.approx(np.mean(se), abs=1e-6)
    # a masked entry changes nothing
    out2 = ppo_loss(logp, old, values, returns, ent, torch.tensor([[True], [False]]), 0.2, 0.5, 0.01)
    assert out2["loss"].item() == pytest.approx(rew[0] + 0.5 * se[0] - 0.01 * 0.3, abs=1e-6)


# -- the feature selection module -------------------------------------------------------------------


def test_window_mask_and_masked_subtraction():
    a = torch.tensor([0.5, 0.0, 1.0])
    # paper: start ⌊l·c⌋ = 3, 0, 6 → clamped to 5; a window past the end is cut
    assert window_mask(a, 6, 2, "c").tolist() == [[1, 1, 1, 0, 0, 1], [0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]]
    # code: start ⌊l·(c − δ)⌋ = 2, 0, 4
    assert window_mask(a, 6, 2, "c_minus_delta").tolist() == [
        [1, 1, 0, 0, 1, 1],
        [0, 0, 1, 1, 1, 1],
        [1, 1, 1, 1, 0, 0],
    ]
    f = torch.arange(2 * 3 * 2 * 1, dtype=torch.float32).view(2, 3, 2, 1)  # [N=2, c=3, h=2, w=1]
    m = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    out = select_features(f, m)
    pooled = f.mean(dim=(2, 3))  # sample 0: [0.5, 2.5, 4.5]
    for n in range(2):
        for ch in range(3):
            assert torch.equal(out[n, ch], f[n, ch] - m[n, ch] * pooled[n, ch])
    assert torch.equal(out[0, 1], f[0, 1])  # the window's channel is kept as it is
    assert torch.allclose(out[0, 0].mean(), torch.tensor(0.0))  # elsewhere the pooled value is removed


def test_branch_runs_exactly_k_steps_per_sample():
    torch.manual_seed(0)
    c = 4
    branch = ProgressiveBranch(c, aggregate="sum")
    maps = [torch.randn(3, c, 2, 2) for _ in range(4)]
    steps = torch.tensor([1, 3, 4])
    rows_seen = []
    branch.cell.register_forward_hook(lambda mod, inp, out: rows_seen.append(inp[0].shape[0]))
    out = branch(maps, steps)
    assert sum(rows_seen) == int(steps.sum())  # k_i GRU steps for sample i, no more
    # by hand: h_t = GRU(x_t, h_{t-1}), x_1 = GAP(f_1), x_t = proj(GAP(f_t)); feature = Σ_{t ≤ k} h_t
    for i, k in enumerate(steps.tolist()):
        h, total = torch.zeros(1, c), torch.zeros(1, c)
        for t in range(k):
            pooled = maps[t][i : i + 1].mean(dim=(2, 3))
            x = pooled if t == 0 else branch.proj(maps[t][i : i + 1]).mean(dim=(2, 3))
            h = branch.cell(x, h)
            total = total + h
        assert torch.allclose(out[-1, i], total[0], atol=1e-6)
        assert torch.allclose(out[k - 1, i], out[-1, i])  # frozen after its own k
    # what lies beyond a sample's k never reaches it
    maps2 = [m.clone() for m in maps]
    maps2[1][0] += 100.0
    assert torch.allclose(branch(maps2, steps)[:, 0], out[:, 0])
    mean_branch = ProgressiveBranch(c, aggregate="mean")
    mean_branch.load_state_dict(branch.state_dict())
    assert torch.allclose(mean_branch(maps, steps)[-1], out[-1] / steps[:, None].float(), atol=1e-6)


def test_fusions_and_aff():
    torch.manual_seed(0)
    x, y = torch.randn(5, 8), torch.randn(5, 8)
    assert torch.allclose(Fusion("add", 8, 2)([x, y]), x + y)
    assert torch.allclose(Fusion("average", 8, 2)([x, y]), (x + y) / 2)
    assert Fusion("concat", 8, 2)([x, y]).shape == (5, 16) and Fusion("concat", 8, 2).out_dim == 16
    aff = AFF(8).eval()
    z = aff(x, y)
    m = torch.sigmoid(aff.local(x + y) + aff.glob(x + y))
    assert torch.allclose(z, m * x + (1 - m) * y)
    assert torch.allclose(Fusion("add", 8, 1)([x]), x)


# -- the method ---------------------------------------------------------------------------------------


def _dpl(name: str = "dpl", stage: int = 1, **overrides):
    cfg = compose([f"method={name}", "+scale=smoke", "backbone.input_size=32", "data=synthetic"])
    torch.manual_seed(0)
    method_cfg = {**cfg.method, **overrides, "stage": stage}
    return build_method(method_cfg, cfg.backbone), cfg


def _batch(method, b: int = 4, q: int = 4, size: int = 32) -> dict:
    g = torch.Generator().manual_seed(1)
    if method.indicators is not None and not bool(method.bins_fitted):
        method.fit_bins(method.indicators.scores(torch.randn(40, 3, size, size, generator=g)).numpy())
    method._train_steps = torch.randint(1, 6, (b, q, 2), generator=g)
    return {
        "images": torch.randn(b, q, 3, size, size, generator=g),
        "label": (torch.arange(b) % 2).float(),
        "index": torch.arange(b),
    }


def test_stage2_freezes_everything_but_the_policy():
    method, _ = _dpl(stage=2)
    method.configure_optimizers(1, 4)
    method.train()
    assert not any(m.training for n, m in method.named_modules() if n and not n.startswith("policy"))
    batch = _batch(method)  # (fits the quantile bins, a buffer, first: that is not Stage II's doing)
    before = {k: v.clone() for k, v in method.state_dict().items()}
    ctx = cpu_step_context()
    for _ in range(3):
        method.fit_step(batch, ctx)
    after = method.state_dict()
    frozen = [k for k in before if not k.startswith("policy.")]
    assert any("running_mean" in k for k in frozen)  # batch-norm statistics are among them
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(
        not torch.equal(before[k], after[k]) for k in before if k.startswith("policy.") and "trained" not in k
    )
    assert bool(method.policy.trained)


def test_stage1_trains_the_detector_not_the_policy():
    method, _ = _dpl()
    method.configure_optimizers(1, 4)
    method.train()
    before = {k: v.clone() for k, v in method.state_dict().items()}
    out = method.fit_step(_batch(method), cpu_step_context())
    assert set(out.logs) == {"focal", "reg"} and out.sample_losses.shape == (4,)
    after = method.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("policy."))
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    assert not bool(method.policy.trained)


def test_rollout_rewards_and_validity():
    method, _ = _dpl(stage=2)
    method.eval()
    images = torch.randn(3, 3, 32, 32)
    steps = torch.tensor([[1, 2], [3, 1], [5, 5]])
    roll = method.rollout(images, torch.tensor([0, 1, 1]), steps)
    t_max = 5
    assert roll["actions"].shape == (t_max - 1, 3) and ((roll["actions"] >= 0) & (roll["actions"] <= 1)).all()
    assert torch.allclose(roll["rewards"], roll["confidence"][1:] - roll["confidence"][:-1])
    # sample 0: effective step max(1, 2) = 2 → one action counts; sample 1: 3 → two; sample 2: 5 → four
    assert roll["valid"].sum(0).tolist() == [1, 2, 4]


def test_eval_is_deterministic_and_uses_the_policy_mean_once_trained():
    method, _ = _dpl(eval_window="fixed")
    method.eval()
    x = torch.randn(2, 3, 32, 32)
    steps = torch.tensor([[3, 3], [2, 4]])
    a = method.forward_eval(x, steps)["final"]
    assert torch.equal(a, method.forward_eval(x, steps)["final"])
    fmap, _ = method.features(x)
    halves = method.heads(method.selected_maps(fmap, torch.full((3, 2), 0.5)), steps, None)["final"]
    assert torch.allclose(a, halves)
    method.policy.trained.fill_(True)
    b = method.forward_eval(x, steps)["final"]
    maps, hidden = [fmap], None
    for _ in range(3):
        mu, _, _, hidden = method.policy(maps[-1].mean(dim=(2, 3)), hidden)
        maps.append(select_features(maps[-1], window_mask(mu, fmap.shape[1], method.width, "c")))
    assert torch.allclose(b, method.heads(maps, steps, None)["final"], atol=1e-6)


def test_eval_before_stage2_draws_random_positions_per_image_seeded():
    method, _ = _dpl()
    assert method.eval_window == "random"  # Table 5 "w/o Train Stage II": random l_t
    method.eval()
    x = torch.randn(6, 3, 32, 32)
    pos = method.eval_positions(x, 5)
    assert pos.shape == (4, 6) and ((pos >= 0) & (pos < 1)).all()
    assert len(set(pos.flatten().tolist())) == 24  # not one fixed position
    # an image gets its positions whatever batch it is in and whatever the batch's step count
    assert torch.equal(method.eval_positions(x[[4, 1]], 5), pos[:, [4, 1]])
    assert torch.equal(method.eval_positions(x[:2], 3), pos[:2, :2])
    other, _ = _dpl(seed=1)
    assert not torch.equal(other.eval_positions(x, 5), pos)  # seeded by the run's seed
    steps = torch.tensor([[3, 3], [2, 4], [5, 1], [1, 1], [2, 2], [4, 4]])
    fmap, _ = method.features(x)
    want = method.heads(method.selected_maps(fmap, pos), steps, None)["final"]
    assert torch.allclose(method.forward_eval(x, steps)["final"], want, atol=1e-6)
    with pytest.raises(Exception, match="eval_window='centre'"):  # (hydra wraps the ValueError)
        _dpl(eval_window="centre")


def _count_ppo_calls(epochs: int) -> tuple[int, int]:
    """(rollouts, optimiser steps) of one Stage II fit_step with ``ppo.epochs = epochs``."""
    method, _ = _dpl(stage=2, ppo={**_dpl(stage=2)[1].method.ppo, "epochs": epochs})
    assert method.ppo_epochs == epochs and "epochs" not in method.ppo
    method.configure_optimizers(1, 4)
    method.train()
    batch = _batch(method)
    calls: list[str] = []
    original = method.rollout
    method.rollout = lambda *a, **k: calls.append("roll") or original(*a, **k)
    ctx = cpu_step_context()
    real_step = ctx.step
    ctx.step = lambda opt, *a, **k: calls.append("step") or real_step(opt, *a, **k)
    method.fit_step(batch, ctx)
    return calls.count("roll"), calls.count("step")


def test_ppo_epochs_update_the_policy_that_many_times_per_rollout():
    assert _count_ppo_calls(1) == (1, 1)  # the released code: one update per rollout
    assert _count_ppo_calls(3) == (1, 3)
    with pytest.raises(Exception, match=r"ppo.epochs=0"):  # (hydra wraps the ValueError)
        _dpl(stage=2, ppo={"epochs": 0})


def test_fii_scores_read_the_configured_prompts():
    from detect.methods.dpl.indicators import StepIndicators
    from detect.quality.clip_indicators import FII_PROMPTS, FII_PROMPTS_CODE, clip_iqa_score, text_embeddings

    assert FII_PROMPTS == ("genuine face.", "manipulated face.")
    assert FII_PROMPTS_CODE == ("genuine face", "manipulated face")
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    paper = StepIndicators(allow_random=True)
    code = StepIndicators(allow_random=True, fii_prompts=FII_PROMPTS_CODE)
    model, _, tok = paper.models["fii"]
    want = clip_iqa_score(paper.embed(x, "fii"), text_embeddings(model, tok, FII_PROMPTS))
    torch.testing.assert_close(paper.scores(x)[:, 1], want)
    # the full stop changes the text embedding, hence the score; VQI is untouched
    assert not torch.allclose(paper.scores(x)[:, 1], code.scores(x)[:, 1])
    torch.testing.assert_close(paper.scores(x)[:, 0], code.scores(x)[:, 0])
    assert paper.version() != code.version()  # cached scores of one never serve the other
    assert paper.describe()["fii_prompts"] == list(FII_PROMPTS)
    with pytest.raises(ValueError, match="two prompts"):
        StepIndicators(allow_random=True, fii_prompts=["genuine face."])


def test_indicator_scores_cached_per_image_and_compression_level(tmp_path):
    import cv2

    from detect.data.transforms import Pipeline
    from detect.methods.dpl.indicators import StepIndicators
    from detect.quality.score_cache import ScoreCache

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        p = tmp_path / f"img{i}.png"
        cv2.imwrite(str(p), rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
        paths.append(str(p))
    ind = StepIndicators(allow_random=True)
    pipe = Pipeline(32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    loads = []

    def load(path, q):
        from detect.data.images import read_rgb
        from detect.data.jpeg import jpeg_compress

        loads.append((path, q))
        img = read_rgb(path)
        return pipe(img if q is None else jpeg_compress(img, q), augment=False)

    items = [(p, "c23", None) for p in paths] + [(p, "c23", 10) for p in paths]
    cache = ScoreCache(tmp_path / "scores")
    first = ind.score_items(cache, items, load, torch.device("cpu"))
    assert first.shape == (6, 2) and ((first >= 0) & (first <= 100)).all()
    assert ind.counts["scored"] == 6 and len(loads) == 6  # VQI and FII from one pass
    # the JPEG-10 versions are keyed apart from the stored ones, and score differently
    assert not np.allclose(first[:3], first[3:])
    assert (tmp_path / "scores" / "dpl-vqi__c23+jpeg10.csv").is_file()
    again = ind.score_items(cache, items, load, torch.device("cpu"))
    assert np.array_equal(first, again) and len(loads) == 6 and ind.counts["cached"] == 6


def test_random_clip_scores_do_not_saturate_and_fill_every_bin():
    from detect.methods.dpl.indicators import StepIndicators

    ind = StepIndicators(allow_random=True)
    torch.manual_seed(0)
    scores = ind.scores(torch.randn(60, 3, 32, 32) * 0.5).numpy()
    assert len(np.unique(scores[:, 1])) > 50  # FII of the random CLIP sits near 100 but stays distinct
    ind.fit(scores)
    steps = ind.steps(scores)
    for j in range(2):
        assert sorted(np.unique(steps[:, j]).tolist()) == [1, 2, 3, 4, 5]
    assert ind.describe()["random_init"] is True and ind.binning == "quantile"


def test_real_data_without_clip_weights_is_a_clear_error():
    from detect.quality.clip_indicators import ClipWeightsUnavailable

    cfg = compose(["method=dpl", "+scale=smoke", "data=real"])
    for indicators, text in [
        ({}, "method.indicators.checkpoint"),
        ({"checkpoint": "missing/RN50.pt"}, "does not exist"),
    ]:
        with pytest.raises(Exception, match=text) as err:  # Hydra wraps the error; its cause is ours
            build_method({**cfg.method, "indicators": {**cfg.method.indicators, **indicators}}, cfg.backbone)
        assert isinstance(err.value.__cause__ or err.value, ClipWeightsUnavailable)


# -- presets ------------------------------------------------------------------------------------------


def test_paper_defaults():
    cfg = compose(["method=dpl"])
    m = cfg.method
    assert cfg.backbone.name == "convnext_t" and cfg.input.size == 256 and cfg.input.crop == 224
    assert m.n_steps == 5 and m.window_fraction == pytest.approx(1 / 3) and m.optim.lr == 5e-5
    assert m.policy_optim.lr == 5e-5 and cfg.trainer.batch_size == 32 and cfg.trainer.epochs == 5
    assert [p.name for p in cfg.phases] == ["stage1", "stage2"]
    assert m.fusion == "add" and m.aggregate == "sum" and m.window_scale == "c" and m.reg_steps == "all"
    assert (
        m.indicators.model == "RN50" and m.indicators.fii_model is None and m.indicators.binning == "quantile"
    )
    assert (m.ppo.gamma, m.ppo.normalise, m.ppo.value_weight, m.ppo.entropy_weight) == (1.0, False, 1.0, 1.0)
    assert m.ppo.epochs == 1 and m.eval_window == "random"
    assert list(m.qualities) == [None, [30, 99], [13, 29], [8, 12]]
    # the paper's FII strings with their full stops, genuine first so Eq. 1 reads P(genuine)
    assert list(m.indicators.fii_prompts) == ["genuine face.", "manipulated face."]


def test_official_preset_differs_where_the_code_does():
    m = compose(["method=dpl/official"]).method
    assert (m.window_scale, m.aggregate, m.fusion, m.step_predictions, m.reg_steps) == (
        "c_minus_delta",
        "mean",
        "average",
        "alternate",
        "last",
    )
    assert m.policy.std == "log_param" and m.policy_optim.lr == 3e-4
    assert (m.ppo.gamma, m.ppo.normalise, m.ppo.value_weight, m.ppo.entropy_weight) == (0.7, True, 0.5, 0.01)
    assert m.indicators.fii_model == "ViT-B-32" and m.indicators.binning == "intervals"
    assert list(m.indicators.fii_prompts) == ["genuine face", "manipulated face"]  # the code's strings
    method, _ = _dpl("dpl/official")
    assert method.indicators.fii_prompts == ("genuine face", "manipulated face")
    method.epoch = 1  # odd epochs step FIPL against VQPL's final feature
    steps = torch.tensor([[2, 4]])
    assert method.effective_steps(steps).tolist() == [4]
    method.epoch = 0
    assert method.effective_steps(steps).tolist() == [2]


@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("dpl/baseline", lambda m, c: not m.branch_names and m.indicators is None and c.phases is None),
        ("dpl/no_vqpl", lambda m, c: m.branch_names == ("fipl",) and "vqpl" not in m.branches),
        ("dpl/no_fipl", lambda m, c: m.branch_names == ("vqpl",) and "fipl" not in m.branches),
        ("dpl/no_stage2", lambda m, c: c.phases is None and m.stage == 1),
        ("dpl/no_reg", lambda m, c: m.reg_weight == 0.0),
        ("dpl/concat", lambda m, c: m.classifier.in_features == 2 * m.backbone.num_features),
        ("dpl/attention", lambda m, c: m.fusion.aff is not None),
        ("dpl/reg_first", lambda m, c: m.reg_steps == "first"),
        ("dpl/reg_last", lambda m, c: m.reg_steps == "last"),
        ("dpl/clip_concat_backbone", lambda m, c: hasattr(m, "clip_merge")),
        ("dpl/clip_add_backbone", lambda m, c: m.clip_feature == "add_backbone"),
        ("dpl/clip_add_branches", lambda m, c: m.clip_feature == "add_branches"),
    ],
)
def test_preset_effects(name, check):
    method, cfg = _dpl(name)
    assert method.__class__.__name__ == "DPL" and cfg.method.name == name.replace("/", "_")
    assert check(method, cfg)
    method.configure_optimizers(1, 4)
    method.train()
    out = method.fit_step(_batch(method), cpu_step_context())
    assert torch.isfinite(out.loss)
    method.eval()
    p = method.predict(torch.randn(2, 3, 32, 32))
    assert p.shape == (2,) and ((p >= 0) & (p <= 1)).all()


def test_reg_settings_change_the_loss_and_no_reg_is_focal_only():
    losses = {}
    for name in ("dpl", "dpl/reg_first", "dpl/reg_last", "dpl/no_reg"):
        method, _ = _dpl(name)
        method.train()
        b = _batch(method)
        images, labels, steps = method._batch(b)
        torch.manual_seed(3)
        losses[name] = method.stage1_losses(images, labels, steps)
    assert losses["dpl/no_reg"]["loss"].item() == pytest.approx(losses["dpl/no_reg"]["cls"].item())
    regs = {n: round(v["reg"].item(), 6) for n, v in losses.items() if n != "dpl/no_reg"}
    assert all(r <= 0 for r in regs.values()) and len(set(regs.values())) == 3


@pytest.mark.parametrize("backbone", ["resnet50", "swin_t"])
def test_dpl_on_other_backbones(backbone):
    cfg = compose(["method=dpl", f"backbone={backbone}", "backbone.input_size=64", "data=synthetic"])
    method = build_method(cfg.method, cfg.backbone).eval()
    c = method.backbone.num_features
    assert method.width == round(c / 3) and method.branches["vqpl"].cell.hidden_size == c
    fmap, _ = method.features(torch.randn(2, 3, 64, 64))
    out = method.heads(method.selected_maps(fmap, torch.rand(4, 2)), torch.tensor([[5, 2], [1, 3]]), None)
    assert out["final"].shape == (2, 2) and out["step_logits"].shape == (5, 2, 2)
