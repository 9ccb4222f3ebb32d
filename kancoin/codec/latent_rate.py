"""The rate the latent encoder trains with: each grid's bits under the file's own context model
(``format.context``), its parameters fitted to the rounded grid as the file fits them, without
gradients through them; on CPU a numba kernel (``nets.latent.kernels_train``) gives the bits
and their gradient in one pass, elsewhere torch ops do.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from kancoin.format import arm
from kancoin.format import context as coding
from kancoin.format.context import MIN_SCALE, NEIGHBOURS, WEIGHT_UNIT
from kancoin.nets.latent import kernels_train

LOG2 = math.log(2.0)


def laplace_bits(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Bits of integers (or noisy integers) q under a zero-mean Laplace of ``scale``, coded on
    unit bins: Σ −log2(F(q + ½) − F(q − ½))."""

    def cdf(x: torch.Tensor) -> torch.Tensor:
        return 0.5 + 0.5 * torch.sign(x) * (1 - torch.exp(-x.abs() / scale))

    p = (cdf(q + 0.5) - cdf(q - 0.5)).clamp_min(1e-12)
    return -torch.log(p).sum() / LOG2


def neighbours(q: torch.Tensor) -> torch.Tensor:
    """The predictor's causal neighbours of every position of q (H, W): (4, H, W), 0 outside
    the grid (``format.context.neighbours``), differentiable."""
    h, w = q.shape
    p = torch.nn.functional.pad(q, (1, 1, 1, 0))
    return torch.stack([p[1 - dr : 1 - dr + h, 1 - dc : 1 - dc + w] for dr, dc in NEIGHBOURS])


