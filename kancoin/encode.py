"""Encode path: image -> rate control -> fit -> quantize -> file, measured through the decoder."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kancoin import bitalloc, entropy, qat, threads
from kancoin.bitstream import CODINGS, FileHeader, overhead_bytes, write_bytes
from kancoin.decode import Decoded, decode_bytes
from kancoin.errors import KancoinError
from kancoin.fileio import check_output, write_atomic
from kancoin.fit import (
    DEFAULT_BATCH,
    DEFAULT_ITERS,
    DEFAULT_LR,
    LBFGS_LR,
    OPTIMIZERS,
    FitConfig,
    ProgressFn,
    fit,
)
from kancoin.grid import load_image
from kancoin.metrics import psnr
from kancoin.models import build_model, export_tensors, load_tensors, render
from kancoin.quant import MAX_BITS, QuantParams, choose_params, dequantize, quantize, rescale
from kancoin.ratecontrol import Overrides, budget_bytes, choose
from kancoin.spec import BASES, ModelSpec

# Bits of the quantization range. Fixed coding: the paper's 9 for a KAN, COIN's 16 for a SIREN.
# Range coding: the step is then scaled to fill the budget, so these only set where the search
# starts and the architecture's size estimate (KAN: measured below).
DEFAULT_BITS = {"kan": 9, "siren": 16}
# KAN with range coding: 9 bits, so the network is sized for 9 - 3 = 6 coded bits per weight.
# Measured (kodim03 + kodim23, default preset, README "Bits per weight"): 7 bits 29.86 dB,
# 8 bits 29.94, 9 bits 30.35, 10 bits 29.99; smaller steps lose less to quantization (1.1 dB at
# 7 bits, 0.1 at 9) than the larger networks gain.
RANGE_DEFAULT_BITS = {"kan": 9, "siren": 16}
# --effort presets: training steps (README "Presets" has the time and PSNR of each).
EFFORT_ITERS = {"fast": 3_000, "default": DEFAULT_ITERS, "best": 30_000}
# Range coding: bits per weight saved against fixed width, used to size the network before
# training (measured on trained Kodak networks, README "Rate control"); the real coded size
# decides the final bit depth.
RANGE_SAVING = {"kan": 3.0, "siren": 0.4}
BIT_ALLOCS = ("common", "tensor")
RANGE_MARGIN = 0.01  # of the budget, kept free before the fine-tune for its drift


def iters_for(effort: str, iters: int | None) -> int:
    """--iters if given, else the preset's steps."""
    if effort not in EFFORT_ITERS:
        raise KancoinError(f"--effort must be one of {', '.join(EFFORT_ITERS)}, got {effort!r}")
    return iters if iters is not None else EFFORT_ITERS[effort]


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
    qat: float = 0.1  # fraction of --iters spent on quantization-aware fine-tuning
    coding: str = "range"  # payload coding: "range" (entropy-coded) or "fixed"
    qat_lr: float = 0.03  # peak learning rate of the fine-tune, as a fraction of lr
    optimizer: str = "adam"  # or "lbfgs" (float fit only)
    grid_extend: int = 0  # B-spline: coarser grids (each half the next) trained first
    bit_alloc: str = "common"  # range coding: "common" step factor, or per-"tensor" allocation

    @property
    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return LBFGS_LR if self.optimizer == "lbfgs" else DEFAULT_LR[self.arch]

    @property
    def coding_id(self) -> int:
        if self.coding not in CODINGS:
            raise KancoinError(f"--coding must be one of {', '.join(CODINGS)}, got {self.coding!r}")
        return CODINGS.index(self.coding)

    @property
    def qat_iters(self) -> int:
        return int(round(self.iters * self.qat))

    @property
    def resolved_bits(self) -> int:
        if self.bits is not None:
            return self.bits
        table = RANGE_DEFAULT_BITS if self.coding == "range" else DEFAULT_BITS
        return table.get(self.arch, 9)


