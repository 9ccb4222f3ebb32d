"""A KAN: a stack of KAN layers of one basis, and its separable first layer on the pixel grid."""

from __future__ import annotations

import torch
from torch import nn

from kancoin.nets.kan.bases import ChebyshevLayer, FourierLayer, RBFLayer, RSFLayer, TanhLayer
from kancoin.nets.kan.layers import KANLayer, KANLinear


def make_layer(
    basis: str,
    in_features: int,
    out_features: int,
    grid_size: int,
    spline_order: int = 3,
    grid_range: tuple[float, float] = (-1.0, 1.0),
    node_bias: bool = False,
    layernorm: bool = False,
    backend: str = "auto",
) -> KANLayer:
    """One KAN layer of the given basis (``spec.BASES``)."""
    i, o, nb, ln = in_features, out_features, node_bias, layernorm
    if basis == "bspline":
        return KANLinear(i, o, grid_size, spline_order, grid_range, backend=backend,
                         node_bias=nb, layernorm=ln)  # fmt: skip
    if basis == "rbf":
        return RBFLayer(i, o, grid_size, grid_range, nb, ln)
    if basis == "rsf":
        return RSFLayer(i, o, grid_size, grid_range, nb, ln)
    if basis == "chebyshev":
        return ChebyshevLayer(i, o, grid_size, nb, ln)
    if basis == "fourier":
        return FourierLayer(i, o, grid_size, nb, ln)
    if basis == "tanh":
        return TanhLayer(i, o, nb, ln)
    raise ValueError(f"unknown basis {basis!r}")


class KAN(nn.Module):
    """A stack of KAN layers, widths e.g. (2, 12, 12, 12, 3). LayerNorm (if asked) goes on the
    input of every layer but the first; the first layer may have a grid of its own
    (``first_grid_size``, B-spline)."""

    def __init__(
        self,
        widths: tuple[int, ...],
        grid_size: int = 5,
        spline_order: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        backend: str = "auto",
        basis: str = "bspline",
        node_bias: bool = False,
        layernorm: bool = False,
        first_grid_size: int | None = None,
    ) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.basis = basis
        first = first_grid_size or grid_size
        self.layers = nn.ModuleList(
            make_layer(basis, i, o, first if n == 0 else grid_size, spline_order, grid_range,
                       node_bias, layernorm and n > 0, backend)  # fmt: skip
            for n, (i, o) in enumerate(zip(self.widths[:-1], self.widths[1:]))
        )

    def set_backend(self, backend: str) -> None:
        for layer in self.layers:
            if isinstance(layer, KANLinear):
                layer.backend = backend

    def extend_grid(self, grid_size: int | tuple[int, ...]) -> None:
        """B-spline only: refit every layer on a grid of ``grid_size`` intervals (one for all
        layers, or one per layer)."""
        grids = (grid_size,) * len(self.layers) if isinstance(grid_size, int) else grid_size
        if len(grids) != len(self.layers):
            raise ValueError("one grid size per layer")
        for layer, g in zip(self.layers, grids):
            if not isinstance(layer, KANLinear):
                raise ValueError("grid extension needs the bspline basis")
            layer.extend_grid(g)

    @property
    def layer_grids(self) -> tuple[int, ...]:
        return tuple(layer.grid_size for layer in self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def grid_separable(self) -> bool:
        """The first layer on a pixel grid is separable: its edge sums at (x, y) are
        term_x(x) + term_y(y), bit for bit (``grid_terms``), for a fused cubic B-spline first
        layer without LayerNorm (CPU)."""
        first = self.layers[0]
        return (
            isinstance(first, KANLinear)
            and first.in_features == 2
            and not first.has_layernorm
            and first.splits_by_input()
        )

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """Decoding evaluation (decoding kernels; call under no_grad). (N, I) -> (N, C)."""
        for layer in self.layers:
            x = layer.infer(x)
        return x

    def grid_terms(self, xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: xs (W,), ys (H,) -> the first layer's terms ((W, O), (H, O)),
        differentiable. The edge sums at pixel (r, c) are term_x[c] + term_y[r]: W + H
        evaluations, not W·H."""
        first = self.layers[0]
        if xs.requires_grad or ys.requires_grad:
            return first.edges_of_input(xs, 0), first.edges_of_input(ys, 1)
        from kancoin.nets.kan.fused import fused_grid_terms

        coef, g0, inv_h = first._fused_args()
        return fused_grid_terms(xs, ys, first.base_weight, coef, g0, inv_h)

    def grid_terms_infer(
        self, xs: torch.Tensor, ys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoding: the first layer's terms at xs (W,) and ys (H,) (decoding kernels)."""
        return self.layers[0].grid_terms_infer(xs, ys)

    def forward_from_first(self, h: torch.Tensor) -> torch.Tensor:
        """Training: the network after the first layer's edge sums h (N, O1)."""
        first = self.layers[0]
        if first.has_bias:
            h = h + first.bias
        for layer in self.layers[1:]:
            h = layer(h)
        return h

    def infer_from_first(self, h: torch.Tensor) -> torch.Tensor:
        """Decoding: the network after the first layer's edge sums h (N, O1)."""
        first = self.layers[0]
        if first.has_bias:
            h = h + first.bias
        for layer in self.layers[1:]:
            h = layer.infer(h)
        return h
