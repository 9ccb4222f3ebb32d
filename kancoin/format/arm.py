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
symbol is on an earlier line, each line one vectorised constriction call.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from kancoin.nets.latent.arm import MAX_HIDDEN, NEIGHBOURS, TAPS, tensor_shapes

__all__ = ["MAX_HIDDEN", "NEIGHBOURS", "TAPS", "decode_grid", "encode_grid", "forward",
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
    2^24, at most 31 terms), so each is exact whatever order or fused multiply-add a
    machine's matrix product uses, and the division by 2^FRAC then the floor is the integer
    shift."""
    return _forward(_prepared(params), x, bits)


def _prepared(params: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """The parameters as ``_forward`` takes them: float64, each weight transposed (I, O)."""
    w1, b1, w2, b2, w3, b3 = (np.asarray(p, np.float64) for p in params)
    return (np.ascontiguousarray(w1.T), b1, np.ascontiguousarray(w2.T), b2,
            np.ascontiguousarray(w3.T), b3)  # fmt: skip


def _forward(prepared: tuple[np.ndarray, ...], x: np.ndarray, bits: int):
    """``forward`` on ``_prepared`` parameters (a decode runs it once per line)."""
    w1, b1, w2, b2, w3, b3 = prepared
    unit = float(1 << FRAC)
    h = np.asarray(x, np.float64) @ w1
    h += b1
    _relu_clip(h)
    h = h @ w2
    h /= unit
    np.floor(h, out=h)
    h += b2
    _relu_clip(h)
    o = h @ w3
    o /= unit
    np.floor(o, out=o)
    o += b3
    half = 1 << (bits - 1)
    mu = np.minimum(np.maximum(o[:, 0], -half * unit), (half - 1) * unit) / unit
    step = float(1 << (FRAC - LOG_STEP))
    j = np.floor((o[:, 1] + step / 2) / step)
    j = np.minimum(np.maximum(j, J_LO), J_HI).astype(np.int64)
    return mu, SCALES[j - J_LO]


def _relu_clip(h: np.ndarray) -> None:
    np.maximum(h, 0.0, out=h)
    np.minimum(h, float(ACT_MAX), out=h)


def _model_family(bits: int):
    import constriction

    return constriction.stream.model.QuantizedLaplace(0, (1 << bits) - 1)


@lru_cache(maxsize=12)  # one pyramid's grids
def _line_inputs(height: int, width: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Per line of the coding order: its positions in the padded grid (N,) and those of their
    neighbours (N, TAPS), the network's inputs."""
    offs = _offsets(width)
    return tuple((idx, idx[:, None] + offs) for idx in _coding_order(height, width)[1])


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


def encode_grid(
    enc, q: np.ndarray, bits: int, params: list[np.ndarray],
    laplaces: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:  # fmt: skip
    """Append grid q (signed integers (H, W), |q| < 2^(bits−1)) to the range encoder: every
    input is known from q, so all symbols go in one call, in the decoder's order.
    ``laplaces``: the (μ, scale) of every symbol in coding order as ``decode_grid`` gave
    them for this q, instead of the network's pass (the same numbers: each depends only on
    values decoded before it)."""
    offset = 1 << (bits - 1)
    order, _ = _coding_order(*q.shape)
    if laplaces is None:
        mu, scale = forward(params, neighbours(q), bits)
        mu, scale = mu[order], scale[order]
    else:
        mu, scale = laplaces
    sym = (q.reshape(-1)[order] + offset).astype(np.int32)
    enc.encode(sym, _model_family(bits), offset + mu, scale)


def decode_grid(
    dec, shape: tuple[int, int], bits: int, params: list[np.ndarray],
    laplaces: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray:  # fmt: skip
    """Inverse of ``encode_grid``: the signed grid (H, W), int64. ``laplaces``: a list that
    gets every symbol's (μ, scale) in coding order (for ``encode_grid``'s check)."""
    offset = 1 << (bits - 1)
    fam = _model_family(bits)
    prepared = _prepared(params)  # once, not per line
    h, w = shape
    q = np.zeros((h + PAD_TOP) * (w + PAD_LEFT + PAD_RIGHT))  # padded, flat, exact integers
    mus: list[np.ndarray] = []
    scales: list[np.ndarray] = []
    for idx, inputs in _line_inputs(h, w):
        mu, scale = _forward(prepared, q[inputs], bits)
        q[idx] = np.asarray(dec.decode(fam, offset + mu, scale), np.float64) - offset
        if laplaces is not None:
            mus.append(mu)
            scales.append(scale)
    if laplaces is not None:
        laplaces.append((np.concatenate(mus), np.concatenate(scales)))
    return q.reshape(h + PAD_TOP, -1)[PAD_TOP:, PAD_LEFT : PAD_LEFT + w].astype(np.int64)


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
