"""The decoding table of a B-spline KAN layer, built without torch (numpy and numba only).

A decoder that never loads torch (the latent family's) evaluates its KAN layers from here; the
torch-side ``splines.spline_table`` builds the same table through the same kernel, so both give
the same bits.
"""

from __future__ import annotations

import numpy as np

from kancoin.errors import KancoinError


def decode_kernels():
    """The decoding kernels (``kernels_decode``). A B-spline KAN on the CPU runs only there:
    where numba cannot load, a clear error, never other arithmetic giving other pixels."""
    try:
        from kancoin.nets.kan import kernels_decode
    except Exception as e:  # ImportError, or numba failing to initialise
        raise KancoinError(
            f"B-spline KANs need numba, which cannot be loaded ({type(e).__name__}: {e}); "
            "reinstall kancoin's dependencies"
        ) from None
    return kernels_decode


def kernel_chunks(n_samples: int) -> int:
    """Chunks a fused kernel splits a batch into: one per numba thread, but not for tiny
    batches (thread start-up would dominate)."""
    import numba

    return max(1, min(numba.get_num_threads(), n_samples // 2048))


def padded_outputs(n_out: int) -> int:
    """Output width the cubic kernels run at. LLVM vectorises their loops over outputs only from
    32 iterations on (16 lanes, unrolled twice); below that they run scalar. So 17..31 outputs
    run at 32 with zero columns: measured faster forward and backward (scripts/bench_kernels.py,
    docs/speed.md), with the same arithmetic per output, hence the same bits."""
    return 32 if 16 < n_out < 32 else n_out


def grid_position(grid_size: int, spline_order: int, grid_range: tuple[float, float]):
    """(g0, 1/h): the extended grid's first knot and inverse knot spacing."""
    lo, hi = grid_range
    h = (hi - lo) / grid_size
    g0 = lo - spline_order * h
    return g0, 1.0 / h


def power_matrix(spline_order: int) -> np.ndarray:
    """A (k+1, k+1) float64: local basis q = sum_p A[q, p] t^p (the recursion of
    ``splines.local_basis``)."""
    from numpy.polynomial import polynomial as P

    nb = [np.array([1.0])]
    for r in range(1, spline_order + 1):
        saved = np.array([0.0])
        new = []
        for q in range(r):
            temp = nb[q] / r
            new.append(P.polyadd(saved, P.polymul([q + 1, -1.0], temp)))
            saved = P.polymul([r - q - 1, 1.0], temp)
        new.append(saved)
        nb = new
    a = np.zeros((spline_order + 1, spline_order + 1))
    for q, poly in enumerate(nb):
        a[q, : len(poly)] = poly
    return a


_POWER_CACHE: dict[int, np.ndarray] = {}


def power_matrix_f32(spline_order: int) -> np.ndarray:
    if spline_order not in _POWER_CACHE:
        _POWER_CACHE[spline_order] = power_matrix(spline_order).astype(np.float32)
    return _POWER_CACHE[spline_order]


def spline_table_np(
    base_weight: np.ndarray, coef: np.ndarray, spline_order: int, padded_out: int = 0
) -> np.ndarray:
    """base_weight (O, I), coef (O, I, G + k) float32 -> table (I, G + 2k, k + 2, P), P =
    max(O, padded_out), the columns past O zero (``splines.spline_table``, without torch)."""
    n_out, n_in, m_coef = coef.shape
    shape = (n_in, m_coef + spline_order, spline_order + 2, max(n_out, padded_out))
    table = np.zeros(shape, np.float32)
    decode_kernels().build_table(
        np.ascontiguousarray(base_weight.T, dtype=np.float32),
        np.ascontiguousarray(coef.transpose(1, 2, 0), dtype=np.float32),
        power_matrix_f32(spline_order),
        table,
    )
    return table


def layer_forward(
    x: np.ndarray,
    table: np.ndarray,
    grid_size: int,
    spline_order: int,
    grid_range: tuple[float, float],
    n_out: int,
) -> np.ndarray:
    """One fused B-spline layer's edge sums, decoding kernels: x (N, I) -> (N, n_out)."""
    kd = decode_kernels()
    g0, inv_h = grid_position(grid_size, spline_order, grid_range)
    y = np.empty((x.shape[0], n_out), np.float32)
    run = kd.kan_forward_cubic if spline_order == 3 else kd.kan_forward
    run(np.ascontiguousarray(x, dtype=np.float32), table, g0, inv_h, y, kernel_chunks(len(x)))
    return y
