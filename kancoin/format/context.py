"""The context model of latent grids: a Laplace per grid and context, the context from the
already-coded causal neighbours (the latent family's grids, ``kancoin.nets.latent``).

A grid's integer q at (r, c) is coded with a zero-mean Laplace whose scale is the grid's scale
for context k = min(|q[r, c−1]| + |q[r−1, c]|, K − 1) (0 outside the grid): flat regions of
zeros cost almost nothing, busy ones get a wide model. The K scales of every grid travel in the
file as one stored tensor (L, K) (dequantized, floored at ``MIN_SCALE``).

Symbols are coded along anti-diagonals r + c = d (d = 0, 1, …): the symbols of one diagonal
depend only on earlier diagonals, so each diagonal is one vectorised constriction call (H + W
calls a grid, not H × W). Contexts are integers and constriction's models are fixed-point, so a
decoder on any machine rebuilds the coder's models exactly.
"""

from __future__ import annotations

import numpy as np

MIN_SCALE = 0.05  # of a context's Laplace, integer units


def diagonals(height: int, width: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows, cols) of each anti-diagonal, in coding order."""
    out = []
    for d in range(height + width - 1):
        r = np.arange(max(0, d - width + 1), min(d, height - 1) + 1)
        out.append((r, d - r))
    return out


def contexts(q: np.ndarray, k: int) -> np.ndarray:
    """Context of every position of the signed grid q (H, W): min(|left| + |up|, k − 1)."""
    a = np.abs(q)
    s = np.zeros_like(a)
    s[:, 1:] += a[:, :-1]
    s[1:, :] += a[:-1, :]
    return np.minimum(s, k - 1)


def fit_scales(q: np.ndarray, k: int) -> np.ndarray:
    """Per context, the maximum-likelihood Laplace scale of q (mean |q|), float64 (k,)."""
    ctx = contexts(q, k)
    out = np.full(k, MIN_SCALE)
    a = np.abs(q)
    for j in range(k):
        m = ctx == j
        if m.any():
            out[j] = max(MIN_SCALE, float(a[m].mean()))
    return out


def _model_family(bits: int):
    import constriction

    return constriction.stream.model.QuantizedLaplace(0, (1 << bits) - 1)


def encode_grid(enc, q: np.ndarray, bits: int, scales: np.ndarray) -> None:
    """Append grid q (signed integers (H, W), |q| < 2^(bits−1)) to the range encoder."""
    offset = 1 << (bits - 1)
    fam = _model_family(bits)
    table = np.maximum(np.asarray(scales, np.float64), MIN_SCALE)
    ctx = contexts(q, len(table))
    for r, c in diagonals(*q.shape):
        sym = (q[r, c] + offset).astype(np.int32)
        enc.encode(sym, fam, np.full(len(r), float(offset)), table[ctx[r, c]])


def decode_grid(dec, shape: tuple[int, int], bits: int, scales: np.ndarray) -> np.ndarray:
    """Inverse of ``encode_grid``: the signed grid (H, W), int64."""
    offset = 1 << (bits - 1)
    fam = _model_family(bits)
    table = np.maximum(np.asarray(scales, np.float64), MIN_SCALE)
    k = len(table)
    h, w = shape
    q = np.zeros((h + 1, w + 1), np.int64)  # a zero row and column before the grid
    a = np.zeros_like(q)
    for r, c in diagonals(h, w):
        ctx = np.minimum(a[r, c + 1] + a[r + 1, c], k - 1)  # left (r, c−1) and up (r−1, c)
        vals = np.asarray(dec.decode(fam, np.full(len(r), float(offset)), table[ctx]))
        q[r + 1, c + 1] = vals.astype(np.int64) - offset
        a[r + 1, c + 1] = np.abs(q[r + 1, c + 1])
    return q[1:, 1:]


def ideal_bits(q: np.ndarray, scales: np.ndarray, bits: int) -> float:
    """Bits of grid q (stored on ``bits`` bits) under its context model, from the continuous
    Laplace on unit bins, renormalised on the stored range (the estimate the coded size is
    compared with)."""
    table = np.maximum(np.asarray(scales, np.float64), MIN_SCALE)
    b = table[contexts(q, len(table))]
    a = np.abs(q).astype(np.float64)
    p = np.where(
        a == 0, 1 - np.exp(-0.5 / b), 0.5 * (np.exp(-(a - 0.5) / b) - np.exp(-(a + 0.5) / b))
    )
    offset = 1 << (bits - 1)  # the range is −offset … offset − 1: the tails outside are cut
    inside = 1 - 0.5 * np.exp(-(offset - 0.5) / b) - 0.5 * np.exp(-(offset + 0.5) / b)
    return float(-np.log2(np.maximum(p / inside, 2.0**-24)).sum())


def scales_of(header, qtensors: list) -> np.ndarray:
    """The (L, K) context scales of a file (its context-scales tensor, dequantized, floored at
    ``MIN_SCALE``), float64."""
    from kancoin.format.quant import dequantize
    from kancoin.nets import family_of

    spec = header.spec
    at, _, _ = family_of(spec).context_layout(spec)
    shape = spec.tensor_shapes()[at][1]
    scales = dequantize(np.asarray(qtensors[at]).reshape(shape), header.qparams[at])
    return np.maximum(scales.astype(np.float64), MIN_SCALE)


def encode_stream(header, qtensors: list) -> bytes:
    """A file's range-coded stream: each tensor with its own model, context-coded grids with
    the context model (``NetFamily.context_layout``)."""
    from kancoin.format import entropy
    from kancoin.nets import family_of

    layout = family_of(header.spec).context_layout(header.spec)
    if layout is None:
        return entropy.encode(qtensors, header.tensor_bits, list(header.emodels))
    _, first, levels = layout
    enc = entropy.new_encoder()
    bits, models = header.tensor_bits, header.emodels
    shapes = [s for _, s in header.spec.tensor_shapes()]
    table = None
    for i, q in enumerate(qtensors):
        if first <= i < first + levels:
            table = scales_of(header, qtensors) if table is None else table
            b = bits[i]
            signed = np.asarray(q).reshape(shapes[i]).astype(np.int64) - (1 << (b - 1))
            encode_grid(enc, signed, b, table[i - first])
        else:
            entropy.encode_with(enc, np.asarray(q), bits[i], models[i])
    return entropy.finish(enc)


def decode_stream(header, data: bytes, sizes: list[int]) -> list[np.ndarray]:
    """Inverse of ``encode_stream``: flat uint32 arrays of the given sizes."""
    from kancoin.format import entropy
    from kancoin.nets import family_of

    spec = header.spec
    layout = family_of(spec).context_layout(spec)
    if layout is None:
        return entropy.decode(data, sizes, header.tensor_bits, list(header.emodels))
    _, first, levels = layout
    dec = entropy.new_decoder(data)
    bits, models = header.tensor_bits, header.emodels
    shapes = [s for _, s in spec.tensor_shapes()]
    out: list[np.ndarray] = []
    table = None
    for i, n in enumerate(sizes):
        if first <= i < first + levels:
            table = scales_of(header, out) if table is None else table
            b = bits[i]
            q = decode_grid(dec, shapes[i], b, table[i - first])
            out.append((q + (1 << (b - 1))).astype(np.uint32).ravel())
        else:
            out.append(entropy.decode_with(dec, n, bits[i], models[i]))
    return out
