"""Decoding a latent file's tensors to pixels: numpy only (no torch, no numba).

grids -> features (rows of pixels at a time, bounded memory) -> synthesis KAN -> uint8.

Why numpy alone: a ``kancoin decode`` process spends more time starting numba (its import and
its first cached kernel, ~0.9 s on the 2-vCPU VM) than decoding a 768×512 file; without it
the whole process fits in about a second (docs/speed.md).

Numerics: every value is formed by IEEE-754 additions, multiplications and divisions in a
fixed order, elementwise (no reductions, no BLAS, no library ``exp``, whose last bit varies
between machines and SIMD paths), so a file decodes to the same bits on any machine and at any
thread count. The order of operations is that of the numba decoding kernels
(``kancoin.nets.kan.kernels_decode``), so both agree wherever their ``exp`` agree.
"""

from __future__ import annotations

import decimal
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from kancoin.nets.kan.tables import grid_position, power_matrix_f32
from kancoin.nets.latent.grids import taps

_F32 = np.float32
ROWS_PIXELS = 8192  # pixels per synthesis pass: the temporaries stay in the CPU's cache

# exp: x = (32 n + j) ln 2 / 32 + r, |r| <= ln 2 / 64, exp(x) = 2^n · 2^(j/32) · e^r, e^r by its
# Taylor series to r^5 (error < 3e-15). Every constant is the same float64 on every machine:
# 1/q! and the split of ln 2 / 32 are exact rationals, and 2^(j/32) comes from decimal
# arithmetic (libmpdec, software), rounded once.
_EXP_COEF = tuple(1.0 / float(np.prod(np.arange(1, q + 1, dtype=np.float64))) for q in range(6))
_STEP_HI = 0.693147180369123816490 / 32  # ln 2 / 32 with its low bits cleared: k · it is exact
_STEP_LO = 1.90821492927058770002e-10 / 32
_INV_STEP = 32 * 1.4426950408889634
_ROUND = 6755399441055744.0  # 1.5 · 2^52: v + it − it is v rounded to an integer (|v| < 2^51)


def _exp2_table() -> np.ndarray:
    with decimal.localcontext() as ctx:
        ctx.prec = 40
        return np.array([float(decimal.Decimal(2) ** (decimal.Decimal(j) / 32)) for j in range(32)])


_EXP2_32 = _exp2_table()


def exp32_basic(x: np.ndarray) -> np.ndarray:
    """exp of a float32 array, as float32 (overflow to inf, underflow to 0, NaN stays NaN),
    within rounding of the true value (its float64 value within ~20 units in the last place);
    only basic float64 operations and exact scalings by powers of 2, so the same bits on
    every machine."""
    with np.errstate(over="ignore", invalid="ignore"):  # inf past float32; a NaN's index
        z = np.minimum(np.maximum(x.astype(np.float64), -110.0), 110.0)  # past float32's range
        kb = z * _INV_STEP + _ROUND
        k = kb - _ROUND  # the nearest integer to z / (ln 2 / 32)
        r = (z - k * _STEP_HI) - k * _STEP_LO
        p = r * _EXP_COEF[5] + _EXP_COEF[4]
        for c in _EXP_COEF[3::-1]:
            p *= r
            p += c
        ki = k.astype(np.int64)
        p *= _EXP2_32[ki & 31]
        scale = ((ki >> 5) + 1023) << 52  # 2^n as the bits of a float64 (n in −159 … 159)
        p *= scale.view(np.float64)
        return p.astype(np.float32)


_DROPPED = (1 << 29) - 1  # the float64 mantissa bits a rounding to float32 drops
_HALF = 1 << 28  # those bits at a float32 rounding midpoint
_NEAR = 256  # float64 units in the last place around a midpoint that exp32_basic decides
_MIN_NORMAL = np.float32(2.0**-126)


