"""Training kernels of the latent family (numba, CPU float32): the features of random pixels,
every level's 4×4 bicubic neighbourhood gathered through the decoder's tap tables, and its
adjoint (the gradient scattered back onto the grids).

The torch path (``LatentNet.features_at`` on other devices) builds index and weight tensors of
N × 16 per level and runs a gather and an index_add on them; here one pass per pixel does all
levels. Both weigh the same 16 values by the same products wy · wx; the sums differ only in
float32 rounding order.

Layouts (C-contiguous): flat (S,) float32, every level's grid row-major, level l from
offsets[l]; widths (L,) the grids' columns; iy (L, H, 4) int32 and wy (L, H, 4) float32 the
row taps, ix (L, W, 4) and wx (L, W, 4) the column taps; rows, cols (N,) int64 the pixels;
feats and gfeats (N, L) float32.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_F32 = np.float32


@njit(cache=True, nogil=True)
def gather_forward(flat, offsets, widths, iy, wy, ix, wx, rows, cols, feats):
    """feats[n, l] = Σ_a Σ_b wy[l, r, a] · wx[l, c, b] · grid_l[iy[l, r, a], ix[l, c, b]]."""
    n_pix, n_lv = feats.shape
    for n in range(n_pix):
        r = rows[n]
        c = cols[n]
        for lv in range(n_lv):
            off = offsets[lv]
            gw = widths[lv]
            acc = _F32(0.0)
            for a in range(4):
                base = off + iy[lv, r, a] * gw
                s = _F32(0.0)
                for b in range(4):
                    s += flat[base + ix[lv, c, b]] * wx[lv, c, b]
                acc += wy[lv, r, a] * s
            feats[n, lv] = acc


@njit(cache=True, nogil=True)
def gather_backward(gfeats, offsets, widths, iy, wy, ix, wx, rows, cols, gflat):
    """The adjoint of :func:`gather_forward`: gflat += Σ_n gfeats[n, l] · (the taps of n)."""
    n_pix, n_lv = gfeats.shape
    for n in range(n_pix):
        r = rows[n]
        c = cols[n]
        for lv in range(n_lv):
            off = offsets[lv]
            gw = widths[lv]
            g = gfeats[n, lv]
            for a in range(4):
                base = off + iy[lv, r, a] * gw
                ga = g * wy[lv, r, a]
                for b in range(4):
                    gflat[base + ix[lv, c, b]] += ga * wx[lv, c, b]


_INV_LN2 = 1.0 / np.log(2.0)
_P_MIN = 1e-12  # of a bin's probability, as the torch path clamps it


@njit(cache=True, nogil=True)
def grid_rate(y, yq, k, weights, neighbours, min_scale, grad):
    """Bits of one grid's training proxy ``yq`` (H, W) under the model the file fits to
    ``y``'s rounded grid, and their gradient w.r.t. yq (into ``grad``, overwritten).

    The model is ``codec.latent.grid_bits``'s: a Laplace per causal context (k ≥ 2; k = 0 one
    scale for the grid) of the rounded grid, each context's scale its mean |q − μ| (at least
    ``min_scale``), centred on μ = Σ weights · neighbours when ``weights`` (4,) is not empty
    (``neighbours`` (4, 2) as (rows up, columns left)), else on 0 with the context |left| +
    |up|. The scales are taken without gradient; the centre is the proxy's own prediction.
    Float64 inside: a bin's probability is formed from its two tail masses, not as a
    difference of CDFs, which keeps far tails accurate."""
    h, w = y.shape
    n_nb = len(weights)
    q = np.empty((h, w))
    for i in range(h):
        for j in range(w):
            q[i, j] = np.rint(y[i, j])
    ctx = np.zeros((h, w), np.int64)
    if k == 0:
        m = 0.0
        for i in range(h):
            for j in range(w):
                m += abs(q[i, j])
        table = np.array([max(m / (h * w), min_scale)])
    else:
        sums = np.zeros(k)
        counts = np.zeros(k)
        for i in range(h):
            for j in range(w):
                s = 0.0
                if n_nb:
                    mu = 0.0
                    for t in range(n_nb):
                        ii = i - neighbours[t, 0]
                        jj = j - neighbours[t, 1]
                        if 0 <= ii and 0 <= jj < w:
                            v = q[ii, jj]
                            s += abs(v)
                            mu += weights[t] * v
                    dev = abs(q[i, j] - mu)
                else:
                    if j > 0:
                        s += abs(q[i, j - 1])
                    if i > 0:
                        s += abs(q[i - 1, j])
                    dev = abs(q[i, j])
                c = int(min(s, k - 1))
                ctx[i, j] = c
                sums[c] += dev
                counts[c] += 1.0
        table = np.empty(k)
        for c in range(k):
            table[c] = max(sums[c] / max(counts[c], 1.0), min_scale)
    # per context: 1/b, E = e^(−1/b), and log of a tail bin's mass at its inner edge, ½(1 − E)
    inv_b = 1.0 / table
    e_bin = np.exp(-inv_b)
    log_tail = np.log(-0.5 * np.expm1(-inv_b))
    log_min = np.log(_P_MIN)
    bits = 0.0
    gr = np.empty((h, w))
    for i in range(h):
        for j in range(w):
            r = np.float64(yq[i, j])
            if n_nb:
                for t in range(n_nb):
                    ii = i - neighbours[t, 0]
                    jj = j - neighbours[t, 1]
                    if 0 <= ii and 0 <= jj < w:
                        r -= weights[t] * yq[ii, jj]
            c = ctx[i, j]
            ib = inv_b[c]
            a = abs(r)
            if a >= 0.5:
                # a tail bin: p = ½(1 − E) e^(−(|r| − ½)/b), so −log2 p is linear in |r|
                logp = log_tail[c] - (a - 0.5) * ib
                if logp < log_min:
                    bits -= log_min * _INV_LN2
                    gr[i, j] = 0.0
                else:
                    bits -= logp * _INV_LN2
                    gr[i, j] = (ib if r > 0 else -ib) * _INV_LN2
            else:
                # the central bin: p = 1 − ½(e^(−(½ − r)/b) + e^(−(½ + r)/b))
                e_hi = np.exp(-(0.5 + r) * ib)
                e_lo = e_bin[c] / e_hi
                p = 1.0 - 0.5 * (e_lo + e_hi)
                if p < _P_MIN:
                    bits -= log_min * _INV_LN2
                    gr[i, j] = 0.0
                else:
                    bits -= np.log(p) * _INV_LN2
                    # d/dr of −log2 p: −(pdf(r + ½) − pdf(r − ½)) / p, pdf(x) = e^(−|x|/b) / 2b
                    gr[i, j] = -(e_hi - e_lo) * 0.5 * ib / p * _INV_LN2
    for i in range(h):
        for j in range(w):
            grad[i, j] = gr[i, j]
    if n_nb:  # r[i, j] = yq[i, j] − Σ_t w_t yq[i − dr_t, j − dc_t]
        for i in range(h):
            for j in range(w):
                g = gr[i, j]
                for t in range(n_nb):
                    ii = i - neighbours[t, 0]
                    jj = j - neighbours[t, 1]
                    if 0 <= ii and 0 <= jj < w:
                        grad[ii, jj] -= weights[t] * g
    return bits


@njit(cache=True, nogil=True)
def laplace_rate(r, scale, grad, grad_log_scale):
    """Bits of residuals ``r`` (flat float32, the training proxy less each value's μ) under
    zero-mean Laplaces of per-value ``scale`` (flat float32) on unit bins, and their gradient
    w.r.t. r (into ``grad``) and w.r.t. log scale (into ``grad_log_scale``, unless it is
    empty): ``grid_rate``'s bin masses with a scale per value (the latents' network's)."""
    log_min = np.log(_P_MIN)
    want_ls = grad_log_scale.shape[0] > 0
    bits = 0.0
    for n in range(r.shape[0]):
        x = np.float64(r[n])
        ib = 1.0 / np.float64(scale[n])
        a = abs(x)
        if a >= 0.5:
            logp = np.log(-0.5 * np.expm1(-ib)) - (a - 0.5) * ib
            if logp < log_min:
                bits -= log_min * _INV_LN2
                grad[n] = 0.0
                if want_ls:
                    grad_log_scale[n] = 0.0
            else:
                bits -= logp * _INV_LN2
                grad[n] = (ib if x > 0 else -ib) * _INV_LN2
                if want_ls:  # d logp / d ib, times d ib / d log scale = −ib
                    e = np.exp(-ib)
                    grad_log_scale[n] = (e / (1.0 - e) - (a - 0.5)) * ib * _INV_LN2
        else:
            e_hi = np.exp(-(0.5 + x) * ib)
            e_lo = np.exp(-(0.5 - x) * ib)
            p = 1.0 - 0.5 * (e_lo + e_hi)
            if p < _P_MIN:
                bits -= log_min * _INV_LN2
                grad[n] = 0.0
                if want_ls:
                    grad_log_scale[n] = 0.0
            else:
                bits -= np.log(p) * _INV_LN2
                grad[n] = -(e_hi - e_lo) * 0.5 * ib / p * _INV_LN2
                if want_ls:
                    dp = 0.5 * ((0.5 - x) * e_lo + (0.5 + x) * e_hi)  # d p / d ib
                    grad_log_scale[n] = dp * ib / p * _INV_LN2
    return bits


@njit(cache=True, nogil=True)
def neighbour_grad(g_r, g_ls, jmu, jls, taps, out):
    """The rate's gradient reaching each value of a grid as a neighbour the network reads:
    out[r − dr, c − dc] += g_ls[r, c] · jls[r, c, t] − g_r[r, c] · jmu[r, c, t] for every
    tap t = (dr, dc) of ``taps`` (T, 2) inside the grid. g_r, g_ls, out (H, W); jmu, jls
    (H, W, T) float32."""
    h, w = g_r.shape
    out[:, :] = 0.0
    for r in range(h):
        for c in range(w):
            a = g_r[r, c]
            b = g_ls[r, c]
            for t in range(taps.shape[0]):
                rr = r - taps[t, 0]
                cc = c - taps[t, 1]
                if 0 <= rr < h and 0 <= cc < w:
                    out[rr, cc] += b * jls[r, c, t] - a * jmu[r, c, t]


@njit(cache=True, nogil=True)
def neighbour_shift(d, mu0, ls0, jmu, jls, taps, lo, hi, mu, ls):
    """The network's (μ, log scale) moved from a refresh (mu0, ls0) by its Jacobians: mu[r, c]
    = mu0[r, c] + Σ_t jmu[r, c, t] · d[r − dr, c − dc] over taps t = (dr, dc) of ``taps``
    inside the grid, ls likewise with ls0 and jls, then clipped to [lo, hi] (the network's
    range). d, mu0, ls0, mu, ls (H, W); jmu, jls (H, W, T) float32."""
    h, w = d.shape
    for r in range(h):
        for c in range(w):
            m = 0.0
            s = 0.0
            for t in range(taps.shape[0]):
                rr = r - taps[t, 0]
                cc = c - taps[t, 1]
                if 0 <= rr < h and 0 <= cc < w:
                    m += jmu[r, c, t] * d[rr, cc]
                    s += jls[r, c, t] * d[rr, cc]
            mu[r, c] = mu0[r, c] + m
            ls[r, c] = min(max(ls0[r, c] + s, lo), hi)