@dataclass
class EncodeResult:
    data: bytes
    decoded: Decoded  # what `kancoin decode` produces from data
    psnr: float  # of decoded against the input
    float_psnr: float  # of the unquantized network (best checkpoint)
    qat_psnr: float | None  # of the fake-quantized network at the end of QAT (None: no QAT)
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

    @property
    def coding(self) -> str:
        return CODINGS[self.decoded.header.coding]

    @property
    def payload_bpw(self) -> float:
        """Bits per weight of the payload (file minus header and CRC)."""
        overhead = overhead_bytes(self.spec, self.decoded.header.coding)
        return 8 * (self.file_bytes - overhead) / self.spec.n_params

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
            "coding": self.coding,
            "payload_bits_per_weight": round(self.payload_bpw, 4),
            "architecture": self.spec.describe(),
            **self.spec.as_dict(),
            "float_psnr": _finite(self.float_psnr),
            "qat_psnr": None if self.qat_psnr is None else _finite(self.qat_psnr),
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
    if not 0.0 <= opts.qat < 1.0:
        raise KancoinError("--qat must be a fraction in [0, 1)")
    if opts.batch_size < 1:
        raise KancoinError("--batch-size must be at least 1")
    if opts.lr is not None and not opts.lr > 0:
        raise KancoinError("--lr must be positive")
    if opts.arch not in RANGE_SAVING:
        raise KancoinError(f"unknown --arch {opts.arch!r} (kan or siren)")
    if opts.bit_alloc not in BIT_ALLOCS:
        raise KancoinError(f"--bit-alloc must be one of {', '.join(BIT_ALLOCS)}")
    if opts.bit_alloc == "tensor" and opts.coding_id == 0:
        raise KancoinError("--bit-alloc tensor needs --coding range (fixed coding has no slack)")
    if opts.optimizer not in OPTIMIZERS:
        raise KancoinError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}")
    if opts.overrides.basis not in BASES:
        raise KancoinError(f"--basis must be one of {', '.join(BASES)}")
    kan_extras = opts.overrides.basis != "bspline" or opts.overrides.node_bias
    if opts.arch != "kan" and (kan_extras or opts.overrides.layernorm or opts.grid_extend):
        raise KancoinError("--basis, --node-bias, --layernorm, --grid-extend are KAN options")
    if opts.grid_extend and opts.overrides.basis != "bspline":
        raise KancoinError("--grid-extend needs --basis bspline")
    if opts.overrides.first_grid_size and (
        opts.arch != "kan" or opts.overrides.basis != "bspline"
    ):
        raise KancoinError("--first-grid-size needs a B-spline KAN (--arch kan --basis bspline)")
    if not 0 <= opts.grid_extend <= 6:
        raise KancoinError("--grid-extend must be between 0 and 6")
    bits = opts.resolved_bits
    bpw = bits if opts.coding_id == 0 else max(1.0, bits - RANGE_SAVING[opts.arch])
    return choose(opts.arch, h, w, c, opts.bpp, bits, opts.overrides, opts.coding_id, bpw)


def grid_stages(spec: ModelSpec, extend: int) -> tuple[tuple[int, ...], ...]:
    """Grid extension: ``extend`` coarser stages before the final grids, each layer's grid half
    the next stage's (one size per layer)."""
    if not extend or spec.arch != "kan":
        return ()
    final = spec.layer_grids
    stages = {
        tuple(max(1, math.ceil(g / 2**j)) for g in final) for j in range(extend, 0, -1)
    }
    return tuple(sorted(stages - {final}))


def ptq(model: torch.nn.Module, spec: ModelSpec, qparams: list[QuantParams]) -> list[np.ndarray]:
    """Quantize the stored tensors with the given ranges: integer tensors in file order."""
    tensors = export_tensors(model, spec)
    return [quantize(w, qp) for w, qp in zip(tensors, qparams, strict=True)]


def mse_ranges(model: torch.nn.Module, spec: ModelSpec, bits: int) -> list[QuantParams]:
    """Per stored tensor, the ``bits``-bit range with the least squared error."""
    return [choose_params(w, bits) for w in export_tensors(model, spec)]


def serialise_bytes(
    pixels_shape: tuple[int, ...],
    spec: ModelSpec,
    bits: int,
    coding: int,
    qtensors: list[np.ndarray],
    qparams: list[QuantParams],
) -> bytes:
    """The whole file for (H, W, C) pixels: header, payload (coding 0 fixed, 1 range), CRC."""
    emodels = ()
    if coding == 1:
        emodels = tuple(entropy.choose_models(qtensors, [qp.bits for qp in qparams]))
    header = FileHeader(
        pixels_shape[0], pixels_shape[1], max(bits, *(qp.bits for qp in qparams)), spec,
        tuple(qparams), coding, emodels,
    )  # fmt: skip
    return write_bytes(header, qtensors)


