"""The latents' autoregressive model (format 8, the latent family's ``arm`` field): one small
network of a value's causal neighbours gives the Laplace (μ, scale) that codes it, for every
grid, evaluated in integer arithmetic so that any machine rebuilds the coder's models exactly.

Network: ``TAPS`` inputs → A → A → 2 (A the ``arm`` field), ReLU after each hidden layer.
Inputs: the integers at left, left-left, up-left, up, up-right, up-up and up-left-left
(``NEIGHBOURS``; 0 outside the grid), within ±2^15 as every grid's stored range is. Its
six stored tensors (``tensor_shapes``) hold integers in units of 2^−``FRAC`` (a tensor of t
bits stores value + 2^(t−1)). With x the inputs, in integers:

    h1 = clip(W1 · x + b1, 0, ACT_MAX)               units 2^−FRAC
    h2 = clip(floor(W2 · h1 / 2^FRAC) + b2, 0, ACT_MAX)
    o  = floor(W3 · h2 / 2^FRAC) + b3
    μ  = clip(o0, range) / 2^FRAC                     exact in float64
    j  = clip(floor((o1 + 2^(FRAC−LOG_STEP−1)) / 2^(FRAC−LOG_STEP)), J_LO, J_HI)
    scale = SCALES[j − J_LO]                          ≈ e^(j / 2^LOG_STEP)

``SCALES`` is rounded to 2^−20 so that a last-digit difference between machines' ``exp``
cannot reach the coder. Symbols go along the lines 2r + c = d, on which every neighbour of a
symbol is on an earlier line: a grid after another (``arm_order`` 0: ``encode_grids`` of one
grid, grid by grid), or line d of every grid, finest first, then line d + 1 (``arm_order`` 1:
``encode_grids`` of the pyramid), each line one network pass and one vectorised constriction
call (per run of grids of the same bits).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import lru_cache

import numpy as np

from kancoin.nets.latent.arm import MAX_HIDDEN, NEIGHBOURS, TAPS, tensor_shapes

__all__ = ["MAX_HIDDEN", "NEIGHBOURS", "TAPS", "decode_grids", "encode_grids", "forward",
           "ideal_bits", "neighbours", "params_of", "tensor_shapes", "to_ints"]  # fmt: skip

PAD_TOP, PAD_LEFT, PAD_RIGHT = 2, 2, 1  # zeros around a grid hold every neighbour
FRAC = 8  # fractional bits of the parameters and the activations
ACT_MAX = 1 << 24  # no product or sum below comes near 2^63
LOG_STEP = 4  # the scale's logarithm in steps of 1/16
J_LO, J_HI = -47, 96  # scales e^−2.94 = 0.053 … e^6 = 403
SCALES = np.round(np.exp(np.arange(J_LO, J_HI + 1) / (1 << LOG_STEP)) * 2.0**20) / 2.0**20
LOG_SCALE_RANGE = (J_LO / (1 << LOG_STEP), J_HI / (1 << LOG_STEP))  # what training clamps to


def to_ints(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Float parameters (weights (O, I), biases (O,), in tensor order) in units of 2^−FRAC,
    rounded: int64."""
    return [np.round(np.asarray(a, np.float64) * (1 << FRAC)).astype(np.int64) for a in arrays]


def params_of(stored: list[np.ndarray], bits: list[int], hidden: int) -> list[np.ndarray]:
    """The network's integer parameters from its stored tensors (flat, value + 2^(t−1))."""
    out = []
    for (_, shape), q, b in zip(tensor_shapes(hidden), stored, bits, strict=True):
        out.append(np.asarray(q, np.int64).reshape(shape) - (1 << (b - 1)))
    return out


def neighbours(q: np.ndarray) -> np.ndarray:
    """The inputs of every position of grid q (H, W): (H·W, TAPS) int64, row-major."""
    h, w = q.shape
    p = _padded(q)
    cols = [p[PAD_TOP - dr : PAD_TOP - dr + h, PAD_LEFT - dc : PAD_LEFT - dc + w]
            for dr, dc in NEIGHBOURS]  # fmt: skip
    return np.stack(cols, -1).reshape(-1, TAPS)


