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
from kancoin.format import limits
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


OVER = 1 << 62  # the size of a network the decoder would refuse: it never fits


def size_estimator(
    bits: int, coding: int, bpw: float | None = None, grid: tuple[int, int] | None = None
):
    """spec -> file bytes: exact at ``bits`` for fixed coding, at ``bpw`` coded bits per weight
    (default ``bits``) for range coding. With ``grid`` (H, W), a network whose decode there is
    over the decoder's limits (``format.limits``) gets ``OVER``: rate control never picks it."""
    per_weight = bits if bpw is None else bpw

    def size(spec: NetSpec) -> int:
        if grid is not None:
            cost = limits.decode_cost(spec, *grid)
            if cost.work > limits.MAX_DECODE_WORK or cost.weights > limits.MAX_WEIGHTS:
                return OVER
        return estimated_file_bytes(spec, per_weight, coding)

    return size


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
    decode_limits: bool = False,
) -> NetSpec:
    """The network of family ``arch`` closest to the budget without going over (and, with
    ``decode_limits``, within what the decoder accepts)."""
    check_request(bpp, bits)
    fam = family(arch)
    fam.check_overrides(ov)
    size = size_estimator(bits, coding, bpw, (height, width) if decode_limits else None)
    est = bits if bpw is None else bpw
    try:
        return fam.choose(height, width, channels, bpp, bits, ov, size, est)
    except KancoinError:
        if not decode_limits:
            raise
        # something fits the budget, but only networks the decoder would refuse
        unlimited = size_estimator(bits, coding, bpw)
        spec = fam.choose(height, width, channels, bpp, bits, ov, unlimited, est)
        cost = limits.decode_cost(spec, height, width)
        raise KancoinError(
            f"--bpp {bpp:g} on a {width}x{height} image asks for a network over the decoder's "
            f"limits ({spec.describe()}: {cost.work:.3g} multiply-adds, limit "
            f"{limits.MAX_DECODE_WORK:.3g}); lower --bpp"
        ) from None
