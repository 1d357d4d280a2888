"""The embedded synthetic benchmark: procedurally rendered face videos in DeepfakeBench's layout.

``ensure_synthetic(cache_dir, SyntheticConfig(...))`` returns the data root (``rgb/`` + ``dataset_json/``)
of FF++ (c23/c40; Deepfakes, Face2Face, FaceSwap, NeuralTextures, FaceShifter) and the cross-dataset
stand-ins of ``STAND_INS``, generating and caching it on first use. ``dataset_config(name, root)`` gives
the matching dataset config for ``detect.data.index.DatasetSpec.from_config``.

Modules, one job each: ``landmarks`` (81-point face model), ``faces`` (rendering), ``temporal`` (smooth motion
tracks, fakes' per-frame jitter), ``warp`` (piecewise affine, hull masks), ``autoencoder`` (the swaps' random
generator), ``manipulations`` (the five FF++-style methods), ``codec`` (H.264 round trip), ``standins``
(registry), ``config``, ``generator`` (jobs, layout, indices, cache), ``examples`` (uncompressed pairs,
dataset configs).
"""

from detect.data.synthetic.config import GENERATOR_VERSION, SyntheticConfig
from detect.data.synthetic.examples import dataset_config, uncompressed_example
from detect.data.synthetic.generator import cache_folder, ensure_synthetic, generate
from detect.data.synthetic.standins import FF_LABELS, FF_METHODS, FF_NAME, STAND_INS, FakeKind, StandIn

__all__ = [
    "FF_LABELS",
    "FF_METHODS",
    "FF_NAME",
    "GENERATOR_VERSION",
    "STAND_INS",
    "FakeKind",
    "StandIn",
    "SyntheticConfig",
    "cache_folder",
    "dataset_config",
    "ensure_synthetic",
    "generate",
    "uncompressed_example",
]