def predicted(q: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """μ (H, W) of grid q (H, W) under predictor weights (4,) (in units of 1, not 1/64)."""
    return torch.tensordot(weights, neighbours(q), 1)


def fit_weights(model) -> list[torch.Tensor] | None:
    """Per grid, the predictor weights the file will store for its rounded grid (as
    ``serialise`` fits them), in units of 1; None without a predictor."""
    if not model.spec.predictor:
        return None
    out = []
    with torch.no_grad():
        for y in model.latents:
            q = torch.round(y).cpu().double().numpy()
            wt = coding.fit_predictor(q).astype(np.float32) / WEIGHT_UNIT
            out.append(torch.from_numpy(wt).to(y.device))
    return out


def fitted_scale(
    y: torch.Tensor, k: int = 0, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """The Laplace scale(s) the file will fit to the rounded grid, without gradients: k = 0,
    its mean |q| (the maximum-likelihood scale of a zero-mean Laplace); k ≥ 2, the same per
    causal context (``format.context``), about the prediction if ``weights``, one scale per
    position (H, W)."""
    with torch.no_grad():
        q = torch.round(y)
        a = q.abs()
        if not k:
            return a.mean().clamp_min(MIN_SCALE)
        if weights is None:
            s = torch.zeros_like(a)
            s[:, 1:] += a[:, :-1]
            s[1:, :] += a[:-1, :]
            dev = a
        else:
            nb = neighbours(q)
            s = nb.abs().sum(0)
            dev = (q - torch.tensordot(weights, nb, 1)).abs()
        ctx = s.clamp(max=k - 1).long().reshape(-1)
        sums = torch.zeros(k, dtype=a.dtype, device=a.device).index_add_(0, ctx, dev.reshape(-1))
        counts = torch.bincount(ctx, minlength=k).to(a.dtype)
        table = (sums / counts.clamp_min(1)).clamp_min(MIN_SCALE)
        return table[ctx].reshape(a.shape)


class _GridRate(torch.autograd.Function):
    """:func:`grid_bits` by the numba kernel (``kernels_train.grid_rate``): bits and their
    gradient w.r.t. the proxy in one pass over the grid; CPU float32."""

    @staticmethod
    def forward(ctx, q, y, k, weights):
        grad = np.empty(tuple(q.shape), np.float32)
        wt = np.empty(0) if weights is None else weights.detach().double().numpy()
        bits = kernels_train.grid_rate(
            y.detach().numpy(), q.detach().numpy(), k, wt, _NEIGHBOURS, MIN_SCALE, grad
        )
        ctx.save_for_backward(torch.from_numpy(grad))
        return torch.tensor(bits, dtype=torch.float32)

    @staticmethod
    def backward(ctx, g):
        (grad,) = ctx.saved_tensors
        return g * grad, None, None, None


_NEIGHBOURS = np.array(NEIGHBOURS, np.int64)


def grid_bits(
    q: torch.Tensor,
    y: torch.Tensor,
    k: int,
    weights: torch.Tensor | None,
    fused: bool | None = None,
) -> torch.Tensor:
    """Bits of grid q (rounded or noisy: the training proxy of y's integers) under the model
    the file fits to y's rounded grid (no gradient through the model's parameters).
    ``fused`` (default: on CPU float32) runs the numba kernel, 1.7× faster than the torch
    ops it replaces, forward and backward (docs/speed.md)."""
    if fused is None:
        fused = q.device.type == "cpu" and q.dtype == torch.float32 == y.dtype
    if fused:
        return _GridRate.apply(q.contiguous(), y.contiguous(), k, weights)
    scale = fitted_scale(y, k, weights)
    return laplace_bits(q if weights is None else q - predicted(q, weights), scale)


def estimated_latent_bits(model) -> float:
    """Bits of the rounded grids under the models the file will fit (no gradients)."""
    if model.spec.arm:
        return model.arm_state.estimated_bits(model)
    k = model.spec.context
    weights = fit_weights(model) or [None] * len(model.latents)
    with torch.no_grad():
        return float(sum(
            grid_bits(torch.round(y), y, k, wt) for y, wt in zip(model.latents, weights)
        ))  # fmt: skip


# -- the autoregressive network (format.arm) ---------------------------------------------------

ARM_LR = 1e-2  # Adam, the network (its own optimizer: it learns the grids' statistics)
ARM_BATCH = 1 << 15  # values a network step sees (of ~130,000 on a 768×512 image)


class ArmNet(torch.nn.Module):
    """The float twin of ``format.arm``'s network, trained on the rounded grids: inputs
    (N, TAPS) → (N, 2) as (μ, log scale); ``format.arm.to_ints`` of its arrays is what the
    file stores."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList([
            torch.nn.Linear(arm.TAPS, hidden), torch.nn.Linear(hidden, hidden),
            torch.nn.Linear(hidden, 2),
        ])  # fmt: skip
        with torch.no_grad():  # it starts as a zero-mean Laplace of scale 1
            self.layers[-1].weight.zero_()
            self.layers[-1].bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)

    def arrays(self) -> list[np.ndarray]:
        """Weights (O, I) and biases (O,) in ``format.arm.tensor_shapes`` order, float64."""
        out = []
        for layer in self.layers:
            out += [layer.weight.detach().cpu().double().numpy(),
                    layer.bias.detach().cpu().double().numpy()]  # fmt: skip
        return out


def arm_inputs(q: torch.Tensor) -> torch.Tensor:
    """The network's inputs of every position of grid q (H, W): (H·W, TAPS), 0 outside the
    grid (``format.arm.neighbours``)."""
    h, w = q.shape
    p = torch.nn.functional.pad(q, (arm.PAD_LEFT, arm.PAD_RIGHT, arm.PAD_TOP, 0))
    cols = [p[arm.PAD_TOP - dr : arm.PAD_TOP - dr + h, arm.PAD_LEFT - dc : arm.PAD_LEFT - dc + w]
            for dr, dc in arm.NEIGHBOURS]  # fmt: skip
    return torch.stack(cols, -1).reshape(-1, arm.TAPS)


def arm_laplace(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ, scale) of the network's outputs (N, 2), the scale within the file's table."""
    return out[:, 0], torch.exp(out[:, 1].clamp(*arm.LOG_SCALE_RANGE))


class _LaplaceRate(torch.autograd.Function):
    """``laplace_bits`` with a scale per value, by the numba kernel: bits and their gradient
    w.r.t. the residual in one pass; CPU float32."""

    @staticmethod
    def forward(ctx, r, scale):
        rr = r.detach().contiguous().reshape(-1).numpy()
        grad = np.empty(rr.shape, np.float32)
        sc = scale.contiguous().reshape(-1).numpy()
        bits = kernels_train.laplace_rate(rr, sc, grad, _NO_GRAD)
        ctx.save_for_backward(torch.from_numpy(grad).reshape(r.shape))
        return torch.tensor(bits, dtype=torch.float32)

    @staticmethod
    def backward(ctx, g):
        (grad,) = ctx.saved_tensors
        return g * grad, None


_NO_GRAD = np.empty(0, np.float32)
_ARM_TAPS = np.array(arm.NEIGHBOURS, np.int64)


class _ArmRate(torch.autograd.Function):
    """Bits of a grid's proxy yq under the network's Laplaces moved from the last refresh (μ0,
    log scale ls0, at the integers q0) by its Jacobians ``jmu``, ``jls`` (H, W, TAPS) as the
    neighbours moved from q0 (``kernels_train.neighbour_shift``); the gradient reaches yq
    both as the value coded and as the neighbour read. Numba kernels, CPU float32."""

    @staticmethod
    def forward(ctx, yq, q0, mu0, ls0, jmu, jls):
        d = (yq - q0).detach().contiguous().numpy()
        mu = np.empty(d.shape, np.float32)
        ls = np.empty(d.shape, np.float32)
        lo, hi = arm.LOG_SCALE_RANGE
        kernels_train.neighbour_shift(d, mu0.numpy(), ls0.numpy(), jmu.numpy(), jls.numpy(),
                                      _ARM_TAPS, lo, hi, mu, ls)  # fmt: skip
        r = (yq.detach().numpy() - mu).reshape(-1)
        g_r = np.empty(r.shape, np.float32)
        g_ls = np.empty(r.shape, np.float32)
        bits = kernels_train.laplace_rate(r, np.exp(ls).reshape(-1), g_r, g_ls)
        # a log scale held at the end of the network's range does not move
        g_ls *= ((ls > lo) & (ls < hi)).reshape(-1)
        ctx.save_for_backward(torch.from_numpy(g_r).reshape(yq.shape),
                              torch.from_numpy(g_ls).reshape(yq.shape), jmu, jls)  # fmt: skip
        return torch.tensor(bits, dtype=torch.float32)

    @staticmethod
    def backward(ctx, g):
        g_r, g_ls, jmu, jls = ctx.saved_tensors
        # r = q − μ(neighbours): a neighbour moves μ by jmu, the bits by −g_r · jmu
        via = np.empty(tuple(g_r.shape), np.float32)
        kernels_train.neighbour_grad(g_r.numpy(), g_ls.numpy(), jmu.numpy(), jls.numpy(),
                                     _ARM_TAPS, via)  # fmt: skip
        return g * (g_r + torch.from_numpy(via)), None, None, None, None, None


class ArmState:
    """The network the encoder trains beside the grids, and the Laplace (μ, scale) of every
    latent it gave at its last refresh: the rate of the steps in between. Without
    ``through_neighbours`` these stay fixed (a latent's rate has no gradient through its part
    in its neighbours' predictions); with it they follow the neighbours to first order, by the
    network's Jacobians at the refresh (a full forward and backward of the network every step
    would cost about three training steps)."""

    def __init__(self, model, through_neighbours: bool = False) -> None:
        dev = model.latents[0].device
        self.net = ArmNet(model.spec.arm).to(dev)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=ARM_LR)
        self.mu: list[torch.Tensor] = []
        self.scale: list[torch.Tensor] = []
        # the network's Laplaces follow the neighbours between refreshes, to first order (per
        # grid the refresh's integers q0 and log scales (H, W), and the Jacobians, d μ and
        # d log scale per input (H, W, TAPS)): so the rate's gradient also reaches a latent
        # as a neighbour the network reads
        self.through_neighbours = through_neighbours
        self.refresh: list[tuple[torch.Tensor, ...]] = []
        self.gen = torch.Generator().manual_seed(1)

    def _data(self, model) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            qs = [torch.round(y.detach()) for y in model.latents]
            x = torch.cat([arm_inputs(q) for q in qs])
            v = torch.cat([q.reshape(-1) for q in qs])
        return x, v

    def fit(self, model, steps: int, batch: int | None = ARM_BATCH) -> None:
        """``steps`` Adam steps on the rounded grids (``batch`` values drawn each; None: all,
        keeping the parameters with the fewest bits, those it starts from included), then the
        Laplaces of every latent for the steps that follow.

        Why keep the best on every value: that fit makes the file's network, and the rate
        control trained for the bits of the network it starts from; Adam's last step is not
        bound to be its best, so the file never gets a network worse than that start."""
        x, v = self._data(model)
        best, best_state = math.inf, None
        for _ in range(steps):
            if batch is not None and batch < len(v):
                idx = torch.randint(0, len(v), (batch,), generator=self.gen).to(v.device)
                xb, vb = x[idx], v[idx]
            else:
                xb, vb = x, v
            mu, scale = arm_laplace(self.net(xb))
            loss = laplace_bits(vb - mu, scale) / len(vb)
            # on every value the loss is these parameters' exact bits: keep the fewest
            if batch is None and (bits := float(loss.detach())) < best:
                best, best_state = bits, {k: t.clone() for k, t in self.net.state_dict().items()}
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        with torch.no_grad():
            mu, scale = arm_laplace(self.net(x))
            if best_state is not None and float(laplace_bits(v - mu, scale)) / len(v) > best:
                self.net.load_state_dict(best_state)  # the last step was not the best
                mu, scale = arm_laplace(self.net(x))
        jmu = jls = None
        if self.through_neighbours:
            jmu, jls = self._jacobians(x)
        self.mu, self.scale, self.refresh, at = [], [], [], 0
        for y in model.latents:
            n, shape = y.numel(), y.shape
            self.mu.append(mu[at : at + n].reshape(shape))
            self.scale.append(scale[at : at + n].reshape(shape))
            if jmu is not None:  # v holds the rounded grids
                self.refresh.append((
                    v[at : at + n].reshape(shape), torch.log(self.scale[-1]),
                    jmu[at : at + n].reshape(*shape, arm.TAPS).contiguous(),
                    jls[at : at + n].reshape(*shape, arm.TAPS).contiguous(),
                ))  # fmt: skip
            at += n

    def _jacobians(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """d μ / d x and d log scale / d x (N, TAPS) of the network at inputs x (N, TAPS):
        each row's outputs depend on that row alone, so one backward of their sum gives them."""
        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            mu, scale = arm_laplace(self.net(xg))
            jmu, jls = (torch.autograd.grad(v.sum(), xg, retain_graph=not i)[0]
                        for i, v in enumerate((mu, torch.log(scale))))  # fmt: skip
        return jmu.detach(), jls.detach()

    def bits(self, lv: int, yq: torch.Tensor, fused: bool | None = None) -> torch.Tensor:
        """Bits of grid ``lv``'s training proxy under the last refresh's Laplaces (moved by
        the neighbours if ``through_neighbours``); ``fused`` (default: on CPU float32) by the
        numba kernels, else torch ops."""
        if fused is None:
            fused = yq.device.type == "cpu" and yq.dtype == torch.float32
        if self.through_neighbours:
            q0, ls0, jmu, jls = self.refresh[lv]
            if fused:
                return _ArmRate.apply(yq, q0, self.mu[lv], ls0, jmu, jls)
            # the same by autograd: μ and log scale moved by the Jacobians from the refresh
            dx = arm_inputs(yq - q0).reshape(*yq.shape, arm.TAPS)
            mu = self.mu[lv] + (dx * jmu).sum(-1)
            ls = ls0 + (dx * jls).sum(-1)
            lo, hi = arm.LOG_SCALE_RANGE
            inside = (ls > lo) & (ls < hi)  # held at the range's ends, it does not move
            ls = torch.where(inside, ls, ls.clamp(lo, hi).detach())
            return laplace_bits(yq - mu, torch.exp(ls))
        r = yq - self.mu[lv]
        if fused:
            return _LaplaceRate.apply(r, self.scale[lv])
        return laplace_bits(r, self.scale[lv])

    def ints(self) -> list[np.ndarray]:
        """The parameters the file stores (``format.arm``)."""
        return arm.to_ints(self.net.arrays())

    def estimated_bits(self, model) -> float:
        """Bits of the rounded grids under the float network (what the λ control follows)."""
        x, v = self._data(model)
        with torch.no_grad():
            mu, scale = arm_laplace(self.net(x))
            return float(laplace_bits(v - mu, scale))
