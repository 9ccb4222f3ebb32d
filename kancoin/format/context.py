"""The context model of latent grids: a Laplace per grid and context, the context (and, with
a predictor, the Laplace's centre) from the already-coded causal neighbours (the latent
family's grids, ``kancoin.nets.latent``).

Two models, the file's ``predictor`` field chooses:

- predictor 0 (format 6): q at (r, c) is coded with a zero-mean Laplace whose scale is the
  grid's scale for context k = min(|q[r, c−1]| + |q[r−1, c]|, K − 1) (0 outside the grid).
  Symbols go along anti-diagonals r + c = d, whose symbols depend only on earlier ones.
- predictor 1 (format 7): the Laplace is centred on a linear prediction from four causal
  neighbours, μ = (w · [left, up, up-left, up-right]) / ``WEIGHT_UNIT`` with four integer
  weights per grid (a stored tensor (L, 4)), and the context is k = min(|left| + |up| +
  |up-left| + |up-right|, K − 1). Up-right is on the same anti-diagonal, so symbols go along
  the lines 2r + c = d, where every neighbour is on an earlier line.

Either way each line is one vectorised constriction call (about H + W or 2H + W a grid, not
H × W); flat regions of zeros cost almost nothing and busy ones get a wide model. The K scales
of every grid travel as one stored tensor (L, K) (dequantized, floored at ``MIN_SCALE``).
Contexts and predictions are integer arithmetic (μ is an integer over 64, exact in float64),
and constriction's models are fixed-point, so a decoder on any machine rebuilds the coder's
models exactly.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from kancoin.errors import KancoinError

MIN_SCALE = 0.05  # of a context's Laplace, integer units
# the causal neighbours of a predictor, as (rows up, columns left): left, up, up-left, up-right
NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))
WEIGHT_UNIT = 64  # a predictor weight is an integer in units of 1/64
WEIGHT_BITS = 8  # stored as w + 128: weights in −128 … 127 (−2 … 2 − 1/64)


def lines(height: int, width: int, skew: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows, cols) of each line skew·r + c = d, in coding order: skew 1, the anti-diagonals;
    skew 2, lines on which every predictor neighbour of a symbol is on an earlier line."""
    out = []
    for d in range(skew * (height - 1) + width):
        r = np.arange(max(0, -(-(d - width + 1) // skew)), min(d // skew, height - 1) + 1)
        out.append((r, d - skew * r))
    return out


def neighbours(q: np.ndarray) -> np.ndarray:
    """The predictor's causal neighbours of every position of q (H, W): (4, H, W), 0 outside
    the grid."""
    h, w = q.shape
    p = np.zeros((h + 1, w + 2), q.dtype)
    p[1:, 1:-1] = q
    return np.stack([p[1 - dr : 1 - dr + h, 1 - dc : 1 - dc + w] for dr, dc in NEIGHBOURS])


def contexts(q: np.ndarray, k: int, predictor: bool = False) -> np.ndarray:
    """Context of every position of the signed grid q (H, W): min(|left| + |up|, k − 1), or
    with a predictor min(|left| + |up| + |up-left| + |up-right|, k − 1)."""
    if predictor:
        return np.minimum(np.abs(neighbours(q)).sum(0), k - 1)
    a = np.abs(q)
    s = np.zeros_like(a)
    s[:, 1:] += a[:, :-1]
    s[1:, :] += a[:-1, :]
    return np.minimum(s, k - 1)


def predictions(q: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """μ of every position of q (H, W) under integer ``weights`` (4,): float64, exact."""
    wt = np.asarray(weights, np.int64)
    return np.tensordot(wt, neighbours(q.astype(np.int64)), 1) / WEIGHT_UNIT


def fit_predictor(q: np.ndarray) -> np.ndarray:
    """The least-squares weights of q's prediction from its neighbours, in 1/``WEIGHT_UNIT``
    units, within the stored range: int64 (4,)."""
    x = neighbours(q.astype(np.float64)).reshape(len(NEIGHBOURS), -1)
    gram = x @ x.T + 1e-6 * np.eye(len(NEIGHBOURS))  # an all-zero grid: weights 0
    w = np.linalg.solve(gram, x @ q.reshape(-1).astype(np.float64))
    lim = 1 << (WEIGHT_BITS - 1)
    return np.clip(np.round(w * WEIGHT_UNIT), -lim, lim - 1).astype(np.int64)


def fit_scales(q: np.ndarray, k: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Per context, the maximum-likelihood Laplace scale of q about its centre (mean |q − μ|),
    float64 (k,)."""
    pred = weights is not None
    ctx = contexts(q, k, pred)
    out = np.full(k, MIN_SCALE)
    a = np.abs(q - predictions(q, weights)) if pred else np.abs(q)
    for j in range(k):
        m = ctx == j
        if m.any():
            out[j] = max(MIN_SCALE, float(a[m].mean()))
    return out


def _model_family(bits: int):
    import constriction

    return constriction.stream.model.QuantizedLaplace(0, (1 << bits) - 1)


@lru_cache(maxsize=12)  # one pyramid's grids
def _coding_order(height: int, width: int, skew: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The grid's positions in coding order (flat indices into the grid, one array) and each
    line's positions as flat indices into the grid padded by a zero row above and a zero
    column either side ((H + 1) × (W + 2)), where a neighbour is a fixed offset away."""
    order, padded = [], []
    for r, c in lines(height, width, skew):
        order.append(r * width + c)
        padded.append((r + 1) * (width + 2) + c + 1)
    return np.concatenate(order), tuple(padded)


def _offsets(width: int, predictor: bool) -> np.ndarray:
    """Flat offsets in the padded grid of left, up (and up-left, up-right with a predictor)."""
    stride = width + 2
    pairs = NEIGHBOURS if predictor else NEIGHBOURS[:2]
    return np.array([-(dr * stride + dc) for dr, dc in pairs], np.int64)


def encode_grid(
    enc, q: np.ndarray, bits: int, scales: np.ndarray, weights: np.ndarray | None = None
) -> None:
    """Append grid q (signed integers (H, W), |q| < 2^(bits−1)) to the range encoder, with a
    predictor when ``weights`` (4 integers) are given. Every model is known from q, so the
    symbols go in one call, in the order the decoder needs them line by line."""
    offset = 1 << (bits - 1)
    table = np.maximum(np.asarray(scales, np.float64), MIN_SCALE)
    pred = weights is not None
    ctx = contexts(q, len(table), pred).reshape(-1)
    order, _ = _coding_order(*q.shape, 2 if pred else 1)
    sym = (q.reshape(-1)[order] + offset).astype(np.int32)
    if pred:
        centre = offset + predictions(q, weights).reshape(-1)[order]
    else:
        centre = np.full(len(order), float(offset))
    enc.encode(sym, _model_family(bits), centre, table[ctx[order]])


def decode_grid(
    dec, shape: tuple[int, int], bits: int, scales: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Inverse of ``encode_grid``: the signed grid (H, W), int64."""
    offset = 1 << (bits - 1)
    fam = _model_family(bits)
    table = np.maximum(np.asarray(scales, np.float64), MIN_SCALE)
    k = len(table)
    h, w = shape
    pred = weights is not None
    q = np.zeros((h + 1) * (w + 2), np.int64)  # the padded grid, flat
    offs = _offsets(w, pred)
    wt = np.asarray(weights, np.int64) if pred else None
    for idx in _coding_order(h, w, 2 if pred else 1)[1]:
        nb = q[idx[:, None] + offs]  # (n, 2 or 4) already-decoded neighbours
        ctx = np.minimum(np.abs(nb).sum(1), k - 1)
        centre = offset + nb @ wt / WEIGHT_UNIT if pred else np.full(len(idx), float(offset))
        q[idx] = np.asarray(dec.decode(fam, centre, table[ctx])).astype(np.int64) - offset
    return q.reshape(h + 1, w + 2)[1:, 1:-1]


def ideal_bits(
    q: np.ndarray, scales: np.ndarray, bits: int, weights: np.ndarray | None = None
) -> float:
    """Bits of grid q (stored on ``bits`` bits) under its context model, from the continuous
    Laplace on unit bins, renormalised on the stored range (the estimate the coded size is
    compared with)."""
    table = np.maximum(np.asarray(scales, np.float64), MIN_SCALE)
    pred = weights is not None
    b = table[contexts(q, len(table), pred)]
    mu = predictions(q, weights) if pred else 0.0
    p = _bin_mass(q - 0.5, q + 0.5, mu, b)
    offset = 1 << (bits - 1)  # the range is −offset … offset − 1: the tails outside are cut
    inside = _bin_mass(-offset - 0.5, offset - 0.5, mu, b)
    return float(-np.log2(np.maximum(p / inside, 2.0**-24)).sum())


def _bin_mass(lo, hi, mu, b) -> np.ndarray:
    """Mass of the Laplace (μ, b) on [lo, hi], each tail from its own side (no 1 − 1)."""
    z1, z2 = (lo - mu) / b, (hi - mu) / b
    right = 0.5 * (np.exp(-np.maximum(z1, 0)) - np.exp(-np.maximum(z2, 0)))  # z1 ≥ 0
    left = 0.5 * (np.exp(np.minimum(z2, 0)) - np.exp(np.minimum(z1, 0)))  # z2 ≤ 0
    across = 1 - 0.5 * np.exp(np.minimum(z1, 0)) - 0.5 * np.exp(-np.maximum(z2, 0))
    return np.where(z1 >= 0, right, np.where(z2 <= 0, left, across))


def models_of(header, qtensors: list) -> tuple[np.ndarray, np.ndarray | None]:
    """A file's context model: the (L, K) scales (dequantized, floored at ``MIN_SCALE``,
    float64) and, with a predictor, the (L, 4) integer weights (else None)."""
    from kancoin.format.quant import dequantize
    from kancoin.nets import family_of

    spec = header.spec
    layout = family_of(spec).context_layout(spec)
    shapes = spec.tensor_shapes()
    at = layout.scales
    scales = dequantize(np.asarray(qtensors[at]).reshape(shapes[at][1]), header.qparams[at])
    weights = None
    if layout.weights is not None:
        at = layout.weights
        if header.tensor_bits[at] != WEIGHT_BITS:  # a prediction stays within the grid's range
            raise KancoinError(f"predictor weights must be stored on {WEIGHT_BITS} bits")
        offset = 1 << (WEIGHT_BITS - 1)
        weights = np.asarray(qtensors[at]).reshape(shapes[at][1]).astype(np.int64) - offset
    return np.maximum(scales.astype(np.float64), MIN_SCALE), weights


def arm_params(header, qtensors: list) -> list[np.ndarray] | None:
    """A file's autoregressive network for the latents (``format.arm``), its integer
    parameters; None when the file has none."""
    from kancoin.format import arm
    from kancoin.nets import family_of

    spec = header.spec
    layout = family_of(spec).context_layout(spec)
    if layout is None or layout.arm is None:
        return None
    at, n = layout.arm, len(arm.tensor_shapes(spec.arm))
    return arm.params_of(qtensors[at : at + n], header.tensor_bits[at : at + n], spec.arm)


def encode_stream(header, qtensors: list, laplaces: dict | None = None) -> bytes:
    """A file's range-coded stream: each tensor with its own model, context-coded grids with
    the context model (``NetFamily.context_layout``). ``laplaces``: what ``decode_stream``
    recorded for these tensors (the network's Laplaces are then not computed again)."""
    from kancoin.format import entropy
    from kancoin.nets import family_of

    layout = family_of(header.spec).context_layout(header.spec)
    if layout is None:
        return entropy.encode(qtensors, header.tensor_bits, list(header.emodels))
    first, levels = layout.first, layout.levels
    enc = entropy.new_encoder()
    bits, models = header.tensor_bits, header.emodels
    shapes = [s for _, s in header.spec.tensor_shapes()]
    table = weights = None
    for i, q in enumerate(qtensors):
        if first <= i < first + levels and layout.arm is not None:
            if i == first:  # every grid, in the file's order
                encode_arm_grids(enc, header, qtensors, first, levels, laplaces)
        elif first <= i < first + levels:
            b = bits[i]
            signed = np.asarray(q).reshape(shapes[i]).astype(np.int64) - (1 << (b - 1))
            if table is None:
                table, weights = models_of(header, qtensors)
            wt = None if weights is None else weights[i - first]
            encode_grid(enc, signed, b, table[i - first], wt)
        else:
            entropy.encode_with(enc, np.asarray(q), bits[i], models[i])
    return entropy.finish(enc)


def _arm_groups(spec, first: int, levels: int) -> list[range]:
    """The network-coded grids' tensor indices, in the groups coded together: all of them,
    line by line across the pyramid (``arm_order`` 1), or one grid after another (0)."""
    if spec.arm_order:
        return [range(first, first + levels)]
    return [range(j, j + 1) for j in range(first, first + levels)]


def encode_arm_grids(
    enc, header, qtensors: list, first: int, levels: int, laplaces: dict | None = None
) -> None:
    """Append a file's network-coded grids (tensors ``first`` … ``first + levels − 1``) to the
    range encoder in the file's order. ``laplaces``: per tensor index, what
    ``decode_stream`` recorded."""
    from kancoin.format import arm

    net = arm_params(header, qtensors)
    bits = header.tensor_bits
    shapes = [s for _, s in header.spec.tensor_shapes()]
    for group in _arm_groups(header.spec, first, levels):
        signed = [np.asarray(qtensors[j]).reshape(shapes[j]).astype(np.int64)
                  - (1 << (bits[j] - 1)) for j in group]  # fmt: skip
        given = [(laplaces or {}).get(j) for j in group]
        arm.encode_grids(enc, signed, [bits[j] for j in group], net, given)


def decode_stream(
    header, data: bytes, sizes: list[int], laplaces: dict | None = None
) -> list[np.ndarray]:
    """Inverse of ``encode_stream``: flat uint32 arrays of the given sizes. ``laplaces``: a
    dict that gets, per network-coded grid (by tensor index), the Laplaces that decoded it,
    for ``encode_stream``'s check of the same tensors."""
    from kancoin.format import entropy
    from kancoin.nets import family_of

    spec = header.spec
    layout = family_of(spec).context_layout(spec)
    if layout is None:
        return entropy.decode(data, sizes, header.tensor_bits, list(header.emodels))
    dec = entropy.new_decoder(data)
    if layout.arm is not None:
        from kancoin.nets.latent.render import one_blas_thread

        with one_blas_thread():
            return _decode_tensors(header, dec, sizes, layout, laplaces)
    return _decode_tensors(header, dec, sizes, layout)


def _decode_tensors(header, dec, sizes, layout, laplaces=None) -> list[np.ndarray]:
    from kancoin.format import entropy

    spec = header.spec
    first, levels = layout.first, layout.levels
    bits, models = header.tensor_bits, header.emodels
    shapes = [s for _, s in spec.tensor_shapes()]
    out: list[np.ndarray] = []
    table = weights = None
    for i, n in enumerate(sizes):
        if first <= i < first + levels and layout.arm is not None:
            if i == first:  # every grid, in the file's order
                from kancoin.format import arm

                net = arm_params(header, out)
                for group in _arm_groups(spec, first, levels):
                    got: list | None = None if laplaces is None else []
                    qs = arm.decode_grids(dec, [shapes[j] for j in group],
                                          [bits[j] for j in group], net, got)  # fmt: skip
                    for j, q in zip(group, qs, strict=True):
                        out.append((q + (1 << (bits[j] - 1))).astype(np.uint32).ravel())
                    if got:
                        laplaces.update(zip(group, got, strict=True))
        elif first <= i < first + levels:
            b = bits[i]
            if table is None:
                table, weights = models_of(header, out)
            wt = None if weights is None else weights[i - first]
            q = decode_grid(dec, shapes[i], b, table[i - first], wt)
            out.append((q + (1 << (b - 1))).astype(np.uint32).ravel())
        else:
            out.append(entropy.decode_with(dec, n, bits[i], models[i]))
    return out
