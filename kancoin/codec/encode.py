"""Encode path: image -> rate control -> fit -> quantize -> file, measured through the decoder."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from kancoin.codec import bitalloc, qat, runtime
from kancoin.codec.decode import Decoded, decode_bytes
from kancoin.codec.fit import FitConfig, ProgressFn, fit
from kancoin.codec.options import EncodeOptions
from kancoin.codec.ratecontrol import budget_bytes, choose
from kancoin.errors import KancoinError
from kancoin.fileio import check_output, write_atomic
from kancoin.format import entropy, limits
from kancoin.format.container import CODINGS, FileHeader, overhead_bytes, write_bytes
from kancoin.format.quant import MAX_BITS, QuantParams, choose_params, dequantize, quantize, rescale
from kancoin.imageio import load_image
from kancoin.metrics import psnr
from kancoin.nets import NetSpec, build, export_arrays, family, family_of, load_arrays

RANGE_MARGIN = 0.01  # of the budget, kept free before the fine-tune for its drift


@dataclass
class EncodeResult:
    data: bytes
    decoded: Decoded  # what `kancoin decode` produces from data
    psnr: float  # of decoded against the input
    float_psnr: float  # of the unquantized network (best checkpoint)
    qat_psnr: float | None  # of the fake-quantized network at the end of QAT (None: no QAT)
    spec: NetSpec
    bits: int
    steps: int
    best_step: int
    fit_seconds: float
    encode_seconds: float
    device: str
    threads: int
    extra: dict = field(default_factory=dict)  # a family's own figures (the latent encoder's)

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
            **self.extra,
        }


def _finite(x: float) -> float | None:
    return None if x == float("inf") else round(x, 4)


def plan(pixels_shape: tuple[int, int, int], opts: EncodeOptions) -> NetSpec:
    """Architecture for this image and request; raises KancoinError before any training."""
    h, w, c = pixels_shape
    fam = family(opts.arch)
    bits = opts.resolved_bits
    bpw = bits if opts.coding_id == 0 else max(1.0, bits - fam.range_saving)
    spec = choose(
        opts.arch, h, w, c, opts.bpp, bits, opts.overrides, opts.coding_id, bpw, decode_limits=True
    )
    try:  # never write a file the decoder refuses
        limits.check(spec, h, w, 0, None)
    except KancoinError as e:
        raise KancoinError(
            f"--bpp {opts.bpp:g}: {spec.describe()} is over a limit ({e}); lower --bpp or --width"
        ) from None
    return spec


def ptq(model: torch.nn.Module, spec: NetSpec, qparams: list[QuantParams]) -> list[np.ndarray]:
    """Quantize the stored tensors with the given ranges: integer tensors in file order."""
    tensors = export_arrays(model, spec)
    return [quantize(w, qp) for w, qp in zip(tensors, qparams, strict=True)]


def mse_ranges(model: torch.nn.Module, spec: NetSpec, bits: int) -> list[QuantParams]:
    """Per stored tensor, the ``bits``-bit range with the least squared error."""
    return [choose_params(w, bits) for w in export_arrays(model, spec)]


def serialise_bytes(
    pixels_shape: tuple[int, ...],
    spec: NetSpec,
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
    if family(opts.arch).trains_latents:  # grids and synthesis, the rate in the loss
        from kancoin.codec.latent import encode_latent

        return encode_latent(pixels, opts, progress)
    t0 = time.perf_counter()
    spec = plan(pixels.shape, opts)
    fam = family_of(spec)
    device = runtime.resolve_device(opts.device)
    n_threads = runtime.configure(spec, opts.threads)
    torch.manual_seed(opts.seed)
    model = build(spec)
    lr = opts.resolved_lr
    bits = opts.resolved_bits
    coding = opts.coding_id
    budget = budget_bytes(opts.bpp, pixels.shape[0], pixels.shape[1])

    def serialise(qtensors, qparams) -> bytes:
        return serialise_bytes(pixels.shape, spec, bits, coding, qtensors, qparams)

    def fill_budget(m: torch.nn.Module, margin: float) -> list[QuantParams]:
        floats = export_arrays(m, spec)
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
        scratch = build(spec)
        scratch.eval()
        ref = torch.from_numpy(pixels).float()

        def distortion(qps: list[QuantParams]) -> float:
            ints = [quantize(w, qp) for w, qp in zip(floats, qps)]
            load_arrays(scratch, spec, [dequantize(q, qp) for q, qp in zip(ints, qps)])
            out = fam.render(scratch, pixels.shape[0], pixels.shape[1]).float()
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
        qat_lr=opts.qat_lr * (lr if opts.optimizer == "adam" else fam.default_lr),
        optimizer=opts.optimizer,
        stages=fam.train_stages(spec, opts.grid_extend),
    )
    fill = lambda m: fill_budget(m, RANGE_MARGIN)  # noqa: E731
    result = fit(model, spec, pixels, cfg, device, progress, qparams=fill)
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
    if len(data) > budget:  # cannot happen (the last fill fits by construction): never write it
        raise RuntimeError(f"rate control wrote {len(data)} bytes over a {budget}-byte budget")
    decoded = decode_bytes(data)
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
    first_frame: bool = False,
) -> EncodeResult:
    """Check the output, read the image, plan (errors before training), encode, write.
    ``first_frame``: encode frame 0 of an image of several frames (else refused)."""
    if not Path(src).exists():  # a missing input is named before the output
        raise KancoinError(f"{src}: no such file")
    check_output(out, [src], force)
    pixels, notice = load_image(src, first_frame=first_frame)
    if notice and on_notice:
        on_notice(notice)
    plan(pixels.shape, opts)
    result = encode_pixels(pixels, opts, progress)
    write_atomic(out, result.data, force=force)
    return result
