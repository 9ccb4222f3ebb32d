"""Fused CPU kernels for a KAN layer (numba).

A B-spline edge of order k is, on each grid interval, a polynomial of degree k in the
fractional position t in [0, 1). So instead of building a dense (batch × inputs × (G+k)) basis
and multiplying by it, the layer is turned (cheaply, once per step, in torch) into a table

    table (I, n_int, k+2, O):  rows p = 0..k  power-basis coefficients of the spline on interval m
                               row  k+1       the SiLU base weight (same for every interval)

and each kernel walks the samples: find the interval, form (1, t, ..., t^k, SiLU(x)), and
accumulate k+2 contiguous rows of O outputs. No basis recursion, no bounds checks per basis,
O(k) work per edge. Inputs outside the extended grid use only the base row (spline is zero).

Numerics: the forward kernel is float32 without fastmath and sums in a fixed order, so decoding
is deterministic and independent of the thread count. The backward kernels (training only) use
fastmath and one gradient accumulator per chunk; the caller sums them in chunk order. For cubic
layers the training forward keeps 1 + exp(-x) for the backward, and the backward of layers with
SORTED_MIN_OUT outputs or more works input by input on the samples sorted by grid interval.
The caller may pad O with zero columns (``kan.padded_outputs``): each output's arithmetic is
the same at any O.

Layouts (C-contiguous float32): x (N, I), y (N, O), gy (N, O), gx (N, I),
table (I, n_int, k+2, O), gtable_parts (chunks, I, n_int, k+2, O).
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


@njit(parallel=True, fastmath=True, cache=True)
def kan_backward(x, gy, table, g0, inv_h, gx, gtable_parts, need_gx):
    """Gradients of sum(gy * y) w.r.t. x (into gx, if need_gx) and the table (per chunk)."""
    n_samples, n_in = x.shape
    n_int = table.shape[1]
    n_rows = table.shape[2]
    k = n_rows - 2
    n_out = table.shape[3]
    g0 = _F32(g0)
    inv_h = _F32(inv_h)
    nchunks = gtable_parts.shape[0]
    chunk = (n_samples + nchunks - 1) // nchunks
    for ch in prange(nchunks):
        tp = np.empty(n_rows, dtype=np.float32)
        dp = np.empty(n_rows, dtype=np.float32)
        g = np.empty(n_out, dtype=np.float32)
        gt = gtable_parts[ch]
        gt[...] = 0.0
        stop = min((ch + 1) * chunk, n_samples)
        for n in range(ch * chunk, stop):
            for o in range(n_out):
                g[o] = gy[n, o]
            for i in range(n_in):
                xi = x[n, i]
                m = _features(xi, g0, inv_h, n_int, k, tp)
                for p in range(n_rows):
                    w = tp[p]
                    for o in range(n_out):
                        gt[i, m, p, o] += w * g[o]
                if need_gx:
                    # d/dx of t^p is p t^(p-1) / h; of SiLU: s (1 + x (1 - s))
                    dp[0] = 0.0
                    for p in range(1, k + 1):
                        dp[p] = _F32(p) * tp[p - 1] * inv_h
                    sig = _F32(1.0) / (_F32(1.0) + _F32(math.exp(-xi)))
                    dp[k + 1] = sig * (_F32(1.0) + xi * (_F32(1.0) - sig))
                    s = _F32(0.0)
                    for p in range(n_rows):
                        d = _F32(0.0)
                        for o in range(n_out):
                            d += table[i, m, p, o] * g[o]
                        s += dp[p] * d
                    gx[n, i] = s


# --- cubic (k = 3, the default) specialisations: scalars instead of small arrays -------------


@njit(inline="always", cache=True)
def _interval(xi, g0, inv_h, n_int):
    """(m, t): grid interval of xi and position in it; m = -1 outside the grid (or NaN)."""
    pos = (xi - g0) * inv_h
    m = -1
    if pos >= 0.0 and pos < n_int:  # also rejects NaN
        m = int(pos)  # pos >= 0 here, so truncation is floor (and much cheaper)
    return m, pos - _F32(m)


@njit(inline="always", fastmath=True, cache=True)
def _silu_and_slope(xi, den):
    """(SiLU(x), SiLU'(x)) from den = 1 + exp(-x), as the forward kept it."""
    sig = _F32(1.0) / den
    return xi * sig, sig * (_F32(1.0) + xi * (_F32(1.0) - sig))


@njit(cache=True)
def _forward_cubic_range(x, table, g0, inv_h, y, den, store_den, start, stop):
    n_in = x.shape[1]
    n_int = table.shape[1]
    n_out = table.shape[3]
    acc = np.empty(n_out, dtype=np.float32)
    for n in range(start, stop):
        for o in range(n_out):
            acc[o] = 0.0
        for i in range(n_in):
            xi = x[n, i]
            d = _F32(1.0) + _F32(math.exp(-xi))
            if store_den:
                den[n, i] = d
            silu = xi / d
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
        for o in range(n_out):
            y[n, o] = acc[o]


@njit(parallel=True, cache=True)
def kan_forward_cubic(x, table, g0, inv_h, y, nchunks, den):
    """Forward; with den of shape (N, I) (training) it also keeps 1 + exp(-x) for the backward,
    which then needs no exp. den of shape (0, 0): not kept (decoding). Same arithmetic either way.
    """
    # prange bodies are outlined and lose vectorisation: keep the hot loop in its own function.
    n_samples = x.shape[0]
    store_den = den.shape[0] == n_samples and n_samples > 0
    chunk = (n_samples + nchunks - 1) // nchunks
    for ch in prange(nchunks):
        _forward_cubic_range(
            x,
            table,
            _F32(g0),
            _F32(inv_h),
            y,
            den,
            store_den,
            ch * chunk,
            min((ch + 1) * chunk, n_samples),
        )


@njit(fastmath=True, cache=True)
def _backward_cubic_range(x, den, gy, table, g0, inv_h, gx, gt, need_gx, start, stop):
    """Sample by sample: scatter-adds k+2 gradient rows per (sample, input). For narrow layers."""
    n_in = x.shape[1]
    n_int = table.shape[1]
    n_out = table.shape[3]
    gt[...] = 0.0
    for n in range(start, stop):
        g = gy[n]
        for i in range(n_in):
            xi = x[n, i]
            silu, dsilu = _silu_and_slope(xi, den[n, i])
            m, t = _interval(xi, g0, inv_h, n_int)
            s = _F32(0.0)
            if m >= 0:
                t2 = t * t
                t3 = t2 * t
                d2 = _F32(2.0) * t * inv_h
                d3 = _F32(3.0) * t2 * inv_h
                for o in range(n_out):
                    go = g[o]
                    gt[i, m, 0, o] += go
                    gt[i, m, 1, o] += t * go
                    gt[i, m, 2, o] += t2 * go
                    gt[i, m, 3, o] += t3 * go
                    gt[i, m, 4, o] += silu * go
                    s += go * (
                        inv_h * table[i, m, 1, o]
                        + d2 * table[i, m, 2, o]
                        + d3 * table[i, m, 3, o]
                        + dsilu * table[i, m, 4, o]
                    )
            else:
                for o in range(n_out):
                    gt[i, 0, 4, o] += silu * g[o]
                    s += g[o] * dsilu * table[i, 0, 4, o]
            if need_gx:
                gx[n, i] = s


@njit(fastmath=True, cache=True)
def _backward_cubic_sorted_range(x, den, gy, table, g0, inv_h, gx, gt, need_gx, start, stop):
    """Input by input: the samples are counting-sorted by grid interval, and each interval's
    k+2 gradient rows are summed in one small accumulator and written once. Scattered
    read-modify-writes into a table larger than L1 are what the sample-by-sample loop
    spends its time on (1.8-2.3x slower from 4 outputs up; scripts/bench_kernels.py)."""
    n_in = x.shape[1]
    n_int = table.shape[1]
    n_out = table.shape[3]
    ns = stop - start
    start_of = np.empty(n_int + 2, np.int64)  # bucket b = m + 1 (0: outside the grid)
    bucket = np.empty(ns, np.int64)
    frac = np.empty(ns, np.float32)
    order = np.empty(ns, np.int64)
    acc = np.empty((5, n_out), np.float32)
    for i in range(n_in):
        start_of[:] = 0
        for j in range(ns):
            m, t = _interval(x[start + j, i], g0, inv_h, n_int)
            bucket[j] = m + 1
            frac[j] = t
            start_of[m + 2] += 1
        for b in range(1, n_int + 2):
            start_of[b] += start_of[b - 1]
        for j in range(ns):  # afterwards start_of[b] is the end of bucket b
            b = bucket[j]
            order[start_of[b]] = j
            start_of[b] += 1
        for m in range(n_int):
            acc[...] = 0.0
            a0, a1, a2, a3, a4 = acc[0], acc[1], acc[2], acc[3], acc[4]
            r1, r2, r3, r4 = table[i, m, 1], table[i, m, 2], table[i, m, 3], table[i, m, 4]
            for idx in range(start_of[m], start_of[m + 1]):
                j = order[idx]
                n = start + j
                xi = x[n, i]
                silu, dsilu = _silu_and_slope(xi, den[n, i])
                t = frac[j]
                t2 = t * t
                t3 = t2 * t
                d2 = _F32(2.0) * t * inv_h
                d3 = _F32(3.0) * t2 * inv_h
                g = gy[n]
                s = _F32(0.0)
                for o in range(n_out):
                    go = g[o]
                    a0[o] += go
                    a1[o] += t * go
                    a2[o] += t2 * go
                    a3[o] += t3 * go
                    a4[o] += silu * go
                    s += go * (inv_h * r1[o] + d2 * r2[o] + d3 * r3[o] + dsilu * r4[o])
                if need_gx:
                    gx[n, i] = s
            gt[i, m] = acc
        # outside the grid only the base branch acts (its weight is row k+1 of interval 0)
        a4 = gt[i, 0, 4]
        r4 = table[i, 0, 4]
        for idx in range(0, start_of[0]):
            n = start + order[idx]
            xi = x[n, i]
            silu, dsilu = _silu_and_slope(xi, den[n, i])
            g = gy[n]
            s = _F32(0.0)
            for o in range(n_out):
                a4[o] += silu * g[o]
                s += g[o] * dsilu * r4[o]
            if need_gx:
                gx[n, i] = s


# Layers with at least this many outputs take the sorted backward (README, "Speed").
SORTED_MIN_OUT = 4


@njit(parallel=True, cache=True)
def kan_backward_cubic(x, den, gy, table, g0, inv_h, gx, gtable_parts, need_gx, sorted_):
    """den (N, I): 1 + exp(-x), kept by the forward."""
    n_samples = x.shape[0]
    nchunks = gtable_parts.shape[0]
    chunk = (n_samples + nchunks - 1) // nchunks
    for ch in prange(nchunks):
        lo = ch * chunk
        hi = min((ch + 1) * chunk, n_samples)
        if sorted_:
            _backward_cubic_sorted_range(
                x, den, gy, table, _F32(g0), _F32(inv_h), gx, gtable_parts[ch], need_gx, lo, hi
            )
        else:
            _backward_cubic_range(
                x, den, gy, table, _F32(g0), _F32(inv_h), gx, gtable_parts[ch], need_gx, lo, hi
            )


# --- the table: coefficients <-> per-interval polynomials -------------------------------------


@njit(cache=True)
def build_table(base_weight, coef, power, table):
    """base_weight (O, I), coef (O, I, M), power (k+1, k+1) -> table (I, n_int, k+2, O)."""
    n_out, n_in, m_coef = coef.shape
    k = power.shape[0] - 1
    n_int = table.shape[1]
    for i in range(n_in):
        for m in range(n_int):
            for o in range(n_out):
                for p in range(k + 1):
                    s = _F32(0.0)
                    for q in range(k + 1):
                        c = m - k + q
                        if c >= 0 and c < m_coef:
                            s += power[q, p] * coef[o, i, c]
                    table[i, m, p, o] = s
                table[i, m, k + 1, o] = base_weight[o, i]


@njit(cache=True)
def table_grad(gtable_parts, power, g_base, g_coef):
    """Adjoint of build_table, summing the per-chunk parts in order."""
    n_out, n_in, m_coef = g_coef.shape
    k = power.shape[0] - 1
    n_int = gtable_parts.shape[2]
    g_base[...] = 0.0
    g_coef[...] = 0.0
    gt = gtable_parts[0].copy()
    for ch in range(1, gtable_parts.shape[0]):
        gt += gtable_parts[ch]
    for i in range(n_in):
        for m in range(n_int):
            for o in range(n_out):
                g_base[o, i] += gt[i, m, k + 1, o]
                for q in range(k + 1):
                    c = m - k + q
                    if c >= 0 and c < m_coef:
                        s = _F32(0.0)
                        for p in range(k + 1):
                            s += power[q, p] * gt[i, m, p, o]
                        g_coef[o, i, c] += s


# --- the separable first layer on the pixel grid: h[n] = term_x[col[n]] + term_y[row[n]] --------


@njit(parallel=True, cache=True)
def grid_sum_forward(tx, ty, idx, width, h, nchunks):
    """tx (W, O), ty (H, O), idx (N,) row-major pixel indices -> h (N, O)."""
    n_samples = idx.shape[0]
    n_out = tx.shape[1]
    chunk = (n_samples + nchunks - 1) // nchunks
    for ch in prange(nchunks):
        for n in range(ch * chunk, min((ch + 1) * chunk, n_samples)):
            r = idx[n] // width
            c = idx[n] - r * width
            for o in range(n_out):
                h[n, o] = tx[c, o] + ty[r, o]


@njit(parallel=True, fastmath=True, cache=True)
def grid_sum_backward(gh, idx, width, gtx_parts, gty_parts):
    """Adjoint of grid_sum_forward, one (W, O) / (H, O) accumulator per chunk."""
    n_samples = idx.shape[0]
    n_out = gh.shape[1]
    nchunks = gtx_parts.shape[0]
    chunk = (n_samples + nchunks - 1) // nchunks
    for ch in prange(nchunks):
        gtx = gtx_parts[ch]
        gty = gty_parts[ch]
        gtx[...] = 0.0
        gty[...] = 0.0
        for n in range(ch * chunk, min((ch + 1) * chunk, n_samples)):
            r = idx[n] // width
            c = idx[n] - r * width
            for o in range(n_out):
                g = gh[n, o]
                gtx[c, o] += g
                gty[r, o] += g
