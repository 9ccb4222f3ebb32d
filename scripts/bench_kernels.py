"""Per-layer timing of the fused cubic KAN kernels: the two backward variants side by side.

    python scripts/bench_kernels.py                 # numba threads = usable cores
    python scripts/bench_kernels.py --threads 1

For one KAN layer of I inputs and O outputs (grid 11, batch 10,000, inputs spread over the
extended grid and a little outside it) it prints, after warm-up, the median ms of: the
training forward (it keeps 1 + exp(-x)), the sample-by-sample backward and the interval-sorted
backward, and their ratio. ``kancoin._kernels.SORTED_MIN_OUT`` is chosen from this table.
The kernels run at the O given, unpadded; training and decoding run layers of 17..31 outputs at
32 (``kancoin.kan.padded_outputs``), so compare a 20x20 row with a 20x32 row for that choice.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from kancoin import _kernels, threads
from kancoin.kan import KANLinear, _grid_position, spline_table

BATCH, GRID = 10_000, 11


def median_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def time_layer(n_in: int, n_out: int, chunks: int, runs: int, rng) -> tuple[float, ...]:
    """(forward, backward direct, backward sorted) ms for one I x O layer."""
    layer = KANLinear(n_in, n_out, grid_size=GRID, spline_order=3)
    table = spline_table(layer.base_weight, layer.scaled_spline_weight(), 3).numpy()
    g0, inv_h = _grid_position(GRID, 3, layer.grid_range)
    x = rng.uniform(-1.7, 1.7, (BATCH, n_in)).astype(np.float32)
    gy = rng.standard_normal((BATCH, n_out)).astype(np.float32)
    y = np.empty((BATCH, n_out), np.float32)
    den, gx = np.empty_like(x), np.empty_like(x)
    parts = np.empty((chunks,) + table.shape, np.float32)

    def forward() -> None:
        _kernels.kan_forward_cubic(x, table, g0, inv_h, y, chunks, den)

    def backward(sorted_: bool) -> None:
        _kernels.kan_backward_cubic(x, den, gy, table, g0, inv_h, gx, parts, True, sorted_)

    return (
        median_ms(forward, runs),
        median_ms(lambda: backward(False), runs),
        median_ms(lambda: backward(True), runs),
    )


def parse_sizes(text: str) -> list[tuple[int, int]] | None:
    """'20x3,20x20' -> [(20, 3), (20, 20)]; None if malformed."""
    try:
        sizes = [tuple(int(v) for v in size.split("x")) for size in text.split(",")]
    except ValueError:
        return None
    return sizes if all(len(sz) == 2 and min(sz) >= 1 for sz in sizes) else None  # type: ignore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument(
        "--sizes", default="20x3,20x4,20x8,12x12,20x20,29x29,40x40", help="comma list of IxO"
    )
    args = ap.parse_args()
    sizes = parse_sizes(args.sizes)
    if sizes is None:
        ap.error(f"--sizes: expected a comma list of IxO such as 20x20, got {args.sizes!r}")
    import numba

    n_threads = threads.configure("kan", args.threads)
    chunks = max(1, min(numba.get_num_threads(), BATCH // 2048))
    print(f"numba threads {numba.get_num_threads()}, chunks {chunks}, batch {BATCH}, grid {GRID}")
    head = ("I x O", "forward", "bwd direct", "bwd sorted", "direct/sorted")
    print(f"{head[0]:>8} {head[1]:>9} {head[2]:>11} {head[3]:>11} {head[4]:>14}")
    rng = np.random.default_rng(0)
    for n_in, n_out in sizes:
        size = f"{n_in}x{n_out}"
        fwd, direct, sort = time_layer(n_in, n_out, chunks, args.runs, rng)
        print(f"{size:>8} {fwd:9.2f} {direct:11.2f} {sort:11.2f} {direct / sort:14.2f}")
    print(f"(ms per call, median of {args.runs}; thread policy for {n_threads} cores)")


if __name__ == "__main__":
    main()
