"""Decoding a latent file's tensors to pixels: numpy alone (no torch, no numba).

grids -> features (rows of pixels at a time, bounded memory) -> synthesis (KAN or MLP) -> uint8.
An MLP synthesis in fixed point (format 10 on) runs in ``fixed``; the rest is here.

Why numpy: a ``kancoin decode`` process spent more time starting numba (its import and its
first cached kernel, ~0.9 s on the 2-vCPU VM) than decoding a 768×512 file. Where numba is
loaded already (an encode, an eval) a KAN synthesis runs in ``kernels`` instead, which forms
every value the same way, about 2.5× faster; both give the same bits (tests).

Numerics: every value is formed by IEEE-754 additions, multiplications and divisions in a
fixed order, elementwise (no reductions, no BLAS but ``fixed``'s exact integer products, and a
library ``exp`` only where its last bit cannot matter: ``exp32``), so a file decodes to the
same bits on any machine and at any thread count. The order of operations is that of the KAN
family's numba decoding kernels (``kancoin.nets.kan.kernels_decode``), so files decode to the
pixels they did with those wherever libm's float32 exp was correctly rounded (all 120 Kodak
files of docs/results, and the golden files).
"""

from __future__ import annotations

import decimal
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from kancoin.nets.kan.tables import grid_position, power_matrix_f32
from kancoin.nets.latent.fixed import fixed_layers, fixed_synthesize
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


def exp64_basic(z: np.ndarray, bound: float = 700.0) -> np.ndarray:
    """exp of a float64 array clamped to [−bound, bound] (bound ≤ 700), as float64 within
    ~20 units in the last place: only basic float64 operations and exact scalings by powers
    of 2, so the same bits on every machine (NaN stays NaN)."""
    with np.errstate(invalid="ignore"):  # a NaN's index
        z = np.minimum(np.maximum(z, -bound), bound)
        kb = z * _INV_STEP + _ROUND
        k = kb - _ROUND  # the nearest integer to z / (ln 2 / 32)
        r = (z - k * _STEP_HI) - k * _STEP_LO
        p = r * _EXP_COEF[5] + _EXP_COEF[4]
        for c in _EXP_COEF[3::-1]:
            p *= r
            p += c
        ki = k.astype(np.int64)
        p *= _EXP2_32[ki & 31]
        scale = ((ki >> 5) + 1023) << 52  # 2^n as the bits of a float64 (|n| ≤ 1011)
        p *= scale.view(np.float64)
        return p


def exp32_basic(x: np.ndarray) -> np.ndarray:
    """exp of a float32 array, as float32 (overflow to inf, underflow to 0, NaN stays NaN),
    within rounding of the true value (its float64 value within ~20 units in the last place);
    only basic float64 operations and exact scalings by powers of 2, so the same bits on
    every machine."""
    with np.errstate(over="ignore"):  # inf past float32
        # past float32's range either way: ±110 keeps 2^n a normal float64 of few bits
        return exp64_basic(x.astype(np.float64), 110.0).astype(np.float32)


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


_GELU_CUBIC = _F32(0.044715)
_GELU_SCALE = _F32(2.0 * np.sqrt(2.0 / np.pi))


def gelu32(x: np.ndarray) -> np.ndarray:
    """GELU in its tanh form, 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))), written as
    x / (1 + exp(−u)) with u = 2√(2/π) (x + 0.044715 x³) (the same function), in float32:
    u = (((x · x) · x) · 0.044715 + x) · 2√(2/π), then as ``silu32``."""
    with np.errstate(over="ignore", invalid="ignore"):  # x³ past float32: ±inf, as u's sign
        u = x * x
        u *= x
        u *= _GELU_CUBIC
        u += x
        u *= _GELU_SCALE
        return x / (_F32(1.0) + exp32(-u))


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


NARROW = 8  # layers with fewer outputs run with the pixels as the inner dimension (faster)