def exp32(x: np.ndarray) -> np.ndarray:
    """exp of a float32 array, as float32: ``exp32_basic``'s bits, at a fraction of its cost.

    numpy's float64 exp is within a unit or two in the last place on any machine, but which
    unit varies (SIMD paths, libm). Rounded to float32 that can matter only when the value is
    next to a float32 rounding midpoint, so values within 256 units of one (about 1 in 10⁶),
    and those outside float32's normal range, are taken from ``exp32_basic``. Every other value
    rounds to the same float32 on every machine: the correctly rounded one, which is also what
    ``exp32_basic`` gives there."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        e = np.exp(x.astype(np.float64))
        out = e.astype(np.float32)  # past float32's range: inf
    bits = e.view(np.int64)
    near = ((bits + (_NEAR - _HALF)) & _DROPPED) < 2 * _NEAR
    near |= ~(out >= _MIN_NORMAL)  # 0, subnormal or NaN
    near |= out == np.inf
    if near.any():
        out[near] = exp32_basic(x[near])
    return out


def silu32(x: np.ndarray) -> np.ndarray:
    """x / (1 + exp(−x)) in float32, as the decoding kernels form it."""
    with np.errstate(invalid="ignore"):  # −inf / inf: NaN, as the kernels give
        return x / (_F32(1.0) + exp32(-x))  # exp(−x) = inf: −0


def spline_table(base: np.ndarray, coef: np.ndarray, spline_order: int) -> np.ndarray:
    """base (O, I), coef (O, I, G + k) float32 -> table (I, k + 2, n_int + 1, O): rows 0..k the
    power-basis coefficients of each edge on each grid interval, row k + 1 the SiLU weight;
    interval n_int (past the grid) all zero but for that row. Each entry sums over q in order
    (s = 0; s += power[q, p] · coef[c]), as ``kernels_decode.build_table``."""
    k = spline_order
    n_out, n_in, m_coef = coef.shape
    n_int = m_coef + k
    power = power_matrix_f32(k)
    c = np.ascontiguousarray(coef.transpose(1, 2, 0), dtype=np.float32)  # (I, M, O)
    table = np.zeros((n_in, k + 2, n_int + 1, n_out), np.float32)
    for m in range(n_int):
        for p in range(k + 1):
            row = table[:, p, m]
            for q in range(k + 1):
                cc = m - k + q
                if 0 <= cc < m_coef:
                    row += power[q, p] * c[:, cc]
    table[:, k + 1] = np.ascontiguousarray(base.T, dtype=np.float32)[:, None, :]
    return table


def layer_forward(
    x: np.ndarray, table: np.ndarray, spec, silu_weights: np.ndarray | None = None
) -> np.ndarray:
    """One synthesis layer's edge sums: x (I, N) float32 -> (N, O) float32.

    Layout, for speed in numpy: each input's coefficients are gathered as whole rows
    (N, O) (one copy of O values per pixel), and the per-pixel factors t, t², t³, SiLU are
    spread over (N, O) once, so every product and sum runs over contiguous arrays.
    ``silu_weights``: the SiLU weights spread over at least N pixels, (I, ≥ N, O)
    (``spread_silu_weights``; made here if not given)."""
    k = spec.spline_order
    n_in, _, n_rows, n_out = table.shape
    n_int = n_rows - 1
    g0, inv_h = (_F32(v) for v in grid_position(spec.grid_size, k, spec.grid_range))
    n = x.shape[1]
    silus = silu32(x)  # (I, N)
    pos = (x - g0) * inv_h
    inside = (pos >= 0) & (pos < n_int)  # NaN is outside
    ms = np.where(inside, pos, _F32(n_int)).astype(np.intp)  # pos >= 0: truncation floors
    ts = np.where(inside, pos - ms.astype(np.float32), _F32(0.0))
    acc = np.zeros((n, n_out), np.float32)
    rows = np.empty((k + 1, n, n_out), np.float32)
    term = np.empty((n, n_out), np.float32)
    silu = np.empty((n, n_out), np.float32)
    if silu_weights is None or silu_weights.shape[1] < n:
        silu_weights = spread_silu_weights(table, n)
    for i in range(n_in):
        m = ms[i]
        for p in range(k + 1):
            np.take(table[i, p], m, axis=0, out=rows[p], mode="clip")  # m is in range
        te = np.repeat(ts[i], n_out).reshape(n, n_out)
        np.multiply(np.repeat(silus[i], n_out).reshape(n, n_out), silu_weights[i, :n], out=silu)
        if k == 3:  # the cubic kernel's grouping: (((T0 + t T1) + t² T2) + t³ T3) + s·W
            np.multiply(rows[1], te, out=term)
            term += rows[0]
            t2 = te * te
            rows[2] *= t2
            term += rows[2]
            t2 *= te  # t³
            rows[3] *= t2
            term += rows[3]
            term += silu
            acc += term
        else:  # the general kernel: each power on its own into the sum, then s·W
            v = np.ones_like(te)
            for p in range(k + 1):
                acc += v * rows[p]
                v = v * te
            acc += silu
    return acc


def spread_silu_weights(table: np.ndarray, n: int) -> np.ndarray:
    """A layer's SiLU weights (the table's last row) repeated for n pixels: (I, n, O)."""
    w = table[:, -1, 0]  # (I, O): the same on every interval
    return np.ascontiguousarray(np.broadcast_to(w[:, None, :], (w.shape[0], n, w.shape[1])))


def synthesis_tables(
    spec, arrays: list[np.ndarray], n: int = 0
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Per synthesis layer: (table, bias (O,), SiLU weights spread over n pixels or None)
    from the stored tensors (file order)."""
    out = []
    it = iter(arrays[spec.first_grid + spec.levels :])
    for _ in spec.layer_dims():
        base, coef, bias = next(it), next(it), next(it)
        table = spline_table(base, coef, spec.spline_order)
        spread = spread_silu_weights(table, n) if n else None
        out.append((table, np.asarray(bias, np.float32).reshape(-1), spread))
    return out


