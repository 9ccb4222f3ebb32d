"""COIN's SIREN as a torch module: sine layers with COIN's initialisation."""

from __future__ import annotations

import math

import torch
from torch import nn


class SirenLayer(nn.Module):
    """Linear layer followed by sin(w0 · x) (identity for the last layer). (N, I) -> (N, O)."""

    def __init__(
        self, dim_in: int, dim_out: int, w0: float, is_first: bool = False, is_last: bool = False
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)
        self.w0 = w0
        self.is_last = is_last
        # SIREN / COIN initialisation: first layer U(-1/in, 1/in), others U(-c/w0, c/w0),
        # c = sqrt(6/in).
        bound = 1.0 / dim_in if is_first else math.sqrt(6.0 / dim_in) / w0
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)
            self.linear.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        return out if self.is_last else torch.sin(self.w0 * out)


class Siren(nn.Module):
    """widths e.g. (2, 28, ..., 28, 3): every layer but the last is a sine layer."""

    def __init__(self, widths: tuple[int, ...], w0: float = 30.0, w0_initial: float = 30.0):
        super().__init__()
        self.widths = tuple(widths)
        dims = list(zip(widths[:-1], widths[1:]))
        self.layers = nn.ModuleList(
            SirenLayer(
                i, o, w0_initial if n == 0 else w0, is_first=n == 0, is_last=n == len(dims) - 1
            )
            for n, (i, o) in enumerate(dims)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
