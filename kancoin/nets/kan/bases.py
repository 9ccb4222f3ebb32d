"""KAN edge functions other than B-splines (``--basis``), each a layer with ``KANLayer``'s contract:

- ``rbf`` (FastKAN): Gaussians exp(-((x - u_c) / h)^2) on G uniform centres over grid_range;
- ``rsf`` (FasterKAN): reflectional switch functions 1 - tanh^2((x - u_c) / h), same centres;
- ``chebyshev`` (ChebyKAN): T_0..T_G of tanh(x), no base branch;
- ``fourier`` (FourierKAN, the KAN-COIN paper's appendix): a_j cos(j x) + b_j sin(j x),
  j = 1..G, no base branch;
- ``tanh``: w * tanh(a x^2 + b x) per edge (three numbers per edge).

They run on torch ops (training and decoding alike).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from kancoin.nets.kan.layers import KANLayer, kaiming_


class _DenseBasisLayer(KANLayer):
    """An edge function sum_c coef[o,i,c] f_c(x_i) over a dense basis (N, I, C), plus
    ``base_weight`` · SiLU(x) where the family has it."""

    coef_name = ""
    base_branch = True

    def __init__(self, in_features, out_features, n_basis, node_bias, layernorm, coef_std):
        super().__init__(in_features, out_features, node_bias, layernorm)
        if self.base_branch:
            self.base_weight = nn.Parameter(kaiming_(torch.empty(out_features, in_features)))
        coef = torch.empty(out_features, in_features, n_basis).normal_(0.0, coef_std)
        setattr(self, self.coef_name, nn.Parameter(coef))

    @property
    def edge_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return (("base_weight",) if self.base_branch else ()) + (self.coef_name,)

    def basis_values(self, x: torch.Tensor) -> torch.Tensor:  # (N, I) -> (N, I, C)
        raise NotImplementedError

    def edges(self, x: torch.Tensor) -> torch.Tensor:
        coef = getattr(self, self.coef_name)
        basis = self.basis_values(x)
        y = basis.reshape(x.shape[0], -1) @ coef.reshape(self.out_features, -1).t()
        if self.base_branch:
            y = y + nn.functional.silu(x) @ self.base_weight.t()
        return y


class _CentredLayer(_DenseBasisLayer):
    """G bumps on uniform centres over grid_range (both ends included), width h = spacing."""

    def __init__(self, in_features, out_features, grid_size, grid_range, node_bias, layernorm):
        # near-zero edge functions at the start, as efficient-kan (noise 0.1 / G): FastKAN's
        # std 0.1 starts an image fit from spiky noise that minibatches remove only slowly
        # (measured, 57 centres, 150 steps: 12.7 dB with std 0.1, 25.0 dB with 0.001)
        std = 0.1 / max(1, grid_size)
        super().__init__(in_features, out_features, grid_size, node_bias, layernorm, std)
        lo, hi = float(grid_range[0]), float(grid_range[1])
        self.grid_size = grid_size
        self.grid_range = (lo, hi)
        self.register_buffer("centres", torch.linspace(lo, hi, grid_size), persistent=False)
        self.inv_h = (grid_size - 1) / (hi - lo) if grid_size > 1 else 1.0 / (hi - lo)

    def scaled_offsets(self, x: torch.Tensor) -> torch.Tensor:
        return (x.unsqueeze(-1) - self.centres) * self.inv_h


class RBFLayer(_CentredLayer):
    """FastKAN: exp(-((x - u_c) / h)^2)."""

    basis, coef_name = "rbf", "rbf_coef"

    def basis_values(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.scaled_offsets(x).square())


class RSFLayer(_CentredLayer):
    """FasterKAN: reflectional switch functions 1 - tanh^2((x - u_c) / h)."""

    basis, coef_name = "rsf", "rsf_coef"

    def basis_values(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 - torch.tanh(self.scaled_offsets(x)).square()


class ChebyshevLayer(_DenseBasisLayer):
    """ChebyKAN: sum_d c_d T_d(tanh x), d = 0..degree (recurrence: exact gradient at ±1)."""

    basis, coef_name, base_branch = "chebyshev", "cheby_coef", False

    def __init__(self, in_features, out_features, degree, node_bias, layernorm):
        super().__init__(in_features, out_features, degree + 1, node_bias, layernorm, 1.0)
        self.grid_size = degree
        # smooth start (as Fourier): degree d with std 1 / (sqrt(I) (d + 1)). ChebyKAN's
        # 1 / (I (D + 1)) leaves a deep network without a base branch near zero, and it does
        # not train (measured, degree 57, 150 steps: 14.5 dB at lr 1e-3, 12.6 at 1e-2)
        d = torch.arange(degree + 1, dtype=torch.float32)
        with torch.no_grad():
            self.cheby_coef.mul_(1.0 / (math.sqrt(in_features) * (d + 1.0)))

    def basis_values(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.tanh(x)
        polys = [torch.ones_like(t), t]
        for _ in range(2, self.grid_size + 1):
            polys.append(2 * t * polys[-1] - polys[-2])
        return torch.stack(polys[: self.grid_size + 1], dim=-1)


class FourierLayer(KANLayer):
    """FourierKAN: sum_j a_j cos(j x) + b_j sin(j x), j = 1..G."""

    basis = "fourier"
    edge_names = ("fourier_cos", "fourier_sin")

    def __init__(self, in_features, out_features, grid_size, node_bias, layernorm):
        super().__init__(in_features, out_features, node_bias, layernorm)
        self.grid_size = grid_size
        # FourierKAN's smooth initialisation: frequency j starts with std 1 / (sqrt(I) j^2), so
        # the fit starts from a smooth function (see _CentredLayer)
        j = torch.arange(1, grid_size + 1, dtype=torch.float32)
        std = 1.0 / (math.sqrt(in_features) * j.square())
        shape = (out_features, in_features, grid_size)
        self.fourier_cos = nn.Parameter(torch.randn(shape) * std)
        self.fourier_sin = nn.Parameter(torch.randn(shape) * std)
        self.register_buffer(
            "freqs", torch.arange(1, grid_size + 1, dtype=torch.float32), persistent=False
        )

    def edges(self, x: torch.Tensor) -> torch.Tensor:
        phase = x.unsqueeze(-1) * self.freqs  # (N, I, G)
        n = x.shape[0]
        cos = torch.cos(phase).reshape(n, -1) @ self.fourier_cos.reshape(self.out_features, -1).t()
        sin = torch.sin(phase).reshape(n, -1) @ self.fourier_sin.reshape(self.out_features, -1).t()
        return cos + sin


class TanhLayer(KANLayer):
    """The minimal learnable activation: phi(x) = w * tanh(a x^2 + b x) per edge."""

    basis = "tanh"
    edge_names = ("tanh_a", "tanh_b", "tanh_w")

    def __init__(self, in_features, out_features, node_bias, layernorm):
        super().__init__(in_features, out_features, node_bias, layernorm)
        shape = (out_features, in_features)
        self.tanh_a = nn.Parameter(torch.empty(shape).uniform_(-1.0, 1.0))
        self.tanh_b = nn.Parameter(torch.empty(shape).uniform_(-2.0, 2.0))
        bound = math.sqrt(3.0 / in_features)
        self.tanh_w = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
        self.grid_size = 0

    def edges(self, x: torch.Tensor) -> torch.Tensor:
        # in blocks of inputs: (N, O, block) temporaries stay in cache (3x faster on CPU than
        # one (N, O, I) tensor at width 61)
        a, b, w = self.tanh_a, self.tanh_b, self.tanh_w  # once: each read may fake-quantize
        y = None
        for s in range(0, self.in_features, 8):
            xe = x[:, None, s : s + 8]  # (N, 1, B)
            inner = a[:, s : s + 8] * xe.square() + b[:, s : s + 8] * xe
            part = (torch.tanh(inner) * w[:, s : s + 8]).sum(-1)  # (N, O)
            y = part if y is None else y + part
        return y


