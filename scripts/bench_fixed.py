"""The MLP synthesis's two arithmetics side by side: a latent file's render in fixed point
(format 10, ``nets.latent.fixed``) and in float32 elementwise (format 9's, the same tensors
read with ``fixed_frac`` 0), alternating in one process, and the PSNR of each.

    python scripts/bench_fixed.py FILE.kc [IMAGE.png] [--repeat 7] [--threads 2]

Prints one JSON line per file: the median render seconds of each, their ratio (the float's over
the fixed point's, per round, median), the values that differ, and with IMAGE both PSNRs.
The machine is noisy: the ratio, measured side by side, is what to quote (docs/speed.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np

from kancoin.codec.decode import weights
from kancoin.format.container import read_bytes
from kancoin.imageio import load_image
from kancoin.metrics import psnr
from kancoin.nets.latent import render


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file", type=Path)
    ap.add_argument("image", type=Path, nargs="?")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="render threads (0: the decoder's)")
    args = ap.parse_args()
    header, q = read_bytes(args.file.read_bytes())
    spec = header.spec
    if not (spec.arch == "latent" and spec.mlp):
        raise SystemExit("needs a latent file with the MLP synthesis")
    arrays = weights(header, q)
    fixed = dataclasses.replace(spec, fixed_frac=spec.fixed_frac or 16)
    floating = dataclasses.replace(spec, fixed_frac=0)
    render.KERNELS = "numpy"
    out = {}
    times: dict[str, list[float]] = {"fixed": [], "float": []}
    for name, s in (("fixed", fixed), ("float", floating)):
        out[name] = render.render(s, arrays, threads=args.threads)  # warm-up (the GELU table)
    for _ in range(args.repeat):
        for name, s in (("fixed", fixed), ("float", floating)):
            t0 = time.perf_counter()
            render.render(s, arrays, threads=args.threads)
            times[name].append(time.perf_counter() - t0)
    ratios = [b / a for a, b in zip(times["fixed"], times["float"], strict=True)]
    row = {
        "file": str(args.file),
        "fixed_s": round(statistics.median(times["fixed"]), 3),
        "float_s": round(statistics.median(times["float"]), 3),
        "float_over_fixed": round(statistics.median(ratios), 2),
        "values_differing": round(float(np.mean(out["fixed"] != out["float"])), 5),
        "threads": args.threads or render.decode_threads(),
    }
    if args.image:
        pixels, _ = load_image(args.image)
        row["psnr_fixed"] = round(psnr(out["fixed"], pixels), 4)
        row["psnr_float"] = round(psnr(out["float"], pixels), 4)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
