"""LipForensics: Haliassos, Vougioukas, Petridis and Pantic, "Lips Don't Lie: A Generalisable and Robust
Approach to Face Forgery Detection", CVPR 2021 (arXiv:2012.07657); the authors' repository
(``ahaliassos/LipForensics``: models, preprocessing, ``evaluate.py``; no training code is released).

The paper's text could not be consulted here; its components are named as its Sec. 3 ("Approach") names
them, and every size below is a reading of the authors' code (docs/methods/lipforensics.md):

* **Input**: grayscale mouth clips of 25 frames (the authors' ``frames_per_clip``), a 96 x 96 mouth square
  centre-cropped to 88 x 88 at test time, pixels /255 normalised with mean 0.421, std 0.165
  (:class:`~detect.data.mouth_clips.MouthClipDataset`, :func:`~detect.methods.lipforensics_net.to_grayscale`).
* **Network** (:class:`~detect.methods.lipforensics_net.LipForensicsNet`): a lipreading network, 3D
  frontend + per-frame ResNet-18 (the "spatiotemporal feature extractor") and a multi-scale temporal
  convolutional network (MS-TCN, the "temporal network"), pre-trained on LRW for lipreading (Martinez et
  al., ICASSP 2020), with a new one-logit head.
* **Fine-tuning** (the paper's "freeze the feature extractor, fine-tune the temporal network"): the frontend
  and the ResNet are frozen (no gradient, batch-norm statistics fixed); the MS-TCN and the head are trained
  with binary cross-entropy on the clip's logit.
* **Video score**: the mean over the video's clips (the engine's clip scoring averages probabilities; the
  authors' ``evaluate.py`` averages logits, docs).

The pre-trained lipreading network loads from a LOCAL checkpoint (``method.lipreading=PATH``: a state dict of
the authors' ``Lipreading`` layout, e.g. Martinez et al.'s LRW ResNet-18 + MS-TCN with PReLUs, its 500-word
classifier dropped); ``null`` gives a seeded random stand-in, recorded as ``lipreading.random_init: true``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from detect.data.clip_view import cut_square, mouth_box
from detect.data.mouth_clips import LRW_EYE_RATIO, MouthClipDataset
from detect.data.transforms import Pipeline
from detect.engine.context import StepContext
from detect.engine.method_contract import StepOutput
from detect.engine.optim import OptimizerSpec, build_optimizer, build_scheduler
from detect.methods.clip_method import ClipBCEMethod
from detect.methods.lipforensics_net import LipForensicsNet, to_grayscale

#: The parts that may be frozen, in network order.
PARTS = ("frontend", "trunk", "tcn", "head")
#: ``method.lipreading`` values that ask for the seeded random stand-in.
RANDOM = (None, "", "none", "null", "random")
#: ``method.lipreading`` of a converted release (``detect/convert/lipforensics_release.py``): its weights
#: arrive with the checkpoint; never a training start.
RELEASE = "release"

_TRUNK = {"conv1": "conv1", "bn1": "bn1", "relu1": "act1", "conv2": "conv2", "bn2": "bn2", "relu2": "act2"}
_BRANCH = {"conv": "conv", "batchnorm": "bn", "non_lin": "act"}


def authors_key(key: str) -> str | None:
    """Our :class:`LipForensicsNet` key of a key of the authors' ``Lipreading`` state dict
    (``frontend3D.{0,1,2}``, ``trunk.layer{1-4}.{b}.{conv1,bn1,relu1,conv2,bn2,relu2,downsample.{0,1}}``,
    ``tcn.mb_ms_tcn.network.{i}.{cbcr{0,1}_{k}.{conv,batchnorm,non_lin},downsample,relu_final}``,
    ``tcn.tcn_output``); None for any other key."""
    p = key.split(".")
    if p[0] == "frontend3D" and len(p) == 3 and p[1] in ("0", "1", "2"):
        return f"frontend.{('conv', 'bn', 'act')[int(p[1])]}.{p[2]}"
    if (
        p[0] == "trunk"
        and len(p) >= 4
        and p[1] in ("layer1", "layer2", "layer3", "layer4")
        and p[2].isdigit()
    ):
        stage = int(p[1][-1]) - 1
        if len(p) == 5 and p[3] in _TRUNK:
            return f"trunk.stages.{stage}.{p[2]}.{_TRUNK[p[3]]}.{p[4]}"
        if len(p) == 6 and p[3] == "downsample" and p[4] in ("0", "1"):
            return f"trunk.stages.{stage}.{p[2]}.shortcut.{p[4]}.{p[5]}"
        return None
    if p[0] == "tcn" and len(p) == 3 and p[1] == "tcn_output":
        return f"head.{p[2]}"
    if p[:3] == ["tcn", "mb_ms_tcn", "network"] and len(p) >= 6 and p[3].isdigit():
        block, part = p[3], p[4]
        if part in ("downsample", "relu_final") and len(p) == 6:
            return f"tcn.blocks.{block}.{'residual' if part == 'downsample' else 'act'}.{p[5]}"
        if part.startswith(("cbcr0_", "cbcr1_")) and len(p) == 7 and p[5] in _BRANCH:
            side = "first" if part[4] == "0" else "second"
            return f"tcn.blocks.{block}.{side}.{part[6:]}.{_BRANCH[p[5]]}.{p[6]}"
    return None


def read_state(path: Path) -> dict[str, Tensor]:
    """A state dict from ``path`` read with ``weights_only`` (runs no code); a ``model_state_dict``
    (Martinez et al.'s release), ``model`` (LipForensics') or ``state_dict`` wrapper and ``module.``
    prefixes removed."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    for wrapper in ("model_state_dict", "model", "state_dict"):
        if isinstance(state, Mapping) and wrapper in state and isinstance(state[wrapper], Mapping):
            state = state[wrapper]
            break
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: not a state dict (a {type(state).__name__})")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def map_lipreading(
    source: Mapping[str, Tensor], target: Mapping[str, Tensor], what: str
) -> dict[str, Tensor]:
    """The lipreading network's tensors of ``source`` (authors' keys) as our keys, checked strictly against
    ``target`` (our network's state dict) for the frontend, trunk and TCN: an unknown key, a missing key or a
    wrong shape is an error naming it. The word classifier (``tcn.tcn_output``) is dropped."""
    mapped, unknown = {}, []
    for key, value in source.items():
        ours = authors_key(key)
        if ours is None:
            unknown.append(key)
        elif not ours.startswith("head."):
            mapped[ours] = value
    wanted = {k for k in target if not k.startswith("head.")}
    missing = sorted(wanted - set(mapped))
    wrong = [
        f"{k} {tuple(v.shape)} (ours {tuple(target[k].shape)})"
        for k, v in mapped.items()
        if k in target and v.shape != target[k].shape
    ]
    if unknown or missing or wrong:
        raise ValueError(
            f"{what}: not the lipreading network LipForensics starts from (ResNet-18 + MS-TCN with PReLUs, "
            f"the authors' Lipreading layout): unknown keys {unknown[:5]}, missing {missing[:5]}, "
            f"wrong shapes {wrong[:5]}"
        )
    return mapped


