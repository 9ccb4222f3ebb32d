"""Uniform N-bit quantization of one tensor with a searched range.

A tensor w is stored as integers q in [0, 2^bits - 1] and rebuilt as ``lo + q * step`` in
float32. ``lo`` and ``step`` travel in the header as float32, so the encoder rounds them to
float32 before quantizing: encoder and decoder apply the same ``dequantize``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_BITS, MAX_BITS = 2, 16

# Fractions of the sorted values clipped at each end, tried when choosing the range.
_CLIP_FRACTIONS = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.02, 0.05)


@dataclass(frozen=True)
class QuantParams:
    """lo (float32), step (float32, > 0), bits."""

    lo: float
    step: float
    bits: int

    @property
    def levels(self) -> int:
        return 1 << self.bits


def _params(lo: float, hi: float, bits: int) -> QuantParams:
    lo32 = np.float32(lo)
    span = float(hi) - float(lo32)
    step32 = np.float32(span / ((1 << bits) - 1)) if span > 0 else np.float32(1.0)
    if not step32 > 0:  # span below float32 resolution
        step32 = np.float32(np.finfo(np.float32).tiny)
    return QuantParams(float(lo32), float(step32), bits)


def quantize(w: np.ndarray, qp: QuantParams) -> np.ndarray:
    """float array -> uint32 integers in [0, 2^bits - 1]."""
    q = np.rint((w.astype(np.float64) - qp.lo) / qp.step)
    return np.clip(q, 0, qp.levels - 1).astype(np.uint32)


def dequantize(q: np.ndarray, qp: QuantParams) -> np.ndarray:
    """integers -> float32 values, exactly as the decoder computes them."""
    return (np.float32(qp.lo) + q.astype(np.float32) * np.float32(qp.step)).astype(np.float32)


def choose_params(w: np.ndarray, bits: int) -> QuantParams:
    """The range (lo, hi) that minimises the squared error of the rebuilt tensor.

    Tries clipping a few fractions of the extreme values at each end (min/max included), so the
    result is never worse than the plain min/max range.
    """
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be in {MIN_BITS}..{MAX_BITS}")
    flat = np.sort(w.astype(np.float64).ravel())
    if flat.size == 0 or not np.all(np.isfinite(flat)):
        raise ValueError("cannot quantize an empty or non-finite tensor")
    n = flat.size
    best, best_err = None, np.inf
    for lo_frac in _CLIP_FRACTIONS:
        lo = flat[min(int(lo_frac * n), n - 1)]
        for hi_frac in _CLIP_FRACTIONS:
            hi = flat[max(n - 1 - int(hi_frac * n), 0)]
            if hi < lo:
                continue
            qp = _params(lo, hi, bits)
            err = float(np.sum((dequantize(quantize(flat, qp), qp) - flat) ** 2))
            if err < best_err:
                best, best_err = qp, err
    if best is None:  # every candidate's error overflowed float64
        raise ValueError("cannot quantize a tensor of such magnitude")
    return best


def quantize_tensor(w: np.ndarray, bits: int) -> tuple[np.ndarray, QuantParams]:
    qp = choose_params(w, bits)
    return quantize(w, qp), qp


def rescale(qp: QuantParams, factor: float) -> QuantParams:
    """The same range centre with a step ``factor`` times qp's, and just enough bits to span
    qp's range (at most MAX_BITS, at least MIN_BITS). Used by range coding to trade precision
    for size continuously: the entropy coder, not the bit depth, sets the cost of a finer step.
    """
    span = qp.step * (qp.levels - 1)
    step = qp.step * factor
    if span / step > (1 << MAX_BITS):
        raise ValueError(f"step factor {factor:g} needs more than {MAX_BITS} bits")
    # levels - 1 >= span / step - 1: at most half a step clipped at each end
    bits = min(MAX_BITS, max(MIN_BITS, int(np.ceil(np.log2(span / step - 1e-9)))))
    levels = 1 << bits
    centre = qp.lo + span / 2
    step32 = np.float32(step)
    lo32 = np.float32(centre - (levels - 1) / 2 * float(step32))
    return QuantParams(float(lo32), float(step32), bits)
