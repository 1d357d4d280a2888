"""Export a single-frame detector for deployment:

    python scripts/export.py ckpt=outputs/runs/<run>/checkpoints/best.pt format=onnx [dst=model.onnx]
    python scripts/export.py ckpt=PATH format=torchscript [dst=model.ts]

The model takes the normalised ``[B, 3, S, S]`` batch and returns P(fake) ``[B]``; ``<dst>.json`` holds
S, mean and std. ONNX exports are checked against PyTorch under onnxruntime; ``format=onnx`` needs the
``onnx`` and ``onnxruntime`` packages (``pip install onnx onnxruntime``; a one-line error says so otherwise).
"""

from __future__ import annotations

import sys
from pathlib import Path

from detect.inference.export import EXPORT_FORMATS, MissingPackage, export, require_packages
from detect.inference.load import load_detector

USAGE = "usage: python scripts/export.py ckpt=PATH format=onnx|torchscript [dst=PATH]"


def main(argv: list[str]) -> int:
    args = {}
    for a in argv:
        key, sep, value = a.partition("=")
        if not sep or key not in ("ckpt", "format", "dst"):
            print(f"{USAGE}\nunexpected argument {a!r}", file=sys.stderr)
            return 2
        args[key] = value
    if "ckpt" not in args or args.get("format") not in EXPORT_FORMATS:
        print(f"{USAGE}\nformat must be one of {EXPORT_FORMATS}", file=sys.stderr)
        return 2
    suffix = ".onnx" if args["format"] == "onnx" else ".ts"
    dst = Path(args.get("dst") or Path(args["ckpt"]).with_suffix(suffix))
    if args["format"] == "onnx":
        try:
            require_packages("onnx")
        except MissingPackage as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    detector = load_detector(args["ckpt"], "cpu")
    export(detector, args["format"], dst)
    if args["format"] == "onnx":
        from detect.inference.export_check import onnx_max_abs_diff

        print(f"onnxruntime vs PyTorch: max abs diff {onnx_max_abs_diff(detector, dst):.2e}")
    print(f"wrote {dst} and {dst}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
