"""KAN layers: efficient-kan's B-spline formulation (written for speed) and other edge functions.

    phi_{o,i}(x) = w_b[o,i] * SiLU(x) + s[o,i] * sum_c c[o,i,c] * B_c(x)
    y_o          = sum_i phi_{o,i}(x_i)   (+ b_o with a node bias)

Other bases (``--basis``), each a layer class here with the same contract:
- ``rbf`` (FastKAN): Gaussians exp(-((x - u_c) / h)^2) on G uniform centres over grid_range;
- ``rsf`` (FasterKAN): reflectional switch functions 1 - tanh^2((x - u_c) / h), same centres;
- ``chebyshev`` (ChebyKAN): T_0..T_G of tanh(x), no base branch;
- ``fourier`` (FourierKAN, the KAN-COIN paper's appendix): a_j cos(j x) + b_j sin(j x),
  j = 1..G, no base branch;
- ``tanh``: w * tanh(a x^2 + b x) per edge (three numbers per edge).
Any layer may have LayerNorm on its input and a bias per output node (pykan).

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
    power = _power_matrix_f32(spline_order)
    _kernels.build_table(  # inputs first, outputs last: the kernel's loops run over outputs
        base_weight.detach().t().contiguous().numpy(),
        coef.detach().permute(1, 2, 0).contiguous().numpy(),
        power,
        table.numpy(),
    )
    return table


def padded_outputs(n_out: int) -> int:
    """Output width the cubic kernels run at. LLVM vectorises their loops over outputs only from
    32 iterations on (16 lanes, unrolled twice); below that they run scalar. So 17..31 outputs
    run at 32 with zero columns: measured faster forward and backward (scripts/bench_kernels.py,
    README "Speed"), with the same arithmetic per output, hence the same bits."""
    return 32 if 16 < n_out < 32 else n_out


def backward_outputs(n_out: int) -> tuple[int, int]:
    """(P, W): the output width the cubic backward runs at (zero columns past n_out) and its
    output block, a compile-time width whose k+2 accumulator rows stay in registers. One block
    of up to 32 outputs is cheapest; wider layers go in blocks of 16 (scripts/bench_kernels.py,
    README "Speed")."""
    for width in (4, 8, 16, _kernels.MAX_BLOCK_OUT):
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


def _training(*tensors: torch.Tensor) -> bool:
    """Whether a fused call is recorded for a backward: grad mode on and an input needing it.
    Decided by the caller: inside a Function's forward grad mode is always off, and
    ``ctx.needs_input_grad`` stays true under ``torch.no_grad`` for parameters, which would
    send decoding (rendered under no_grad) through the training kernel."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


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
    def forward(ctx, x, base_weight, coef, spline_order, g0, inv_h, train):  # noqa: D102
        xn = x.detach().contiguous().numpy()
        n_out = coef.shape[0]
        pad = padded_outputs(n_out) if spline_order == 3 else n_out
        table = spline_table(base_weight, coef, spline_order, pad).numpy()
        # the kernels store only the first n_out columns: y is contiguous for the next layer
        y = torch.empty(x.shape[0], n_out, dtype=torch.float32)
        den = None
        if spline_order == 3:
            # training keeps 1 + exp(-x) for the backward; decoding does not
            den = np.empty(xn.shape if train else (0, 0), dtype=np.float32)
            _kernels.kan_forward_cubic(xn, table, g0, inv_h, y.numpy(), _chunks(x.shape[0]), den)
        else:
            _kernels.kan_forward(xn, table, g0, inv_h, y.numpy(), _chunks(x.shape[0]))
        ctx.arrays = (xn, table, den)
        ctx.grid = (spline_order, g0, inv_h, n_out)
        return y

    @staticmethod
    def backward(ctx, gy):  # noqa: D102
        xn, table, den = ctx.arrays
        k, g0, inv_h, n_out = ctx.grid
        need_gx = ctx.needs_input_grad[0]
        gx = torch.empty(xn.shape if need_gx else (1, 1), dtype=torch.float32)
        n_in, n_int = table.shape[:2]
        if k == 3:  # only cubic layers are padded
            table, width = _backward_table(table, n_out)
        parts = np.empty((_chunks(xn.shape[0]),) + table.shape, dtype=np.float32)
        gyn = gy.contiguous().numpy()  # (N, n_out): the cubic kernel zero-pads its blocks
        if k == 3:
            zeros = (np.float32(0.0),) * width  # its length selects the compiled output block
            _kernels.kan_backward_cubic(
                xn, den, gyn, table, g0, inv_h, gx.numpy(), parts, need_gx, zeros
            )
        else:
            _kernels.kan_backward(xn, gyn, table, g0, inv_h, gx.numpy(), parts, need_gx)
        g_base = torch.empty(n_in, n_out)
        g_coef = torch.empty(n_in, n_int - k, n_out)
        _kernels.table_grad(parts, _power_matrix_f32(k), g_base.numpy(), g_coef.numpy())
        ctx.arrays = None
        g_base, g_coef = g_base.t(), g_coef.permute(2, 0, 1)  # (O, I), (O, I, M) as the weights
        return (gx if need_gx else None), g_base, g_coef, None, None, None, None


