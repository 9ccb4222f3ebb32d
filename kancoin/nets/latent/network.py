"""The latent family's training module (torch): the grids as parameters and the synthesis network.

Latents are held in integer units (``latents[l]`` (h_l, w_l), float while training); a grid's
value at the decoder is its integer times the grid's ``steps[l]``. The features of a pixel are
the L grids interpolated there through the same 4-tap tables the decoder uses (``grids.taps``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kancoin.nets.kan.network import KAN
from kancoin.nets.latent import kernels_train
from kancoin.nets.latent.grids import taps


class _Gather(torch.autograd.Function):
    """Features (N, L) of pixels (rows, cols) from the L grids, the numba kernels' forward
    and adjoint (``kernels_train``); CPU float32."""

    @staticmethod
    def forward(ctx, tables, rows, cols, *grids):
        offsets, widths, iy, wy, ix, wx = tables
        flat = torch.cat([g.detach().reshape(-1) for g in grids]).numpy()
        feats = np.empty((len(rows), len(grids)), np.float32)
        kernels_train.gather_forward(flat, offsets, widths, iy, wy, ix, wx, rows, cols, feats)
        ctx.tables, ctx.rows, ctx.cols = tables, rows, cols
        ctx.shapes = [g.shape for g in grids]
        ctx.size = flat.size
        return torch.from_numpy(feats)

    @staticmethod
    def backward(ctx, gfeats):
        offsets, widths, iy, wy, ix, wx = ctx.tables
        gflat = np.zeros(ctx.size, np.float32)
        g = np.ascontiguousarray(gfeats.numpy(), dtype=np.float32)
        kernels_train.gather_backward(g, offsets, widths, iy, wy, ix, wx, ctx.rows, ctx.cols, gflat)
        grads, at = [], 0
        for shape in ctx.shapes:
            n = shape[0] * shape[1]
            grads.append(torch.from_numpy(gflat[at : at + n].reshape(shape)))
            at += n
        return (None, None, None, *grads)


class MlpSynthesis(nn.Module):
    """The MLP synthesis: (N, I) -> (N, O) through ``widths``, GELU (its tanh form) after
    each hidden layer (the decoder's: ``fixed.fixed_synthesize``, in fixed point; format 9's
    ``render.dense_forward``)."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = torch.nn.functional.gelu(layer(x), approximate="tanh")
        return self.layers[-1](x)


class LatentNet(nn.Module):
    def __init__(self, spec, step: float = 1.0) -> None:
        super().__init__()
        self.spec = spec
        self.widths = spec.widths
        self.latents = nn.ParameterList(
            nn.Parameter(torch.zeros(h, w)) for h, w in spec.grid_shapes
        )
        self.steps = [float(np.float32(step))] * spec.levels
        self.synthesis = MlpSynthesis(spec.widths) if spec.mlp else KAN(
            spec.widths, spec.grid_size, spec.spline_order, spec.grid_range, node_bias=True
        )  # fmt: skip
        with torch.no_grad():  # start at mid-grey
            self.synthesis.layers[-1].bias.fill_(0.5)
        # per grid, its 4-tap tables to the pixel grid (None: the grid is the pixel grid)
        self._taps = [
            None if (h, w) == (spec.height, spec.width) else
            tuple(torch.from_numpy(a) for a in (*taps(spec.height, h), *taps(spec.width, w)))
            for h, w in spec.grid_shapes
        ]  # fmt: skip
        self._tables = self._gather_tables(spec)

    @staticmethod
    def _gather_tables(spec) -> tuple[np.ndarray, ...]:
        """Every level's tap tables stacked for the numba gather (``kernels_train``'s layout):
        offsets, widths, iy, wy, ix, wx; a full-resolution level gets identity taps."""
        def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
            if n_out == n_in:
                idx = np.repeat(np.arange(n_out, dtype=np.int32)[:, None], 4, 1)
                return idx, np.tile(np.array([1, 0, 0, 0], np.float32), (n_out, 1))
            return taps(n_out, n_in)

        rows = [axis(spec.height, h) for h, _ in spec.grid_shapes]
        cols = [axis(spec.width, w) for _, w in spec.grid_shapes]
        sizes = [h * w for h, w in spec.grid_shapes]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        widths = np.array([w for _, w in spec.grid_shapes], np.int64)
        return (
            offsets, widths,
            np.ascontiguousarray(np.stack([i for i, _ in rows])),
            np.ascontiguousarray(np.stack([t for _, t in rows])),
            np.ascontiguousarray(np.stack([i for i, _ in cols])),
            np.ascontiguousarray(np.stack([t for _, t in cols])),
        )  # fmt: skip

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

    def features_at(
        self, grids: list[torch.Tensor], idx: torch.Tensor, fused: bool | None = None
    ) -> torch.Tensor:
        """Features (N, L) of the pixels at row-major indices idx (N,), differentiable: each
        level's 4×4 neighbourhood, weighted by the same taps. ``fused`` (default: on CPU
        float32) runs the numba kernels, all levels in one pass over the pixels (4.6× faster
        than the torch ops, forward and backward, docs/speed.md); else one flat gather per
        level (its backward an index_add, much cheaper than advanced indexing's)."""
        w = self.spec.width
        if fused is None:
            fused = idx.device.type == "cpu" and all(g.dtype == torch.float32 for g in grids)
        if fused:
            i = idx.numpy()
            return _Gather.apply(self._tables, i // w, i % w, *grids)
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
                if self.spec.mlp:
                    tensors = (layer.weight, layer.bias)
                else:
                    tensors = (layer.base_weight, layer.scaled_spline_weight(), layer.bias)
                out += [t.detach().float().cpu().numpy().copy() for t in tensors]
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
                if self.spec.mlp:
                    layer.weight.copy_(torch.from_numpy(next(it)))
                    layer.bias.copy_(torch.from_numpy(next(it)))
                    continue
                layer.base_weight.copy_(torch.from_numpy(next(it)))
                layer.load_stored("spline_coef", torch.from_numpy(next(it)))
                layer.bias.copy_(torch.from_numpy(next(it)))
