"""DPL's CLIP indicators (paper Sec. 3.1, Eq. 1; docs/methods/dpl.md, "Indicators").

Both indicators are a two-prompt CLIP zero-shot probability scaled to [0, 100] (CLIP-IQA):

    score = softmax(100 * [cos(img, t_0), cos(img, t_1)])[0] * 100

* VQI (visual quality): prompts :data:`VQI_PROMPTS`, an RN50 CLIP whose attention-pool positional
  embedding is dropped (:func:`drop_attnpool_positional_embedding`) so any input size works.
* FII (forgery/identity indicator): prompts :data:`FII_PROMPTS`, zero-shot (the code uses ViT-B/32).

CLIP weights cannot be downloaded here: :func:`load_clip` needs a local checkpoint
(``method.indicators.checkpoint``). For tests and smoke runs ``allow_random=True`` builds a *tiny*
randomly initialised RN-style CLIP (:data:`TINY_CLIP_CFG`), seeded, and marks it ``random_init=True``
so results can record that the indicators are meaningless placeholders.

The scores are computed once per image before training; :func:`score_images` is the batch entry point
meant to sit behind :class:`detect.quality.score_cache.ScoreCache` as its ``scorer``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.modified_resnet import AttentionPool2d, ModifiedResNet

VQI_PROMPTS: tuple[str, str] = ("Good photo.", "Bad photo.")
FII_PROMPTS: tuple[str, str] = ("genuine face.", "manipulated face.")
"""The paper's FII prompts (Sec. 3.1 prints ["manipulated face.", "genuine face."]), listed genuine first so
Eq. 1's first-prompt probability reads P(genuine), the score the bins and the step counts are defined on."""
FII_PROMPTS_CODE: tuple[str, str] = ("genuine face", "manipulated face")
"""The released code's FII prompts (no full stops; ``dpl/official``): the full stop changes CLIP's text
embedding, so the two choices give different scores."""
LOGIT_SCALE = 100.0  # Eq. 1 / CLIP-IQA: a fixed temperature of 100, not the model's logit_scale
CHECKPOINT_KEY = "method.indicators.checkpoint"
RANDOM_MODEL_NAME = "tiny-rn-random"

# A tiny RN-style CLIP (ModifiedResNet vision tower, so the attention pool exists) built at 64 px.
# Final feature map: 64 / 32 = 2x2; attention-pool width = 16 * 32 = 512 channels, 512 / 64 = 8 heads.
TINY_CLIP_CFG: dict[str, Any] = {
    "embed_dim": 64,
    "vision_cfg": {"layers": (1, 1, 1, 1), "width": 16, "head_width": 64, "image_size": 64},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}


class ClipWeightsUnavailable(FileNotFoundError):
    """No usable CLIP checkpoint: the weights cannot be downloaded on this machine."""


def load_clip(
    model_name: str,
    checkpoint: str | os.PathLike | None,
    allow_random: bool = False,
    seed: int = 0,
    *,
    quick_gelu: bool = False,
) -> tuple[torch.nn.Module, dict[str, Any], Any]:
    """``(model, norm, tokenizer)`` for the indicators; the model is in eval mode on the CPU.

    ``checkpoint``: a local open_clip / OpenAI (TorchScript) / safetensors file for ``model_name``
    (an open_clip name such as ``RN50`` or ``ViT-B-32``), loaded strictly. OpenAI's own weights were
    trained with QuickGELU: pass ``quick_gelu=True`` (or a ``*-quickgelu`` name) for them.
    ``checkpoint=None`` is an error unless ``allow_random``, which builds :data:`TINY_CLIP_CFG` with
    weights drawn from ``torch.manual_seed(seed)`` (the global RNG is left untouched).

    ``norm`` holds what preprocessing needs and what results should record: ``mean``, ``std``,
    ``image_size``, ``model_name``, ``checkpoint``, ``random_init``. ``model.random_init`` is set too.
    """
    if checkpoint is not None:
        path = os.path.abspath(os.fspath(checkpoint))
        if not os.path.isfile(path):
            raise ClipWeightsUnavailable(
                f"CLIP checkpoint {path} ({CHECKPOINT_KEY}) does not exist; CLIP weights cannot be "
                f"downloaded here, so {CHECKPOINT_KEY} must name a local {model_name} checkpoint file"
            )
        model = open_clip.create_model(model_name, pretrained=None, force_quick_gelu=quick_gelu)
        open_clip.load_checkpoint(model, path, strict=True)
        tokenizer = open_clip.get_tokenizer(model_name)
        random_init, name = False, model_name
    elif allow_random:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = open_clip.model.CLIP(**TINY_CLIP_CFG)
        tokenizer = open_clip.SimpleTokenizer(context_length=TINY_CLIP_CFG["text_cfg"]["context_length"])
        random_init, name, path = True, RANDOM_MODEL_NAME, None
    else:
        raise ClipWeightsUnavailable(
            f"no CLIP checkpoint for {model_name}: set {CHECKPOINT_KEY} to a local checkpoint file "
            "(CLIP weights cannot be downloaded here), or allow a random tiny CLIP for smoke runs only"
        )
    model.eval()
    model.random_init = random_init
    size = getattr(model.visual, "image_size", 224)
    norm = {
        "mean": tuple(OPENAI_DATASET_MEAN),
        "std": tuple(OPENAI_DATASET_STD),
        "image_size": int(size if isinstance(size, int) else size[0]),
        "model_name": name,
        "checkpoint": path,
        "random_init": random_init,
    }
    return model, norm, tokenizer


