"""Training loop (encoder only): Adam on random minibatches of pixels, best weights kept."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from kancoin.grid import coordinates, targets
from kancoin.metrics import psnr_from_mse
from kancoin.models import render

DEFAULT_ITERS = 10_000
DEFAULT_BATCH = 10_000
DEFAULT_LR = {"kan": 1e-3, "siren": 2e-4}  # KAN-COIN paper; COIN


@dataclass(frozen=True)
class FitConfig:
    iters: int = DEFAULT_ITERS
    batch_size: int = DEFAULT_BATCH
    lr: float = 1e-3
    seed: int = 0
    eval_every: int = 500
    final_lr_frac: float = 0.05  # cosine decay from lr to lr × this over the run
    compile: str | None = None  # torch.compile mode for the training forward (CUDA)


@dataclass
class FitResult:
    state: dict  # best weights (CPU tensors)
    best_psnr: float  # float weights, 8-bit rounded output, full image
    best_step: int
    steps: int
    seconds: float


ProgressFn = Callable[[int, int, float], None]  # (step, total, best_psnr)


def lr_at(step: int, cfg: FitConfig) -> float:
    """Cosine decay: big steps early, small steps to settle into a minimum at the end."""
    frac = step / max(1, cfg.iters)
    scale = cfg.final_lr_frac + (1 - cfg.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * frac))
    return cfg.lr * scale


def fit(
    model: nn.Module,
    pixels: np.ndarray,
    cfg: FitConfig,
    device: torch.device,
    progress: ProgressFn | None = None,
) -> FitResult:
    """Fit model to pixels (H, W, C uint8). The model is left holding the best weights."""
    height, width, _ = pixels.shape
    n_pixels = height * width
    coords = coordinates(height, width).to(device)
    target = targets(pixels).to(device)
    reference = torch.from_numpy(pixels).to(device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    model.to(device).train()
    # fused Adam: one kernel over all tensors instead of a loop (measured 0.54 -> 0.13 ms/step)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)
    batch = min(cfg.batch_size, n_pixels)
    # A KAN step on a GPU is launch-bound (dozens of tiny kernels): compiling the training
    # forward/backward (CUDA graphs with "reduce-overhead") removes most of that.
    train_model = torch.compile(model, mode=cfg.compile) if cfg.compile else model

    def evaluate() -> float:
        model.eval()
        out = render(model, height, width, device)
        model.train()
        diff = out.float() - reference.float()
        return psnr_from_mse(float((diff * diff).mean()))

    best_psnr, best_step, best_state = -math.inf, 0, copy.deepcopy(model.state_dict())
    t0 = time.perf_counter()
    step = 0
    for step in range(1, cfg.iters + 1):
        for group in opt.param_groups:
            group["lr"] = lr_at(step - 1, cfg)
        idx = torch.randint(0, n_pixels, (batch,), device=device, generator=gen)
        pred = train_model(coords[idx])
        loss = torch.mean((pred - target[idx]) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.iters:
            p = evaluate()
            if p > best_psnr:
                best_psnr, best_step = p, step
                best_state = {
                    k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
                }
        if progress is not None and (step % 10 == 0 or step == cfg.iters):
            progress(step, cfg.iters, best_psnr)
    seconds = time.perf_counter() - t0
    if cfg.iters == 0:
        best_psnr = evaluate()
    model.load_state_dict(best_state)
    model.to("cpu")
    return FitResult(best_state, best_psnr, best_step, step, seconds)
