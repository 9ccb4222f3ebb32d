"""Encode path: image -> rate control -> fit -> quantize -> file, measured through the decoder."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kancoin import threads
from kancoin.bitstream import FileHeader, write_bytes
from kancoin.decode import Decoded, decode_bytes
from kancoin.errors import KancoinError
from kancoin.fileio import check_output, write_atomic
from kancoin.fit import DEFAULT_BATCH, DEFAULT_ITERS, DEFAULT_LR, FitConfig, ProgressFn, fit
from kancoin.grid import load_image
from kancoin.metrics import psnr
from kancoin.models import build_model, export_tensors
from kancoin.quant import quantize_tensor
from kancoin.ratecontrol import Overrides, choose
from kancoin.spec import ModelSpec

DEFAULT_BITS = {"kan": 9, "siren": 16}


@dataclass(frozen=True)
class EncodeOptions:
    bpp: float = 0.3
    bits: int | None = None  # None: 9 for KAN, 16 for SIREN
    arch: str = "kan"
    iters: int = DEFAULT_ITERS
    batch_size: int = DEFAULT_BATCH
    lr: float | None = None  # None: per-architecture default
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    overrides: Overrides = Overrides()
    compile: str | None = None  # torch.compile mode for training ("reduce-overhead", ...)

    @property
    def resolved_bits(self) -> int:
        return self.bits if self.bits is not None else DEFAULT_BITS.get(self.arch, 9)


@dataclass
class EncodeResult:
    data: bytes
    decoded: Decoded  # what `kancoin decode` produces from data
    psnr: float  # of decoded against the input
    float_psnr: float  # of the unquantized network (best checkpoint)
    spec: ModelSpec
    bits: int
    steps: int
    best_step: int
    fit_seconds: float
    encode_seconds: float
    device: str
    threads: int

    @property
    def file_bytes(self) -> int:
        return len(self.data)

    @property
    def bpp(self) -> float:
        return self.decoded.bpp

    def as_dict(self) -> dict:
        h = self.decoded.header
        return {
            "psnr": _finite(self.psnr),
            "bpp": self.bpp,
            "file_bytes": self.file_bytes,
            "height": h.height,
            "width": h.width,
            "channels": h.channels,
            "params": self.spec.n_params,
            "bits": self.bits,
            "architecture": self.spec.describe(),
            **self.spec.as_dict(),
            "float_psnr": _finite(self.float_psnr),
            "steps": self.steps,
            "best_step": self.best_step,
            "fit_seconds": round(self.fit_seconds, 3),
            "encode_seconds": round(self.encode_seconds, 3),
            "step_ms": round(1000 * self.fit_seconds / max(1, self.steps), 3),
            "device": self.device,
            "threads": self.threads,
        }


def _finite(x: float) -> float | None:
    return None if x == float("inf") else round(x, 4)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise KancoinError("--device cuda: no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise KancoinError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def plan(pixels_shape: tuple[int, int, int], opts: EncodeOptions) -> ModelSpec:
    """Architecture for this image and request; raises KancoinError before any training."""
    h, w, c = pixels_shape
    if opts.iters < 1:
        raise KancoinError("--iters must be at least 1")
    if opts.batch_size < 1:
        raise KancoinError("--batch-size must be at least 1")
    if opts.lr is not None and not opts.lr > 0:
        raise KancoinError("--lr must be positive")
    return choose(opts.arch, h, w, c, opts.bpp, opts.resolved_bits, opts.overrides)


def encode_pixels(
    pixels: np.ndarray, opts: EncodeOptions, progress: ProgressFn | None = None
) -> EncodeResult:
    """Fit, quantize and serialise; the reported PSNR is measured by decoding the bytes."""
    t0 = time.perf_counter()
    spec = plan(pixels.shape, opts)
    device = resolve_device(opts.device)
    n_threads = threads.configure(opts.arch, opts.threads)
    torch.manual_seed(opts.seed)
    model = build_model(spec)
    lr = opts.lr if opts.lr is not None else DEFAULT_LR[opts.arch]
    cfg = FitConfig(
        iters=opts.iters, batch_size=opts.batch_size, lr=lr, seed=opts.seed, compile=opts.compile
    )
    result = fit(model, pixels, cfg, device, progress)
    bits = opts.resolved_bits
    qtensors, qparams = [], []
    for w in export_tensors(model, spec):
        q, qp = quantize_tensor(w, bits)
        qtensors.append(q)
        qparams.append(qp)
    header = FileHeader(pixels.shape[0], pixels.shape[1], bits, spec, tuple(qparams))
    data = write_bytes(header, qtensors)
    decoded = decode_bytes(data)
    budget = opts.bpp * pixels.shape[0] * pixels.shape[1]
    assert len(data) * 8 <= budget + 1e-6, "rate control exceeded the budget"
    return EncodeResult(
        data=data,
        decoded=decoded,
        psnr=psnr(decoded.pixels, pixels),
        float_psnr=result.best_psnr,
        spec=spec,
        bits=bits,
        steps=result.steps,
        best_step=result.best_step,
        fit_seconds=result.seconds,
        encode_seconds=time.perf_counter() - t0,
        device=str(device),
        threads=n_threads if device.type == "cpu" else 0,
    )


def encode_file(
    src: str | Path,
    out: str | Path,
    opts: EncodeOptions,
    force: bool = False,
    progress: ProgressFn | None = None,
    on_notice=None,
) -> EncodeResult:
    """Check the output, read the image, plan (errors before training), encode, write."""
    check_output(out, [src], force)
    pixels, notice = load_image(src)
    if notice and on_notice:
        on_notice(notice)
    plan(pixels.shape, opts)
    result = encode_pixels(pixels, opts, progress)
    write_atomic(out, result.data)
    return result