class _GridTerms(torch.autograd.Function):
    """A two-input cubic fused layer's terms on the pixel grid, from one table per step:
    xs (W,), ys (H,), base_weight (O, 2), coef (O, 2, G + k) -> ((W, O), (H, O)), the terms
    input 0 adds at xs and input 1 at ys; bit for bit ``edges_of_input(xs, 0)`` and
    ``edges_of_input(ys, 1)`` (each table row depends on its own input only), with one table
    build and one weight product instead of two (about 0.4 ms a step). Gradients w.r.t. the
    weights only."""

    @staticmethod
    def forward(ctx, xs, ys, base_weight, coef, g0, inv_h, train):  # noqa: D102
        n_out = coef.shape[0]
        pad = padded_outputs(n_out)
        table = spline_table(base_weight, coef, 3, pad).numpy()
        saved, outs = [], []
        for i, values in enumerate((xs, ys)):
            vn = values.detach().reshape(-1, 1).contiguous().numpy()
            y = torch.empty(vn.shape[0], n_out, dtype=torch.float32)
            den = np.empty(vn.shape if train else (0, 0), dtype=np.float32)
            _kernels.kan_forward_cubic(
                vn, table[i : i + 1], g0, inv_h, y.numpy(), _chunks(vn.shape[0]), den
            )
            saved.append((vn, den))
            outs.append(y)
        ctx.arrays = (saved, table)
        ctx.grid = (g0, inv_h, n_out)
        return outs[0], outs[1]

    @staticmethod
    def backward(ctx, gtx, gty):  # noqa: D102
        saved, table = ctx.arrays
        g0, inv_h, n_out = ctx.grid
        table, width = _backward_table(table, n_out)
        n_int = table.shape[1]
        g_base = torch.empty(2, n_out)
        g_coef = torch.empty(2, n_int - 3, n_out)
        gx = np.empty((1, 1), dtype=np.float32)
        zeros = (np.float32(0.0),) * width
        for i, ((vn, den), gy) in enumerate(zip(saved, (gtx, gty), strict=True)):
            parts = np.empty((_chunks(vn.shape[0]), 1) + table.shape[1:], dtype=np.float32)
            gyn = gy.contiguous().numpy()
            _kernels.kan_backward_cubic(
                vn, den, gyn, table[i : i + 1], g0, inv_h, gx, parts, False, zeros
            )
            _kernels.table_grad(
                parts, _power_matrix_f32(3), g_base[i : i + 1].numpy(), g_coef[i : i + 1].numpy()
            )
        ctx.arrays = None
        return None, None, g_base.t(), g_coef.permute(2, 0, 1), None, None, None


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
        _kernels.grid_sum_forward(txn, tyn, idxn, txn.shape[0], h.numpy(), _chunks(idx.shape[0]))
        ctx.save_for_backward(idx)
        ctx.shapes = (txn.shape, tyn.shape)
        return h

    @staticmethod
    def backward(ctx, gh):  # noqa: D102
        (idx,) = ctx.saved_tensors
        (w, n_out), (h, _) = ctx.shapes
        nchunks = _chunks(idx.shape[0])
        gtx = np.empty((nchunks, w, n_out), dtype=np.float32)
        gty = np.empty((nchunks, h, n_out), dtype=np.float32)
        _kernels.grid_sum_backward(gh.contiguous().numpy(), idx.numpy(), w, gtx, gty)
        return torch.from_numpy(gtx.sum(0)), torch.from_numpy(gty.sum(0)), None


