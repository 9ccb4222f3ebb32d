"""KAN layer with efficient-kan's formulation, written for speed.

    phi_{o,i}(x) = w_b[o,i] * SiLU(x) + s[o,i] * sum_c c[o,i,c] * B_c(x)
    y_o          = sum_i phi_{o,i}(x_i)

B_c are B-splines of order k on a uniform grid of G intervals over ``grid_range``, extended by k
knots on each side (G + k bases). Outside the extended grid every B_c is zero.

Three evaluations of the same function:
- ``fused``: numba kernels that touch only the k+1 non-zero bases (CPU, float32);
- ``dense``: torch ops, local basis scattered into a dense (N, I, G+k) basis (CUDA / fallback);
- ``reference``: efficient-kan's Cox–de Boor recursion on the knot vector (tests, benchmark).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

try:  # numba is a dependency, but keep the codec usable (slower) where it cannot load
    from kancoin import _kernels

    HAVE_NUMBA = True
except Exception:  # pragma: no cover - exercised only on broken installs
    _kernels = None
    HAVE_NUMBA = False

BACKENDS = ("auto", "fused", "dense", "reference")


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


def _grid_position(grid_size: int, spline_order: int, grid_range: tuple[float, float]):
    lo, hi = grid_range
    h = (hi - lo) / grid_size
    g0 = lo - spline_order * h
    return g0, 1.0 / h


def bspline_basis_dense(
    x: torch.Tensor, grid_size: int, spline_order: int, grid_range: tuple[float, float]
) -> torch.Tensor:
    """Closed-form basis, x (N, I) -> (N, I, G + k); differentiable w.r.t. x."""
    k = spline_order
    g0, inv_h = _grid_position(grid_size, k, grid_range)
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
    from numpy.polynomial import polynomial as P

    nb = [np.array([1.0])]
    for r in range(1, spline_order + 1):
        saved = np.array([0.0])
        new = []
        for q in range(r):
            temp = nb[q] / r
            new.append(P.polyadd(saved, P.polymul([q + 1, -1.0], temp)))
            saved = P.polymul([r - q - 1, 1.0], temp)
        new.append(saved)
        nb = new
    a = np.zeros((spline_order + 1, spline_order + 1))
    for q, poly in enumerate(nb):
        a[q, : len(poly)] = poly
    return torch.from_numpy(a)


def spline_table(base_weight: torch.Tensor, coef: torch.Tensor, spline_order: int) -> torch.Tensor:
    """Per-interval polynomial table for the fused kernels (not differentiable).

    base_weight (O, I), coef (O, I, G + k) -> table (I, G + 2k, k + 2, O): rows 0..k are the
    power-basis coefficients of the edge spline on each interval, row k+1 the base weight.
    """
    n_out, n_in, m_coef = coef.shape
    table = torch.empty(n_in, m_coef + spline_order, spline_order + 2, n_out)
    power = _power_matrix_f32(spline_order)
    _kernels.build_table(
        base_weight.detach().contiguous().numpy(),
        coef.detach().contiguous().numpy(),
        power,
        table.numpy(),
    )
    return table


_POWER_CACHE: dict[int, np.ndarray] = {}


def _power_matrix_f32(spline_order: int) -> np.ndarray:
    if spline_order not in _POWER_CACHE:
        _POWER_CACHE[spline_order] = (
            local_basis_power_matrix(spline_order).numpy().astype(np.float32)
        )
    return _POWER_CACHE[spline_order]


def _kernels_threads() -> int:
    import numba

    return numba.get_num_threads()


def _chunks(n_samples: int) -> int:
    # One chunk per thread, but not for tiny batches (thread start-up would dominate).
    return max(1, min(_kernels_threads(), n_samples // 2048))


class _FusedKAN(torch.autograd.Function):
    """Autograd wrapper around the numba kernels (CPU float32).

    x (N, I), base_weight (O, I), coef (O, I, G + k) -> y (N, O)
    """

    @staticmethod
    def forward(ctx, x, base_weight, coef, spline_order, g0, inv_h):  # noqa: D102
        xn = x.detach().contiguous().numpy()
        table = spline_table(base_weight, coef, spline_order).numpy()
        y = torch.empty(x.shape[0], table.shape[3], dtype=torch.float32)
        fwd = _kernels.kan_forward_cubic if spline_order == 3 else _kernels.kan_forward
        fwd(xn, table, g0, inv_h, y.numpy(), _chunks(x.shape[0]))
        ctx.arrays = (xn, table)
        ctx.grid = (spline_order, g0, inv_h)
        return y

    @staticmethod
    def backward(ctx, gy):  # noqa: D102
        xn, table = ctx.arrays
        k, g0, inv_h = ctx.grid
        need_gx = ctx.needs_input_grad[0]
        gx = torch.empty(xn.shape if need_gx else (1, 1), dtype=torch.float32)
        parts = np.empty((_chunks(xn.shape[0]),) + table.shape, dtype=np.float32)
        bwd = _kernels.kan_backward_cubic if k == 3 else _kernels.kan_backward
        bwd(xn, gy.contiguous().numpy(), table, g0, inv_h, gx.numpy(), parts, need_gx)
        n_in, n_int, _, n_out = table.shape
        g_base = torch.empty(n_out, n_in)
        g_coef = torch.empty(n_out, n_in, n_int - k)
        _kernels.table_grad(parts, _power_matrix_f32(k), g_base.numpy(), g_coef.numpy())
        ctx.arrays = None
        return (gx if need_gx else None), g_base, g_coef, None, None, None


class KANLinear(nn.Module):
    """One KAN layer, nn.Linear-like: (N, in_features) -> (N, out_features).

    Parameters: ``base_weight`` (O, I), ``spline_weight`` (O, I, G + k), ``spline_scaler`` (O, I).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid_size: int = 5,
        spline_order: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        scale_noise: float = 0.1,
        scale_base: float = 1.0,
        scale_spline: float = 1.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}")
        self.in_features = in_features
        self.out_features = out_features
        self.grid_size = grid_size
        self.spline_order = spline_order
        self.grid_range = (float(grid_range[0]), float(grid_range[1]))
        self.backend = backend
        n_coef = grid_size + spline_order
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, n_coef))
        self.spline_scaler = nn.Parameter(torch.empty(out_features, in_features))
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.base_weight, a=math.sqrt(5) * scale_base)
            # efficient-kan fits its initial coefficients to small noise; uniform noise of the
            # same scale gives the same start: a near-zero spline branch.
            self.spline_weight.uniform_(-0.5, 0.5).mul_(scale_noise / grid_size)
            nn.init.kaiming_uniform_(self.spline_scaler, a=math.sqrt(5) * scale_spline)

    @property
    def n_coef(self) -> int:
        return self.grid_size + self.spline_order

    def scaled_spline_weight(self) -> torch.Tensor:
        """Coefficients with the per-edge scale folded in, (O, I, G + k)."""
        return self.spline_weight * self.spline_scaler.unsqueeze(-1)

    def resolve_backend(self, x: torch.Tensor) -> str:
        if self.backend != "auto":
            return self.backend
        if x.device.type == "cpu" and x.dtype == torch.float32 and HAVE_NUMBA:
            return "fused"
        return "dense"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        backend = self.resolve_backend(x)
        coef = self.scaled_spline_weight()
        if backend == "fused":
            g0, inv_h = _grid_position(self.grid_size, self.spline_order, self.grid_range)
            return _FusedKAN.apply(
                x.contiguous(), self.base_weight, coef, self.spline_order, g0, inv_h
            )
        base = nn.functional.silu(x) @ self.base_weight.t()
        basis_fn = bspline_basis_reference if backend == "reference" else bspline_basis_dense
        basis = basis_fn(x, self.grid_size, self.spline_order, self.grid_range)
        spline = basis.reshape(x.shape[0], -1) @ coef.reshape(self.out_features, -1).t()
        return base + spline


class KAN(nn.Module):
    """A stack of KANLinear layers, widths e.g. (2, 12, 12, 12, 3)."""

    def __init__(
        self,
        widths: tuple[int, ...],
        grid_size: int = 5,
        spline_order: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.layers = nn.ModuleList(
            KANLinear(i, o, grid_size, spline_order, grid_range, backend=backend)
            for i, o in zip(self.widths[:-1], self.widths[1:])
        )

    def set_backend(self, backend: str) -> None:
        for layer in self.layers:
            layer.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
