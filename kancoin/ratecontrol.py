"""Rate control: from a target bpp, pick the largest network whose whole file fits.

The budget is bpp × H × W bits for the whole file (header, payload, padding, CRC); the size of a
candidate is computed exactly by ``bitstream.file_bytes`` for fixed-width coding, so the
written file never exceeds it. With range coding the size depends on the trained weights: the
network is sized with an estimated bits per weight (``bpw``) and the encoder then sets the bit
depth from the real coded size (``encode``).
"""

from __future__ import annotations

from dataclasses import dataclass

from kancoin.bitstream import estimated_file_bytes
from kancoin.errors import KancoinError
from kancoin.quant import MAX_BITS, MIN_BITS
from kancoin.spec import IN_FEATURES, ModelSpec

# KAN defaults (KAN-COIN paper: 3 hidden layers of width 12-16, grid filling the budget).
KAN_DEPTH = 3
KAN_WIDTHS = tuple(range(12, 17))
KAN_MIN_GRID = 3  # below this, narrower layers with a real grid do better than a degenerate one
KAN_MAX_GRID = 64  # above this, spend the budget on width instead
# Chebyshev degree and Fourier frequencies: high ones make the edge functions (and gradients)
# so steep that a deep fit does not train; the budget goes to width instead (256x384 crop,
# 150 steps: Chebyshev degree 57 12.5 dB, 16 20.8, 8 20.0; Fourier 29 frequencies failed on
# Kodak at 500 steps, 13-15 dB; 8 frequencies 20.8 on the crop)
BASIS_MAX_GRID = {"chebyshev": 16, "fourier": 8}
MAX_GRID = 4095
SIREN_DEPTH = 10  # COIN: 10 layers (9 sine + linear output)


@dataclass(frozen=True)
class Overrides:
    """User overrides of the architecture (None: chosen by rate control)."""

    width: int | None = None
    depth: int | None = None
    grid_size: int | None = None
    spline_order: int | None = None
    # the KAN family (stored in the file): not chosen by rate control, always the user's
    basis: str = "bspline"
    node_bias: bool = False
    layernorm: bool = False


