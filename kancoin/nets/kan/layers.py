"""KAN layers: the common layer contract and efficient-kan's B-spline layer (written for speed).

    phi_{o,i}(x) = w_b[o,i] * SiLU(x) + s[o,i] * sum_c c[o,i,c] * B_c(x)
    y_o          = sum_i phi_{o,i}(x_i)   (+ b_o with a node bias)

Any layer may have LayerNorm on its input and a bias per output node (pykan). A layer has two
evaluations, and the caller picks one: ``forward`` (training: autograd; a CPU float32 B-spline
layer runs the training kernels of ``fused``) and ``infer`` (decoding: no autograd; a CPU
float32 B-spline layer runs ``kernels_decode``, the bits files decode to). This module imports
no training code: ``fused`` is loaded only when ``forward`` needs it.

B-spline backends:
- ``fused``: numba kernels that touch only the k+1 non-zero bases (CPU, float32);
- ``dense``: torch ops, local basis scattered into a dense (N, I, G+k) basis (CUDA, float64);
- ``reference``: efficient-kan's Cox–de Boor recursion on the knot vector (tests, benchmark).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kancoin.nets.kan.splines import (
    bspline_basis_dense,
    bspline_basis_reference,
    decode_kernels,
    grid_position,
    kernel_chunks,
    padded_outputs,
    spline_table,
)

BACKENDS = ("auto", "fused", "dense", "reference")


class KANLayer(nn.Module):
    """Common part of every KAN layer: optional LayerNorm on the input, the edge functions
    (``edges``, one class per basis), optional node bias. (N, I) -> (N, O).

    ``stored_names`` are the layer's stored tensors in file order (``KanSpec.layer_tensors``);
    ``stored_tensor``/``load_stored`` read and write them; ``stored_attr`` names the parameter
    that *is* the stored tensor (for quantization-aware training).
    """

    basis = ""

    def __init__(self, in_features: int, out_features: int, node_bias: bool, layernorm: bool):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.has_layernorm = layernorm
        self.has_bias = node_bias
        if layernorm:
            self.ln_weight = nn.Parameter(torch.ones(in_features))
            self.ln_bias = nn.Parameter(torch.zeros(in_features))
        if node_bias:
            self.bias = nn.Parameter(torch.zeros(out_features))

    edge_names: tuple[str, ...] = ()

    @property
    def stored_names(self) -> list[str]:
        names = ["ln_weight", "ln_bias"] if self.has_layernorm else []
        names += list(self.edge_names)
        return names + (["bias"] if self.has_bias else [])

    def stored_attr(self, name: str) -> str:
        return name

    def stored_tensor(self, name: str) -> torch.Tensor:
        return getattr(self, self.stored_attr(name))

    def load_stored(self, name: str, value: torch.Tensor) -> None:
        with torch.no_grad():
            getattr(self, self.stored_attr(name)).copy_(value)

    def edges(self, x: torch.Tensor) -> torch.Tensor:  # (N, I) -> (N, O)
        raise NotImplementedError

    def edges_infer(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's edge sums (N, I) -> (N, O); torch-op bases have one evaluation."""
        return self.edges(x)

    def fold_scale(self) -> None:
        """Make every stored tensor a parameter itself (only the B-spline has a scale)."""

    def _normed(self, x: torch.Tensor) -> torch.Tensor:
        if self.has_layernorm:
            return nn.functional.layer_norm(x, (self.in_features,), self.ln_weight, self.ln_bias)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training evaluation (autograd). (N, I) -> (N, O)."""
        y = self.edges(self._normed(x))
        return y + self.bias if self.has_bias else y

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """Decoding evaluation (call under no_grad). (N, I) -> (N, O)."""
        y = self.edges_infer(self._normed(x))
        return y + self.bias if self.has_bias else y


def kaiming_(w: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    return nn.init.kaiming_uniform_(w, a=math.sqrt(5) * scale)


class KANLinear(KANLayer):
    """B-spline KAN layer (efficient-kan), nn.Linear-like: (N, in_features) -> (N, out_features).

    Parameters: ``base_weight`` (O, I), ``spline_weight`` (O, I, G + k), ``spline_scaler`` (O, I).
    The stored ``spline_coef`` is ``spline_weight × spline_scaler`` (scale folded in).
    """

    basis = "bspline"
    edge_names = ("base_weight", "spline_coef")

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
        node_bias: bool = False,
        layernorm: bool = False,
    ) -> None:
        super().__init__(in_features, out_features, node_bias, layernorm)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}")
        self.grid_size = grid_size
        self.spline_order = spline_order
        self.grid_range = (float(grid_range[0]), float(grid_range[1]))
        self.backend = backend
        n_coef = grid_size + spline_order
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, n_coef))
        self.spline_scaler = nn.Parameter(torch.empty(out_features, in_features))
        with torch.no_grad():
            kaiming_(self.base_weight, scale_base)
            # efficient-kan fits its initial coefficients to small noise; uniform noise of the
            # same scale gives the same start: a near-zero spline branch.
            self.spline_weight.uniform_(-0.5, 0.5).mul_(scale_noise / grid_size)
            kaiming_(self.spline_scaler, scale_spline)

    @property
    def n_coef(self) -> int:
        return self.grid_size + self.spline_order

    def scaled_spline_weight(self) -> torch.Tensor:
        """Coefficients with the per-edge scale folded in, (O, I, G + k)."""
        return self.spline_weight * self.spline_scaler.unsqueeze(-1)

    def stored_attr(self, name: str) -> str:
        # after ``fold_scale`` the spline_weight parameter is the stored coefficient table
        return "spline_weight" if name == "spline_coef" else name

    def stored_tensor(self, name: str) -> torch.Tensor:
        if name == "spline_coef":
            return self.scaled_spline_weight()
        return super().stored_tensor(name)

    def load_stored(self, name: str, value: torch.Tensor) -> None:
        super().load_stored(name, value)
        if name == "spline_coef":
            with torch.no_grad():
                self.spline_scaler.fill_(1.0)

    def fold_scale(self) -> None:
        """spline_weight <- spline_weight × scale, scale <- 1 (frozen): the same function, and
        the spline_weight parameter is then exactly the stored tensor."""
        with torch.no_grad():
            self.spline_weight.copy_(self.scaled_spline_weight())
            self.spline_scaler.fill_(1.0)
        self.spline_scaler.requires_grad_(False)

    def extend_grid(self, grid_size: int, points_per_interval: int = 16) -> None:
        """Change the grid to ``grid_size`` intervals (pykan's grid extension), refitting the
        coefficients by least squares so that each edge function is preserved as well as the
        new grid can (exactly when the new grid is a refinement). The scale is folded first
        (efficient-kan's update_grid multiplies by it twice). Resets the parameters' identity:
        optimizers must be rebuilt."""
        if grid_size == self.grid_size:
            return
        self.fold_scale()
        k = self.spline_order
        lo, hi = self.grid_range
        # samples over the new extended grid (where the new splines live), weighted 1 inside
        # grid_range, where the new basis spans every spline of the new grid (a refinement then
        # refits the old function exactly), and 0.001 in the k intervals outside it: a finer
        # grid's extension is narrower and its end bases incomplete, so out there the old
        # function cannot be kept (measured: the fit barely improves with more weight there,
        # while the inside loses its exactness)
        g0, inv_h = grid_position(grid_size, k, self.grid_range)
        n_int = grid_size + 2 * k
        n_pts = n_int * points_per_interval
        x = g0 + (torch.arange(n_pts, dtype=torch.float64) + 0.5) / (points_per_interval * inv_h)
        weight = torch.where((x >= lo) & (x <= hi), 1.0, 0.001).unsqueeze(1).double()
        x = x.unsqueeze(1)  # (P, 1)
        old = bspline_basis_dense(x, self.grid_size, k, self.grid_range)[:, 0]  # (P, G0 + k)
        new = bspline_basis_dense(x, grid_size, k, self.grid_range)[:, 0]  # (P, G + k)
        coef = self.spline_weight.detach().double().cpu()  # (O, I, G0 + k)
        values = old @ coef.reshape(-1, coef.shape[-1]).t()  # (P, O*I)
        fitted = torch.linalg.lstsq(new * weight, values * weight).solution  # (G + k, O*I)
        new_coef = fitted.t().reshape(self.out_features, self.in_features, grid_size + k)
        dev = self.spline_weight.device
        self.spline_weight = nn.Parameter(new_coef.float().to(dev))
        self.spline_scaler = nn.Parameter(torch.ones_like(self.spline_scaler), requires_grad=False)
        self.grid_size = grid_size

    def resolve_backend(self, x: torch.Tensor) -> str:
        if self.backend != "auto":
            return self.backend
        return "fused" if x.device.type == "cpu" and x.dtype == torch.float32 else "dense"

    def splits_by_input(self) -> bool:
        """True where the edge sums of a CPU float32 batch are, bit for bit, the sum of the
        terms of each input in order (``edges_of_input``, ``grid_terms_infer``): the fused
        cubic kernels start their sum from 0 and add one whole edge value per input (the
        generic kernel adds row by row)."""
        probe = torch.zeros(1, self.in_features)
        return self.spline_order == 3 and self.resolve_backend(probe) == "fused"

    def _fused_args(self) -> tuple[torch.Tensor, float, float]:
        g0, inv_h = grid_position(self.grid_size, self.spline_order, self.grid_range)
        return self.scaled_spline_weight(), g0, inv_h

    def edges_of_input(self, values: torch.Tensor, i: int) -> torch.Tensor:
        """The term input ``i`` adds to ``edges``: values (M,) -> (M, O), through the training
        kernels, differentiable w.r.t. the weights (needs ``splits_by_input``)."""
        from kancoin.nets.kan.fused import fused_edges

        coef, g0, inv_h = self._fused_args()
        v = values.reshape(-1, 1).contiguous()
        return fused_edges(v, self.base_weight[:, i : i + 1], coef[:, i : i + 1], 3, g0, inv_h)

    def edges(self, x: torch.Tensor) -> torch.Tensor:
        backend = self.resolve_backend(x)
        if backend == "fused":
            from kancoin.nets.kan.fused import fused_edges

            coef, g0, inv_h = self._fused_args()
            return fused_edges(x.contiguous(), self.base_weight, coef, self.spline_order, g0, inv_h)
        return self._edges_torch(x, backend)

    def _edges_torch(self, x: torch.Tensor, backend: str) -> torch.Tensor:
        coef = self.scaled_spline_weight()
        base = nn.functional.silu(x) @ self.base_weight.t()
        basis_fn = bspline_basis_reference if backend == "reference" else bspline_basis_dense
        basis = basis_fn(x, self.grid_size, self.spline_order, self.grid_range)
        spline = basis.reshape(x.shape[0], -1) @ coef.reshape(self.out_features, -1).t()
        return base + spline

    def _decode_table(self) -> tuple[object, torch.Tensor, float, float]:
        kd = decode_kernels()
        coef, g0, inv_h = self._fused_args()
        pad = padded_outputs(self.out_features) if self.spline_order == 3 else self.out_features
        return kd, spline_table(self.base_weight, coef, self.spline_order, pad).numpy(), g0, inv_h

    def edges_infer(self, x: torch.Tensor) -> torch.Tensor:
        backend = self.resolve_backend(x)
        if backend != "fused":
            return self._edges_torch(x, backend)
        kd, table, g0, inv_h = self._decode_table()
        xn = x.detach().contiguous().numpy()
        y = torch.empty(x.shape[0], self.out_features, dtype=torch.float32)
        run = kd.kan_forward_cubic if self.spline_order == 3 else kd.kan_forward
        run(xn, table, g0, inv_h, y.numpy(), kernel_chunks(x.shape[0]))
        return y

    def grid_terms_infer(
        self, xs: torch.Tensor, ys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoding: a two-input cubic layer's terms at xs (W,) and ys (H,), ((W, O), (H, O)),
        from one table; bit for bit the per-pixel ``edges_infer`` (needs ``splits_by_input``)."""
        kd, table, g0, inv_h = self._decode_table()
        outs = []
        for i, values in enumerate((xs, ys)):
            vn = values.detach().reshape(-1, 1).contiguous().numpy()
            y = torch.empty(vn.shape[0], self.out_features, dtype=torch.float32)
            kd.kan_forward_cubic(vn, table[i : i + 1], g0, inv_h, y.numpy(), kernel_chunks(len(vn)))
            outs.append(y)
        return outs[0], outs[1]
