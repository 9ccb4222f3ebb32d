"""The latent family's training module (torch): the grids as parameters and the synthesis KAN.

Latents are held in integer units (``latents[l]`` (h_l, w_l), float while training); a grid's
value at the decoder is its integer times the grid's ``steps[l]``. The features of a pixel are
the L grids interpolated there through the same 4-tap tables the decoder uses (``grids.taps``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kancoin.nets.kan.network import KAN
from kancoin.nets.latent.grids import taps


class LatentNet(nn.Module):
    def __init__(self, spec, step: float = 1.0) -> None:
        super().__init__()
        self.spec = spec
        self.widths = spec.widths
        self.latents = nn.ParameterList(
            nn.Parameter(torch.zeros(h, w)) for h, w in spec.grid_shapes
        )
        self.steps = [float(np.float32(step))] * spec.levels
        self.synthesis = KAN(
            spec.widths, spec.grid_size, spec.spline_order, spec.grid_range, node_bias=True
        )
        with torch.no_grad():  # start at mid-grey
            self.synthesis.layers[-1].bias.fill_(0.5)
        # per grid, its 4-tap tables to the pixel grid (None: the grid is the pixel grid)
        self._taps = [
            None if (h, w) == (spec.height, spec.width) else
            tuple(torch.from_numpy(a) for a in (*taps(spec.height, h), *taps(spec.width, w)))
            for h, w in spec.grid_shapes
        ]  # fmt: skip

    def to(self, *args, **kwargs):  # the tap tables follow the module
        out = super().to(*args, **kwargs)
        dev = self.latents[0].device
        self._taps = [None if tp is None else tuple(t.to(dev) for t in tp) for tp in self._taps]
        return out

    def features(
        self, grids: list[torch.Tensor], rows: tuple[int, int], cols: tuple[int, int]
    ) -> torch.Tensor:
        """Grids in feature units (list of (h_l, w_l)) -> features (N, L) of the pixels in
        rows × cols (row-major), differentiable."""
        r0, r1 = rows
        c0, c1 = cols
        out = []
        for lv in range(len(grids)):
            if self._taps[lv] is None:
                out.append(grids[lv][r0:r1, c0:c1].reshape(-1))
                continue
            iy, wy, ix, wx = self._taps[lv]
            iy, wy, ix, wx = iy[r0:r1].long(), wy[r0:r1], ix[c0:c1].long(), wx[c0:c1]
            g = grids[lv]
            lo_r, hi_r = int(iy.min()), int(iy.max()) + 1
            lo_c, hi_c = int(ix.min()), int(ix.max()) + 1
            g = g[lo_r:hi_r, lo_c:hi_c]
            r = (g[iy - lo_r] * wy[:, :, None]).sum(1)  # (R, w')
            out.append((r[:, ix - lo_c] * wx).sum(2).reshape(-1))  # (R, C)
        return torch.stack(out, 1)

    def features_at(self, grids: list[torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
        """Features (N, L) of the pixels at row-major indices idx (N,), differentiable: each
        level's 4×4 neighbourhood, weighted by the same taps (one flat gather per level: its
        backward is an index_add, much cheaper than advanced indexing's)."""
        w = self.spec.width
        r, c = idx // w, idx % w
        out = []
        for lv in range(len(grids)):
            if self._taps[lv] is None:
                out.append(grids[lv].reshape(-1).index_select(0, idx))
                continue
            iy, wy, ix, wx = self._taps[lv]
            g = grids[lv]
            flat = (iy[r].long() * g.shape[1])[:, :, None] + ix[c].long()[:, None, :]
            vals = g.reshape(-1).index_select(0, flat.reshape(-1)).reshape(-1, 16)
            weights = (wy[r][:, :, None] * wx[c][:, None, :]).reshape(-1, 16)
            out.append((vals * weights).sum(1))
        return torch.stack(out, 1)

    def synthesize(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, L) -> (N, C), training kernels."""
        return self.synthesis(feats)

    def synthesis_arrays(self) -> list[np.ndarray]:
        """The synthesis's stored tensors, float32, file order."""
        out = []
        with torch.no_grad():
            for layer in self.synthesis.layers:
                for t in (layer.base_weight, layer.scaled_spline_weight(), layer.bias):
                    out.append(t.detach().float().cpu().numpy().copy())
        return out

    def export_arrays(self) -> list[np.ndarray]:
        raise NotImplementedError("the latent encoder writes its files (kancoin.codec.latent)")

    def load_arrays(self, arrays: list[np.ndarray]) -> None:
        first, levels = self.spec.first_grid, self.spec.levels
        with torch.no_grad():
            for y, a, s in zip(self.latents, arrays[first : first + levels], self.steps):
                y.copy_(torch.from_numpy(np.asarray(a) / s))
            it = iter(arrays[first + levels :])
            for layer in self.synthesis.layers:
                layer.base_weight.copy_(torch.from_numpy(next(it)))
                layer.load_stored("spline_coef", torch.from_numpy(next(it)))
                layer.bias.copy_(torch.from_numpy(next(it)))