class _AttentionPool2dNoPos(AttentionPool2d):
    """CLIP's attention pool without its positional embedding (CLIP-IQA): any spatial size works.

    The parameter stays in the module (so state dicts still load strictly); it is simply not added.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3]).permute(2, 0, 1)  # NCHW -> (HW)NC
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)  # (HW+1)NC, no positional embedding
        x, _ = F.multi_head_attention_forward(
            query=x,
            key=x,
            value=x,
            embed_dim_to_check=x.shape[-1],
            num_heads=self.num_heads,
            q_proj_weight=self.q_proj.weight,
            k_proj_weight=self.k_proj.weight,
            v_proj_weight=self.v_proj.weight,
            in_proj_weight=None,
            in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None,
            bias_v=None,
            add_zero_attn=False,
            dropout_p=0.0,
            out_proj_weight=self.c_proj.weight,
            out_proj_bias=self.c_proj.bias,
            use_separate_proj_weight=True,
            training=self.training,
            need_weights=False,
        )
        return x[0]


def drop_attnpool_positional_embedding(model: torch.nn.Module) -> torch.nn.Module:
    """Stop the ModifiedResNet attention pool of ``model`` (a CLIP or its visual tower) adding its
    positional embedding, in place; idempotent. Returns ``model``. Raises ``TypeError`` for a tower
    without one (a ViT: keep it at its native size instead)."""
    visual = getattr(model, "visual", model)
    if not isinstance(visual, ModifiedResNet) or not isinstance(visual.attnpool, AttentionPool2d):
        raise TypeError(
            f"dropping the attention-pool positional embedding needs a ModifiedResNet (RN) CLIP visual "
            f"tower, got {type(visual).__name__}"
        )
    visual.attnpool.__class__ = _AttentionPool2dNoPos
    return model


def clip_iqa_score(image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """Eq. 1: ``softmax(100 * cos(image_emb, text_emb))[:, 0] * 100``.

    ``image_emb`` [N, D], ``text_emb`` [2, D] (row 0 = the positive prompt); neither needs to be
    normalised. Returns [N] in [0, 100], in float64.
    """
    if text_emb.ndim != 2 or text_emb.shape[0] != 2:
        raise ValueError(f"text_emb must be [2, D] (positive, negative prompt), got {tuple(text_emb.shape)}")
    dtype = torch.promote_types(torch.promote_types(image_emb.dtype, text_emb.dtype), torch.float32)
    img = F.normalize(image_emb.to(dtype), dim=-1)
    txt = F.normalize(text_emb.to(dtype), dim=-1)
    logits = LOGIT_SCALE * img @ txt.T
    # the softmax in float64: a confident pair (a logit gap of ~17 already) rounds to exactly 100 in float32,
    # and tied scores would collapse the quantile bins
    return logits.double().softmax(dim=-1)[:, 0] * 100.0


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def text_embeddings(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str]) -> torch.Tensor:
    """The (unnormalised) text embeddings [len(prompts), D] of ``prompts``."""
    with torch.inference_mode():
        return model.encode_text(tokenizer(list(prompts)).to(_device(model)))


def indicator_scores(
    model: torch.nn.Module,
    tokenizer: Any,
    images: torch.Tensor,
    prompts: tuple[str, str],
    *,
    text_emb: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 1 for a batch ``images`` [N, 3, H, W] already normalised with CLIP's mean/std -> [N] in [0, 100].

    The text embeddings of ``prompts`` are computed once per call unless passed in ``text_emb``.
    ``model`` must be in eval mode (batch norm in train mode would make a score depend on its batch).
    """
    if model.training:
        raise ValueError("indicator_scores needs the CLIP model in eval mode (call model.eval())")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
    if len(prompts) != 2:
        raise ValueError(f"Eq. 1 takes a (positive, negative) prompt pair, got {len(prompts)} prompts")
    if text_emb is None:
        text_emb = text_embeddings(model, tokenizer, prompts)
    dev = _device(model)
    with torch.inference_mode():
        image_emb = model.encode_image(images.to(dev))
        return clip_iqa_score(image_emb, text_emb.to(dev))


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    if img.dtype != np.uint8:
        raise ValueError(f"score_images takes uint8 images, got {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"score_images takes HxWx3 RGB (or HxW grey) images, got shape {img.shape}")
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)


def score_images(
    model: torch.nn.Module,
    tokenizer: Any,
    images_uint8: Sequence[np.ndarray],
    prompts: tuple[str, str],
    size: int | None,
    batch_size: int = 64,
) -> tuple[np.ndarray, float]:
    """``(scores [N] in [0, 100], images/s)`` for RGB uint8 HxWx3 images.

    Each image is resized (bicubic, antialiased) to ``size`` x ``size`` and normalised with CLIP's
    mean/std; ``size=None`` keeps native sizes (only for an RN tower with the positional embedding
    dropped), batching consecutive images of equal shape. Images/s covers preprocessing and the model.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    start = time.perf_counter()
    n = len(images_uint8)
    if n == 0:
        return np.zeros(0, dtype=np.float64), 0.0
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    text_emb = text_embeddings(model, tokenizer, prompts)
    scores = np.empty(n, dtype=np.float64)
    i = 0
    while i < n:
        first = images_uint8[i]
        j = i + 1
        while j < n and j - i < batch_size and (size is not None or images_uint8[j].shape == first.shape):
            j += 1
        batch = [_to_tensor(im) for im in images_uint8[i:j]]
        if size is not None:
            batch = [
                F.interpolate(
                    t[None], size=(size, size), mode="bicubic", align_corners=False, antialias=True
                )[0]
                if t.shape[1:] != (size, size)
                else t
                for t in batch
            ]
        x = (torch.stack(batch).clamp_(0.0, 1.0) - mean) / std
        scores[i:j] = indicator_scores(model, tokenizer, x, prompts, text_emb=text_emb).double().cpu().numpy()
        i = j
    elapsed = time.perf_counter() - start
    return scores, n / max(elapsed, 1e-9)