def encode_pixels(
    pixels: np.ndarray, opts: EncodeOptions, progress: ProgressFn | None = None
) -> EncodeResult:
    """Fit, quantize and serialise; the reported PSNR is measured by decoding the bytes.

    Fixed coding: every tensor at ``bits`` bits, ranges searched for the least squared error.
    Range coding: the architecture is sized with an estimated coded bits per weight; after the
    float fit, every tensor's step is scaled by one common factor (bit depths follow) so that
    the coded file just fits the budget, with a small margin for the quantization-aware
    fine-tune's drift; should the final file still be over, the factor grows until it fits.
    The file is never over budget.
    """
    t0 = time.perf_counter()
    spec = plan(pixels.shape, opts)
    device = resolve_device(opts.device)
    n_threads = threads.configure(opts.arch, opts.threads, spec.basis)
    torch.manual_seed(opts.seed)
    model = build_model(spec)
    lr = opts.resolved_lr
    bits = opts.resolved_bits
    coding = opts.coding_id
    budget = budget_bytes(opts.bpp, pixels.shape[0], pixels.shape[1])

    def serialise(qtensors, qparams) -> bytes:
        return serialise_bytes(pixels.shape, spec, bits, coding, qtensors, qparams)

    def fill_budget(m: torch.nn.Module, margin: float) -> list[QuantParams]:
        floats = export_tensors(m, spec)
        base = [choose_params(w, bits) for w in floats]
        if coding == 0:
            return base

        def coded(qps: list[QuantParams]) -> int:
            return len(serialise([quantize(w, qp) for w, qp in zip(floats, qps)], qps))

        def size(f: float) -> tuple[int, list[QuantParams]]:
            qps = [rescale(qp, f) for qp in base]
            return coded(qps), qps

        cap = budget * (1 - margin)
        # log of the step factor, finer .. coarser; never finer than MAX_BITS can span (a
        # capped bit depth would clip the range: smaller files, ruined weights)
        lo, hi = math.log(max(1 / 16, 2.0 ** (bits - MAX_BITS))), math.log(64)
        n, best = size(math.exp(hi))
        if n > cap:
            raise KancoinError("the coded network does not fit the budget; raise --bpp")
        for _ in range(14):  # bisection: the smallest factor (finest step) that fits
            mid = (lo + hi) / 2
            n, qps = size(math.exp(mid))
            if n <= cap:
                hi, best = mid, qps
            else:
                lo = mid
        if opts.bit_alloc == "tensor":
            best, _ = bitalloc.allocate(best, coded, mse_of(floats), int(cap))
        return best

    def mse_of(floats: list[np.ndarray]):
        """MSE of the network rebuilt from quantized ``floats``, rendered on CPU like decode."""
        scratch = build_model(spec)
        scratch.eval()
        ref = torch.from_numpy(pixels).float()

        def distortion(qps: list[QuantParams]) -> float:
            ints = [quantize(w, qp) for w, qp in zip(floats, qps)]
            load_tensors(scratch, spec, [dequantize(q, qp) for q, qp in zip(ints, qps)])
            out = render(scratch, pixels.shape[0], pixels.shape[1]).float()
            return float(((out - ref) ** 2).mean())

        return distortion

    cfg = FitConfig(
        iters=opts.iters - opts.qat_iters,
        batch_size=opts.batch_size,
        lr=lr,
        seed=opts.seed,
        compile=opts.compile,
        qat_iters=opts.qat_iters,
        # the fine-tune runs Adam: its lr follows Adam's lr even after an LBFGS fit
        qat_lr=opts.qat_lr * (lr if opts.optimizer == "adam" else DEFAULT_LR[opts.arch]),
        optimizer=opts.optimizer,
        grid_stages=grid_stages(spec, opts.grid_extend),
    )
    fill = lambda m: fill_budget(m, RANGE_MARGIN)  # noqa: E731
    result = fit(model, pixels, cfg, device, progress, spec=spec, qparams=fill)
    if result.qparams is not None:
        qparams = result.qparams
        qtensors = qat.export_quantized(model, spec, qparams)
        qat.detach(model, spec)
    else:
        qparams = fill_budget(model, 0.0)
        qtensors = ptq(model, spec, qparams)
    data = serialise(qtensors, qparams)
    if len(data) > budget:  # the fine-tune's drift exceeded the margin: requantize to fit
        qparams = fill_budget(model, 0.0)
        qtensors = ptq(model, spec, qparams)
        data = serialise(qtensors, qparams)
    decoded = decode_bytes(data)
    assert len(data) <= budget, "rate control exceeded the budget"
    return EncodeResult(
        data=data,
        decoded=decoded,
        psnr=psnr(decoded.pixels, pixels),
        float_psnr=result.best_psnr,
        qat_psnr=result.qat_psnr if qparams is result.qparams else None,
        spec=spec,
        bits=max(qp.bits for qp in qparams),
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
