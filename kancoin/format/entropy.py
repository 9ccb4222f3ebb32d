"""Entropy coding of the quantized weights: one range-coded stream, a parametric model per tensor.

Each tensor's integers (0 … 2^bits − 1) are coded with a quantized Gaussian or Laplace
distribution over that range, whose (mean, scale) travel in the header as float16; the encoder
tries both and keeps the one giving the shorter stream. We use ``constriction``'s range coder:
its models are leaky (every symbol in range stays codable, so outliers are safe) and built with
fixed-point arithmetic, so the decoder reproduces the encoder's model exactly on any machine.

A Gaussian tensor quantized over its least-squared-error 9-bit range codes to ≈ 8.2 bits per
weight; trained KAN tensors are heavy-tailed and code to ≈ 5 bits per weight at 8 bits
(docs/format.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from kancoin.errors import KancoinError

_LEAK = 2.0**-24  # the least probability constriction's leaky models give a symbol
_MIN_SCALE = 0.05  # in units of one quantization level; keeps the model well defined


@dataclass(frozen=True)
class EntropyModel:
    """kind (a key of ``KINDS``), mean and scale in integer units (float16 values)."""

    kind: int
    mean: float
    scale: float


@dataclass(frozen=True)
class EntropyKind:
    """One family of per-tensor models: its name, the constriction model over 0 … hi for a
    (mean, scale), and the (mean, scale) it fits to a tensor's integers."""

    name: str
    model: Callable[[Any, int, float, float], Any]  # (constriction model module, hi, mean, scale)
    fit: Callable[[np.ndarray], tuple[float, float]]  # float64 values -> (mean, scale)


def _fit_gaussian(v: np.ndarray) -> tuple[float, float]:
    return float(np.mean(v)), float(np.std(v))


def _fit_laplace(v: np.ndarray) -> tuple[float, float]:
    median = float(np.median(v))
    return median, float(np.mean(np.abs(v - median)))


# What the header's ``e_model`` field stores -> the kind. A new kind is one entry here (and a
# format version whose ``e_model`` field is wide enough, ``kancoin.format.layout``).
KINDS: dict[int, EntropyKind] = {
    0: EntropyKind("gaussian", lambda cm, hi, m, s: cm.QuantizedGaussian(0, hi, m, s),
                   _fit_gaussian),
    1: EntropyKind("laplace", lambda cm, hi, m, s: cm.QuantizedLaplace(0, hi, m, s),
                   _fit_laplace),
}  # fmt: skip
MODEL_KINDS = tuple(k.name for k in KINDS.values())


def _constriction():
    try:
        import constriction
    except ImportError as e:  # pragma: no cover - it is a dependency
        raise KancoinError(f"range coding needs the 'constriction' package ({e})") from None
    return constriction


def _model(m: EntropyModel, bits: int):
    cm = _constriction().stream.model
    scale = max(float(m.scale), _MIN_SCALE)
    return KINDS[m.kind].model(cm, (1 << bits) - 1, float(m.mean), scale)


def _f16(x: float) -> float:  # as stored in the header
    return float(np.float16(min(max(x, -65504.0), 65504.0)))


def _candidates(q: np.ndarray) -> list[EntropyModel]:
    v = q.astype(np.float64).ravel()
    out = []
    for kind_id, kind in KINDS.items():
        mean, scale = kind.fit(v) if v.size else (0.0, 1.0)
        out.append(EntropyModel(kind_id, _f16(mean), _f16(max(scale, _MIN_SCALE))))
    return out


def _words_to_bytes(words: np.ndarray) -> bytes:
    data = words.astype(">u4").tobytes()
    # The last word's trailing zero bytes carry nothing: the reader pads them back.
    return data.rstrip(b"\0") if data else data


def _bytes_to_words(data: bytes) -> np.ndarray:
    data = data + b"\0" * ((-len(data)) % 4)
    return np.frombuffer(data, dtype=">u4").astype(np.uint32)


