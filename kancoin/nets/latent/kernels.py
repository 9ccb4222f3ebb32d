"""Decoding kernels of the latent family (numba, CPU, float32): upsampling the pyramid.

Sums run in a fixed order, without fastmath, on one thread: the features a file decodes to do
not depend on the thread count (the golden files pin them). One thread on purpose: a 768-wide
row takes ~4 µs, and a parallel region per call cost 36× the work on the 2-vCPU VM (0.22 ms
serial against 8 ms parallel for 73 rows).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def upsample_rows(grid, iy, wy, out):
    """grid (h, w), taps iy/wy (R, 4) -> out (R, w): each output row from 4 grid rows."""
    n_rows = out.shape[0]
    n_cols = grid.shape[1]
    for r in range(n_rows):
        i0, i1, i2, i3 = iy[r, 0], iy[r, 1], iy[r, 2], iy[r, 3]
        w0, w1, w2, w3 = wy[r, 0], wy[r, 1], wy[r, 2], wy[r, 3]
        for c in range(n_cols):
            acc = (w0 * grid[i0, c] + w1 * grid[i1, c]) + w2 * grid[i2, c]
            out[r, c] = acc + w3 * grid[i3, c]


@njit(cache=True)
def upsample_cols(rows, ix, wx, feats, channel, row0, n_rows):
    """rows (R, w) (rows ``row0`` … ``row0 + n_rows − 1`` of the image, already interpolated
    along y) -> feats[(r − row0)·W + c, channel] for those rows, W = len(ix)."""
    n_cols = ix.shape[0]
    for rr in range(n_rows):
        src = rows[row0 + rr]
        base = rr * n_cols
        for c in range(n_cols):
            feats[base + c, channel] = (
                (wx[c, 0] * src[ix[c, 0]] + wx[c, 1] * src[ix[c, 1]]) + wx[c, 2] * src[ix[c, 2]]
            ) + wx[c, 3] * src[ix[c, 3]]


@njit(cache=True)
def copy_rows(grid, feats, channel, row0, n_rows):
    """Level 0 (already on the pixel grid): feats[(r − row0)·W + c, channel] = grid[r, c]."""
    n_cols = grid.shape[1]
    for rr in range(n_rows):
        base = rr * n_cols
        for c in range(n_cols):
            feats[base + c, channel] = grid[row0 + rr, c]


def to_uint8(y: np.ndarray) -> np.ndarray:
    """Outputs (N, C) float32 -> uint8: clamped to [0, 1], × 255, rounded half to even (as the
    other families' decoders)."""
    return np.rint(np.clip(y, np.float32(0), np.float32(1)) * np.float32(255)).astype(np.uint8)
