"""AltFreezing: Wang, Bao, Zhou, Wang and Li, "AltFreezing for More General Video Face Forgery Detection",
CVPR 2023; DeepfakeBench ``altfreezing_detector.py``; the authors' released setting ``setting/i3d_ori.yaml``.

The paper's text could not be consulted here; its components are named as its abstract and method section
name them and their sizes read from DeepfakeBench and the authors' setting (docs/methods/altfreezing.md):

* **Network** (Sec. 3.1): a 3D ResNet-50 in SlowFast's I3D layout (:class:`I3DResNet`): stem 5x7x7 with
  spatial stride 2 and a (1, 3, 3) max-pooling; bottleneck blocks ``a`` (temporal kernel 3 or 1, spatial
  1x1) -> ``b`` (1x3x3, the stage's spatial stride) -> ``c`` (1x1x1); res2 [3], res3/res4 alternate [3, 1],
  res5 alternates [1, 3]; a (2, 1, 1) temporal max-pooling after res2; global average pooling, dropout 0.5
  and one linear logit.
* **Weight split** (Sec. 3.2): the *spatial-related* weights are the convolutions with kernel 1 x k x k
  (k > 1: every ``b``), the *temporal-related* weights those with kernel k x 1 x 1 (k > 1: the ``a`` of the
  blocks with temporal kernel 3) (:func:`weight_groups`). Everything else (the 5x7x7 stem, 1x1x1
  convolutions, batch norms, the classifier) belongs to neither group and trains at every iteration, as in
  DeepfakeBench.
* **Alternate freezing** (Sec. 3.2, the training algorithm): training alternates phases; in a spatial phase
  the temporal-related weights are frozen and the spatial-related ones updated for ``N_s`` iterations, then
  in a temporal phase the reverse for ``N_t`` iterations (:func:`phase_at`; ``N_s = 1``, ``N_t = 20``:
  DeepfakeBench's cycle of 21 and the authors' ``ALTER_FREQ: 20``).
* **Loss**: binary cross-entropy on the clip's logit; ``predict`` is the sigmoid; a video's score is the
  mean over its clips (the engine's clip scoring).

Not done: the paper's video-level augmentation (Sec. 3.3: spatially and temporally local blending of fake
clips into real ones) -- the recipe trains on the real and fake clips of the benchmark only.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detect.engine.context import StepContext
from detect.engine.method_contract import StepOutput
from detect.methods.clip_method import ClipBCEMethod, TimeConv3d
from detect.methods.ftcn import read_kinetics_i3d, slowfast_key

#: I3D ResNet-50 stages: (name, blocks, inner width, output width, spatial stride, temporal kernels per block,
#: cycled). SlowFast's ``_TEMPORAL_KERNEL_BASIS["i3d"]`` with ``NUM_BLOCK_TEMP_KERNEL [[3], [4], [6], [3]]``.
STAGES = (
    ("res2", 3, 64, 256, 1, (3,)),
    ("res3", 4, 128, 512, 2, (3, 1)),
    ("res4", 6, 256, 1024, 2, (3, 1)),
    ("res5", 3, 512, 2048, 2, (1, 3)),
)
STEM_WIDTH = 64
PHASES = ("spatial", "temporal")


class Bottleneck(nn.Module):
    """I3D bottleneck: a (``kernel_t`` x 1 x 1) -> b (1 x 3 x 3, stride ``(1, s, s)``) -> c (1x1x1), with a
    1x1x1 strided projection where the shape changes; the same names as FTCN's temporal-only block."""

    def __init__(self, c_in: int, inner: int, c_out: int, stride: int, kernel_t: int) -> None:
        super().__init__()
        pad_t = kernel_t // 2
        conv_a = TimeConv3d if kernel_t > 1 else nn.Conv3d
        self.conv_a = conv_a(c_in, inner, (kernel_t, 1, 1), padding=(pad_t, 0, 0), bias=False)
        self.bn_a = nn.BatchNorm3d(inner)
        self.conv_b = nn.Conv3d(
            inner, inner, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False
        )
        self.bn_b = nn.BatchNorm3d(inner)
        self.conv_c = nn.Conv3d(inner, c_out, 1, bias=False)
        self.bn_c = nn.BatchNorm3d(c_out)
        self.project = c_in != c_out or stride != 1
        if self.project:
            self.proj = nn.Conv3d(c_in, c_out, 1, stride=(1, stride, stride), bias=False)
            self.proj_bn = nn.BatchNorm3d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn_a(self.conv_a(x)))
        y = F.relu(self.bn_b(self.conv_b(y)))
        y = self.bn_c(self.conv_c(y))
        return F.relu(y + (self.proj_bn(self.proj(x)) if self.project else x))


