"""DPL's CLIP indicators (Eq. 1, CLIP-IQA): the score, the tiny random CLIP, the attention-pool trick."""

from __future__ import annotations

import json
import math

import numpy as np
import open_clip
import pytest
import torch

from detect.quality import clip_indicators as ind
from detect.quality.clip_indicators import (
    FII_PROMPTS,
    TINY_CLIP_CFG,
    VQI_PROMPTS,
    ClipWeightsUnavailable,
    clip_iqa_score,
    drop_attnpool_positional_embedding,
    indicator_scores,
    load_clip,
    score_images,
)


@pytest.fixture(scope="module")
def tiny():
    model, norm, tok = load_clip("RN50", None, allow_random=True, seed=0)
    return model, norm, tok


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


def test_clip_iqa_score_matches_hand_computation():
    good, bad = (1.0, 0.01), (1.0, 0.02)
    imgs = [(1.0, 0.0), (3.0, 4.0), (-2.0, 0.5)]
    got = clip_iqa_score(
        torch.tensor(imgs, dtype=torch.float64), torch.tensor([good, bad], dtype=torch.float64)
    )
    for i, img in enumerate(imgs):
        lg, lb = 100 * _cos(img, good), 100 * _cos(img, bad)
        expected = 100 * math.exp(lg) / (math.exp(lg) + math.exp(lb))
        assert got[i].item() == pytest.approx(expected, rel=1e-9)
    # (1, 0): cos 0.99995 vs 0.99980 -> 100 * sigmoid(0.015) ~ 50.375
    assert got[0].item() == pytest.approx(
        100 / (1 + math.exp(-100 * (_cos((1, 0), good) - _cos((1, 0), bad))))
    )
    assert 50.3 < got[0].item() < 50.4


def test_clip_iqa_score_is_scale_free_bounded_and_checks_shapes():
    img = torch.tensor([[0.3, -0.7], [1.0, 1.0]])
    txt = torch.tensor([[0.2, 0.9], [0.8, -0.1]])
    a = clip_iqa_score(img, txt)
    b = clip_iqa_score(img * 17.0, txt * 0.01)
    torch.testing.assert_close(a, b)
    assert ((a >= 0) & (a <= 100)).all()
    # swapping the prompts is the complementary probability
    torch.testing.assert_close(clip_iqa_score(img, txt.flip(0)), 100 - a)
    with pytest.raises(ValueError, match=r"\[2, D\]"):
        clip_iqa_score(img, torch.ones(3, 2))


