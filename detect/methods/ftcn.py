"""FTCN: Zheng, Bao, Chen, Zeng and Wen, "Exploring Temporal Coherence for More General Video Face Forgery
Detection", ICCV 2021 (arXiv:2108.06693); DeepfakeBench ``ftcn_detector.py``, ``time_transformer.py``.

The paper's text could not be consulted here; the components below are named as its abstract and Sec. 3
name them, and their sizes are read from DeepfakeBench's implementation (docs/methods/ftcn.md):

* **Fully temporal convolution network** (Sec. 3.1, the paper's first stage): a 3D ResNet-50 (I3D layout of
  SlowFast: stem temporal kernel 5; res2 blocks temporal kernel 3; res3 and res4 alternate 3 and 1) whose
  every convolution has spatial kernel size 1 while its temporal kernel size is unchanged, so each pixel's
  time series is filtered on its own (:class:`TemporalConv`). Each spatial stride 2 is removed and a
  ``(1, 2, 2)`` max-pooling follows that convolution's batch normalisation instead; the network stops after
  res4 (1024 channels, output stride 16: 14 x 14 at 224 px). The authors' network keeps the I3D's temporal
  max-pooling ``(2, 1, 1)`` after res2 (their ``root_setting.yaml``: ``no_time_pool: false``), so a 32-frame
  clip gives 16 time steps (``time_pool: true``, the paper recipe); DeepfakeBench removes it
  (``no_time_pool = True``), so the clip keeps its ``T`` steps (``time_pool: false``, ``ftcn/dfb``).
* **Temporal Transformer** (Sec. 3.2, the second stage): the feature map is averaged over space (one
  1024-d token per time step; DeepfakeBench's ``AvgPool3d((1, 14, 14))`` at 224 px), a learnt class token is
  prepended and a learnt positional embedding (one position per time step, plus one) added, embedding
  dropout, ``depth`` pre-norm blocks (multi-head self-attention: 16 heads of 64 dims, ``to_qkv`` without
  bias; MLP 1024 -> 2048 -> 1024 with GELU; dropout 0.1), and the class token's output through LayerNorm +
  Linear(1024, 1) (:class:`TemporalTransformer`).
* **Loss**: binary cross-entropy on the clip's logit (DeepfakeBench: sigmoid then ``BCELoss``, the same
  loss); ``predict`` is the sigmoid; a video's score is the mean over its clips (the engine's clip scoring).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.engine.context import StepContext
from detect.engine.method_contract import StepOutput
from detect.methods.clip_method import ClipBCEMethod, TimeConv3d

#: I3D ResNet-50 stages kept by FTCN: (blocks, inner width, output width, spatial stride, temporal kernels).
#: Temporal kernels of SlowFast's ``i3d`` basis: res2 [3], res3 and res4 alternate [3, 1] (per block).
STAGES = (
    ("res2", 3, 64, 256, 1, (3,)),
    ("res3", 4, 128, 512, 2, (3, 1)),
    ("res4", 6, 256, 1024, 2, (3, 1)),
)
STEM_WIDTH, STEM_TEMPORAL_KERNEL = 64, 5


def temporal_conv(c_in: int, c_out: int, kernel_t: int) -> nn.Conv3d:
    """A convolution with spatial kernel 1 and temporal kernel ``kernel_t`` (same-length padding), no bias;
    a :class:`TimeConv3d` (float32 under CPU autocast) when ``kernel_t > 1``: oneDNN's bf16 Conv3d gives such
    kernels non-finite weight gradients on the CPU."""
    conv = TimeConv3d if kernel_t > 1 else nn.Conv3d
    return conv(c_in, c_out, (kernel_t, 1, 1), padding=(kernel_t // 2, 0, 0), bias=False)


def stride_pool(stride: int) -> nn.Module:
    """What replaces a spatial stride: ``MaxPool3d((1, 2, 2))`` after the batch normalisation."""
    return nn.MaxPool3d((1, 2, 2)) if stride == 2 else nn.Identity()


class TemporalBottleneck(nn.Module):
    """ResNet bottleneck with every convolution temporal-only: a (kernel ``kernel_t`` x 1 x 1) -> b (1x1x1)
    -> c (1x1x1); the stride is a max-pooling after b's BN (and after the projection's BN)."""

    def __init__(self, c_in: int, inner: int, c_out: int, stride: int, kernel_t: int) -> None:
        super().__init__()
        self.conv_a, self.bn_a = temporal_conv(c_in, inner, kernel_t), nn.BatchNorm3d(inner)
        self.conv_b, self.bn_b = temporal_conv(inner, inner, 1), nn.BatchNorm3d(inner)
        self.conv_c, self.bn_c = temporal_conv(inner, c_out, 1), nn.BatchNorm3d(c_out)
        self.pool = stride_pool(stride)
        self.project = c_in != c_out or stride != 1
        if self.project:
            self.proj, self.proj_bn = temporal_conv(c_in, c_out, 1), nn.BatchNorm3d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn_a(self.conv_a(x)))
        y = F.relu(self.pool(self.bn_b(self.conv_b(y))))
        y = self.bn_c(self.conv_c(y))
        shortcut = self.pool(self.proj_bn(self.proj(x))) if self.project else x
        return F.relu(y + shortcut)


class TemporalResNet(nn.Module):
    """FTCN's fully temporal convolution network: ``[B, 3, T, H, W] -> [B, 1024, T', H/16, W/16]`` with
    ``T' = T // 2`` when ``time_pool`` (the I3D's temporal max-pooling after res2, the authors' network) and
    ``T' = T`` without it (DeepfakeBench's)."""

    out_channels = STAGES[-1][3]

    def __init__(self, time_pool: bool = False) -> None:
        super().__init__()
        self.time_pool = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1)) if time_pool else nn.Identity()
        self.stem_conv = temporal_conv(3, STEM_WIDTH, STEM_TEMPORAL_KERNEL)
        self.stem_bn = nn.BatchNorm3d(STEM_WIDTH)
        self.stem_stride = stride_pool(2)  # the stem convolution's spatial stride 2
        self.stem_pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        stages, c_in = [], STEM_WIDTH
        for _, blocks, inner, c_out, stride, kernels in STAGES:
            layers = [
                TemporalBottleneck(
                    c_in if i == 0 else c_out,
                    inner,
                    c_out,
                    stride if i == 0 else 1,
                    kernels[i % len(kernels)],
                )
                for i in range(blocks)
            ]
            stages.append(nn.Sequential(*layers))
            c_in = c_out
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem_pool(F.relu(self.stem_stride(self.stem_bn(self.stem_conv(x)))))
        x = self.time_pool(self.stages[0](x))
        for stage in self.stages[1:]:
            x = stage(x)
        return x

    def time_steps(self, clip_len: int) -> int:
        """Time steps of the output map for clips of ``clip_len`` frames."""
        return clip_len // 2 if isinstance(self.time_pool, nn.MaxPool3d) else clip_len


class TransformerBlock(nn.Module):
    """One pre-norm block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))`` (ViT's layout, as FTCN's head)."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        inner = heads * dim_head
        self.attn_norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, mlp_dim), nn.Linear(mlp_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def attention(self, x: Tensor) -> Tensor:
        """Multi-head scaled dot-product self-attention, softmax(q k^T / sqrt(d_head)) v."""
        b, n, _ = x.shape
        q, k, v = self.to_qkv(x).view(b, n, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        weights = (q @ k.transpose(-1, -2) / math.sqrt(self.dim_head)).softmax(dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(b, n, self.heads * self.dim_head)
        return self.dropout(self.to_out(out))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.attn_norm(x))
        mlp = self.fc2(self.dropout(F.gelu(self.fc1(self.mlp_norm(x)))))
        return x + self.dropout(mlp)


class TemporalTransformer(nn.Module):
    """FTCN's Temporal Transformer: ``[B, T, dim]`` tokens -> ``[B]`` logits from the class token."""

    def __init__(
        self,
        num_tokens: int,
        dim: int = 1024,
        depth: int = 1,
        heads: int = 16,
        dim_head: int = 64,
        mlp_dim: int = 2048,
        dropout: float = 0.1,
        emb_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, num_tokens + 1, dim))
        self.emb_dropout = nn.Dropout(emb_dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, dim_head, mlp_dim, dropout) for _ in range(depth)
        )
        self.out_norm, self.out = nn.LayerNorm(dim), nn.Linear(dim, 1)

    def encode(self, tokens: Tensor) -> Tensor:
        """``[B, T + 1, dim]``: the class token and the time tokens after the blocks."""
        b, t, _ = tokens.shape
        if t != self.num_tokens:
            raise ValueError(
                f"{t} time tokens, but the positional embedding holds {self.num_tokens} "
                "(clip_len, halved by the time pooling)"
            )
        x = torch.cat([self.cls_token.expand(b, -1, -1).to(tokens.dtype), tokens], dim=1)
        x = self.emb_dropout(x + self.pos_embedding.to(tokens.dtype))
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, tokens: Tensor) -> Tensor:
        return self.out(self.out_norm(self.encode(tokens)[:, 0])).squeeze(1)


