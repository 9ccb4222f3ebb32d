"""Decode path: file -> network -> pixels. Imports no training code."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kancoin.bitstream import FileHeader, read_bytes
from kancoin.fileio import check_output, read_input, write_atomic
from kancoin.grid import png_bytes
from kancoin.metrics import bpp
from kancoin.models import build_model, load_tensors, render
from kancoin.quant import dequantize
from kancoin.threads import torch_threads


@dataclass
class Decoded:
    pixels: np.ndarray  # uint8 (H, W, C)
    header: FileHeader
    file_bytes: int
    seconds: float

    @property
    def bpp(self) -> float:
        return bpp(self.file_bytes, self.header.height, self.header.width)


def weights(header: FileHeader, qtensors: list[np.ndarray]) -> list[np.ndarray]:
    """Dequantized float32 tensors in file order."""
    return [dequantize(q, qp) for q, qp in zip(qtensors, header.qparams)]


def decode_bytes(data: bytes) -> Decoded:
    """Rebuild the network from the file alone and evaluate it on the pixel grid (CPU, float32,
    deterministic)."""
    t0 = time.perf_counter()
    header, qtensors = read_bytes(data)
    model = build_model(header.spec)
    load_tensors(model, header.spec, weights(header, qtensors))
    model.eval()
    with torch_threads(1):  # B-spline KANs run in numba kernels, deterministic at any count
        pixels = render(model, header.height, header.width).numpy()
    return Decoded(pixels, header, len(data), time.perf_counter() - t0)


def decode_file(src: str | Path, out: str | Path, force: bool = False) -> Decoded:
    check_output(out, [src], force)
    decoded = decode_bytes(read_input(src, "kancoin file"))
    write_atomic(out, png_bytes(decoded.pixels))
    return decoded
