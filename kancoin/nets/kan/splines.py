"""B-spline arithmetic shared by every evaluation of a B-spline KAN layer (no autograd).

    phi_{o,i}(x) = w_b[o,i] * SiLU(x) + s[o,i] * sum_c c[o,i,c] * B_c(x)

B_c are B-splines of order k on a uniform grid of G intervals over ``grid_range``, extended by k
knots on each side (G + k bases). Outside the extended grid every B_c is zero.

- ``bspline_basis_reference``: efficient-kan's Cox–de Boor recursion on the knot vector (tests,
  benchmark);
- ``bspline_basis_dense``: closed form, local basis scattered into a dense (N, I, G+k) basis
  (torch ops: CUDA, float64);
- ``spline_table``: the per-interval polynomial table the fused numba kernels evaluate.
"""

from __future__ import annotations

import torch

from kancoin.nets.kan.tables import (  # noqa: F401 - re-exported: the torch side's home
    decode_kernels,
    grid_position,
    kernel_chunks,
    padded_outputs,
    power_matrix,
    power_matrix_f32,
)


def knot_vector(grid_size: int, spline_order: int, grid_range: tuple[float, float]) -> torch.Tensor:
    """Extended uniform knots, float64, shape (G + 2k + 1,)."""
    lo, hi = grid_range
    h = (hi - lo) / grid_size
    steps = torch.arange(-spline_order, grid_size + spline_order + 1, dtype=torch.float64)
    return steps * h + lo


def bspline_basis_reference(
    x: torch.Tensor, grid_size: int, spline_order: int, grid_range: tuple[float, float]
) -> torch.Tensor:
    """Cox–de Boor recursion as in efficient-kan. x (N, I) -> (N, I, G + k)."""
    knots = knot_vector(grid_size, spline_order, grid_range).to(x.device, x.dtype)
    xe = x.unsqueeze(-1)
    bases = ((xe >= knots[:-1]) & (xe < knots[1:])).to(x.dtype)
    for r in range(1, spline_order + 1):
        left = (xe - knots[: -(r + 1)]) / (knots[r:-1] - knots[: -(r + 1)]) * bases[..., :-1]
        right = (knots[r + 1 :] - xe) / (knots[r + 1 :] - knots[1:(-r)]) * bases[..., 1:]
        bases = left + right
    return bases


def local_basis(t: torch.Tensor, spline_order: int) -> list[torch.Tensor]:
    """The k+1 non-zero uniform B-spline values at fractional position t in [0, 1).

    Same recursion (and float32 operation order) as the fused kernel. Entry q belongs to
    basis index m - k + q, where m is the interval index.
    """
    nb = [torch.ones_like(t)]
    for r in range(1, spline_order + 1):
        inv_r = 1.0 / r
        saved = torch.zeros_like(t)
        new = []
        for q in range(r):
            temp = nb[q] * inv_r
            new.append(saved + (q + 1 - t) * temp)
            saved = (t + (r - q - 1)) * temp
        new.append(saved)
        nb = new
    return nb


def bspline_basis_dense(
    x: torch.Tensor, grid_size: int, spline_order: int, grid_range: tuple[float, float]
) -> torch.Tensor:
    """Closed-form basis, x (N, I) -> (N, I, G + k); differentiable w.r.t. x."""
    k = spline_order
    g0, inv_h = grid_position(grid_size, k, grid_range)
    n_int = grid_size + 2 * k
    pos = (x - g0) * inv_h
    inside = (pos >= 0) & (pos < n_int)
    m = torch.floor(pos.detach()).clamp(0, n_int - 1)
    t = torch.where(inside, pos - m, torch.zeros_like(pos))
    values = torch.stack(local_basis(t, k), dim=-1) * inside.unsqueeze(-1).to(x.dtype)
    # Basis m - k + q lives at column m + q of a table padded by k on the left.
    cols = m.long().unsqueeze(-1) + torch.arange(k + 1, device=x.device)
    padded = torch.zeros(*x.shape, n_int + k, dtype=x.dtype, device=x.device)
    padded = padded.scatter(-1, cols, values)
    return padded[..., k : k + grid_size + k]


def local_basis_power_matrix(spline_order: int) -> torch.Tensor:
    """A (k+1, k+1): local basis q = sum_p A[q, p] t^p (same recursion as ``local_basis``)."""
    return torch.from_numpy(power_matrix(spline_order))


def spline_table(
    base_weight: torch.Tensor, coef: torch.Tensor, spline_order: int, padded_out: int = 0
) -> torch.Tensor:
    """Per-interval polynomial table for the fused kernels (not differentiable).

    base_weight (O, I), coef (O, I, G + k) -> table (I, G + 2k, k + 2, P): rows 0..k are the
    power-basis coefficients of the edge spline on each interval, row k+1 the base weight;
    P = max(O, padded_out), the columns past O zero.
    """
    n_out, n_in, m_coef = coef.shape
    shape = (n_in, m_coef + spline_order, spline_order + 2, max(n_out, padded_out))
    table = torch.zeros(shape) if padded_out > n_out else torch.empty(shape)
    power = power_matrix_f32(spline_order)
    decode_kernels().build_table(  # inputs first, outputs last: the kernel's loops run over outputs
        base_weight.detach().t().contiguous().numpy(),
        coef.detach().permute(1, 2, 0).contiguous().numpy(),
        power,
        table.numpy(),
    )
    return table
