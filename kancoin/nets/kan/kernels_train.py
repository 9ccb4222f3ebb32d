"""Training kernels for a fused B-spline KAN layer (numba, CPU float32): the training forward,
the backward and the table's adjoint, and the separable first layer's gather.

The layer's table and the decoding forward are in ``kernels_decode`` (see there for the
layout). The backward kernels use fastmath and one gradient accumulator per chunk; the caller
sums them in chunk order. For cubic layers the training forward keeps 1 + exp(-x) for the
backward, and computes exp in plain float32 arithmetic (within 2e-7 of libm's; decoding keeps
libm's), which LLVM vectorises. The backward works block by block of samples and input by input
on the samples sorted by grid interval, the outputs in blocks of a compile-time width. The
caller may pad O with zero columns (``fused.backward_outputs``).

Layouts (C-contiguous float32): x (N, I), y (N, O), gy (N, O), gx (N, I),
table (I, n_int, k+2, O), gtable_parts (chunks, I, n_int, k+2, O).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from kancoin.nets.kan.kernels_decode import _features, _interval

_F32 = np.float32
# fastmath for the backward kernels without its no-NaN / no-inf assumptions: with them LLVM
# may drop the checks that send a NaN input outside the grid (a diverged fit would index the
# table with int(NaN) instead of getting NaN gradients)
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}


@njit(parallel=True, fastmath=_FAST, error_model="numpy", cache=True)
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

@njit(inline="always", fastmath=_FAST, error_model="numpy", cache=True)
def _silu_and_slope(xi, den):
    """(SiLU(x), SiLU'(x)) from den = 1 + exp(-x), as the forward kept it."""
    sig = _F32(1.0) / den
    return xi * sig, sig * (_F32(1.0) + xi * (_F32(1.0) - sig))

# Samples per block of the training forward: its features (6 arrays of 64 x I) stay in L1.
FORWARD_BLOCK = 64


@intrinsic
def _f32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the low 32 bits of an integer."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if bits.bitwidth > 32:
            value = builder.trunc(value, ir.IntType(32))
        elif bits.bitwidth < 32:
            value = builder.sext(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen


@njit(inline="always", error_model="numpy", cache=True)
def _fast_exp(x):
    """exp(x) in float32 within 1e-7 relative (Cody-Waite reduction to r in [-ln2/2, ln2/2],
    Cephes' expf polynomial, 2^k from its bits), in plain arithmetic that LLVM vectorises:
    libm's expf is a scalar call. x is clamped to [-87.3, 88.3] (no inf, no denormals). For
    training only; decoding keeps libm's exp, so files decode to the same bits as before."""
    x = min(max(x, _F32(-87.3)), _F32(88.3))
    kf = np.floor(x * _F32(1.44269504) + _F32(0.5))
    r = x - kf * _F32(0.693359375) - kf * _F32(-2.12194440e-4)
    p = _F32(1.9875691500e-4) * r + _F32(1.3981999507e-3)
    p = p * r + _F32(8.3334519073e-3)
    p = p * r + _F32(4.1665795894e-2)
    p = p * r + _F32(1.6666665459e-1)
    p = p * r + _F32(5.0000001201e-1)
    p = p * (r * r) + r + _F32(1.0)
    return p * _f32_from_bits((np.int32(kf) + np.int32(127)) << np.int32(23))


@njit(error_model="numpy", cache=True)
def _forward_cubic_train_range(x, table, g0, inv_h, y, den, start, stop):
    """The training forward for samples start..stop, block by block of samples: first the
    features of every (sample, input) pair of the block in one loop that LLVM vectorises
    (1 + exp(-x) with the fast exp, kept in den for the backward; SiLU; interval; t^p), then
    each pair's k+2 rows accumulated. Outside the grid the spline features are 0 and the
    interval is clamped (the base row is the same in every interval). The same sums as the
    decoding forward but for the exp, about 1e-7 apart."""
    n_in = x.shape[1]
    n_int = table.shape[1]
    n_out = table.shape[3]
    n_y = y.shape[1]
    size = FORWARD_BLOCK * n_in
    interval = np.empty(size, np.int32)
    f0 = np.empty(size, np.float32)  # 1 inside the grid, 0 outside
    f1 = np.empty(size, np.float32)  # t
    f2 = np.empty(size, np.float32)  # t^2
    f3 = np.empty(size, np.float32)  # t^3
    f4 = np.empty(size, np.float32)  # SiLU(x)
    acc = np.empty(n_out, np.float32)
    xs = x.ravel()
    dens = den.ravel()
    top = _F32(n_int - 1)
    for b0 in range(start, stop, FORWARD_BLOCK):
        ns = min(FORWARD_BLOCK, stop - b0)
        base = b0 * n_in
        for j in range(ns * n_in):
            xi = xs[base + j]
            d = _F32(1.0) + _fast_exp(-xi)
            dens[base + j] = d
            pos = (xi - g0) * inv_h
            inside = _F32(1.0) if (pos >= _F32(0.0)) & (pos < _F32(n_int)) else _F32(0.0)
            clamped = pos if pos > _F32(0.0) else _F32(0.0)  # NaN -> 0 (min/max keep NaN)
            m = np.int32(clamped if clamped < top else top)
            t = (pos - _F32(m)) * inside
            t2 = t * t
            interval[j] = m
            f0[j] = inside
            f1[j] = t
            f2[j] = t2
            f3[j] = t2 * t
            f4[j] = xi / d
        for jn in range(ns):
            for o in range(n_out):
                acc[o] = 0.0
            for i in range(n_in):
                j = jn * n_in + i
                r = table[i, interval[j]]
                a0, a1, a2, a3, a4 = f0[j], f1[j], f2[j], f3[j], f4[j]
                for o in range(n_out):
                    acc[o] += (
                        a0 * r[0, o] + a1 * r[1, o] + a2 * r[2, o] + a3 * r[3, o]
                    ) + a4 * r[4, o]
            for o in range(n_y):
                y[b0 + jn, o] = acc[o]


@njit(parallel=True, cache=True)
def kan_forward_cubic_train(x, table, g0, inv_h, y, nchunks, den):
    """The training forward of a cubic layer: den (N, I) receives 1 + exp(-x) for the backward,
    which then needs no exp. y (N, O') with O' <= the table's O."""
    n_samples = x.shape[0]
    if (
        y.shape[1] > table.shape[3]
        or y.shape[0] != n_samples
        or x.shape[1] != table.shape[0]
        or den.shape != x.shape
    ):
        raise ValueError("kan_forward_cubic_train: x, table, y and den do not match")
    chunk = (n_samples + nchunks - 1) // nchunks
    for ch in prange(nchunks):
        lo = ch * chunk
        hi = min((ch + 1) * chunk, n_samples)
        _forward_cubic_train_range(x, table, _F32(g0), _F32(inv_h), y, den, lo, hi)


# L2 while each input walks them (1024 measured best of 256..2048; README "Speed").
BACKWARD_BLOCK = 1024
# Widest output block of the cubic backward; its k+2 accumulator rows live in registers.
MAX_BLOCK_OUT = 32


@intrinsic
def _stack_f32(typingctx, size):
    """Scratch of ``size`` (a literal) float32 on the stack. An alloca never aliases an array
    argument, so LLVM can keep it in registers across a loop that reads and writes arrays."""
    if not isinstance(size, types.IntegerLiteral):
        return None
    n = size.literal_value

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_value_type(types.float32), size=n)

    return types.CPointer(types.float32)(size), codegen


@njit(fastmath=_FAST, error_model="numpy", cache=True)
def _backward_cubic_range(x, den, gy, table, g0, inv_h, gx, gt, need_gx, start, stop, width):
    """Gradients for samples start..stop into gt (and gx), block by block of samples.

    In each block, input by input, the samples are counting-sorted by grid interval; each
    interval's k+2 gradient rows are summed over its samples in an accumulator and added to gt
    once. The outputs go in blocks of W = len(width) (a compile-time constant: W in 4, 8, 16,
    32, dividing O), so that the accumulator rows stay in registers rather than being stored
    for every sample: the store traffic was what the sample-by-sample loop spent its time on.
    gy may have fewer columns than the table (the rest are zero): each block copies its rows
    into a zero-padded scratch, in cache for the walks over the inputs.
    """
    w = len(width)
    n_in = x.shape[1]
    n_int = table.shape[1]
    n_out = table.shape[3]
    n_gy = gy.shape[1]
    gt[...] = 0.0
    if stop <= start:
        return
    block = min(BACKWARD_BLOCK, stop - start)
    start_of = np.empty(n_int + 2, np.int64)  # bucket b = m + 1 (0: outside the grid)
    bucket = np.empty(block, np.int64)
    feat = np.empty((block, 3), np.float32)  # t, SiLU(x), SiLU'(x)
    gxb = np.empty(block, np.float32)
    order = np.empty(block, np.int64)
    gyb = np.zeros((block, n_out), np.float32)
    acc = numba.carray(_stack_f32(160), (5, w))  # k + 2 = 5 rows of up to MAX_BLOCK_OUT
    for b0 in range(start, stop, block):
        ns = min(block, stop - b0)
        for j in range(ns):
            for o in range(n_gy):
                gyb[j, o] = gy[b0 + j, o]
        for i in range(n_in):
            start_of[:] = 0
            for j in range(ns):
                xi = x[b0 + j, i]
                m, t = _interval(xi, g0, inv_h, n_int)
                silu, dsilu = _silu_and_slope(xi, den[b0 + j, i])
                bucket[j] = m + 1
                feat[j, 0] = t
                feat[j, 1] = silu
                feat[j, 2] = dsilu
                gxb[j] = 0.0
                start_of[m + 2] += 1
            for b in range(1, n_int + 2):
                start_of[b] += start_of[b - 1]
            for j in range(ns):  # afterwards start_of[b] is the end of bucket b
                b = bucket[j]
                order[start_of[b]] = j
                start_of[b] += 1
            for m in range(n_int):
                lo, hi = start_of[m], start_of[m + 1]
                if lo == hi:
                    continue
                for ob in range(0, n_out, w):
                    for p in range(5):
                        for o in range(w):
                            acc[p, o] = 0.0
                    r1 = table[i, m, 1, ob : ob + w]
                    r2 = table[i, m, 2, ob : ob + w]
                    r3 = table[i, m, 3, ob : ob + w]
                    r4 = table[i, m, 4, ob : ob + w]
                    for idx in range(lo, hi):
                        j = order[idx]
                        t = feat[j, 0]
                        silu = feat[j, 1]
                        dsilu = feat[j, 2]
                        t2 = t * t
                        t3 = t2 * t
                        d2 = _F32(2.0) * t * inv_h
                        d3 = _F32(3.0) * t2 * inv_h
                        g = gyb[j, ob : ob + w]
                        s = _F32(0.0)
                        for o in range(w):
                            go = g[o]
                            acc[0, o] += go
                            acc[1, o] += t * go
                            acc[2, o] += t2 * go
                            acc[3, o] += t3 * go
                            acc[4, o] += silu * go
                            s += go * (inv_h * r1[o] + d2 * r2[o] + d3 * r3[o] + dsilu * r4[o])
                        gxb[j] += s
                    g_im = gt[i, m, :, ob : ob + w]
                    for p in range(5):
                        for o in range(w):
                            g_im[p, o] += acc[p, o]
            # outside the grid only the base branch acts (its weight is row k+1 of interval 0)
            a4 = gt[i, 0, 4]
            r4 = table[i, 0, 4]
            for idx in range(0, start_of[0]):
                j = order[idx]
                silu = feat[j, 1]
                dsilu = feat[j, 2]
                g = gyb[j]
                s = _F32(0.0)
                for o in range(n_out):
                    a4[o] += silu * g[o]
                    s += g[o] * dsilu * r4[o]
                gxb[j] = s
            if need_gx:
                for j in range(ns):
                    gx[b0 + j, i] = gxb[j]


@njit(parallel=True, cache=True)
def kan_backward_cubic(x, den, gy, table, g0, inv_h, gx, gtable_parts, need_gx, width):
    """den (N, I): 1 + exp(-x), kept by the forward. width: a tuple of W float32 zeros, W the
    output block (``kan.backward_outputs``); the table's O must be a multiple of W."""
    n_samples = x.shape[0]
    # the kernels index without bounds checks: refuse shapes they would overrun
    if (
        gy.shape[1] > table.shape[3]
        or table.shape[3] % len(width) != 0
        or len(width) > MAX_BLOCK_OUT
        or gy.shape[0] != n_samples
        or den.shape != x.shape
        or x.shape[1] != table.shape[0]
        or (need_gx and gx.shape != x.shape)
        or gtable_parts.shape[1:] != table.shape
    ):
        raise ValueError("kan_backward_cubic: shapes do not match")
    nchunks = gtable_parts.shape[0]
    chunk = (n_samples + nchunks - 1) // nchunks
    for ch in prange(nchunks):
        lo = ch * chunk
        hi = min((ch + 1) * chunk, n_samples)
        _backward_cubic_range(
            x, den, gy, table, _F32(g0), _F32(inv_h), gx, gtable_parts[ch], need_gx, lo, hi, width
        )


@njit(fastmath=True, cache=True)
def table_grad(gtable_parts, power, g_base, g_coef):
    """Adjoint of build_table, summing the per-chunk parts in order: g_base (I, O) and
    g_coef (I, M, O) from gtable_parts (chunks, I, n_int, k+2, P), P >= O."""
    n_in, m_coef, n_out = g_coef.shape
    k = power.shape[0] - 1
    n_int = gtable_parts.shape[2]
    g_base[...] = 0.0
    g_coef[...] = 0.0
    gt = np.empty(n_out, np.float32)
    for i in range(n_in):
        for m in range(n_int):
            for p in range(k + 2):
                for o in range(n_out):
                    gt[o] = gtable_parts[0, i, m, p, o]
                for ch in range(1, gtable_parts.shape[0]):
                    part = gtable_parts[ch, i, m, p]
                    for o in range(n_out):
                        gt[o] += part[o]
                if p == k + 1:
                    for o in range(n_out):
                        g_base[i, o] += gt[o]
                    continue
                for q in range(k + 1):
                    c = m - k + q
                    if c >= 0 and c < m_coef:
                        w = power[q, p]
                        dst = g_coef[i, c]
                        for o in range(n_out):
                            dst[o] += w * gt[o]


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
