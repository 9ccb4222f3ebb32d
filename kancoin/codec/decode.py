"""Decode path: file -> network -> pixels. Imports only the format and the networks' decoding
code (never fitting, QAT, rate control, training kernels or eval: a test checks)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kancoin.fileio import check_output, read_input, write_atomic
from kancoin.format.container import FileHeader, read_bytes
from kancoin.format.limits import decode_cost
from kancoin.format.quant import dequantize
from kancoin.imageio import png_bytes
from kancoin.metrics import bpp
from kancoin.nets import family_of


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
    deterministic at any thread count). The file's decode cost is checked against the limits
    (``format.limits``) before the payload is touched; rendering goes in chunks sized to
    bound memory."""
    t0 = time.perf_counter()
    header, qtensors = read_bytes(data)  # refuses, before torch loads, what is over a limit
    spec = header.spec
    chunk = decode_cost(spec, header.height, header.width).chunk
    pixels = family_of(spec).decode_pixels(
        spec, weights(header, qtensors), header.height, header.width, chunk
    )
    return Decoded(pixels, header, len(data), time.perf_counter() - t0)


def decode_file(src: str | Path, out: str | Path, force: bool = False) -> Decoded:
    data = read_input(src, "kancoin file")  # a missing input is named before the output
    check_output(out, [src], force)
    decoded = decode_bytes(data)
    write_atomic(out, png_bytes(decoded.pixels), force=force)
    return decoded
