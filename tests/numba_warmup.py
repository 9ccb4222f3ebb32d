"""Compile the suite's numba kernels in a second process, on the core the tests leave idle.

In a clean checkout the kernels (``cache=True``) compile on first use, one after the other in
the test process: a good part of a first run's time. conftest starts this script when a run of
the whole suite starts; it calls each kernel once on tiny arrays of the types the layers pass
(so that numba compiles, and caches, the specialisation the tests run), in the order of
conftest.KERNEL_ORDER: while it compiles, the test process collects, runs the test files that
need no kernel, then those whose kernels are compiled by then, and finds them in numba's cache.
Where both get to a kernel, each compiles it (as without this script). The process runs only
on otherwise idle CPU time (SCHED_IDLE, else nice 19) and checks nothing: a kernel missed here
is compiled by the test that runs it, and a warm cache makes this a load of what is there.
``python tests/numba_warmup.py`` runs it alone.
"""

from __future__ import annotations

import os


def _idle() -> None:
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.nice(19)
        except OSError:
            pass


def warm() -> None:
    import numpy as np

    from kancoin.nets.kan import fused, kernels_decode, kernels_train
    from kancoin.nets.kan.splines import grid_position, power_matrix_f32

    f32 = np.float32
    n, n_in, grid = 16, 2, 5
    x = np.linspace(-1.2, 1.2, n * n_in, dtype=f32).reshape(n, n_in)
    den = (1.0 + np.exp(-x)).astype(f32)
    g0, inv_h = grid_position(grid, 3, (-1.0, 1.0))

    def cubic_backward(n_out: int) -> None:
        """The cubic backward at the output block the layers use for ``n_out`` outputs."""
        pad, width = fused.backward_outputs(n_out)
        table = np.zeros((n_in, grid + 3, 5, pad), f32)
        gy = np.zeros((n, n_out), f32)
        parts = np.zeros((1, *table.shape), f32)
        kernels_train.kan_backward_cubic(
            x, den, gy, table, g0, inv_h, np.zeros_like(x), parts, True, (f32(0),) * width
        )

    def other_order(k: int) -> None:
        """The kernels of non-cubic B-spline layers (one forward, one backward)."""
        g0k, inv_hk = grid_position(grid, k, (-1.0, 1.0))
        table = np.zeros((n_in, grid + 2 * k, k + 2, 3), f32)
        kernels_decode.kan_forward(x, table, g0k, inv_hk, np.zeros((n, 3), f32), 1)
        parts = np.zeros((1, *table.shape), f32)
        gy = np.zeros((n, 3), f32)
        kernels_train.kan_backward(x, gy, table, g0k, inv_hk, np.zeros_like(x), parts, True)

    def grid_sums() -> None:
        tx, ty = np.zeros((4, 3), f32), np.zeros((4, 3), f32)
        idx = np.arange(n, dtype=np.int64)
        h = np.zeros((n, 3), f32)
        kernels_train.grid_sum_forward(tx, ty, idx, 4, h, 1)
        kernels_train.grid_sum_backward(h, idx, 4, tx[None].copy(), ty[None].copy())

    def core() -> None:
        """The table build, the training and decoding forwards, the table's adjoint."""
        table = np.zeros((n_in, grid + 3, 5, 4), f32)
        coef = np.zeros((n_in, grid + 3, 4), f32)
        kernels_decode.build_table(np.zeros((n_in, 4), f32), coef, power_matrix_f32(3), table)
        y = np.zeros((n, 4), f32)
        kernels_train.kan_forward_cubic_train(x, table, g0, inv_h, y, 1, den.copy())
        kernels_decode.kan_forward_cubic(x, table, g0, inv_h, y, 1)
        parts = np.zeros((1, *table.shape), f32)
        kernels_train.table_grad(parts, power_matrix_f32(3), np.zeros((n_in, 4), f32), coef)

    # in the order of conftest.KERNEL_ORDER: the core, 4-wide blocks and gathers; 8-wide blocks;
    # 16-wide, 32-wide; the other orders
    for step in (
        core,
        lambda: cubic_backward(3),  # 4-wide blocks (1..4 outputs)
        grid_sums,
        lambda: cubic_backward(8),  # 8-wide blocks (5..8 outputs)
        lambda: cubic_backward(12),  # 16-wide blocks (9..16 outputs, and past 32)
        lambda: cubic_backward(20),  # one 32-wide block (17..32 outputs)
        lambda: other_order(1),
    ):
        try:
            step()
        except Exception:  # noqa: BLE001 - a changed kernel: the tests compile what they run
            pass


if __name__ == "__main__":
    _idle()
    warm()