def _padded(q: np.ndarray) -> np.ndarray:
    h, w = q.shape
    p = np.zeros((h + PAD_TOP, w + PAD_LEFT + PAD_RIGHT), np.int64)
    p[PAD_TOP:, PAD_LEFT : PAD_LEFT + w] = q
    return p


def forward(params: list[np.ndarray], x: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(μ, scale), float64 (N,), of the values whose inputs are x (N, TAPS) integers of a grid
    stored on ``bits`` bits (so within ±2^15; μ stays within the grid's range).

    The integer arithmetic of the module's docstring, carried in float64: every product and
    partial sum is an integer below 2^53 (inputs ≤ 2^15, parameters < 2^15, activations ≤
    2^24, at most 32 terms), or such an integer times 2^−FRAC, so each is exact whatever
    order or fused multiply-add a machine's matrix product uses, and the floor of a sum of
    products by W / 2^FRAC is the integer shift."""
    x = np.asarray(x, np.float64)
    xt = np.ones((TAPS + 1, len(x)))
    xt[:TAPS] = x.T
    return _forward(_prepared(params), xt, float(1 << (bits - 1)))


def _prepared(params: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """The parameters as ``_forward`` takes them, float64: W1 with b1 as a last column, W2
    and W3 divided by 2^FRAC (exact), b2 and b3 as columns."""
    w1, b1, w2, b2, w3, b3 = (np.asarray(p, np.float64) for p in params)
    unit = float(1 << FRAC)
    return np.concatenate([w1, b1[:, None]], 1), w2 / unit, b2[:, None], w3 / unit, b3[:, None]


def _forward(prepared: tuple[np.ndarray, ...], x: np.ndarray, half: float | np.ndarray):
    """``forward`` on ``_prepared`` parameters and inputs x (TAPS + 1, N) whose last row is
    ones (a decode runs it once per line, the fewest operations), for grids of ``half`` =
    2^(bits − 1): one number, or one per value (N,) where a line spans grids."""
    w1, w2, b2, w3, b3 = prepared
    h = w1 @ x  # + b1
    _relu_clip(h)
    h = w2 @ h
    np.floor(h, out=h)
    h += b2
    _relu_clip(h)
    o = w3 @ h
    np.floor(o, out=o)
    o += b3
    unit = float(1 << FRAC)
    mu = o[0]
    np.maximum(mu, -half * unit, out=mu)
    np.minimum(mu, (half - 1) * unit, out=mu)
    mu *= 1.0 / unit
    step = 1 << (FRAC - LOG_STEP)
    j = o[1]  # floor((o1 + step / 2) / step) − J_LO, exact: o1 is an integer
    j += step // 2 - step * J_LO
    j *= 1.0 / step
    np.floor(j, out=j)
    np.maximum(j, 0.0, out=j)
    np.minimum(j, float(J_HI - J_LO), out=j)
    return mu, SCALES[j.astype(np.intp)]


def _relu_clip(h: np.ndarray) -> None:
    np.maximum(h, 0.0, out=h)
    np.minimum(h, float(ACT_MAX), out=h)


def _model_family(bits: int):
    import constriction

    return constriction.stream.model.QuantizedLaplace(0, (1 << bits) - 1)


@lru_cache(maxsize=12)  # one pyramid's grids
def _coding_order(height: int, width: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The positions in coding order (flat indices into the grid) and each line's positions as
    flat indices into the padded grid, where a neighbour is a fixed offset away."""
    order, padded = [], []
    stride = width + PAD_LEFT + PAD_RIGHT
    for d in range(2 * (height - 1) + width):
        r = np.arange(max(0, -(-(d - width + 1) // 2)), min(d // 2, height - 1) + 1)
        c = d - 2 * r
        order.append(r * width + c)
        padded.append((r + PAD_TOP) * stride + c + PAD_LEFT)
    return np.concatenate(order), tuple(padded)


def _offsets(width: int) -> np.ndarray:
    stride = width + PAD_LEFT + PAD_RIGHT
    return np.array([-(dr * stride + dc) for dr, dc in NEIGHBOURS], np.int64)


CACHED_VALUES = 1 << 21  # grid values whose line tables a process keeps, all pyramids
# together (72 bytes a value: at most 150 MB); a larger pyramid builds its lines as it goes
_CACHE: OrderedDict[tuple[tuple[int, int], ...], tuple] = OrderedDict()
_CACHE_LOCK = threading.Lock()  # decodes may run in threads


def _pyramid(shapes: tuple[tuple[int, int], ...]):
    """Grids ``shapes`` (finest first) padded one after another in one flat buffer that ends
    with a one (the inputs' last row): (buffer size, each grid's start in it, the lines of
    the interleaved order (``_lines``)), the most recently used kept within
    ``CACHED_VALUES``."""
    with _CACHE_LOCK:
        if shapes in _CACHE:
            _CACHE.move_to_end(shapes)
            return _CACHE[shapes]
    size, starts = _buffer(shapes)
    if sum(h * w for h, w in shapes) > CACHED_VALUES:
        return size, starts, _lines(shapes, starts, size - 1)
    entry = size, starts, tuple(_lines(shapes, starts, size - 1))
    with _CACHE_LOCK:
        _CACHE[shapes] = entry
        while sum(h * w for key in _CACHE for h, w in key) > CACHED_VALUES:
            _CACHE.popitem(last=False)  # the least recently used
    return entry


def _buffer(shapes) -> tuple[int, tuple[int, ...]]:
    starts, size = [], 0
    for h, w in shapes:
        starts.append(size)
        size += (h + PAD_TOP) * (w + PAD_LEFT + PAD_RIGHT)
    return size + 1, tuple(starts)


def _lines(shapes, starts, one: int):
    """Per line d of the interleaved order: its positions in the buffer (N,), its values'
    inputs (TAPS + 1, N) (the last at ``one``) and its pieces, (grid, values) in order."""
    per_grid = [_coding_order(h, w)[1] for h, w in shapes]
    offsets = [np.append(_offsets(w), 0)[:, None] for _, w in shapes]
    for d in range(max(len(g) for g in per_grid)):
        idx, inputs, pieces = [], [], []
        for k, g in enumerate(per_grid):
            if d < len(g):
                i = g[d] + starts[k]
                x = i + offsets[k]
                x[TAPS] = one
                idx.append(i)
                inputs.append(x)
                pieces.append((k, len(i)))
        yield np.concatenate(idx), np.concatenate(inputs, 1), tuple(pieces)


def _runs(pieces, bits: list[int]) -> tuple[float | np.ndarray, list[tuple]]:
    """A line's 2^(bits − 1) (one number, or per value (N,) where grids of other bits share
    it) and its runs of the same bits, (start, stop, bits): one coder call each."""
    runs: list[list[int]] = []
    at = 0
    for k, n in pieces:
        if runs and runs[-1][2] == bits[k]:
            runs[-1][1] = at + n
        else:
            runs.append([at, at + n, bits[k]])
        at += n
    if len(runs) == 1:
        return float(1 << (runs[0][2] - 1)), [(runs[0][0], runs[0][1], runs[0][2])]
    half = np.repeat([float(1 << (b - 1)) for _, _, b in runs], [z - a for a, z, _ in runs])
    return half, [(a, z, b) for a, z, b in runs]


def _line_lengths(shape: tuple[int, int]) -> list[int]:
    return [len(i) for i in _coding_order(*shape)[1]]


def encode_grids(
    enc, qs: list[np.ndarray], bits: list[int], params: list[np.ndarray],
    laplaces: list[tuple[np.ndarray, np.ndarray] | None] | None = None,
) -> None:  # fmt: skip
    """Append grids qs (signed integers (H_l, W_l), finest first, |q| < 2^(bits_l − 1)) to
    the range encoder in the interleaved order: line d of every grid, then line d + 1 (every
    input is known from qs: each grid's network pass is one call). ``laplaces``: per grid,
    the (μ, scale) of its values in its coding order as ``decode_grids`` gave them, or None
    (the network's pass)."""
    pieces = []  # per grid, per line: (symbols, μ + offset, scale)
    for k, (q, b) in enumerate(zip(qs, bits, strict=True)):
        offset = 1 << (b - 1)
        order, _ = _coding_order(*q.shape)
        given = None if laplaces is None else laplaces[k]
        if given is None:
            mu, scale = forward(params, neighbours(q), b)
            mu, scale = mu[order], scale[order]
        else:
            mu, scale = given
        sym = (q.reshape(-1)[order] + offset).astype(np.int32)
        cuts = np.cumsum(_line_lengths(q.shape))[:-1]
        pieces.append(list(zip(np.split(sym, cuts), np.split(offset + mu, cuts),
                               np.split(scale, cuts), strict=True)))  # fmt: skip
    run: list[tuple] = []  # consecutive pieces of the same bits: one coder call
    run_bits = None
    for d in range(max(len(p) for p in pieces)):
        for k, p in enumerate(pieces):
            if d >= len(p):
                continue
            if run and bits[k] != run_bits:
                _encode_run(enc, run, run_bits)
                run = []
            run.append(p[d])
            run_bits = bits[k]
    _encode_run(enc, run, run_bits)


def _encode_run(enc, run: list[tuple], bits: int) -> None:
    sym, mean, scale = (np.concatenate(a) for a in zip(*run, strict=True))
    enc.encode(sym, _model_family(bits), mean, scale)


def decode_grids(
    dec, shapes: list[tuple[int, int]], bits: list[int], params: list[np.ndarray],
    laplaces: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[np.ndarray]:  # fmt: skip
    """Inverse of ``encode_grids``: the signed grids (H_l, W_l), int64. ``laplaces``: a list
    that gets every grid's (μ, scale) in its coding order (for ``encode_grids``' check)."""
    shapes = tuple((int(h), int(w)) for h, w in shapes)
    bits = [int(b) for b in bits]
    size, starts, lines = _pyramid(shapes)
    families = {b: _model_family(b) for b in set(bits)}
    prepared = _prepared(params)  # once, not per line
    same = None  # every line's (half, runs) where all grids have the same bits (one run)
    if len(set(bits)) == 1:
        same = float(1 << (bits[0] - 1)), [(0, None, bits[0])]
    q = np.zeros(size)  # the padded grids, flat, exact integers, then the inputs' one
    q[-1] = 1.0
    got: list[tuple[np.ndarray, np.ndarray]] = []
    for idx, inputs, pieces in lines:
        half, runs = same or _runs(pieces, bits)
        mu, scale = _forward(prepared, q[inputs], half)
        mean = half + mu
        if len(runs) == 1:
            v = np.asarray(dec.decode(families[runs[0][2]], mean, scale), np.float64)
        else:
            v = np.empty(len(idx))
            for a, z, b in runs:
                v[a:z] = dec.decode(families[b], mean[a:z], scale[a:z])
        q[idx] = v - half
        if laplaces is not None:
            got.append((mu, scale))
    out = []
    for (h, w), at in zip(shapes, starts, strict=True):
        grid = q[at : at + (h + PAD_TOP) * (w + PAD_LEFT + PAD_RIGHT)].reshape(h + PAD_TOP, -1)
        out.append(grid[PAD_TOP:, PAD_LEFT : PAD_LEFT + w].astype(np.int64))
    if laplaces is not None:
        laplaces.extend(_per_grid(got, shapes))
    return out


def _per_grid(got, shapes) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each line's (μ, scale) over the pyramid, split back into each grid's coding order."""
    lengths = [_line_lengths(s) for s in shapes]
    mus: list[list[np.ndarray]] = [[] for _ in shapes]
    scales: list[list[np.ndarray]] = [[] for _ in shapes]
    for d, (mu, scale) in enumerate(got):
        at = 0
        for k, n in enumerate(lengths):
            if d < len(n):
                mus[k].append(mu[at : at + n[d]])
                scales[k].append(scale[at : at + n[d]])
                at += n[d]
    return [(np.concatenate(m), np.concatenate(s)) for m, s in zip(mus, scales, strict=True)]


def ideal_bits(q: np.ndarray, bits: int, params: list[np.ndarray]) -> float:
    """Bits of grid q (stored on ``bits`` bits) under the network's Laplaces, continuous on
    unit bins and renormalised on the stored range (the estimate the coded size is compared
    with)."""
    from kancoin.format.context import _bin_mass

    mu, b = forward(params, neighbours(q), bits)
    v = q.reshape(-1).astype(np.float64)
    p = _bin_mass(v - 0.5, v + 0.5, mu, b)
    offset = 1 << (bits - 1)
    inside = _bin_mass(-offset - 0.5, offset - 0.5, mu, b)
    return float(-np.log2(np.maximum(p / inside, 2.0**-24)).sum())
