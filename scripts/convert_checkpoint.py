"""Convert a published checkpoint into one ``eval.py`` and ``predict.py`` load:

    python scripts/convert_checkpoint.py from=dfb_efficientnetb4 src=effnb4_best.pth dst=effb4_dfb.pt
    python scripts/convert_checkpoint.py from=sbi src=FFraw.tar dst=sbi.pt
    python scripts/convert_checkpoint.py from=efficientnet_pytorch src=efficientnet-b4.pth dst=b4.safetensors

Formats: see ``detect/convert/`` (``from=list`` prints them). Every source key must map and every key of
the project's model must be filled, or the error lists the keys.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from detect.convert import formats, get_format
from detect.convert.conversion import convert_file

CONF = Path(__file__).resolve().parents[1] / "conf"
USAGE = "usage: python scripts/convert_checkpoint.py from=<format> src=PATH dst=PATH [hydra overrides ...]"


def main(argv: list[str]) -> int:
    args, extra = {}, []
    for a in argv:
        key, sep, value = a.partition("=")
        if not sep:
            print(f"{USAGE}\nargument {a!r} is not key=value", file=sys.stderr)
            return 2
        if key in ("from", "src", "dst"):
            args[key] = value
        else:
            extra.append(a)
    if args.get("from") == "list":
        for f in formats().values():
            print(f"{f.name:22s} {f.kind:10s} {f.description}")
        return 0
    missing = [k for k in ("from", "src", "dst") if not args.get(k)]
    if missing:
        print(f"{USAGE}\nmissing {missing}; formats: {sorted(formats())}", file=sys.stderr)
        return 2
    fmt = get_format(args["from"])
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["logger=none", *fmt.overrides, *extra])
    done = convert_file(fmt.name, args["src"], args["dst"], cfg)
    print(f"{fmt.name}: {args['src']} -> {done['dst']} ({done['kind']}, {done['keys']} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
