"""Autograd Functions of the fused B-spline KAN layer: training only (the decoder never imports
this module; it evaluates layers through ``kernels_decode``, see ``layers.KANLinear.infer``).

Each forward runs the training kernels (``kernels_train``: for cubic layers a float32 exp that
LLVM vectorises, and 1 + exp(-x) kept for the backward); outputs agree with the decoding
kernels to about 1e-7. Which kernel runs is the caller's choice: calling these Functions is
choosing training.
"""

from __future__ import annotations

import numpy as np
import torch

from kancoin.errors import KancoinError
from kancoin.nets.kan.splines import (
    decode_kernels,
    kernel_chunks,
    padded_outputs,
    power_matrix_f32,
    spline_table,
)


def train_kernels():
    """The training kernels; a clear error where numba cannot load."""
    decode_kernels()  # the same error message when numba is missing
    try:
        from kancoin.nets.kan import kernels_train
    except Exception as e:
        raise KancoinError(
            f"training a B-spline KAN on the CPU needs numba ({type(e).__name__}: {e})"
        ) from None
    return kernels_train


def backward_outputs(n_out: int) -> tuple[int, int]:
    """(P, W): the output width the cubic backward runs at (zero columns past n_out) and its
    output block, a compile-time width whose k+2 accumulator rows stay in registers. One block
    of up to 32 outputs is cheapest; wider layers go in blocks of 16 (scripts/bench_kernels.py,
    docs/speed.md)."""
    for width in (4, 8, 16, train_kernels().MAX_BLOCK_OUT):
        if n_out <= width:
            return width, width
    return -(-n_out // 16) * 16, 16


def _backward_table(table: np.ndarray, n_out: int) -> tuple[np.ndarray, int]:
    """The forward's cubic table (I, n_int, k+2, P_f) widened with zero columns to the
    backward's width, and the backward's output block (``backward_outputs``)."""
    pad, width = backward_outputs(n_out)
    if pad == table.shape[3]:
        return table, width
    wide = np.zeros(table.shape[:3] + (pad,), dtype=np.float32)
    wide[..., : table.shape[3]] = table  # padded_outputs(n) <= backward_outputs(n)[0]
    return wide, width


class _FusedKAN(torch.autograd.Function):
    """Autograd wrapper around the numba kernels (CPU float32).

    x (N, I), base_weight (O, I), coef (O, I, G + k) -> y (N, O)
    """

    @staticmethod
    def forward(ctx, x, base_weight, coef, spline_order, g0, inv_h):  # noqa: D102
        kt = train_kernels()
        xn = x.detach().contiguous().numpy()
        n_out = coef.shape[0]
        pad = padded_outputs(n_out) if spline_order == 3 else n_out
        table = spline_table(base_weight, coef, spline_order, pad).numpy()
        # the kernels store only the first n_out columns: y is contiguous for the next layer
        y = torch.empty(x.shape[0], n_out, dtype=torch.float32)
        den = None
        if spline_order == 3:  # keeps 1 + exp(-x) for the backward
            den = np.empty(xn.shape, dtype=np.float32)
            kt.kan_forward_cubic_train(
                xn, table, g0, inv_h, y.numpy(), kernel_chunks(x.shape[0]), den
            )
        else:  # other orders: one kernel for training and decoding
            decode_kernels().kan_forward(
                xn, table, g0, inv_h, y.numpy(), kernel_chunks(x.shape[0])
            )
        ctx.arrays = (xn, table, den)
        ctx.grid = (spline_order, g0, inv_h, n_out)
        return y

    @staticmethod
    def backward(ctx, gy):  # noqa: D102
        kt = train_kernels()
        xn, table, den = ctx.arrays
        k, g0, inv_h, n_out = ctx.grid
        need_gx = ctx.needs_input_grad[0]
        gx = torch.empty(xn.shape if need_gx else (1, 1), dtype=torch.float32)
        n_in, n_int = table.shape[:2]
        if k == 3:  # only cubic layers are padded
            table, width = _backward_table(table, n_out)
        parts = np.empty((kernel_chunks(xn.shape[0]),) + table.shape, dtype=np.float32)
        gyn = gy.contiguous().numpy()  # (N, n_out): the cubic kernel zero-pads its blocks
        if k == 3:
            zeros = (np.float32(0.0),) * width  # its length selects the compiled output block
            kt.kan_backward_cubic(
                xn, den, gyn, table, g0, inv_h, gx.numpy(), parts, need_gx, zeros
            )
        else:
            kt.kan_backward(xn, gyn, table, g0, inv_h, gx.numpy(), parts, need_gx)
        g_base = torch.empty(n_in, n_out)
        g_coef = torch.empty(n_in, n_int - k, n_out)
        kt.table_grad(parts, power_matrix_f32(k), g_base.numpy(), g_coef.numpy())
        ctx.arrays = None
        g_base, g_coef = g_base.t(), g_coef.permute(2, 0, 1)  # (O, I), (O, I, M) as the weights
        return (gx if need_gx else None), g_base, g_coef, None, None, None


class _GridTerms(torch.autograd.Function):
    """A two-input cubic fused layer's terms on the pixel grid, from one table per step:
    xs (W,), ys (H,), base_weight (O, 2), coef (O, 2, G + k) -> ((W, O), (H, O)), the terms
    input 0 adds at xs and input 1 at ys; bit for bit ``edges_of_input(xs, 0)`` and
    ``edges_of_input(ys, 1)`` (each table row depends on its own input only), with one table
    build and one weight product instead of two (about 0.4 ms a step). Gradients w.r.t. the
    weights only."""

    @staticmethod
    def forward(ctx, xs, ys, base_weight, coef, g0, inv_h):  # noqa: D102
        kt = train_kernels()
        n_out = coef.shape[0]
        pad = padded_outputs(n_out)
        table = spline_table(base_weight, coef, 3, pad).numpy()
        saved, outs = [], []
        for i, values in enumerate((xs, ys)):
            vn = values.detach().reshape(-1, 1).contiguous().numpy()
            y = torch.empty(vn.shape[0], n_out, dtype=torch.float32)
            den = np.empty(vn.shape, dtype=np.float32)
            kt.kan_forward_cubic_train(
                vn, table[i : i + 1], g0, inv_h, y.numpy(), kernel_chunks(vn.shape[0]), den
            )
            saved.append((vn, den))
            outs.append(y)
        ctx.arrays = (saved, table)
        ctx.grid = (g0, inv_h, n_out)
        return outs[0], outs[1]

    @staticmethod
    def backward(ctx, gtx, gty):  # noqa: D102
        kt = train_kernels()
        saved, table = ctx.arrays
        g0, inv_h, n_out = ctx.grid
        table, width = _backward_table(table, n_out)
        n_int = table.shape[1]
        g_base = torch.empty(2, n_out)
        g_coef = torch.empty(2, n_int - 3, n_out)
        gx = np.empty((1, 1), dtype=np.float32)
        zeros = (np.float32(0.0),) * width
        for i, ((vn, den), gy) in enumerate(zip(saved, (gtx, gty), strict=True)):
            parts = np.empty((kernel_chunks(vn.shape[0]), 1) + table.shape[1:], dtype=np.float32)
            gyn = gy.contiguous().numpy()
            kt.kan_backward_cubic(
                vn, den, gyn, table[i : i + 1], g0, inv_h, gx, parts, False, zeros
            )
            kt.table_grad(
                parts, power_matrix_f32(3), g_base[i : i + 1].numpy(), g_coef[i : i + 1].numpy()
            )
        ctx.arrays = None
        return None, None, g_base.t(), g_coef.permute(2, 0, 1), None, None


class _GridSum(torch.autograd.Function):
    """tx (W, O), ty (H, O), idx (N,) row-major pixel indices -> tx[idx % W] + ty[idx // W]
    (N, O), as one numba pass (CPU float32); the same sums as the torch expression, bit for bit.
    With its backward it takes under half the time of torch's gather and index_put with
    accumulation (profiled at 2 threads: 0.33 against 0.85 ms a step)."""

    @staticmethod
    def forward(ctx, tx, ty, idx):  # noqa: D102
        txn, tyn = tx.detach().contiguous().numpy(), ty.detach().contiguous().numpy()
        idxn = idx.contiguous().numpy()
        h = torch.empty(idx.shape[0], tx.shape[1], dtype=torch.float32)
        train_kernels().grid_sum_forward(
            txn, tyn, idxn, txn.shape[0], h.numpy(), kernel_chunks(idx.shape[0])
        )
        ctx.save_for_backward(idx)
        ctx.shapes = (txn.shape, tyn.shape)
        return h

    @staticmethod
    def backward(ctx, gh):  # noqa: D102
        (idx,) = ctx.saved_tensors
        (w, n_out), (h, _) = ctx.shapes
        nchunks = kernel_chunks(idx.shape[0])
        gtx = np.empty((nchunks, w, n_out), dtype=np.float32)
        gty = np.empty((nchunks, h, n_out), dtype=np.float32)
        train_kernels().grid_sum_backward(gh.contiguous().numpy(), idx.numpy(), w, gtx, gty)
        return torch.from_numpy(gtx.sum(0)), torch.from_numpy(gty.sum(0)), None


def grid_sum(tx: torch.Tensor, ty: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """tx (W, O), ty (H, O), idx (N,) int64 row-major pixel indices -> tx[idx % W] + ty[idx // W]
    (N, O); differentiable in tx and ty. Fused numba kernel for CPU float32, torch otherwise."""
    width = tx.shape[0]
    if tx.device.type == "cpu" and tx.dtype == torch.float32:
        return _GridSum.apply(tx, ty, idx)
    return tx[idx % width] + ty[idx // width]



def fused_edges(
    x: torch.Tensor,
    base_weight: torch.Tensor,
    coef: torch.Tensor,
    spline_order: int,
    g0: float,
    inv_h: float,
) -> torch.Tensor:
    """A B-spline layer's edge sums x (N, I) -> (N, O) through the training kernels,
    differentiable w.r.t. x and the weights."""
    return _FusedKAN.apply(x, base_weight, coef, spline_order, g0, inv_h)


def fused_grid_terms(
    xs: torch.Tensor,
    ys: torch.Tensor,
    base_weight: torch.Tensor,
    coef: torch.Tensor,
    g0: float,
    inv_h: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A two-input cubic layer's terms on the pixel grid (``_GridTerms``), differentiable
    w.r.t. the weights."""
    return _GridTerms.apply(xs, ys, base_weight, coef, g0, inv_h)
