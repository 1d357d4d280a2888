"""The embedded synthetic benchmark: procedurally rendered face videos in DeepfakeBench's layout.

``ensure_synthetic(cache_dir, SyntheticConfig(...))`` returns the data root (``rgb/`` + ``dataset_json/``)
of FF++ (c23/c40; Deepfakes, Face2Face, FaceSwap, NeuralTextures, FaceShifter) and the cross-dataset
stand-ins of ``STAND_INS``, generating and caching it on first use.
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
