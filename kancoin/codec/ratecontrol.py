"""Rate control: from a target bpp, pick the largest network whose whole file fits.

The budget is bpp × H × W bits for the whole file (header, payload, padding, CRC); the size of a
candidate is computed exactly by ``format.container.file_bytes`` for fixed-width coding, so the
written file never exceeds it. With range coding the size depends on the trained weights: the
network is sized with an estimated bits per weight (``bpw``) and the encoder then sets the step
from the real coded size (``encode``). How a family grows with the budget is the family's own
(``NetFamily.choose``).
"""

from __future__ import annotations

from kancoin.errors import KancoinError
from kancoin.format.container import estimated_file_bytes
from kancoin.format.quant import MAX_BITS, MIN_BITS
from kancoin.nets import NetSpec, Overrides, family
from kancoin.nets.base import budget_bytes

__all__ = ["budget_bytes", "check_request", "choose", "size_estimator"]


def check_request(bpp: float, bits: int) -> None:
    if not MIN_BITS <= bits <= MAX_BITS:
        raise KancoinError(f"--bits must be between {MIN_BITS} and {MAX_BITS}, got {bits}")
    if not bpp > 0:
        raise KancoinError(f"--bpp must be positive, got {bpp}")


def size_estimator(bits: int, coding: int, bpw: float | None = None):
    """spec -> file bytes: exact at ``bits`` for fixed coding, at ``bpw`` coded bits per weight
    (default ``bits``) for range coding."""
    per_weight = bits if bpw is None else bpw
    return lambda spec: estimated_file_bytes(spec, per_weight, coding)


def choose(
    arch: str,
    height: int,
    width: int,
    channels: int,
    bpp: float,
    bits: int,
    ov: Overrides = Overrides(),
    coding: int = 0,
    bpw: float | None = None,
) -> NetSpec:
    """The network of family ``arch`` closest to the budget without going over."""
    check_request(bpp, bits)
    fam = family(arch)
    fam.check_overrides(ov)
    size = size_estimator(bits, coding, bpw)
    return fam.choose(height, width, channels, bpp, bits, ov, size, bits if bpw is None else bpw)