def test_random_tiny_clip_is_seeded_marked_and_scores_in_range(tiny):
    model, norm, tok = tiny
    assert model.random_init is True and norm["random_init"] is True
    assert norm["model_name"] == ind.RANDOM_MODEL_NAME and norm["image_size"] == 64
    assert tuple(norm["mean"]) == open_clip.constants.OPENAI_DATASET_MEAN
    assert isinstance(model.visual, open_clip.modified_resnet.ModifiedResNet)
    state = torch.random.get_rng_state()
    again, _, tok2 = load_clip("RN50", None, allow_random=True, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    other, _, _ = load_clip("RN50", None, allow_random=True, seed=1)
    x = _images(3, 64)
    for prompts in (VQI_PROMPTS, FII_PROMPTS):
        s = indicator_scores(model, tok, x, prompts)
        assert s.shape == (3,) and ((s >= 0) & (s <= 100)).all()
        torch.testing.assert_close(indicator_scores(again, tok2, x, prompts), s, rtol=0, atol=0)
        assert not torch.allclose(indicator_scores(other, tok, x, prompts), s)
    # indicator_scores is Eq. 1 on the model's own embeddings
    with torch.inference_mode():
        expected = clip_iqa_score(model.encode_image(x), model.encode_text(tok(list(VQI_PROMPTS))))
    torch.testing.assert_close(indicator_scores(model, tok, x, VQI_PROMPTS), expected)


def test_dropping_the_attnpool_positional_embedding_frees_the_input_size():
    model, _, tok = load_clip("RN50", None, allow_random=True, seed=3)
    x64, x96 = _images(2, 64), _images(2, 96, seed=1)
    with_pos = indicator_scores(model, tok, x64, VQI_PROMPTS)
    with pytest.raises(RuntimeError):  # 3x3+1 tokens against a 2x2+1 positional embedding
        indicator_scores(model, tok, x96, VQI_PROMPTS)
    assert drop_attnpool_positional_embedding(model) is model
    drop_attnpool_positional_embedding(model)  # idempotent
    assert "visual.attnpool.positional_embedding" in model.state_dict()  # still loads strictly
    no_pos = indicator_scores(model, tok, x64, VQI_PROMPTS)
    assert not torch.allclose(no_pos, with_pos)  # the embedding really is no longer added
    s96 = indicator_scores(model, tok, x96, VQI_PROMPTS)
    assert s96.shape == (2,) and ((s96 >= 0) & (s96 <= 100)).all()
    vit = open_clip.model.CLIP(
        embed_dim=16,
        vision_cfg={"layers": 1, "width": 32, "head_width": 16, "patch_size": 16, "image_size": 32},
        text_cfg={"context_length": 8, "vocab_size": 64, "width": 16, "heads": 1, "layers": 1},
    )
    with pytest.raises(TypeError, match="ModifiedResNet"):
        drop_attnpool_positional_embedding(vit)


def test_missing_checkpoint_names_the_path_and_the_config_key(tmp_path):
    missing = tmp_path / "nope" / "RN50.pt"
    with pytest.raises(ClipWeightsUnavailable) as err:
        load_clip("RN50", missing)
    msg = str(err.value)
    assert str(missing) in msg and "method.indicators.checkpoint" in msg and "cannot be downloaded" in msg
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(ClipWeightsUnavailable, match=r"method\.indicators\.checkpoint.*cannot be downloaded"):
        load_clip("RN50", None)
    with pytest.raises(ClipWeightsUnavailable):
        load_clip("RN50", None, allow_random=False, seed=0)


def test_checkpoint_loads_strictly(tmp_path, tiny):
    model, _, tok = tiny
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "tiny-rn-indicator-test.json").write_text(json.dumps(TINY_CLIP_CFG))
    open_clip.add_model_config(tmp_path / "cfg")
    ckpt = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    loaded, norm, tok2 = load_clip("tiny-rn-indicator-test", ckpt)
    assert loaded.random_init is False and norm["checkpoint"] == str(ckpt) and not loaded.training
    x = _images(2, 64)
    torch.testing.assert_close(
        indicator_scores(loaded, tok2, x, FII_PROMPTS), indicator_scores(model, tok, x, FII_PROMPTS)
    )
    partial = {k: v for k, v in model.state_dict().items() if not k.startswith("visual.attnpool")}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(RuntimeError, match="attnpool"):
        load_clip("tiny-rn-indicator-test", tmp_path / "partial.pt")


def test_score_images_normalises_batches_and_times(tiny):
    model, _, tok = tiny
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (80, 72, 3), dtype=np.uint8) for _ in range(5)]
    scores, ips = score_images(model, tok, imgs, VQI_PROMPTS, size=64, batch_size=2)
    assert scores.shape == (5,) and scores.dtype == np.float64 and ips > 0
    assert ((scores >= 0) & (scores <= 100)).all()
    one, _ = score_images(model, tok, imgs, VQI_PROMPTS, size=64, batch_size=16)
    np.testing.assert_allclose(one, scores, rtol=1e-5, atol=1e-4)  # eval mode: no batch dependence
    # a 64x64 image needs no resize: the score is Eq. 1 on (x/255 - mean)/std
    img64 = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mean = torch.tensor(open_clip.constants.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.constants.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    x = (torch.from_numpy(img64).permute(2, 0, 1)[None].float() / 255 - mean) / std
    got, _ = score_images(model, tok, [img64], VQI_PROMPTS, size=64, batch_size=4)
    assert got[0] == pytest.approx(indicator_scores(model, tok, x, VQI_PROMPTS)[0].item(), rel=1e-5)
    assert score_images(model, tok, [], VQI_PROMPTS, size=64)[0].shape == (0,)
    with pytest.raises(ValueError, match="uint8"):
        score_images(model, tok, [img64.astype(np.float32)], VQI_PROMPTS, size=64)
    with pytest.raises(ValueError, match="eval"):
        model.train()
        try:
            indicator_scores(model, tok, x, VQI_PROMPTS)
        finally:
            model.eval()


def test_score_images_native_sizes_after_the_drop():
    model, _, tok = load_clip("RN50", None, allow_random=True, seed=0)
    drop_attnpool_positional_embedding(model)
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(64, 64, 3), (96, 96, 3), (96, 96, 3)]]
    imgs.append(rng.integers(0, 256, (64, 64), dtype=np.uint8))  # grey
    scores, _ = score_images(model, tok, imgs, FII_PROMPTS, size=None, batch_size=8)
    assert scores.shape == (4,) and np.isfinite(scores).all() and ((scores >= 0) & (scores <= 100)).all()
    alone = [score_images(model, tok, [im], FII_PROMPTS, size=None)[0][0] for im in imgs]
    np.testing.assert_allclose(scores, alone, rtol=1e-5, atol=1e-4)