@dataclass
class Layer:
    """One synthesis layer, ready for ``layer_forward``."""

    table: np.ndarray  # (I, k + 2, n_int + 1, O), ``spline_table``
    bias: np.ndarray  # (O, 1)
    prepared: np.ndarray | None  # wide layers: the SiLU weights spread over the pixels,
    # (I, ≥ N, O) (None where the numba synthesis runs: n = 0); narrow ones: each interval's
    # k + 1 coefficient rows side by side, (I, n_int + 1, (k + 1)·O)

    @classmethod
    def build(cls, base, coef, bias, spline_order: int, n: int) -> Layer:
        """The layer from its stored tensors, for up to n pixels at once in ``layer_forward``
        (n = 0: for the numba synthesis, which needs the table alone)."""
        table = spline_table(base, coef, spline_order)
        n_in, _, n_rows, n_out = table.shape
        if not n:
            prepared = None
        elif n_out < NARROW:
            rows = table[:, : spline_order + 1].transpose(0, 2, 1, 3)
            prepared = np.ascontiguousarray(rows).reshape(n_in, n_rows, -1)
        else:
            w = table[:, -1, 0]  # (I, O): the same on every interval
            prepared = np.ascontiguousarray(np.broadcast_to(w[:, None], (n_in, n, n_out)))
        return cls(table, np.asarray(bias, np.float32).reshape(-1, 1), prepared)


def layer_forward(x: np.ndarray, layer: Layer, spec) -> np.ndarray:
    """One synthesis layer, bias included: x (I, N) float32 -> (O, N) float32.

    Every value is formed as the cubic decoding kernel forms it: for each input in order,
    acc += (((T0 + t T1) + t² T2) + t³ T3) + s·W, T the coefficients of its interval, t the
    position in it, s its SiLU (other spline orders: each power into acc on its own). Layouts
    for speed in numpy: a wide layer gathers each input's coefficients as rows (N, O) and
    spreads t and s over (N, O), so every operation runs over contiguous arrays; a narrow one
    gathers all k + 1 rows at once and computes on their transposes, pixels inner."""
    k = spec.spline_order
    table = layer.table
    n_in, _, n_rows, n_out = table.shape
    n_int = n_rows - 1
    g0, inv_h = (_F32(v) for v in grid_position(spec.grid_size, k, spec.grid_range))
    n = x.shape[1]
    silus = silu32(x)  # (I, N)
    pos = (x - g0) * inv_h
    inside = (pos >= 0) & (pos < n_int)  # NaN is outside
    ms = np.where(inside, pos, _F32(n_int)).astype(np.intp)  # pos >= 0: truncation floors
    ts = np.where(inside, pos - ms.astype(np.float32), _F32(0.0))
    narrow = n_out < NARROW
    shape = (n_out, n) if narrow else (n, n_out)
    acc = np.zeros(shape, np.float32)
    term = np.empty(shape, np.float32)
    silu = np.empty(shape, np.float32)
    # products of the (strided) gathered rows go into C-ordered buffers: a product numpy
    # allocates follows its input's layout, and mixing layouts is several times slower
    prod = np.empty(shape, np.float32)
    if narrow:
        gathered = np.empty((n, (k + 1) * n_out), np.float32)
        weights = table[:, k + 1, 0][:, :, None]  # (I, O, 1)
    else:
        gathered = np.empty((k + 1, n, n_out), np.float32)
        if layer.prepared is None or layer.prepared.shape[1] < n:
            raise ValueError("layer_forward: the layer was built for fewer pixels")
    for i in range(n_in):
        if narrow:
            np.take(layer.prepared[i], ms[i], axis=0, out=gathered, mode="clip")  # m in range
            rows = gathered.T.reshape(k + 1, n_out, n)  # views, pixels inner
            t = ts[i]
            np.multiply(weights[i], silus[i], out=silu)
        else:
            for p in range(k + 1):
                np.take(table[i, p], ms[i], axis=0, out=gathered[p], mode="clip")
            rows = gathered
            t = np.repeat(ts[i], n_out).reshape(n, n_out)
            np.multiply(np.repeat(silus[i], n_out).reshape(n, n_out), layer.prepared[i, :n],
                        out=silu)  # fmt: skip
        if k == 3:  # the cubic kernel's grouping
            np.multiply(rows[1], t, out=term)
            term += rows[0]
            t2 = t * t
            term += np.multiply(rows[2], t2, out=prod)
            t2 *= t  # t³
            term += np.multiply(rows[3], t2, out=prod)
            term += silu
            acc += term
        else:  # the general kernel
            v = np.ones_like(t)
            for p in range(k + 1):
                acc += np.multiply(v, rows[p], out=prod)
                v = v * t
            acc += silu
    out = acc if narrow else np.ascontiguousarray(acc.T)
    out += layer.bias
    return out