#: I3D (Kinetics) checkpoint modules DeepfakeBench re-creates (fresh initialisation) when it makes the
#: network temporal-only: convolutions with a spatial kernel > 1 (the stem, every ``b``) or a spatial stride.
def _reinitialised_by_dfb(key: str) -> bool:
    return (
        key.startswith("s1.pathway0_stem.conv.")
        or ".branch2.b." in key
        or (key.startswith(("s3.pathway0_res0.branch1.", "s4.pathway0_res0.branch1.")))
    )


def slowfast_key(key: str) -> str | None:
    """Our ``TemporalResNet`` key of a SlowFast ResNet key (``s1.pathway0_stem.*``,
    ``s{2,3,4}.pathway0_res{i}.branch1[_bn].*``, ``.branch2.{a,b,c}[_bn].*``), with or without
    DeepfakeBench's ``.0`` of a batch norm wrapped with its stride pooling; None for any other key."""
    parts = key.split(".")
    if parts[0] == "s1" and len(parts) >= 4 and parts[1] == "pathway0_stem" and parts[2] in ("conv", "bn"):
        rest = parts[4:] if parts[2] == "bn" and parts[3] == "0" and len(parts) == 5 else parts[3:]
        return f"stem_{parts[2]}." + ".".join(rest)
    if parts[0] not in ("s2", "s3", "s4") or len(parts) < 4 or not parts[1].startswith("pathway0_res"):
        return None
    stage, block = int(parts[0][1]) - 2, int(parts[1].removeprefix("pathway0_res"))
    if parts[2] == "branch2" and len(parts) >= 5:
        module, rest = parts[3], parts[4:]
    else:
        module, rest = parts[2], parts[3:]
    if len(rest) == 2 and rest[0] == "0":
        rest = rest[1:]  # DeepfakeBench's Sequential(bn, MaxPool3d((1, 2, 2)))
    names = {
        "a": "conv_a",
        "a_bn": "bn_a",
        "b": "conv_b",
        "b_bn": "bn_b",
        "c": "conv_c",
        "c_bn": "bn_c",
        "branch1": "proj",
        "branch1_bn": "proj_bn",
    }
    if module not in names or len(rest) != 1:
        return None
    return f"stages.{stage}.{block}.{names[module]}.{rest[0]}"