class I3DResNet(nn.Module):
    """I3D ResNet-50 with one logit: ``[B, 3, T, H, W] -> [B]``."""

    def __init__(self, dropout: float = 0.5, zero_init_final_bn: bool = True) -> None:
        super().__init__()
        self.stem_conv = TimeConv3d(3, STEM_WIDTH, (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False)
        self.stem_bn = nn.BatchNorm3d(STEM_WIDTH)
        self.stem_pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.time_pool = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1))  # SlowFast's i3d pool after res2
        stages, c_in = [], STEM_WIDTH
        for _, blocks, inner, c_out, stride, kernels in STAGES:
            stages.append(
                nn.Sequential(
                    *(
                        Bottleneck(
                            c_in if i == 0 else c_out,
                            inner,
                            c_out,
                            stride if i == 0 else 1,
                            kernels[i % len(kernels)],
                        )
                        for i in range(blocks)
                    )
                )
            )
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(STAGES[-1][3], 1)
        self.initialise(zero_init_final_bn)

    def initialise(self, zero_init_final_bn: bool) -> None:
        """SlowFast's initialisation (``init_helper.init_weights``): convolutions He-normal (fan-out), batch
        norms 1 / 0 except each block's last (``bn_c``) at 0 with ``ZERO_INIT_FINAL_BN`` (DeepfakeBench's
        setting: every residual branch starts as the identity), the classifier N(0, 0.01) with bias 0."""
        for name, module in self.named_modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm3d):
                final = zero_init_final_bn and name.endswith(".bn_c")
                nn.init.constant_(module.weight, 0.0 if final else 1.0)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.projection.weight, std=0.01)
        nn.init.zeros_(self.projection.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem_pool(F.relu(self.stem_bn(self.stem_conv(x))))
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index == 0 and x.shape[2] >= 2:
                x = self.time_pool(x)
        pooled = x.mean(dim=(2, 3, 4))  # SlowFast's AvgPool3d over the whole remaining map
        return self.projection(self.dropout(pooled)).squeeze(1)


def weight_groups(net: nn.Module) -> dict[str, list[str]]:
    """Parameter names of the spatial-related (Conv3d kernel 1 x k x k, k > 1) and temporal-related
    (kernel k x 1 x 1, k > 1) weights (Sec. 3.2; DeepfakeBench's ``find_conv_layers``: 1x3x3 and 3x1x1)."""
    groups: dict[str, list[str]] = {"spatial": [], "temporal": []}
    for name, module in net.named_modules():
        if not isinstance(module, nn.Conv3d):
            continue
        kt, kh, kw = module.kernel_size
        group = (
            "spatial" if kt == 1 and kh > 1 and kw > 1 else "temporal" if kt > 1 and kh == kw == 1 else None
        )
        if group:
            prefix = f"{name}." if name else ""
            groups[group] += [prefix + p for p, _ in module.named_parameters()]
    return groups


def phase_at(iteration: int, spatial_iters: int, temporal_iters: int, first: str = "spatial") -> str:
    """The group trained at ``iteration`` (0-based): cycles of ``spatial_iters`` spatial then
    ``temporal_iters`` temporal iterations (or the reverse with ``first="temporal"``)."""
    if spatial_iters < 0 or temporal_iters < 0 or spatial_iters + temporal_iters == 0:
        raise ValueError(
            f"alternation: spatial={spatial_iters} temporal={temporal_iters}: need counts >= 0, sum > 0"
        )
    if first not in PHASES:
        raise ValueError(f"alternation.first={first!r}: one of {PHASES}")
    counts = {"spatial": spatial_iters, "temporal": temporal_iters}
    second = PHASES[1 - PHASES.index(first)]
    return first if iteration % (spatial_iters + temporal_iters) < counts[first] else second


def i3d_key(key: str) -> str | None:
    """Our :class:`I3DResNet` key of a SlowFast I3D ResNet-50 key (``s1``..``s5``, ``head.projection``);
    res2-res4 through FTCN's :func:`detect.methods.ftcn.slowfast_key`; None for any other key."""
    if key.startswith("head.projection."):
        return "projection." + key.removeprefix("head.projection.")
    if key.startswith("s5."):
        ours = slowfast_key("s4." + key.removeprefix("s5."))
        return None if ours is None else "stages.3." + ours.removeprefix("stages.2.")
    return slowfast_key(key)


class AltFreezing(ClipBCEMethod):
    """I3D ResNet-50 on clips trained by alternately freezing its spatial- and temporal-related weights."""

    name = "altfreezing"
    gradient_sync = "ddp"  # one forward, one backward; every rank is in the same phase (same iteration)
    data_needs = frozenset({"clips"})
    clip_rule = "consecutive"

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        clip_len: int = 16,
        eval_clips_per_video: int | None = None,
        clip_rule: str = "consecutive",
        alternation: Mapping | None = None,
        dropout: float = 0.5,
        zero_init_final_bn: bool = True,
        pretrained: str | bool | None = False,
        name: str = "altfreezing",
    ) -> None:
        super().__init__()
        self.set_clip_sampling(clip_len, eval_clips_per_video, clip_rule)
        alt = dict(alternation or {})
        self.spatial_iters = int(alt.get("spatial", 1))
        self.temporal_iters = int(alt.get("temporal", 20))
        self.first_phase = str(alt.get("first", "spatial"))
        phase_at(0, self.spatial_iters, self.temporal_iters, self.first_phase)  # validates
        self.net = I3DResNet(dropout, zero_init_final_bn)
        self.groups = weight_groups(self.net)
        self.iteration = 0
        self.loaded_pretrained = self._load_pretrained(pretrained)
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    def _load_pretrained(self, pretrained: str | bool | None) -> int:
        """Kinetics I3D ResNet-50 weights (DeepfakeBench's ``I3D_8x8_R50.pth``), every tensor strictly, the
        400-class projection cut to its first row as DeepfakeBench does; returns how many were loaded."""
        read = read_kinetics_i3d(pretrained, "AltFreezing")
        if read is None:
            return 0
        path, source = read
        state = {}
        for key, value in source.items():
            ours = i3d_key(key)
            if ours is None:
                raise ValueError(f"{path}: key {key!r} is no layer of an I3D ResNet-50")
            state[ours] = value[:1] if ours.startswith("projection.") else value
        try:
            self.net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"{path}: not an I3D ResNet-50 ({err})") from err
        return len(state)

    def phase(self, iteration: int | None = None) -> str:
        """The weight group updated at ``iteration`` (default: the next training step)."""
        step = self.iteration if iteration is None else iteration
        return phase_at(step, self.spatial_iters, self.temporal_iters, self.first_phase)

    def frozen_parameters(self, phase: str) -> list[nn.Parameter]:
        """The parameters a ``phase`` step leaves unchanged: the other group's weights."""
        params = dict(self.net.named_parameters())
        return [params[n] for n in self.groups[PHASES[1 - PHASES.index(phase)]]]

    def logits(self, clips: Tensor) -> Tensor:
        """``[B, T, C, H, W]`` clips -> ``[B]`` logits."""
        return self.net(clips.transpose(1, 2))

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        """One step of the current phase: every gradient is computed (and all-reduced under DDP, whose
        parameter set stays fixed), then the frozen group's gradients are dropped before the optimiser step,
        so those weights, their momenta and their weight decay stay untouched."""
        phase = self.phase()
        per_clip = ctx.forward(self.training_losses, batch, ctx)
        loss = per_clip.mean()
        ctx.backward(loss)
        for p in self.frozen_parameters(phase):
            p.grad = None
        ctx.step(self.optimizer)
        self.iteration += 1
        logs = {"bce": loss.detach(), "spatial_phase": torch.tensor(float(phase == "spatial"))}
        return StepOutput(loss.detach(), logs, per_clip.detach())

    def run_info(self) -> dict:
        return {
            "clip_len": self.clip_len,
            "pretrained_tensors": self.loaded_pretrained,
            "alternation": {
                "spatial": self.spatial_iters,
                "temporal": self.temporal_iters,
                "first": self.first_phase,
            },
            "spatial_weights": len(self.groups["spatial"]),
            "temporal_weights": len(self.groups["temporal"]),
        }

    def extra_state(self) -> dict:
        return {"iteration": self.iteration}

    def load_extra_state(self, state: Mapping) -> None:
        unknown = set(state) - {"iteration"}
        if unknown:
            raise ValueError(f"AltFreezing extra state holds unknown keys {sorted(unknown)}")
        self.iteration = int(state.get("iteration", 0))