@dataclass
class Dense:
    """One layer of the MLP synthesis, ready for ``dense_forward``."""

    weight: np.ndarray  # (O, I, 1) float32: column i broadcasts over the pixels
    bias: np.ndarray  # (O, 1) float32
    hidden: bool  # a hidden layer: GELU after it (``gelu32``)


def dense_forward(x: np.ndarray, layer: Dense) -> np.ndarray:
    """One MLP layer: x (I, N) float32 -> (O, N) float32. Every output is formed in the same
    order, (((w0 x0 + w1 x1) + w2 x2) + …) + b, then in a hidden layer its GELU
    (``gelu32``): separate float32 multiplications and additions, elementwise (no matrix
    product, whose summation order depends on the BLAS and the machine), so the same bits
    everywhere."""
    n_in = x.shape[0]
    acc = np.multiply(layer.weight[:, 0], x[0])  # (O, 1) × (N,) -> (O, N)
    prod = np.empty_like(acc)
    for i in range(1, n_in):
        acc += np.multiply(layer.weight[:, i], x[i], out=prod)
    acc += layer.bias
    return gelu32(acc) if layer.hidden else acc


def synthesis_layers(spec, arrays: list[np.ndarray], n: int) -> list:
    """The synthesis's layers from the stored tensors (file order), for up to n pixels at once
    (a fixed-point MLP's: ``fixed``)."""
    if spec.mlp and spec.fixed_frac:
        return fixed_layers(spec, arrays)
    out: list[Layer | Dense] = []
    it = iter(arrays[spec.first_grid + spec.levels :])
    dims = spec.layer_dims()
    for j, _ in enumerate(dims):
        if spec.mlp:
            weight, bias = next(it), next(it)
            out.append(Dense(np.asarray(weight, np.float32)[:, :, None],
                             np.asarray(bias, np.float32).reshape(-1, 1), j < len(dims) - 1))
            continue
        base, coef, bias = next(it), next(it), next(it)
        out.append(Layer.build(base, coef, bias, spec.spline_order, n))
    return out


KERNELS = "auto"  # the synthesis's code: "numpy", "numba", or "auto" (numba where loaded)


def numba_kernels():
    """The numba synthesis (``kernels``, the same bits, faster) if ``KERNELS`` asks for it or,
    on "auto", this process has numba loaded already (starting it costs more than a numpy
    decode); else None."""
    if KERNELS == "numpy" or (KERNELS == "auto" and "numba" not in sys.modules):
        return None
    try:
        from kancoin.nets.latent import kernels
    except Exception:  # noqa: BLE001 - numba unusable here: numpy gives the same bits
        if KERNELS == "numba":
            raise
        return None
    return kernels


def synthesize(spec, layers: list, feats: np.ndarray, kernels=None) -> np.ndarray:
    """feats (L, N) float32 -> outputs (C, N) float32 (float64 from a fixed-point MLP);
    ``kernels``: the numba synthesis of a KAN (``numba_kernels()``), or None for numpy (an
    MLP's always runs in numpy)."""
    if spec.mlp and spec.fixed_frac:
        return fixed_synthesize(layers, feats, spec.fixed_frac)
    x = feats
    if spec.mlp:
        for layer in layers:
            x = dense_forward(x, layer)
        return x
    g0, inv_h = grid_position(spec.grid_size, spec.spline_order, spec.grid_range)
    for layer in layers:
        if kernels is None:
            x = layer_forward(x, layer, spec)
        else:
            y = np.empty((layer.table.shape[-1], x.shape[1]), np.float32)
            kernels.layer_forward(x, layer.table, g0, inv_h, layer.bias[:, 0], y)
            x = y
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


THREADS = 0  # threads a decode renders with; 0: ``decode_threads()`` (benchmarks set it)


def decode_threads() -> int:
    """Threads a decode renders with: ``THREADS``, or the CPUs this process may use, at most 4
    (numpy releases the GIL inside each operation; the pixels do not depend on the count)."""
    if THREADS:
        return THREADS
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(4, n))