def read_kinetics_i3d(
    pretrained: str | bool | None, detector: str, scratch: str = "or train from scratch"
) -> tuple[Path, dict[str, Tensor]] | None:
    """DeepfakeBench's start for its I3D detectors (FTCN, AltFreezing): ``pretrained`` false -> None (from
    scratch); None (undecided) or a missing file -> an error saying what to pass; else (path, the file's
    state dict read with ``weights_only``, ``model_state`` unwrapped, ``module.``/``resnet.`` prefixes
    removed)."""
    if pretrained is None:
        raise ValueError(
            f"method.pretrained is not decided: DeepfakeBench's {detector} starts from a local "
            f"I3D_8x8_R50.pth (method.pretrained=/path/to/I3D_8x8_R50.pth) {scratch} "
            "(method.pretrained=false)"
        )
    if pretrained is False or pretrained in ("false", "none", ""):
        return None
    path = Path(str(pretrained))
    if not path.is_file():
        raise FileNotFoundError(
            f"method.pretrained={path}: no such file (the Kinetics I3D ResNet-50 weights of {detector}, "
            "I3D_8x8_R50.pth; nothing is downloaded)"
        )
    source = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(source, Mapping) and "model_state" in source:
        source = source["model_state"]
    return path, {k.removeprefix("module.").removeprefix("resnet."): v for k, v in source.items()}


