"""Training loop (encoder only): Adam on random minibatches of pixels, best weights kept."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from kancoin.codec import qat
from kancoin.codec.options import DEFAULT_BATCH, DEFAULT_ITERS, OPTIMIZERS
from kancoin.format.quant import QuantParams
from kancoin.metrics import psnr_from_mse
from kancoin.nets import NetSpec, family_of
from kancoin.nets.coords import targets


@dataclass(frozen=True)
class FitConfig:
    iters: int = DEFAULT_ITERS
    batch_size: int = DEFAULT_BATCH
    lr: float = 1e-3
    seed: int = 0
    eval_every: int = 500
    final_lr_frac: float = 0.05  # cosine decay from lr to lr × this over the run
    compile: str | None = None  # torch.compile mode for the training forward (CUDA)
    # Quantization-aware fine-tune after the float fit (``qat``): steps and peak lr (× lr).
    qat_iters: int = 0
    qat_lr_frac: float = 0.03
    qat_lr: float | None = None  # absolute peak lr of the fine-tune (overrides the fraction)
    # "adam", or "lbfgs" (strong-Wolfe line search, one LBFGS iteration per minibatch; the
    # quantization-aware fine-tune always uses Adam: a line search on a rounded network is noise)
    optimizer: str = "adam"
    # coarser versions of the network trained first (the family's ``train_stages``: grid
    # extension for a B-spline KAN, pykan's), each for an equal share of ``iters``, refitted
    # onto the next; the model itself is the last stage
    stages: tuple = ()


@dataclass
class FitResult:
    state: dict  # best weights (CPU tensors)
    best_psnr: float  # float weights, 8-bit rounded output, full image
    best_step: int
    steps: int
    seconds: float
    # with a QAT phase: the ranges used, and the best PSNR of the quantized network
    qparams: list[QuantParams] | None = None
    qat_psnr: float | None = None


ProgressFn = Callable[[int, int, float], None]  # (step, total, best_psnr)


def lr_at(step: int, cfg: FitConfig) -> float:
    """Cosine decay: big steps early, small steps to settle into a minimum at the end."""
    return _cosine(step, cfg.iters, cfg.lr, cfg.final_lr_frac)


def _cosine(step: int, total: int, lr: float, final_frac: float) -> float:
    frac = step / max(1, total)
    return lr * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * frac)))


def fit(
    model: nn.Module,
    spec: NetSpec,
    pixels: np.ndarray,
    cfg: FitConfig,
    device: torch.device,
    progress: ProgressFn | None = None,
    qparams: list | Callable[[nn.Module], list] | None = None,
) -> FitResult:
    """Fit ``model`` (built from ``spec``) to pixels (H, W, C uint8). The model is left holding
    the best weights. Each step: Adam (or LBFGS) on the MSE of a random minibatch of pixels
    (``cfg.batch_size``); every ``cfg.eval_every`` steps the whole image is rendered as the
    decoder renders it and the best weights are kept.

    With ``cfg.qat_iters`` > 0 (needs per-tensor ``qparams``: QuantParams, or bit depths to
    search ranges for), a quantization-aware fine-tune follows; the model is then left with its
    fake quantizers attached (``qat``) and ``FitResult.qparams`` holds the ranges to export
    with. ``qparams`` may be a function of the float-fitted model (called once, before the
    fine-tune).
    """
    fam = family_of(spec)
    height, width, _ = pixels.shape
    n_pixels = height * width
    target = targets(pixels).to(device)
    reference = torch.from_numpy(pixels).to(device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    model.to(device).train()
    batch = min(cfg.batch_size, n_pixels)
    total = cfg.iters + cfg.qat_iters

    def evaluate() -> float:
        model.eval()
        out = fam.render(model, height, width, device)
        model.train()
        diff = out.float() - reference.float()
        return psnr_from_mse(float((diff * diff).mean()))

    def snapshot() -> dict:
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def train(
        steps: int,
        lr_fn: Callable[[int], float],
        offset: int,
        eval_start: bool = False,
        optimizer: str = "adam",
        keep_best: bool = True,
    ) -> tuple[float, int, dict]:
        """``steps`` optimizer steps; returns the best (psnr, step, state) seen (the start too,
        with ``eval_start``); without ``keep_best`` no evaluation, the last state."""
        params = [p for p in model.parameters() if p.requires_grad]
        if optimizer == "lbfgs":
            opt = torch.optim.LBFGS(
                params, lr=lr_fn(0), max_iter=1, history_size=10, line_search_fn="strong_wolfe"
            )
        else:  # fused Adam: one kernel over all tensors instead of a loop (0.54 -> 0.13 ms/step)
            opt = torch.optim.Adam(params, lr=lr_fn(0), fused=True)
        # A KAN step on a GPU is launch-bound (dozens of tiny kernels): compiling the training
        # forward/backward (CUDA graphs with "reduce-overhead") removes most of that.
        train_model = torch.compile(model, mode=cfg.compile) if cfg.compile else model
        predict = fam.predictor(model, height, width, device, train_model)
        best_psnr, best_step = -math.inf, offset
        best_state = snapshot() if keep_best else {}
        if eval_start:
            best_psnr = evaluate()
        for step in range(1, steps + 1):
            for group in opt.param_groups:
                group["lr"] = lr_fn(step - 1)
            idx = torch.randint(0, n_pixels, (batch,), device=device, generator=gen)
            t = target[idx]

            def closure(idx: torch.Tensor = idx, t: torch.Tensor = t) -> torch.Tensor:
                opt.zero_grad(set_to_none=True)
                loss = torch.mean((predict(idx) - t) ** 2)
                loss.backward()
                return loss

            if optimizer == "lbfgs":
                opt.step(closure)
            else:
                closure()
                opt.step()
            if keep_best and (step % cfg.eval_every == 0 or step == steps):
                p = evaluate()
                if p > best_psnr:
                    best_psnr, best_step, best_state = p, offset + step, snapshot()
            if progress is not None and (step % 10 == 0 or step == steps):
                progress(offset + step, total, best_psnr)
        if not keep_best:
            return -math.inf, offset + steps, {}
        return best_psnr, best_step, best_state

    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}")
    t0 = time.perf_counter()
    if cfg.iters > 0:
        stages = list(cfg.stages)
        if stages:
            final = fam.final_stage(model)
            fam.enter_stage(model, stages[0])
            model.to(device)
        bounds = [round(cfg.iters * j / (len(stages) + 1)) for j in range(len(stages) + 2)]
        for j in range(len(stages)):  # coarse grids: train, then refit on the next grid
            a, b = bounds[j], bounds[j + 1]
            train(b - a, lambda i, a=a: lr_at(a + i, cfg), offset=a,
                  optimizer=cfg.optimizer, keep_best=False)  # fmt: skip
            fam.enter_stage(model, stages[j + 1] if j + 1 < len(stages) else final)
            model.to(device)
        a = bounds[-2]
        best_psnr, best_step, best_state = train(
            cfg.iters - a, lambda i: lr_at(a + i, cfg), offset=a, optimizer=cfg.optimizer,
            eval_start=bool(stages),  # the refitted network counts too
        )  # fmt: skip
        model.load_state_dict(best_state)
    else:
        best_psnr, best_step, best_state = evaluate(), 0, snapshot()
    result = FitResult(best_state, best_psnr, best_step, cfg.iters, 0.0)
    if cfg.qat_iters > 0:
        if qparams is None:
            raise ValueError("quantization-aware fine-tuning needs the ranges")
        if callable(qparams):
            qparams = qparams(model)
        result.qparams = qat.attach(model, spec, qparams)
        qat_lr = cfg.qat_lr if cfg.qat_lr is not None else cfg.lr * cfg.qat_lr_frac
        q_psnr, _, q_state = train(
            cfg.qat_iters, lambda i: _cosine(i, cfg.qat_iters, qat_lr, 0.0),
            offset=cfg.iters,
            eval_start=True,  # never worse than quantizing the float fit
        )
        model.load_state_dict(q_state)
        result.qat_psnr = q_psnr
        result.steps += cfg.qat_iters
    result.seconds = time.perf_counter() - t0
    model.to("cpu")
    return result
