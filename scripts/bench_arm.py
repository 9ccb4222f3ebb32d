"""Reading a latent file's network-coded grids in its two orders side by side: grid after grid
(``arm_order`` 0, formats 8–10) and line by line across the pyramid (1, format 11), the same
tensors written both ways in memory and read in turn in one process.

    python scripts/bench_arm.py FILE.kc [--repeat 11]

Prints one JSON line: the median read seconds of each (range decoding, the network's passes,
the stream's check; no render), their ratio (per round, median), both payloads' bytes, and
whether both read back the file's integers. The machine is noisy: the ratio, measured side by
side, is what to quote (docs/speed.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np

from kancoin.format.container import VERSION, read_bytes, write_bytes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file", type=Path)
    ap.add_argument("--repeat", type=int, default=11)
    args = ap.parse_args()
    header, q = read_bytes(args.file.read_bytes())
    spec = header.spec
    if not (spec.arch == "latent" and spec.arm):
        raise SystemExit("needs a latent file whose grids the network codes (arm ≥ 1)")
    data = {}  # the current format, each order (a file of format 8–10 is its order 0)
    for order in (0, 1):
        ordered = dataclasses.replace(spec, arm_order=order)
        data[order] = write_bytes(dataclasses.replace(header, spec=ordered, version=VERSION), q)
    same = all(
        all(np.array_equal(a, b) for a, b in zip(read_bytes(data[order])[1], q, strict=True))
        for order in (0, 1)
    )
    times: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(args.repeat):
        for order in (0, 1):
            t0 = time.perf_counter()
            read_bytes(data[order])
            times[order].append(time.perf_counter() - t0)
    ratios = [a / b for a, b in zip(times[0], times[1], strict=True)]
    print(json.dumps({
        "file": str(args.file),
        "grid_after_grid_s": round(statistics.median(times[0]), 4),
        "line_by_line_s": round(statistics.median(times[1]), 4),
        "ratio": round(statistics.median(ratios), 2),
        "bytes": [len(data[0]), len(data[1])],
        "same_integers": same,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
