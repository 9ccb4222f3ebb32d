"""Decoding kernels for a fused B-spline KAN layer (numba, CPU float32): forward only.

A B-spline edge of order k is, on each grid interval, a polynomial of degree k in the
fractional position t in [0, 1). So instead of building a dense (batch × inputs × (G+k)) basis
and multiplying by it, the layer is turned (once) into a table

    table (I, n_int, k+2, O):  rows p = 0..k  power-basis coefficients of the spline on interval m
                               row  k+1       the SiLU base weight (same for every interval)

and each kernel walks the samples: find the interval, form (1, t, ..., t^k, SiLU(x)), and
accumulate k+2 contiguous rows of O outputs. No basis recursion, no bounds checks per basis,
O(k) work per edge. Inputs outside the extended grid use only the base row (spline is zero).

Numerics: float32 without fastmath, libm's exp, sums in a fixed order, one sample per thread's
range: what a file decodes to is deterministic and independent of the thread count (the golden
files pin these bits). This module holds only what decoding runs; the training kernels
(``kernels_train``) reuse its table and interval helpers. The caller may pad O with zero
columns (``splines.padded_outputs``): each output's arithmetic is the same at any O.

Layouts (C-contiguous float32): x (N, I), y (N, O'), O' <= O, table (I, n_int, k+2, O).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

_F32 = np.float32

@njit(inline="always", cache=True)
def _features(xi, g0, inv_h, n_int, k, tp):
    """Fill tp[0..k] = t^p (0 outside the grid) and tp[k+1] = SiLU(x); return the interval."""
    silu = xi / (_F32(1.0) + _F32(math.exp(-xi)))
    tp[k + 1] = silu
    pos = (xi - g0) * inv_h
    m = -1
    if pos >= 0.0 and pos < n_int:  # also rejects NaN
        m = int(pos)  # pos >= 0 here, so truncation is floor (and much cheaper)
        if m >= n_int:  # float rounding at the upper edge
            m = -1
    if m < 0:
        for p in range(k + 1):
            tp[p] = 0.0
        return 0
    t = pos - _F32(m)
    v = _F32(1.0)
    for p in range(k + 1):
        tp[p] = v
        v = v * t
    return m


@njit(parallel=True, cache=True)
def kan_forward(x, table, g0, inv_h, y, nchunks):
    n_samples, n_in = x.shape
    n_int = table.shape[1]
    n_rows = table.shape[2]
    k = n_rows - 2
    n_out = table.shape[3]
    g0 = _F32(g0)
    inv_h = _F32(inv_h)
    chunk = (n_samples + nchunks - 1) // nchunks
    for ch in prange(nchunks):
        tp = np.empty(n_rows, dtype=np.float32)
        acc = np.empty(n_out, dtype=np.float32)
        stop = min((ch + 1) * chunk, n_samples)
        for n in range(ch * chunk, stop):
            for o in range(n_out):
                acc[o] = 0.0
            for i in range(n_in):
                m = _features(x[n, i], g0, inv_h, n_int, k, tp)
                for p in range(n_rows):
                    w = tp[p]
                    for o in range(n_out):
                        acc[o] += w * table[i, m, p, o]
            for o in range(n_out):
                y[n, o] = acc[o]


@njit(inline="always", cache=True)
def _interval(xi, g0, inv_h, n_int):
    """(m, t): grid interval of xi and position in it; m = -1 outside the grid (or NaN)."""
    pos = (xi - g0) * inv_h
    m = -1
    if pos >= 0.0 and pos < n_int:  # also rejects NaN
        m = int(pos)  # pos >= 0 here, so truncation is floor (and much cheaper)
    return m, pos - _F32(m)


@njit(cache=True)
def _forward_cubic_range(x, table, g0, inv_h, y, start, stop):
    """The decoding forward: libm's exp, a fixed order of operations (the bits files decode to)."""
    n_in = x.shape[1]
    n_int = table.shape[1]
    n_out = table.shape[3]
    n_y = y.shape[1]  # <= n_out: the padding columns are not written
    acc = np.empty(n_out, dtype=np.float32)
    for n in range(start, stop):
        for o in range(n_out):
            acc[o] = 0.0
        for i in range(n_in):
            xi = x[n, i]
            silu = xi / (_F32(1.0) + _F32(math.exp(-xi)))
            m, t = _interval(xi, g0, inv_h, n_int)
            if m >= 0:
                t2 = t * t
                t3 = t2 * t
                for o in range(n_out):
                    acc[o] += (
                        table[i, m, 0, o]
                        + t * table[i, m, 1, o]
                        + t2 * table[i, m, 2, o]
                        + t3 * table[i, m, 3, o]
                    ) + silu * table[i, m, 4, o]
            else:
                for o in range(n_out):
                    acc[o] += silu * table[i, 0, 4, o]
        for o in range(n_y):
            y[n, o] = acc[o]



@njit(parallel=True, cache=True)
def kan_forward_cubic(x, table, g0, inv_h, y, nchunks):
    """The decoding forward of a cubic layer. y (N, O') with O' <= the table's O: a padded
    table's zero columns are computed, not stored."""
    # prange bodies are outlined and lose vectorisation: keep the hot loops in functions.
    n_samples = x.shape[0]
    if y.shape[1] > table.shape[3] or y.shape[0] != n_samples or x.shape[1] != table.shape[0]:
        raise ValueError("kan_forward_cubic: x, table and y do not match")
    chunk = (n_samples + nchunks - 1) // nchunks
    for ch in prange(nchunks):
        lo = ch * chunk
        hi = min((ch + 1) * chunk, n_samples)
        _forward_cubic_range(x, table, _F32(g0), _F32(inv_h), y, lo, hi)


# --- the table: coefficients <-> per-interval polynomials -------------------------------------


@njit(cache=True)
def build_table(base_weight, coef, power, table):
    """base_weight (I, O), coef (I, M, O), power (k+1, k+1) -> table (I, n_int, k+2, P), P >= O
    (columns past O are left as they are). Each entry sums over q in order, as
    s = 0; s += power[q, p] * coef[.., c] for each valid c: the bits decoding depends on."""
    n_in, m_coef, n_out = coef.shape
    k = power.shape[0] - 1
    n_int = table.shape[1]
    for i in range(n_in):
        for m in range(n_int):
            for p in range(k + 1):
                row = table[i, m, p]
                for o in range(n_out):
                    row[o] = 0.0
                for q in range(k + 1):
                    c = m - k + q
                    if c >= 0 and c < m_coef:
                        w = power[q, p]
                        src = coef[i, c]
                        for o in range(n_out):
                            row[o] += w * src[o]
            row = table[i, m, k + 1]
            for o in range(n_out):
                row[o] = base_weight[i, o]

