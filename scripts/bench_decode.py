"""Decode speed of .kc files: in-process (``decode_bytes``, median of --repeat, after one
warm-up) and the whole ``kancoin decode`` process (median wall time), per file.

    python scripts/bench_decode.py FILE.kc... [--repeat 5] [--threads N] [--kernels numpy]

The process imports numba, so a latent file's in-process decode runs the numba synthesis
unless ``--kernels numpy`` (what a ``kancoin decode`` process runs); both give the same pixels.

Say which machine and how loaded it was when you quote the figures (docs/speed.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--threads", type=int, default=None,
        help="in-process threads: numba's, and the latent decoder's (default: all)",
    )  # fmt: skip
    ap.add_argument(
        "--kernels", choices=["auto", "numpy", "numba"], default="auto",
        help="the latent synthesis in process (kancoin.nets.latent.render.KERNELS)",
    )  # fmt: skip
    args = ap.parse_args()
    import numba

    from kancoin.codec.decode import decode_bytes
    from kancoin.nets.latent import render

    render.KERNELS = args.kernels
    if args.threads:
        numba.set_num_threads(args.threads)
        render.THREADS = args.threads
    for path in args.files:
        data = path.read_bytes()
        decode_bytes(data)  # warm-up: numba's cached kernels load (KAN files)
        inproc = [decode_bytes(data).seconds for _ in range(args.repeat)]
        walls = []
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.png"
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "kancoin", "decode", str(path), str(out), "--force",
                     "--quiet"],
                    check=True,
                )  # fmt: skip
                walls.append(time.perf_counter() - t0)
        d = decode_bytes(data)
        h = d.header
        row = {
            "file": str(path), "arch": h.spec.arch, "size": f"{h.width}x{h.height}",
            "in_process_s": round(statistics.median(inproc), 3),
            "process_s": round(statistics.median(walls), 3),
            "threads": render.decode_threads() if h.spec.arch == "latent"
            else numba.get_num_threads(),
            "kernels": args.kernels if h.spec.arch == "latent" else "numba",
        }  # fmt: skip
        print(json.dumps(row))


if __name__ == "__main__":
    main()
