"""Per-layer timing of the fused cubic KAN kernels, against the same layer on torch ops.

    python scripts/bench_kernels.py                 # numba threads = usable cores
    python scripts/bench_kernels.py --threads 1
    python scripts/bench_kernels.py --block 16      # force the backward's output block

For one KAN layer of I inputs and O outputs (grid 11, batch 10,000, inputs spread over the
extended grid and a little outside it) it prints, after warm-up, the median ms of: the
training forward (``kernels_train.kan_forward_cubic_train``: it keeps 1 + exp(-x)) and the
backward, each at the width training runs it (``kancoin.nets.kan.splines.padded_outputs`` and
``kancoin.nets.kan.fused.backward_outputs``: the backward's width P and output block W are
printed), and forward + backward of the same layer with the torch closed-form
basis (``backend="dense"``, torch on the same threads), with the ratio fused / dense.
``backward_outputs`` is chosen from this table (compare ``--block`` values).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from kancoin.codec import runtime
from kancoin.nets.kan import KanSpec, kernels_train
from kancoin.nets.kan.fused import backward_outputs
from kancoin.nets.kan.layers import KANLinear
from kancoin.nets.kan.splines import grid_position, padded_outputs, spline_table

BATCH, GRID = 10_000, 11


def median_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def time_layer(n_in: int, n_out: int, chunks: int, runs: int, block: int, rng) -> dict:
    """ms of the fused forward and backward and of the dense layer's forward + backward."""
    layer = KANLinear(n_in, n_out, grid_size=GRID, spline_order=3)
    pad, width = backward_outputs(n_out)
    if block:
        width, pad = block, -(-n_out // block) * block
    weights = layer.scaled_spline_weight()
    table = spline_table(layer.base_weight, weights, 3, padded_outputs(n_out)).numpy()
    wide = spline_table(layer.base_weight, weights, 3, pad).numpy()  # the backward's table
    g0, inv_h = grid_position(GRID, 3, layer.grid_range)
    x = rng.uniform(-1.7, 1.7, (BATCH, n_in)).astype(np.float32)
    gy = rng.standard_normal((BATCH, n_out)).astype(np.float32)
    y = np.empty((BATCH, n_out), np.float32)  # the padding columns are not stored
    den, gx = np.empty_like(x), np.empty_like(x)
    parts = np.empty((chunks,) + wide.shape, np.float32)
    zeros = (np.float32(0.0),) * width

    def forward() -> None:
        kernels_train.kan_forward_cubic_train(x, table, g0, inv_h, y, chunks, den)

    def backward() -> None:
        kernels_train.kan_backward_cubic(x, den, gy, wide, g0, inv_h, gx, parts, True, zeros)

    layer.backend = "dense"
    xt = torch.from_numpy(x).requires_grad_(True)
    gyt = torch.from_numpy(gy)

    def dense() -> None:
        layer.zero_grad(set_to_none=True)
        layer(xt).backward(gyt)

    with runtime.torch_threads(chunks):
        dense_ms = median_ms(dense, runs)
    return {
        "forward": median_ms(forward, runs),
        "backward": median_ms(backward, runs),
        "pw": f"{pad}/{width}",
        "dense": dense_ms,
    }


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
        "--sizes", default="20x3,20x8,12x12,20x20,29x29,40x40", help="comma list of IxO"
    )
    ap.add_argument(
        "--block", type=int, choices=(4, 8, 16, 32), default=0,
        help="backward output block W (default: kancoin.nets.kan.fused.backward_outputs)",
    )  # fmt: skip
    args = ap.parse_args()
    sizes = parse_sizes(args.sizes)
    if sizes is None:
        ap.error(f"--sizes: expected a comma list of IxO such as 20x20, got {args.sizes!r}")
    import numba

    # a B-spline KAN's thread policy (torch 1 thread, numba every core)
    n_threads = runtime.configure(KanSpec((2, 12, 3), grid_size=GRID), args.threads)
    chunks = max(1, min(numba.get_num_threads(), BATCH // 2048))
    print(f"numba threads {numba.get_num_threads()}, chunks {chunks}, batch {BATCH}, grid {GRID}")
    head = ("I x O", "forward", "backward", "P/W", "dense f+b", "fused/dense")
    print(f"{head[0]:>8} {head[1]:>9} {head[2]:>9} {head[3]:>6} {head[4]:>10} {head[5]:>12}")
    rng = np.random.default_rng(0)
    for n_in, n_out in sizes:
        r = time_layer(n_in, n_out, chunks, args.runs, args.block, rng)
        ratio = (r["forward"] + r["backward"]) / r["dense"]
        print(
            f"{f'{n_in}x{n_out}':>8} {r['forward']:9.2f} {r['backward']:9.2f} {r['pw']:>6}"
            f" {r['dense']:10.2f} {ratio:12.2f}"
        )
    print(f"(ms per call, median of {args.runs}; thread policy for {n_threads} cores)")


if __name__ == "__main__":
    main()