class LipForensics(ClipBCEMethod):
    """Lipreading ResNet-18 + MS-TCN on grayscale mouth clips, frozen feature extractor, BCE (Haliassos et
    al., CVPR 2021)."""

    name = "lipforensics"
    gradient_sync = "ddp"  # one forward, one backward
    data_needs = frozenset({"clips", "landmarks"})
    clip_rule = "consecutive"

    def __init__(
        self,
        backbone: Mapping,
        optim: Mapping,
        scheduler: Mapping | None = None,
        clip_len: int = 25,
        eval_clips_per_video: int | None = None,
        clip_rule: str = "consecutive",
        mouth: Mapping | None = None,
        net: Mapping | None = None,
        freeze: Sequence[str] = ("frontend", "trunk"),
        lipreading: str | None = None,
        lipreading_seed: int = 0,
        name: str = "lipforensics",
    ) -> None:
        super().__init__()
        self.set_clip_sampling(clip_len, eval_clips_per_video, clip_rule)
        mouth = dict(mouth or {})
        self.mouth_size = mouth.get("size")
        self.eye_ratio = float(mouth.get("eye_ratio", LRW_EYE_RATIO))
        unknown = sorted(set(freeze) - set(PARTS))
        if unknown:
            raise ValueError(f"method.freeze={list(freeze)}: unknown parts {unknown}; parts are {PARTS}")
        self.freeze = tuple(p for p in PARTS if p in set(freeze))
        self.net, self.lipreading_info = self._build_net(dict(net or {}), lipreading, int(lipreading_seed))
        for part in self.freeze:
            getattr(self.net, part).requires_grad_(False)
        self.optim_cfg, self.scheduler_cfg = optim, scheduler
        self.optimizer: torch.optim.Optimizer | None = None

    @staticmethod
    def _build_net(net: dict, lipreading: str | None, seed: int) -> tuple[LipForensicsNet, dict]:
        """The network: a seeded random stand-in, the local lipreading checkpoint's weights (the head stays
        new), or (``release``) a shell the converted checkpoint's weights fill."""
        source = None if lipreading is None else str(lipreading)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = LipForensicsNet(**net)
        if source in RANDOM:
            return model, {"checkpoint": None, "random_init": True, "seed": seed}
        if source == RELEASE:
            return model, {"checkpoint": RELEASE, "random_init": False, "seed": None}
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"method.lipreading={path}: no such file (LipForensics' lipreading network: a local "
                "ResNet-18 + MS-TCN state dict pre-trained on LRW, e.g. Martinez et al.'s "
                "resnet18_mstcn(_adamw_s3) .pth.tar with PReLUs; nothing is downloaded). "
                "method.lipreading=null runs a seeded random stand-in"
            )
        mapped = map_lipreading(read_state(path), model.state_dict(), str(path))
        model.load_state_dict(mapped, strict=False)
        return model, {"checkpoint": str(path), "random_init": False, "seed": None, "tensors": len(mapped)}

    def train(self, mode: bool = True) -> LipForensics:
        super().train(mode)
        for part in self.freeze:
            getattr(self.net, part).eval()  # a frozen part keeps its batch-norm statistics (and no dropout)
        return self

    # -- data ---------------------------------------------------------------------------------------
    def build_train_dataset(self, table: pd.DataFrame, pipeline: Pipeline) -> MouthClipDataset:
        return MouthClipDataset(
            table, pipeline, self.clip_len, train=True, mouth_size=self.mouth_size, eye_ratio=self.eye_ratio,
            rule=self.clip_rule,
        )  # fmt: skip

    def build_eval_clip_dataset(
        self, table: pd.DataFrame, pipeline: Pipeline, perturbation=None
    ) -> MouthClipDataset:
        """Evaluation's clips (:mod:`detect.engine.clip_scoring`): mouth clips, ``eval_clips_per_video``."""
        return MouthClipDataset(
            table, pipeline, self.clip_len, train=False, clips_per_video=self.eval_clips_per_video,
            perturbation=perturbation, mouth_size=self.mouth_size, eye_ratio=self.eye_ratio,
            rule=self.clip_rule,
        )  # fmt: skip

    def clip_region_crops(
        self, crops: list[np.ndarray], landmarks: list[np.ndarray] | None
    ) -> list[np.ndarray]:
        """predict.py's input: the mouth squares of one clip's face crops (one square for the clip, as
        :class:`MouthClipDataset` cuts them), located by the landmarks mapped into the crops."""
        if landmarks is None:
            raise ValueError(
                "LipForensics needs each clip's landmarks to cut the mouth (predict.py faces=largest)"
            )
        x0, y0, side = mouth_box(landmarks, self.mouth_size, self.eye_ratio)
        return [cut_square(c, x0, y0, side) for c in crops]

    # -- training -----------------------------------------------------------------------------------
    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        """One optimiser over the trainable parameters only (the frozen ones are not handed to it)."""
        if self.lipreading_info["checkpoint"] == RELEASE:
            raise ValueError(
                "method.lipreading=release marks a converted LipForensics checkpoint for evaluation; to "
                "train, give the local lipreading checkpoint (method.lipreading=PATH) or null (stand-in)"
            )
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"method.freeze={list(self.freeze)} leaves nothing to train")
        self.optimizer = build_optimizer(self.optim_cfg, params)
        sched, interval = build_scheduler(self.scheduler_cfg, self.optimizer, epochs, steps_per_epoch)
        return [OptimizerSpec("model", self.optimizer, sched, interval)]

    def logits(self, clips: Tensor) -> Tensor:
        """``[B, T, C, H, W]`` clips (RGB normalised alike on every channel, or gray) -> ``[B]`` logits."""
        return self.net(to_grayscale(clips))

    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        per_clip = ctx.forward(self.training_losses, batch, ctx)
        loss = per_clip.mean()
        ctx.backward(loss)
        ctx.step(self.optimizer)
        return StepOutput(loss.detach(), {"bce": loss.detach()}, per_clip.detach())

    def run_info(self) -> dict:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {
            "clip_len": self.clip_len,
            "frozen": list(self.freeze),
            "trainable_parameters": int(trainable),
            "lipreading": dict(self.lipreading_info),
        }
