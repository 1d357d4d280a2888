"""A training curriculum around any single-frame detector: DFFC (Lin et al., "DFFC: Dynamic Facial
Forensic Curriculum for deepfake detection", 2024), its DIH ablation (α_f = 0; Zhou et al., "Curriculum
learning by dynamic instance hardness", NeurIPS 2020), BabyStep (a static quality hardness) and vanilla
training, with the choices the paper leaves open read as docs/methods/dffc.md states them.

The wrapped detector keeps its own model, losses and optimisation step; the curriculum

* records each trained sample's loss during the training pass (``StepOutput.sample_losses`` keyed by the
  batch's dataset indices) with the learning rate of that step, gathers them from every process at the end
  of the epoch (so under DDP the hardness table equals a single process's), and updates the dynamic hardness
  of the hard pool (Eqs. 1–2, :mod:`detect.methods.curriculum.hardness`);
* adds the static quality prior q = 1 − quality (IFQA, CLIP-IQA or a classical score, computed once per
  dataset through the score cache) into DFH (Eq. 3);
* chooses each epoch's pool (Algorithm 1, :mod:`detect.methods.curriculum.pacing`): everything up to T0,
  then the k hardest ∪ the E easiest through the light augmentation DA (``PoolDataset``'s second half).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from detect.data.datasets import FrameDataset, PoolDataset
from detect.data.transforms import Pipeline
from detect.engine.context import StepContext
from detect.engine.method_contract import Method, StepOutput
from detect.engine.optim import OptimizerSpec
from detect.methods.curriculum.hardness import HardnessTable
from detect.methods.curriculum.hardness_report import dfh_curve_figure, extreme_faces_grid, top_bottom_metrics
from detect.methods.curriculum.pacing import Pool, babystep_pool, dffc_pool

KINDS = ("dffc", "babystep", "vanilla")


class Curriculum(Method):
    """``detector`` trained under the curriculum ``kind`` (see the module docstring)."""

    @property
    def gradient_sync(self) -> str:  # the detector's step is the curriculum's step
        return self.detector.gradient_sync

    @property
    def find_unused_parameters(self) -> bool:
        return self.detector.find_unused_parameters

    def __init__(
        self,
        detector: Method,
        kind: str = "dffc",
        name: str = "dffc",
        gamma: float = 0.9,
        alpha_f: float = 0.5,
        alpha_k: float = 0.9,
        milestones: Sequence[int] = (2, 5, 8, 12, 15),
        n_easy: int = 1000,
        n_easy_fraction: float = 1.0,
        augment_easy: bool = True,
        easy_augment: Sequence[Mapping] = (),
        eta_max: float = 0.1,
        eta_floor: float = 1e-3,
        quality: Mapping | None = None,
        optim: Mapping | None = None,
        scheduler: Mapping | None = None,
        data_kind: str = "real",
        cache_dir: str = "cache",
        analysis_n: int = 100,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"curriculum.kind={kind!r}; use one of {list(KINDS)}")
        if list(milestones) != sorted(int(m) for m in milestones) or not milestones:
            raise ValueError(f"curriculum.milestones={list(milestones)} must be increasing epochs (1-based)")
        self.detector = detector
        self.kind, self.curriculum_name = kind, name
        self.hp = {"gamma": gamma, "alpha_f": alpha_f, "eta_max": eta_max, "eta_floor": eta_floor}
        self.alpha_k, self.milestones = float(alpha_k), [int(m) for m in milestones]
        self.n_easy, self.n_easy_fraction, self.augment_easy = (
            int(n_easy),
            float(n_easy_fraction),
            bool(augment_easy),
        )
        # the curriculum's recipe replaces the detector's own (DFFC: SGD for every detector)
        if optim is not None:
            if not hasattr(detector, "optim_cfg"):
                raise TypeError(
                    f"{type(detector).__name__} keeps no optim_cfg: curriculum.optim cannot replace it"
                )
            detector.optim_cfg = dict(optim)
            detector.scheduler_cfg = dict(scheduler) if scheduler is not None else None
        self.easy_augment = [dict(a) for a in easy_augment]
        self.quality_cfg = dict(quality or {"kind": "none"})
        self.data_kind, self.cache_dir, self.analysis_n = data_kind, cache_dir, int(analysis_n)
        self.table: HardnessTable | None = None
        self.k, self.e = 0, 0  # hard-pool size k_n, easy-pool size E (set with the training set)
        self.pool: Pool | None = None
        self._records: list[tuple] = []
        self._specs: list[OptimizerSpec] = []
        self.quality_info: dict = {}

    # -- the wrapped detector -----------------------------------------------------------------------
    def configure_optimizers(self, epochs: int, steps_per_epoch: int) -> list[OptimizerSpec]:
        self._specs = self.detector.configure_optimizers(epochs, steps_per_epoch)
        return self._specs

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.detector.predict(images)

    def run_info(self) -> dict:
        return {
            "curriculum": self.curriculum_name,
            "kind": self.kind,
            "quality_prior": self.quality_info,
            "pool_k": self.k,
            "n_easy": self.e,
            "detector": self.detector.run_info(),
        }

    # -- data ---------------------------------------------------------------------------------------
    def build_train_dataset(self, table: pd.DataFrame, pipeline: Pipeline) -> PoolDataset:
        plain = self.detector.build_train_dataset(table, pipeline)
        if type(plain) is not FrameDataset:
            raise TypeError(
                f"a curriculum needs a single-frame training view; {type(self.detector).__name__} trains on "
                f"{type(plain).__name__}: use a single-frame detector (baseline, srm, spsl, mat)"
            )
        spec = pipeline.spec
        easy_pipe = Pipeline(
            spec["size"], spec["mean"], spec["std"], list(spec["augment"]) + self.easy_augment, spec["crop"]
        )
        dataset = PoolDataset(plain, FrameDataset(table, easy_pipe, train=True))
        self.table = HardnessTable(len(plain), **self.hp)
        self.table.set_quality(self._quality(plain.table))
        self.k = len(plain)
        self.e = min(self.n_easy, int(self.n_easy_fraction * len(plain)))
        return dataset

    def _quality(self, table: pd.DataFrame) -> np.ndarray:
        """quality(i) in [0, 1] from the configured prior, once per dataset through the score cache."""
        cfg = dict(self.quality_cfg)
        if cfg.get("kind", "none") == "none" or (self.kind == "dffc" and float(self.hp["alpha_f"]) == 0.0):
            self.quality_info = {"kind": "none"}
            return np.ones(len(table))
        from detect.quality.priors import quality_scores

        if cfg.get("kind") == "auto":  # IFQA with its weights; on the synthetic benchmark the classical score
            cfg["kind"] = "ifqa" if cfg.get("checkpoint") or self.data_kind != "synthetic" else "classical"
        device = next(self.detector.parameters()).device
        result = quality_scores(table, cfg, Path(self.cache_dir) / "scores", device)
        self.quality_info = {"kind": cfg["kind"], "images_per_s": result.images_per_s}
        return np.asarray(result.scores, dtype=np.float64)

    def on_epoch_start(self, epoch: int, dataset, ctx: StepContext | None) -> None:
        self.detector.on_epoch_start(epoch, dataset.plain, ctx)
        self.pool = self.epoch_pool(epoch + 1)
        self.k = self.pool.k

    def epoch_pool(self, t: int) -> Pool:
        """The pool of epoch ``t`` (1-based) from the hardness after epoch t − 1."""
        n = self.table.n
        if self.kind == "vanilla":
            return Pool(np.arange(n), np.zeros(0, np.int64), n, False)
        if self.kind == "babystep":
            return babystep_pool(t, 1.0 - self.table.quality, self.milestones, self.e, self.augment_easy)
        return dffc_pool(
            t, self.table.dfh(), self.milestones, self.k, self.alpha_k, self.e, self.augment_easy
        )

    def train_indices(self, epoch: int) -> Sequence[int]:
        n = self.table.n
        easy = self.pool.easy + (n if self.pool.augment else 0)
        return np.concatenate([self.pool.hard, easy]).astype(np.int64).tolist()

    # -- the step -----------------------------------------------------------------------------------
    def fit_step(self, batch: Mapping, ctx: StepContext) -> StepOutput:
        batch = dict(batch)
        easy = batch.pop("curriculum_easy")
        lr = self._specs[0].optimizer.param_groups[0]["lr"] if self._specs else float(self.hp["eta_max"])
        out = self.detector.fit_step(batch, ctx)
        if out.sample_losses is None or out.indices is None:
            raise ValueError(
                f"{type(self.detector).__name__}.fit_step returned no per-sample losses: a curriculum needs "
                "them (StepOutput.sample_losses with the batch's indices)"
            )
        step = ctx.global_step if ctx is not None else len(self._records)
        self._records.append(
            (out.indices.detach(), out.sample_losses.detach().float(), easy.detach(), lr, step)
        )
        return out

    def _gather(self, ctx: StepContext | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This epoch's (indices, losses, learning rates) of the hard pool H_t's samples, from every process,
        in training order (step, then rank), so that a sample trained twice (DDP's padding of the epoch, or
        ``trainer.sampling=balanced``) keeps the loss of its last training, as in one process. Samples of
        the easy pool E_t never update the hardness, with or without DA (Eq. 2 covers H_t only)."""
        records, self._records = self._records, []
        if records:  # one copy to the host per epoch (no per-step device sync)
            sizes = [len(rec[0]) for rec in records]
            i = torch.cat([rec[0].reshape(-1) for rec in records]).cpu().numpy().astype(np.int64)
            loss = torch.cat([rec[1].reshape(-1) for rec in records]).cpu().numpy()
            easy = torch.cat([rec[2].reshape(-1) for rec in records]).cpu().numpy().astype(bool)
            lr = np.repeat([float(rec[3]) for rec in records], sizes)
            step = np.repeat([int(rec[4]) for rec in records], sizes)
            keep = ~easy
            if self.pool is not None:
                member = np.zeros(self.table.n, bool)
                member[self.pool.hard] = True
                keep &= member[i]
            local = [i[keep], loss[keep], lr[keep], step[keep]]
        else:
            local = [np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0)]
        rank = [np.zeros(len(local[0]))]
        if ctx is not None and ctx.runtime.distributed:
            parts: list = [None] * ctx.runtime.world_size
            dist.all_gather_object(parts, local)
            local = [np.concatenate([p[j] for p in parts]) for j in range(4)]
            rank = [np.full(len(p[0]), q) for q, p in enumerate(parts)]
        order = np.lexsort((np.concatenate(rank), local[3]))  # by step, then rank
        return local[0][order].astype(np.int64), local[1][order], local[2][order]

    def on_epoch_end(self, epoch: int, ctx: StepContext) -> None:
        self.detector.on_epoch_end(epoch, ctx)
        idx, loss, lr = self._gather(ctx)
        if self.kind == "dffc":
            self.table.update(idx, loss, lr)
        self.table.end_epoch()

    # -- reports ------------------------------------------------------------------------------------
    def analysis_metrics(self, dataset) -> dict[str, dict[str, float]]:
        """Table 4: TAR and SSIM of the ``analysis_n`` highest- and lowest-DFH fakes per manipulation."""
        out = dict(self.detector.analysis_metrics(dataset.plain))
        if self.kind == "dffc" and self.table is not None and self.table.history:
            found = top_bottom_metrics(dataset.table, self.table.dfh(), self.analysis_n)
            out.update({f"hardness-{domain}": m for domain, m in found.items()})
        return out

    def report_images(self, dataset) -> dict[str, np.ndarray]:
        """Fig. 4 (DFH of the 5 highest, median and lowest samples over training) and Fig. 5 (real and fake
        faces of top and bottom DFH), with the detector's own figures."""
        out = dict(self.detector.report_images(dataset.plain))
        if self.kind == "dffc" and self.table is not None and self.table.history:
            out["dffc_dfh_curves"] = dfh_curve_figure(np.stack(self.table.history))
            out["dffc_extreme_faces"] = extreme_faces_grid(dataset.table, self.table.dfh())
        return out

    # -- state --------------------------------------------------------------------------------------
    def extra_state(self) -> dict:
        state = {"detector": self.detector.extra_state(), "k": self.k}
        if self.table is not None:
            state["hardness"] = {k: torch.as_tensor(v) for k, v in self.table.state().items()}
        return state

    def load_extra_state(self, state: Mapping) -> None:
        self.detector.load_extra_state(state.get("detector", {}))
        self.k = int(state.get("k", self.k))
        if "hardness" in state and self.table is not None:
            self.table.load_state({k: v.numpy() for k, v in state["hardness"].items()})