class FTCN(ClipBCEMethod):
    """Fully temporal convolution network + Temporal Transformer on clips, BCE (Zheng et al., ICCV 2021)."""

    name = "ftcn"
    gradient_sync = "ddp"  # one forward, one backward
    data_needs = frozenset({"clips"})
    clip_rule = "consecutive"

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        clip_len: int = 32,
        eval_clips_per_video: int | None = None,
        clip_rule: str = "consecutive",
        transformer: Mapping | None = None,
        pretrained: str | bool | None = False,
        time_pool: bool = False,
        name: str = "ftcn",
    ) -> None:
        super().__init__()
        pooled = {"minimum": 2, "why": "method.time_pool halves the time steps"} if time_pool else {}
        self.set_clip_sampling(clip_len, eval_clips_per_video, clip_rule, **pooled)
        self.net = TemporalResNet(time_pool=bool(time_pool))
        tokens = self.net.time_steps(self.clip_len)
        self.head = TemporalTransformer(tokens, dim=TemporalResNet.out_channels, **(transformer or {}))
        self.loaded_pretrained = self._load_pretrained(pretrained)
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    def _load_pretrained(self, pretrained: str | bool | None) -> int:
        """Kinetics I3D ResNet-50 weights (DeepfakeBench's ``I3D_8x8_R50.pth``) where DeepfakeBench keeps
        them; returns how many tensors were loaded."""
        read = read_kinetics_i3d(pretrained, "FTCN", "or train from scratch as the paper")
        if read is None:
            return 0
        path, source = read
        state = {}
        for key, value in source.items():
            if key.startswith(("head.", "s5.")) or _reinitialised_by_dfb(key):
                continue  # the Kinetics classifier and res5 are not part of FTCN
            ours = slowfast_key(key)
            if ours is None:
                raise ValueError(f"{path}: key {key!r} is no layer of an I3D ResNet-50 up to res4")
            state[ours] = value
        missing, unexpected = self.net.load_state_dict(state, strict=False)
        wrong = [
            k
            for k, v in state.items()
            if k in self.net.state_dict() and self.net.state_dict()[k].shape != v.shape
        ]
        if unexpected or wrong:
            raise ValueError(f"{path}: not an I3D ResNet-50 ({sorted(unexpected)[:5]} {wrong[:5]})")
        return len(state)

    def logits(self, clips: Tensor) -> Tensor:
        """``[B, T, C, H, W]`` clips -> ``[B]`` logits."""
        fmap = self.net(clips.transpose(1, 2))  # [B, 1024, T', h, w]
        tokens = fmap.mean(dim=(3, 4)).transpose(1, 2)  # spatial average: one token per time step
        return self.head(tokens)

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        per_clip = ctx.forward(self.training_losses, batch, ctx)
        loss = per_clip.mean()
        ctx.backward(loss)
        ctx.step(self.optimizer)
        return StepOutput(loss.detach(), {"bce": loss.detach()}, per_clip.detach())

    def run_info(self) -> dict:
        return {
            "clip_len": self.clip_len,
            "time_steps": self.head.num_tokens,
            "pretrained_tensors": self.loaded_pretrained,
        }
