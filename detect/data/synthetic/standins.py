"""Registry of the benchmark's datasets: FF++'s five methods and the cross-dataset stand-ins.

Each stand-in is named after the dataset it stands for and carries DeepfakeBench's names (index JSON, top
key, label strings, folders); it is made by its own shifted generator: a real-video ``Style`` (skin tones,
backgrounds, noise, blur, rescaling, face size, pose range) and its fake kinds (swap generator resolution,
generator residual, colour transfer, mask, feathering, re-rendering). Stand-ins sharing a ``pool`` share
their real videos (DF40's subsets, as DF40's fakes all come from one set of reals).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from detect.data.synthetic.faces import Style
from detect.data.synthetic.manipulations import SwapParams

FF_METHODS: dict[str, str] = {
    "DF": "Deepfakes",
    "F2F": "Face2Face",
    "FS": "FaceSwap",
    "NT": "NeuralTextures",
    "FSh": "FaceShifter",
}
"""FF++ manipulation short name -> folder under ``manipulated_sequences``."""

FF_LABELS: dict[str, str] = {
    "real": "FF-real",
    "DF": "FF-DF",
    "F2F": "FF-F2F",
    "FS": "FF-FS",
    "NT": "FF-NT",
    "FSh": "FF-FH",
}
"""FF++ domain -> DeepfakeBench label string."""

FF_NAME = "FaceForensics++"
FF_STYLE = Style()


@dataclass(frozen=True)
class FakeKind:
    """One fake label of a stand-in and how its videos are made."""

    label: str
    domain: str
    """The ``domain`` of the sample table (as ``conf/dataset/*.yaml`` names it)."""
    folder: str
    method: str = "swap"
    swap: SwapParams = field(default_factory=SwapParams)
    mouth_block: int = 4


@dataclass(frozen=True)
class StandIn:
    """A cross-dataset stand-in: DeepfakeBench names plus its generator shift."""

    name: str
    real_label: str
    real_folder: str
    fakes: tuple[FakeKind, ...]
    style: Style
    crf: int
    folder: str = ""
    naming: str = "ff"
    pool: str = ""

    @property
    def json_name(self) -> str:
        """File name of the index under ``dataset_json/``."""
        return f"{self.name}.json"

    @property
    def rgb_folder(self) -> str:
        """Folder under ``rgb/``."""
        return self.folder or self.name

    @property
    def pool_name(self) -> str:
        """Real-video pool (stand-ins with the same pool share real videos)."""
        return self.pool or self.name

    def labels(self) -> dict[str, dict]:
        """Label config for ``DatasetSpec.from_config``: label string -> {label, domain}."""
        out = {self.real_label: {"label": 0, "domain": "real"}}
        out.update({f.label: {"label": 1, "domain": f.domain} for f in self.fakes})
        return out


def _sp(**kw: object) -> SwapParams:
    return SwapParams(**kw)  # type: ignore[arg-type]


_DF40_STYLE = Style(background="indoor", noise=0.012, blur=0.5)

_ALL = (
    StandIn(
        name="Celeb-DF-v1",
        real_label="CelebDFv1_real",
        real_folder="Celeb-real",
        fakes=(
            FakeKind(
                "CelebDFv1_fake",
                "CDFv1",
                "Celeb-synthesis",
                swap=_sp(gen_res=64, strength=0.025, checkerboard=False, colour="mean", feather=0.05),
            ),
        ),
        style=Style(
            tone_range=(0.0, 0.75),
            background="indoor",
            noise=0.008,
            blur=1.0,
            rescale=0.9,
            light_contrast=0.45,
        ),
        crf=20,
        naming="celeb",
    ),
    StandIn(
        name="Celeb-DF-v2",
        real_label="CelebDFv2_real",
        real_folder="Celeb-real",
        fakes=(
            FakeKind(
                "CelebDFv2_fake",
                "CDFv2",
                "Celeb-synthesis",
                swap=_sp(
                    gen_res=128, strength=0.015, checkerboard=False, colour="full", feather=0.08, sharpen=0.2
                ),
            ),
        ),
        style=Style(
            tone_range=(0.0, 0.75),
            background="indoor",
            noise=0.008,
            blur=1.1,
            rescale=0.85,
            light_contrast=0.45,
        ),
        crf=20,
        naming="celeb",
    ),
    StandIn(
        name="DFDC",
        real_label="DFDC_Real",
        real_folder="videos",
        fakes=(
            FakeKind(
                "DFDC_Fake",
                "DFDC",
                "videos",
                swap=_sp(
                    gen_res=64,
                    strength=0.05,
                    checkerboard=True,
                    colour="mean",
                    mask="face81",
                    feather=0.06,
                    noise=0.01,
                ),
            ),
        ),
        style=Style(
            background="clutter",
            noise=0.02,
            blur=1.0,
            rescale=0.7,
            scale_range=(72.0, 90.0),
            yaw_range=0.45,
            light_contrast=0.7,
            tint=0.07,
        ),
        crf=28,
        naming="dfdc",
    ),
    StandIn(
        name="DFDCP",
        real_label="DFDCP_Real",
        real_folder="original_videos",
        fakes=(
            FakeKind(
                "DFDCP_FakeA",
                "FakeA",
                "method_A",
                swap=_sp(gen_res=96, strength=0.03, checkerboard=True, colour="mean", feather=0.05),
            ),
            FakeKind(
                "DFDCP_FakeB",
                "FakeB",
                "method_B",
                swap=_sp(
                    gen_res=64, strength=0.03, checkerboard=False, colour="mean", feather=0.05, sharpen=0.3
                ),
            ),
        ),
        style=Style(background="studio", noise=0.015, blur=1.1, rescale=0.9, light_contrast=0.6),
        crf=26,
    ),
    StandIn(
        name="DeepFakeDetection",
        real_label="DFD_real",
        real_folder="original_sequences/actors",
        fakes=(
            FakeKind(
                "DFD_fake",
                "DFD",
                "manipulated_sequences/DeepFakeDetection",
                swap=_sp(gen_res=80, strength=0.03, checkerboard=True, colour="mean", feather=0.06),
            ),
        ),
        style=Style(background="clutter", noise=0.01, blur=1.0, light_contrast=0.5),
        crf=23,
        naming="dfd",
    ),
    StandIn(
        name="WildDeepfake",
        real_label="WildDeepfake_real",
        real_folder="real",
        fakes=(
            FakeKind(
                "WildDeepfake_fake",
                "WDF",
                "fake",
                swap=_sp(gen_res=64, strength=0.05, checkerboard=False, colour="mean", feather=0.06),
            ),
        ),
        style=Style(
            background="outdoor",
            noise=0.025,
            blur=1.0,
            rescale=0.5,
            scale_range=(72.0, 100.0),
            yaw_range=0.5,
            light_contrast=0.65,
            tint=0.08,
        ),
        crf=30,
    ),
    StandIn(
        name="FFIW10K",
        real_label="FFIW_real",
        real_folder="source",
        fakes=(
            FakeKind(
                "FFIW_fake",
                "FFIW",
                "target",
                swap=_sp(gen_res=96, strength=0.035, checkerboard=True, colour="full", feather=0.07),
            ),
        ),
        style=Style(background="clutter", noise=0.015, blur=1.1, rescale=0.85, scale_range=(66.0, 82.0)),
        crf=26,
        naming="ffiw",
    ),
    StandIn(
        name="DeeperForensics-1.0",
        real_label="DF1.0_real",
        real_folder="source_videos",
        fakes=(
            FakeKind(
                "DF1.0_fake",
                "DFo",
                "manipulated_videos/end_to_end",
                swap=_sp(
                    gen_res=128, strength=0.02, checkerboard=False, colour="full", feather=0.1, noise=0.01
                ),
            ),
        ),
        style=Style(background="studio", noise=0.01, blur=0.5, light_contrast=0.4, tint=0.02),
        crf=23,
    ),
    StandIn(
        name="FakeAVCeleb",
        real_label="FakeAVCeleb_real",
        real_folder="RealVideo-RealAudio",
        fakes=(FakeKind("FakeAVCeleb_fake", "FAVC", "FakeVideo-FakeAudio", method="mouth", mouth_block=3),),
        style=Style(background="indoor", noise=0.012, blur=0.6, light_contrast=0.5),
        crf=24,
    ),
    StandIn(
        name="UADFV",
        real_label="UADFV_Real",
        real_folder="real",
        fakes=(
            FakeKind(
                "UADFV_Fake",
                "UADFV",
                "fake",
                swap=_sp(gen_res=48, strength=0.03, checkerboard=False, colour="none", feather=0.02),
            ),
        ),
        style=Style(background="indoor", noise=0.015, blur=0.8, rescale=0.6),
        crf=26,
    ),
    *(
        StandIn(
            name=f"DF40-{sub}",
            real_label="DF40_real",
            real_folder="real",
            fakes=(FakeKind(f"DF40_{sub}", domain, sub, swap=params),),
            style=_DF40_STYLE,
            crf=23,
            folder="DF40",
            pool="DF40",
        )
        for sub, domain, params in (
            (
                "uniface",
                "UniFace",
                _sp(gen_res=112, strength=0.02, checkerboard=False, colour="full", erode=0.04, feather=0.06),
            ),
            (
                "e4s",
                "E4S",
                _sp(
                    gen_res=128, strength=0.015, checkerboard=False, colour="mean", mask="inner", feather=0.03
                ),
            ),
            (
                "blendface",
                "BlendFace",
                _sp(gen_res=96, strength=0.025, checkerboard=True, colour="full", feather=0.08),
            ),
            (
                "mobileswap",
                "MobileSwap",
                _sp(gen_res=64, strength=0.035, checkerboard=False, colour="mean", feather=0.05, sharpen=0.4),
            ),
        )
    ),
    StandIn(
        name="DiffusionFace-DiffSwap",
        real_label="DiffusionFace_real",
        real_folder="real",
        fakes=(
            FakeKind(
                "DiffusionFace_DiffSwap",
                "DiffSwap",
                "DiffSwap",
                swap=_sp(
                    gen_res=128, strength=0.0, checkerboard=False, colour="full", feather=0.06, noise=0.02
                ),
            ),
        ),
        style=Style(background="studio", noise=0.01, blur=0.5),
        crf=23,
        folder="DiffusionFace",
    ),
)

STAND_INS: dict[str, StandIn] = {s.name: s for s in _ALL}
"""Stand-in dataset name (index top key) -> its registry entry."""