def encode(qtensors: list[np.ndarray], bits: list[int], models: list[EntropyModel]) -> bytes:
    """Range-code the tensors (uint arrays) in order, each with its model."""
    enc = _constriction().stream.queue.RangeEncoder()
    for q, b, m in zip(qtensors, bits, models, strict=True):
        if q.size:
            enc.encode(q.ravel().astype(np.int32), _model(m, b))
    return _words_to_bytes(enc.get_compressed())


def decode(
    data: bytes, sizes: list[int], bits: list[int], models: list[EntropyModel]
) -> list[np.ndarray]:
    """Inverse of ``encode``: flat uint32 arrays of the given sizes."""
    dec = _constriction().stream.queue.RangeDecoder(_bytes_to_words(data))
    out = []
    for n, b, m in zip(sizes, bits, models, strict=True):
        vals = dec.decode(_model(m, b), n) if n else np.zeros(0, np.int32)
        out.append(np.asarray(vals).astype(np.uint32))
    return out


def laplace_model(q: np.ndarray, offset: int) -> EntropyModel:
    """A zero-mean Laplace for signed integers q stored as q + ``offset``: scale the mean |q|
    (the maximum-likelihood scale), mean at ``offset``."""
    scale = float(np.abs(q).mean()) if q.size else 1.0
    return EntropyModel(1, _f16(offset), _f16(max(scale, _MIN_SCALE)))


def choose_models(qtensors: list[np.ndarray], bits: list[int]) -> list[EntropyModel]:
    """Per tensor, the candidate model (Gaussian or Laplace fit) that codes it shortest."""
    models = []
    for q, b in zip(qtensors, bits, strict=True):
        best, best_len = None, None
        for m in _candidates(q):
            n = len(encode([q], [b], [m]))
            if best_len is None or n < best_len:
                best, best_len = m, n
        models.append(best)
    return models


def model_bits(q: np.ndarray, m: EntropyModel, bits: int) -> float:
    """Ideal bits of integers q (0 … 2^bits − 1) under model ``m``, from the continuous
    distribution integrated over unit bins and renormalised on the range (the estimate a coded
    size is compared with; constriction's fixed-point model differs by a fraction of a
    percent)."""
    from math import erf, exp, sqrt

    hi = (1 << bits) - 1
    values, counts = np.unique(q.ravel().astype(np.int64), return_counts=True)
    mean, scale = float(m.mean), max(float(m.scale), _MIN_SCALE)
    if KINDS[m.kind].name == "laplace":

        def cdf(x: float) -> float:
            z = (x - mean) / scale
            return 0.5 * exp(z) if z < 0 else 1 - 0.5 * exp(-z)
    else:

        def cdf(x: float) -> float:
            return 0.5 * (1 + erf((x - mean) / (scale * sqrt(2))))

    total = cdf(hi + 0.5) - cdf(-0.5)
    # constriction's models are leaky: every symbol in range keeps at least one unit of its
    # 24-bit fixed-point probability (an outlier costs ≤ 24 bits, not the tail's −log2)
    p = np.array([max((cdf(v + 0.5) - cdf(v - 0.5)) / total, _LEAK) for v in values])
    return float(-(counts * np.log2(p)).sum())


# -- the pieces of a stream, for a family that codes some tensors with models of its own ------


def new_encoder():
    """An empty range encoder (``encode_with``, then ``finish``)."""
    return _constriction().stream.queue.RangeEncoder()


def encode_with(enc, q: np.ndarray, bits: int, m: EntropyModel) -> None:
    """Append one tensor's integers to ``enc`` with its model."""
    if q.size:
        enc.encode(q.ravel().astype(np.int32), _model(m, bits))


def finish(enc) -> bytes:
    return _words_to_bytes(enc.get_compressed())


def new_decoder(data: bytes):
    return _constriction().stream.queue.RangeDecoder(_bytes_to_words(data))


def decode_with(dec, n: int, bits: int, m: EntropyModel) -> np.ndarray:
    """The next ``n`` integers of ``dec`` under model ``m``, flat uint32."""
    vals = dec.decode(_model(m, bits), n) if n else np.zeros(0, np.int32)
    return np.asarray(vals).astype(np.uint32)
