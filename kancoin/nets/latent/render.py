"""Decoding a latent file's tensors to pixels: numpy and numba only (no torch).

grids -> features (rows of pixels at a time, bounded memory) -> synthesis KAN (the B-spline
decoding kernels, one table per layer) -> uint8. Deterministic at any thread count.
"""

from __future__ import annotations

import numpy as np

from kancoin.nets.kan.tables import layer_forward, padded_outputs, spline_table_np
from kancoin.nets.latent.grids import taps


def _kernels():
    from kancoin.nets.kan.tables import decode_kernels

    decode_kernels()  # one clear error where numba cannot load
    from kancoin.nets.latent import kernels

    return kernels


def synthesis_tables(spec, arrays: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per synthesis layer: (decoding table, bias) from the stored tensors (file order)."""
    out = []
    it = iter(arrays[spec.first_grid + spec.levels :])
    for _, o in spec.layer_dims():
        base, coef, bias = next(it), next(it), next(it)
        pad = padded_outputs(o) if spec.spline_order == 3 else o
        out.append((spline_table_np(base, coef, spec.spline_order, pad), bias.astype(np.float32)))
    return out


def synthesize(spec, tables, feats: np.ndarray) -> np.ndarray:
    """feats (N, L) float32 -> outputs (N, C) float32 (decoding kernels)."""
    x = feats
    for (table, bias), (_, o) in zip(tables, spec.layer_dims(), strict=True):
        x = layer_forward(x, table, spec.grid_size, spec.spline_order, spec.grid_range, o)
        x += bias
    return x


def render(spec, arrays: list[np.ndarray], chunk: int = 1 << 16) -> np.ndarray:
    """Stored tensors (dequantized, file order) -> uint8 (H, W, C). ``chunk``: pixels whose
    features are held at once (rows of the image)."""
    k = _kernels()
    h, w = spec.height, spec.width
    first = spec.first_grid
    grids = [np.ascontiguousarray(a, np.float32) for a in arrays[first : first + spec.levels]]
    # each level interpolated along y once (H × w_l, small); along x per chunk of rows
    rows, col_taps = [], []
    for g in grids:
        if g.shape == (h, w):  # already on the pixel grid
            rows.append(None)
            col_taps.append(None)
            continue
        iy, wy = taps(h, g.shape[0])
        r = np.empty((h, g.shape[1]), np.float32)
        k.upsample_rows(g, iy, wy, r)
        rows.append(r)
        col_taps.append(taps(w, g.shape[1]))
    tables = synthesis_tables(spec, arrays)
    out = np.empty((h * w, spec.channels), np.uint8)
    step = max(1, chunk // w)
    feats = np.empty((min(h, step) * w, spec.levels), np.float32)
    for r0 in range(0, h, step):
        n = min(step, h - r0)
        f = feats[: n * w]
        for lv in range(spec.levels):
            if rows[lv] is None:
                k.copy_rows(grids[lv], f, lv, r0, n)
            else:
                ix, wx = col_taps[lv]
                k.upsample_cols(rows[lv], ix, wx, f, lv, r0, n)
        out[r0 * w : (r0 + n) * w] = k.to_uint8(synthesize(spec, tables, f))
    return out.reshape(h, w, spec.channels)
