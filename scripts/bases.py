"""Every KAN basis and extra (issue 6) through the real CLI on the same images, same steps.

Each (image, variant) runs `kancoin encode --json` into OUT/<image>__<variant>.kc and keeps the
JSON line in OUT/<image>__<variant>.json (a rerun skips variants already done), then prints a
Markdown table: PSNR of the decoded file, bpp, architecture, ms per step.

    python scripts/bases.py [--out results/bases] [--images kodim03,kodim23] [--iters 500]
        [--variants bspline,rbf,...] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

KODAK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodak"
VARIANTS = {
    "bspline": [],
    "bspline+bias": ["--node-bias"],
    "bspline+grid-extend2": ["--grid-extend", "2"],
    "bspline+lbfgs": ["--optimizer", "lbfgs"],
    "rbf": ["--basis", "rbf"],
    "rbf+layernorm": ["--basis", "rbf", "--layernorm"],
    "rsf": ["--basis", "rsf"],
    "chebyshev": ["--basis", "chebyshev"],
    "fourier": ["--basis", "fourier"],
    "tanh": ["--basis", "tanh"],
}


def run(image: Path, variant: str, out: Path, iters: int) -> dict:
    res = out / f"{image.stem}__{variant}.json"
    if res.exists():
        return json.loads(res.read_text())
    cmd = [sys.executable, "-m", "kancoin.cli", "encode", str(image),
           str(out / f"{image.stem}__{variant}.kc"), "--bpp", "0.3", "--iters", str(iters),
           "--threads", "1", "--device", "cpu", "--json", "--force",
           *VARIANTS[variant]]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{image.stem} {variant}: {proc.stderr.strip()}")
    row = {"image": image.stem, "variant": variant, **json.loads(proc.stdout)}
    res.write_text(json.dumps(row) + "\n")
    print(f"{image.stem} {variant}: {row['psnr']:.2f} dB, {row['step_ms']:.0f} ms/step",
          file=sys.stderr, flush=True)  # fmt: skip
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="results/bases")
    ap.add_argument("--images", default="kodim03,kodim23")
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    images = [KODAK / f"{n}.png" for n in a.images.split(",")]
    variants = a.variants.split(",")
    jobs = [(im, v) for v in variants for im in images]
    with ThreadPoolExecutor(a.jobs) as pool:  # each job is its own kancoin process
        rows = list(pool.map(lambda j: run(j[0], j[1], out, a.iters), jobs))
    names = [im.stem for im in images]
    print(f"| variant | {' | '.join(names)} | mean PSNR | mean bpp | architecture | ms/step |")
    print("|---|" + "---:|" * (len(names) + 2) + "---|---:|")
    for v in variants:
        rs = [r for r in rows if r["variant"] == v]
        psnrs = " | ".join(f"{r['psnr']:.2f}" for r in rs)
        mean = sum(r["psnr"] for r in rs) / len(rs)
        bpp = sum(r["bpp"] for r in rs) / len(rs)
        ms = sum(r["step_ms"] for r in rs) / len(rs)
        print(f"| {v} | {psnrs} | {mean:.2f} | {bpp:.4f} | {rs[0]['architecture']} | {ms:.0f} |")


if __name__ == "__main__":
    main()
