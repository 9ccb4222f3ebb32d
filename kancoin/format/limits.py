"""What a decoder will spend on a file, known from its header before any work, and the limits.

A .kc file is tiny next to what it asks for: a 100-byte header can declare a 16384×16384 image
or a network of half a billion weights, and a range-coded payload has no length that bounds how
many symbols it yields. So before the payload is touched the decoder computes, from the header
alone, the weights it must decode, the pixels it must render, the work of rendering them and the
memory of one chunk, and refuses (one line, naming the figure and the limit) what exceeds them.
The encoder refuses to write what the decoder would refuse.

The limits (docs/format.md, "Limits"):
- pixels ≤ ``MAX_PIXELS`` (64 Mi, the encoder's own limit on its input);
- stored numbers ≤ ``MAX_WEIGHTS`` (16 Mi: 200 MB of decoded tensors at most);
- range coding: the payload holds at least ``MIN_CODED_BITS`` per stored number (no kancoin file
  codes below ~1 bit per weight: the step is sized for ~6), so a short payload cannot ask for
  millions of symbols;
- decode work ≤ ``MAX_DECODE_WORK`` multiply-adds (2^38: ~25 s on 2 cores at the fused
  decoder's measured 1.1e10 per second; the default 768×512 file needs 1.7e9). Rate control
  never picks a network over it, so for the largest images the layers stay narrower (the rest
  of the budget goes to the grids, which cost no decode work);
- each rendering chunk's temporaries ≤ ``CHUNK_MEMORY`` (chunks shrink to fit; a network whose
  single pixel needs more is refused).
"""

from __future__ import annotations

from dataclasses import dataclass

from kancoin.errors import KancoinError
from kancoin.imageio import MAX_PIXELS
from kancoin.nets import NetSpec, family_of

MAX_WEIGHTS = 1 << 24
MIN_CODED_BITS = 0.25  # per stored number, range coding
MIN_BITS_SLACK = 4096  # numbers a range-coded payload may hold beyond that (tiny files)
MAX_DECODE_WORK = float(1 << 38)
CHUNK_MEMORY = 256 << 20  # bytes of float temporaries per rendering chunk
MAX_CHUNK = 1 << 16  # pixels per chunk (larger chunks are no faster)


@dataclass(frozen=True)
class DecodeCost:
    """What decoding a file will take: stored numbers, pixels, multiply-adds of rendering, the
    float temporaries per pixel, and the chunk (pixels) that keeps them in ``CHUNK_MEMORY``."""

    weights: int
    pixels: int
    work: float
    bytes_per_pixel: int
    chunk: int

    @property
    def peak_bytes(self) -> int:
        """A bound on the decoder's working memory: tensors (as integers and floats, twice for
        the copies made on the way), one chunk's temporaries, and the image."""
        return 16 * self.weights + self.chunk * self.bytes_per_pixel + 8 * self.pixels


def decode_cost(spec: NetSpec, height: int, width: int) -> DecodeCost:
    work, per_pixel = family_of(spec).decode_cost(spec, height, width)
    chunk = max(1, min(MAX_CHUNK, CHUNK_MEMORY // max(1, per_pixel)))
    return DecodeCost(spec.n_params, height * width, work, per_pixel, chunk)


def check(
    spec: NetSpec,
    height: int,
    width: int,
    coding: int,
    payload_bytes: int | None,
) -> DecodeCost:
    """Refuse (KancoinError, one line) a file whose decode exceeds the limits; returns its
    cost. ``payload_bytes``: the range-coded stream's length (None: not known yet)."""
    cost = decode_cost(spec, height, width)
    if cost.pixels > MAX_PIXELS:
        raise KancoinError(
            f"file declares a {width}x{height} image ({cost.pixels} pixels); the limit is "
            f"{MAX_PIXELS} pixels"
        )
    if cost.weights > MAX_WEIGHTS:
        raise KancoinError(
            f"file declares a network of {cost.weights} weights; the limit is {MAX_WEIGHTS}"
        )
    if coding == 1 and payload_bytes is not None:
        most = int(8 * payload_bytes / MIN_CODED_BITS) + MIN_BITS_SLACK
        paid = family_of(spec).paid_numbers(spec)
        if paid > most:
            raise KancoinError(
                f"file declares {paid} weights but its {payload_bytes}-byte payload can "
                f"hold at most {most} (at {MIN_CODED_BITS:g} bits each): truncated or corrupt"
            )
    if cost.work > MAX_DECODE_WORK:
        raise KancoinError(
            f"decoding this file would take {cost.work:.3g} multiply-adds; the limit is "
            f"{MAX_DECODE_WORK:.3g} (a {spec.describe()} on {width}x{height})"
        )
    if cost.bytes_per_pixel > CHUNK_MEMORY:
        raise KancoinError(
            f"one pixel of this network needs {cost.bytes_per_pixel >> 20} MiB of temporaries; "
            f"the limit is {CHUNK_MEMORY >> 20} MiB"
        )
    return cost