def grid_sum(tx: torch.Tensor, ty: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """tx (W, O), ty (H, O), idx (N,) int64 row-major pixel indices -> tx[idx % W] + ty[idx // W]
    (N, O); differentiable in tx and ty. Fused numba kernel for CPU float32, torch otherwise."""
    width = tx.shape[0]
    if _kernels is not None and tx.device.type == "cpu" and tx.dtype == torch.float32:
        return _GridSum.apply(tx, ty, idx)
    return tx[idx % width] + ty[idx // width]


class KANLayer(nn.Module):
    """Common part of every KAN layer: optional LayerNorm on the input, the edge functions
    (``edges``, one class per basis), optional node bias. (N, I) -> (N, O).

    ``stored_names`` are the layer's stored tensors in file order (``ModelSpec.kan_layer_tensors``);
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

    def fold_scale(self) -> None:
        """Make every stored tensor a parameter itself (only the B-spline has a scale)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.has_layernorm:
            x = nn.functional.layer_norm(x, (self.in_features,), self.ln_weight, self.ln_bias)
        y = self.edges(x)
        return y + self.bias if self.has_bias else y


def _kaiming_(w: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
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
            _kaiming_(self.base_weight, scale_base)
            # efficient-kan fits its initial coefficients to small noise; uniform noise of the
            # same scale gives the same start: a near-zero spline branch.
            self.spline_weight.uniform_(-0.5, 0.5).mul_(scale_noise / grid_size)
            _kaiming_(self.spline_scaler, scale_spline)

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
        g0, inv_h = _grid_position(grid_size, k, self.grid_range)
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
        if x.device.type == "cpu" and x.dtype == torch.float32 and HAVE_NUMBA:
            return "fused"
        return "dense"

    def splits_by_input(self) -> bool:
        """True where ``edges`` of a CPU float32 batch is, bit for bit, the sum of the terms of
        each input in order (``edges_of_input``): the fused cubic kernel starts its sum from 0
        and adds one whole edge value per input (the generic kernel adds row by row)."""
        probe = torch.zeros(1, self.in_features)
        return self.spline_order == 3 and self.resolve_backend(probe) == "fused"

    def edges_of_input(self, values: torch.Tensor, i: int) -> torch.Tensor:
        """The term input ``i`` adds to ``edges``: values (M,) -> (M, O), through the fused
        kernel, differentiable w.r.t. the weights (needs ``splits_by_input``)."""
        g0, inv_h = _grid_position(self.grid_size, self.spline_order, self.grid_range)
        coef = self.spline_weight[:, i : i + 1] * self.spline_scaler[:, i : i + 1, None]
        base = self.base_weight[:, i : i + 1]
        return _FusedKAN.apply(
            values.reshape(-1, 1).contiguous(), base, coef, self.spline_order, g0, inv_h,
            _training(values, base, coef),
        )  # fmt: skip

    def edges(self, x: torch.Tensor) -> torch.Tensor:
        backend = self.resolve_backend(x)
        coef = self.scaled_spline_weight()
        if backend == "fused":
            g0, inv_h = _grid_position(self.grid_size, self.spline_order, self.grid_range)
            return _FusedKAN.apply(
                x.contiguous(), self.base_weight, coef, self.spline_order, g0, inv_h,
                _training(x, self.base_weight, coef),
            )  # fmt: skip
        base = nn.functional.silu(x) @ self.base_weight.t()
        basis_fn = bspline_basis_reference if backend == "reference" else bspline_basis_dense
        basis = basis_fn(x, self.grid_size, self.spline_order, self.grid_range)
        spline = basis.reshape(x.shape[0], -1) @ coef.reshape(self.out_features, -1).t()
        return base + spline


class _DenseBasisLayer(KANLayer):
    """An edge function sum_c coef[o,i,c] f_c(x_i) over a dense basis (N, I, C), plus
    ``base_weight`` · SiLU(x) where the family has it."""

    coef_name = ""
    base_branch = True

    def __init__(self, in_features, out_features, n_basis, node_bias, layernorm, coef_std):
        super().__init__(in_features, out_features, node_bias, layernorm)
        if self.base_branch:
            self.base_weight = nn.Parameter(_kaiming_(torch.empty(out_features, in_features)))
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

    def grid_terms(self, xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """xs (W,), ys (H,) -> the first layer's terms ((W, O), (H, O)); differentiable. The
        edge sums at pixel (r, c) are term_x[c] + term_y[r]: W + H evaluations, not W·H."""
        first = self.layers[0]
        if xs.requires_grad or ys.requires_grad:
            return first.edges_of_input(xs, 0), first.edges_of_input(ys, 1)
        g0, inv_h = _grid_position(first.grid_size, first.spline_order, first.grid_range)
        coef = first.scaled_spline_weight()
        train = _training(first.base_weight, coef)
        return _GridTerms.apply(xs, ys, first.base_weight, coef, g0, inv_h, train)

    def forward_from_first(self, h: torch.Tensor) -> torch.Tensor:
        """The network after the first layer's edge sums h (N, O1): node bias, then the rest."""
        first = self.layers[0]
        if first.has_bias:
            h = h + first.bias
        for layer in self.layers[1:]:
            h = layer(h)
        return h