def synthesize(spec, tables, feats: np.ndarray) -> np.ndarray:
    """feats (L, N) float32 -> outputs (N, C) float32."""
    x = feats
    for j, (table, bias, spread) in enumerate(tables):
        if j:
            x = np.ascontiguousarray(x.T)  # (N, I) -> (I, N): each input's values contiguous
        x = layer_forward(x, table, spec, spread)
        x += bias
    return x


def to_uint8(y: np.ndarray) -> np.ndarray:
    """Outputs float32 -> uint8: clamped to [0, 1], × 255, rounded half to even (as the other
    families' decoders)."""
    return np.rint(np.clip(y, _F32(0), _F32(1)) * _F32(255)).astype(np.uint8)


def _interpolate(src: np.ndarray, idx: np.ndarray, wt: np.ndarray, axis: int) -> np.ndarray:
    """Bicubic along ``axis`` through the 4 taps (``grids.taps``), summed in order
    ((w0 a + w1 b) + w2 c) + w3 d."""
    shape = [1, 1]
    shape[axis] = -1

    def tap(j: int) -> np.ndarray:
        return wt[:, j].reshape(shape) * np.take(src, idx[:, j], axis=axis)

    out = tap(0) + tap(1)
    out += tap(2)
    out += tap(3)
    return out


def decode_threads() -> int:
    """Threads a decode renders with: the CPUs this process may use, at most 4 (numpy releases
    the GIL inside each operation; the pixels do not depend on the count)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(4, n))


def render(spec, arrays: list[np.ndarray], chunk: int = 1 << 16, threads: int = 0) -> np.ndarray:
    """Stored tensors (dequantized, file order) -> uint8 (H, W, C). ``chunk``: at most this
    many pixels' features are held at once per thread (rows of the image); ``threads``: 0, as
    many as ``decode_threads``."""
    h, w = spec.height, spec.width
    first = spec.first_grid
    grids = [np.asarray(a, np.float32) for a in arrays[first : first + spec.levels]]
    # each level interpolated along y once (H × w_l, small); along x per pass of rows
    rows, col_taps = [], []
    for g in grids:
        if g.shape == (h, w):  # already on the pixel grid
            rows.append(g)
            col_taps.append(None)
            continue
        rows.append(_interpolate(g, *taps(h, g.shape[0]), axis=0))
        col_taps.append(taps(w, g.shape[1]))
    out = np.empty((h, w, spec.channels), np.uint8)
    starts = range(0, h, max(1, min(chunk, ROWS_PIXELS) // w))
    threads = min(threads or decode_threads(), len(starts))
    if threads > 1:  # the threads share the chunk's memory
        starts = range(0, h, max(1, min(chunk // threads, ROWS_PIXELS) // w))
    step = starts.step
    tables = synthesis_tables(spec, arrays, min(h, step) * w)

    def band(r0: int) -> None:
        r1 = min(h, r0 + step)
        feats = np.empty((spec.levels, (r1 - r0) * w), np.float32)
        for lv, (r, ct) in enumerate(zip(rows, col_taps, strict=True)):
            part = r[r0:r1] if ct is None else _interpolate(r[r0:r1], *ct, axis=1)
            feats[lv] = part.reshape(-1)
        y = synthesize(spec, tables, feats)  # (N, C)
        out[r0:r1] = to_uint8(y).reshape(r1 - r0, w, spec.channels)

    if threads <= 1:
        for r0 in starts:
            band(r0)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(band, starts))  # list(): re-raises a band's error here
    return out
