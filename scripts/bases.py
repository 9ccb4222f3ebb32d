"""Every KAN basis and extra on the same images, same steps, through `kancoin eval`.

Each variant is one `kancoin eval` setting (its options in the row's key), so a rerun reuses
finished rows; all variants share one results folder. Prints a Markdown table: PSNR of the
decoded file, bpp, architecture, ms per step.

    python scripts/bases.py [--out results/bases] [--images kodim03,kodim23] [--iters 500]
        [--variants bspline,rbf,...] [--jobs 2]
"""

from __future__ import annotations

import argparse
import sys

from kancoin.codec.options import EncodeOptions
from kancoin.eval.runs import run_eval

VARIANTS = {
    "bspline": {},
    "bspline+bias": {"node_bias": True},
    "bspline+grid-extend2": {"grid_extend": 2},
    "bspline+lbfgs": {"optimizer": "lbfgs"},
    "rbf": {"basis": "rbf"},
    "rbf+layernorm": {"basis": "rbf", "layernorm": True},
    "rsf": {"basis": "rsf"},
    "chebyshev": {"basis": "chebyshev"},
    "fourier": {"basis": "fourier"},
    "tanh": {"basis": "tanh"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default="results/bases")
    ap.add_argument("--images", default="kodim03,kodim23")
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    variants = a.variants.split(",")
    rows = {}
    for v in variants:
        opts = EncodeOptions(arch="kan", iters=a.iters, **VARIANTS[v])
        report = run_eval(
            None, a.out, bpps=(0.3,), archs=("kan",), options=opts, images=a.images,
            jobs=a.jobs, device="cpu", progress=lambda m: print(m, file=sys.stderr, flush=True),
        )  # fmt: skip
        rows[v] = report.rows
    names = [r["image"] for r in rows[variants[0]]]
    print(f"| variant | {' | '.join(names)} | mean PSNR | mean bpp | architecture | ms/step |")
    print("|---|" + "---:|" * (len(names) + 2) + "---|---:|")
    for v in variants:
        rs = rows[v]
        psnrs = " | ".join(f"{r['psnr']:.2f}" for r in rs)
        mean = sum(r["psnr"] for r in rs) / len(rs)
        bpp = sum(r["bpp"] for r in rs) / len(rs)
        ms = sum(1000 * r["encode_s"] / r["steps"] for r in rs) / len(rs)
        print(f"| {v} | {psnrs} | {mean:.2f} | {bpp:.4f} | {rs[0]['architecture']} | {ms:.0f} |")


if __name__ == "__main__":
    main()