def _bands(h: int, w: int, pixels: int) -> tuple[int, Callable[[int], tuple[int, ...]]]:
    """The image cut in bands of at most ``pixels`` pixels: whole rows where a row fits, else
    pieces of one row. (count, i -> (r0, r1, c0, c1)), computed, not listed: a hostile file's
    tiny chunk must not make millions of tuples."""
    pixels = max(1, pixels)
    if pixels >= w:
        step = pixels // w
        return -(-h // step), lambda i: (i * step, min(h, (i + 1) * step), 0, w)
    per_row = -(-w // pixels)

    def piece(i: int) -> tuple[int, ...]:
        r, c = divmod(i, per_row)
        return r, r + 1, c * pixels, min(w, (c + 1) * pixels)

    return h * per_row, piece


def render(spec, arrays: list[np.ndarray], chunk: int = 1 << 16, threads: int = 0) -> np.ndarray:
    """Stored tensors (dequantized, file order) -> uint8 (H, W, C). ``chunk``: at most this
    many pixels' features are held at once per thread (bands of rows, or of one row's pixels);
    ``threads``: 0, as many as ``decode_threads``."""
    h, w = spec.height, spec.width
    first = spec.first_grid
    grids = [np.asarray(a, np.float32) for a in arrays[first : first + spec.levels]]
    # each level interpolated along y once (H × w_l, small); along x per band
    rows, col_taps = [], []
    for g in grids:
        if g.shape == (h, w):  # already on the pixel grid
            rows.append(g)
            col_taps.append(None)
            continue
        rows.append(_interpolate(g, *taps(h, g.shape[0]), axis=0))
        col_taps.append(taps(w, g.shape[1]))
    out = np.empty((h, w, spec.channels), np.uint8)
    n_bands, band_at = _bands(h, w, min(chunk, ROWS_PIXELS))
    threads = min(threads or decode_threads(), n_bands)
    if threads > 1:  # the threads share the chunk's memory
        n_bands, band_at = _bands(h, w, min(chunk // threads, ROWS_PIXELS))
    r0, r1, c0, c1 = band_at(0)
    most = (r1 - r0) * (c1 - c0)  # the first band is a largest
    kernels = None if spec.mlp else numba_kernels()  # once: the same for every band
    layers = synthesis_layers(spec, arrays, 0 if kernels else most)

    def band(r0: int, r1: int, c0: int, c1: int) -> None:
        feats = np.empty((spec.levels, (r1 - r0) * (c1 - c0)), np.float32)
        for lv, (r, ct) in enumerate(zip(rows, col_taps, strict=True)):
            if ct is None:
                part = r[r0:r1, c0:c1]
            else:
                part = _interpolate(r[r0:r1], ct[0][c0:c1], ct[1][c0:c1], axis=1)
            feats[lv] = part.reshape(-1)
        y = synthesize(spec, layers, feats, kernels)  # (C, N)
        out[r0:r1, c0:c1] = to_uint8(y).T.reshape(r1 - r0, c1 - c0, spec.channels)

    def run(t: int) -> None:  # thread t renders bands t, t + threads, …
        with np.errstate(all="ignore"):  # IEEE results (inf, NaN) from a hostile file's values
            for i in range(t, n_bands, max(1, threads)):
                band(*band_at(i))

    with one_blas_thread():  # the bands are the threads
        if threads <= 1:
            run(0)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(run, range(threads)))  # list(): re-raises a band's error here
    return out


_BLAS_LOCK = threading.Lock()
_blas_users = 0
_blas_limit = None


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """A context holding BLAS to one thread: the decoder's products are small (a band of
    pixels, or a line of a grid), and its own threads already share the CPUs; OpenBLAS's
    threads on top cost more than they give. The products are exact either way. The limit is
    the process's: taken by the first of overlapping decodes (threads of a caller), given
    back by the last."""
    global _blas_users, _blas_limit
    with _BLAS_LOCK:
        if not _blas_users:
            from threadpoolctl import threadpool_limits

            _blas_limit = threadpool_limits(1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _blas_users -= 1
            if not _blas_users and _blas_limit is not None:
                _blas_limit.restore_original_limits()
                _blas_limit = None
