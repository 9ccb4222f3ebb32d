"""Encode images with several settings through the real path and print one JSON row each.

    python scripts/try_settings.py IMG [IMG ...] --set '{"iters": 2000}' --set '{"width": 12}'

Each --set is a JSON object of EncodeOptions fields (overrides: width, depth, grid_size,
spline_order). Used for the quick measurements behind the README's defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kancoin.encode import EncodeOptions, encode_pixels
from kancoin.grid import load_image
from kancoin.ratecontrol import Overrides

OVERRIDE_KEYS = {"width", "depth", "grid_size", "spline_order"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("images", nargs="+")
    ap.add_argument("--set", action="append", default=[], help="JSON object of options")
    ap.add_argument("--out", help="append JSON rows to this file too")
    args = ap.parse_args()
    settings = [json.loads(s) for s in args.set] or [{}]
    for img in args.images:
        pixels, _ = load_image(img)
        for s in settings:
            ov = Overrides(**{k: v for k, v in s.items() if k in OVERRIDE_KEYS})
            opts = EncodeOptions(
                **{k: v for k, v in s.items() if k not in OVERRIDE_KEYS}, overrides=ov
            )
            res = encode_pixels(pixels, opts)
            row = {"image": Path(img).stem, "settings": s, **res.as_dict()}
            line = json.dumps(row)
            print(line, flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(line + "\n")


if __name__ == "__main__":
    sys.exit(main())