def budget_bytes(bpp: float, height: int, width: int) -> int:
    return int(bpp * height * width // 8)


def check_request(bpp: float, bits: int) -> None:
    if not MIN_BITS <= bits <= MAX_BITS:
        raise KancoinError(f"--bits must be between {MIN_BITS} and {MAX_BITS}, got {bits}")
    if not bpp > 0:
        raise KancoinError(f"--bpp must be positive, got {bpp}")


def _kan(widths: tuple[int, ...], grid: int, order: int, ov: Overrides = Overrides()) -> ModelSpec:
    if ov.basis == "tanh":
        grid = 0  # no grid: three numbers per edge
    return ModelSpec(
        "kan", widths, grid_size=grid, spline_order=order, basis=ov.basis,
        node_bias=ov.node_bias, layernorm=ov.layernorm,
    )  # fmt: skip


def _largest(make, size, cap: int, top: int) -> int:
    """Largest n in 1..top with size(make(n)) <= cap (0 if even 1 does not fit)."""
    lo, hi = 0, top
    while lo < hi:  # file size grows with n: bisect
        mid = (lo + hi + 1) // 2
        if size(make(mid)) <= cap:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _largest_grid(
    hidden: tuple[int, ...], channels: int, order: int, size, cap: int, ov: Overrides = Overrides()
) -> int:
    """Largest grid size with size(spec) <= cap (0 if even grid 1 does not fit)."""
    widths = (IN_FEATURES, *hidden, channels)
    return _largest(lambda g: _kan(widths, g, order, ov), size, cap, MAX_GRID)


def _sizer(bits: int, coding: int, bpw: float | None):
    return lambda spec: estimated_file_bytes(spec, bits if bpw is None else bpw, coding)


def choose_kan(
    height: int,
    width: int,
    channels: int,
    bpp: float,
    bits: int,
    ov: Overrides = Overrides(),
    coding: int = 0,
    bpw: float | None = None,
) -> ModelSpec:
    """The KAN closest to the budget without going over. For bases with a grid: widths 12-16
    (the paper's), the grid filling the budget; the tanh basis has no grid: the widest layers."""
    check_request(bpp, bits)
    size = _sizer(bits, coding, bpw)
    cap = budget_bytes(bpp, height, width)
    order = ov.spline_order or 3
    if ov.basis == "tanh":
        depth = ov.depth or KAN_DEPTH
        w = ov.width or _largest(
            lambda n: _kan((IN_FEATURES, *(n,) * depth, channels), 0, order, ov), size, cap, 4095
        )
        spec = _kan((IN_FEATURES, *(w,) * depth, channels), 0, order, ov) if w else None
        if spec is None or size(spec) > cap:
            raise KancoinError(_impossible(bpp, bits, height, width, cap))
        return spec
    depths = [ov.depth] if ov.depth else [KAN_DEPTH]
    if ov.width:
        width_sets = [[ov.width]]
    else:  # the paper's range first; wider when the grid would be huge, narrower when tiny
        width_sets = [list(KAN_WIDTHS), list(range(17, 257)), list(range(11, 0, -1))]
    best: ModelSpec | None = None
    for n_set, widths in enumerate(width_sets):
        for depth in depths:
            for w in widths:
                hidden = (w,) * depth
                if ov.grid_size:
                    spec = _kan((IN_FEATURES, *hidden, channels), ov.grid_size, order, ov)
                    if size(spec) > cap:
                        continue
                else:
                    g = _largest_grid(hidden, channels, order, size, cap, ov)
                    top = BASIS_MAX_GRID.get(ov.basis, KAN_MAX_GRID)
                    limit_ok = ov.width or KAN_MIN_GRID <= g <= top
                    if g < 1 or not limit_ok:
                        continue
                    spec = _kan((IN_FEATURES, *hidden, channels), g, order, ov)
                if best is None or spec.n_params > best.n_params:
                    best = spec
                if n_set > 0:  # fallback sets are ordered by preference: take the first fit
                    break
            if best is not None and n_set > 0:
                break
        if best is not None:
            break
    if best is None:
        raise KancoinError(_impossible(bpp, bits, height, width, cap))
    return best


def choose_siren(
    height: int,
    width: int,
    channels: int,
    bpp: float,
    bits: int,
    ov: Overrides = Overrides(),
    coding: int = 0,
    bpw: float | None = None,
) -> ModelSpec:
    """COIN's rule: fixed depth (10 layers), the widest layers that fit."""
    check_request(bpp, bits)
    size = _sizer(bits, coding, bpw)
    cap = budget_bytes(bpp, height, width)
    depth = ov.depth or SIREN_DEPTH
    if depth < 2:
        raise KancoinError("--depth for SIREN must be at least 2")
    candidates = [ov.width] if ov.width else range(4095, 0, -1)
    for w in candidates:
        spec = ModelSpec("siren", (IN_FEATURES, *([w] * (depth - 1)), channels))
        if size(spec) <= cap:
            return spec
    raise KancoinError(_impossible(bpp, bits, height, width, cap))


def _impossible(bpp: float, bits: int, height: int, width: int, cap: int) -> str:
    return (
        f"--bpp {bpp:g} is too small for any network at {bits} bits on a {width}x{height} image "
        f"(budget {cap} bytes for the whole file); raise --bpp or lower --bits"
    )


def choose(
    arch: str,
    height: int,
    width: int,
    channels: int,
    bpp: float,
    bits: int,
    ov: Overrides,
    coding: int = 0,
    bpw: float | None = None,
) -> ModelSpec:
    if arch == "kan":
        return choose_kan(height, width, channels, bpp, bits, ov, coding, bpw)
    if arch == "siren":
        return choose_siren(height, width, channels, bpp, bits, ov, coding, bpw)
    raise KancoinError(f"unknown --arch {arch!r} (kan or siren)")
