"""Rate control for a KAN: from a budget, the largest KAN whose whole file fits.

The size of a candidate is given by the caller (``size``: exact for fixed coding, an estimate
from ``bpw`` coded bits per weight for range coding); its header fields and tensors follow from
the spec, so the KAN only decides widths, depth and grids here.
"""

from __future__ import annotations

from collections.abc import Callable

from kancoin.errors import KancoinError
from kancoin.nets.kan.spec import KanSpec
from kancoin.nets.spec import NetSpec, Overrides, budget_bytes, impossible_rate

IN_FEATURES = 2  # (x, y)
Size = Callable[[NetSpec], int]

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
# The first layer sees only x and y, so a fine grid there is a learned positional encoding; it
# is separable on the pixel grid, so it costs no time. Its share of the weights (float fits of
# 2,000 steps at 0.3 bpp, 2-15-15-15-3, docs/research/first-layer-grid.md): kodim23 28.75 dB
# with one grid 33 for all layers, 29.77 with a first-layer grid 128 (21 % of the weights),
# 30.18 with 256 (41 %), 29.82 with 384 (61 %); kodim05 20.82 / 21.07 / 20.98 / 20.85.
FIRST_LAYER_SHARE = 0.33
# With a fine first layer, wider layers on a coarse grid do better than the paper's 12-16 on a
# fine one (float fits as above, first layer a third of the weights, kodim05 / kodim23):
# width 16 (grid 19) 21.25 / 30.33 dB, 20 (grid 11) 21.60 / 30.65, 24 (grid 6) 21.83 / 29.88,
# 28 (grid 3) 21.04 / 28.41. So: the widest layers whose grid keeps FIRST_MIN_OTHER_GRID
# intervals. Where no width does (small budgets), the share shrinks (these in turn) for widths
# in the paper's range; if none works, one grid for all layers.
FIRST_MIN_OTHER_GRID = 10
FIRST_LAYER_SHARES = (FIRST_LAYER_SHARE, 0.2, 0.1)
FIRST_GRID_PIXELS = 2  # at most one interval per 2 pixels of the longer side


def first_grid(
    height: int, width: int, hidden: int, n_weights: float, order: int, share: float
) -> int:
    """First-layer grid for a network of about ``n_weights`` stored numbers whose first hidden
    layer is ``hidden`` wide: ``share`` of the weights (2 inputs × hidden edges, G1 + k + 1
    numbers each), at most one interval per ``FIRST_GRID_PIXELS`` pixels (0 if none fits)."""
    g1 = int(share * n_weights / (2 * hidden)) - order - 1
    return max(0, min(g1, max(height, width) // FIRST_GRID_PIXELS, MAX_GRID))



def _kan(
    widths: tuple[int, ...], grid: int, order: int, ov: Overrides = Overrides(), first: int = 0
) -> KanSpec:
    if ov.basis == "tanh":
        grid = 0  # no grid: three numbers per edge
    return KanSpec(
        widths, grid_size=grid, spline_order=order, basis=ov.basis,
        node_bias=ov.node_bias, layernorm=ov.layernorm, first_grid_size=first,
    )  # fmt: skip


def _largest(make, size, cap: int, top: int) -> int:
    """Largest n in 1..top with size(make(n)) <= cap (0 if even 1 does not fit)."""
    # Where even 1 does not fit (most candidates of a small budget: rate control tries
    # hundreds of widths), one size instead of a bisection's log2(top) to the same 0.
    if top < 1 or size(make(1)) > cap:
        return 0
    lo, hi = 1, top
    while lo < hi:  # file size grows with n: bisect
        mid = (lo + hi + 1) // 2
        if size(make(mid)) <= cap:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _largest_grid(
    hidden: tuple[int, ...],
    channels: int,
    order: int,
    size,
    cap: int,
    ov: Overrides = Overrides(),
    first: int = 0,
) -> int:
    """Largest grid size with size(spec) <= cap (0 if even grid 1 does not fit); ``first``: the
    first layer's own grid (0: the same)."""
    widths = (IN_FEATURES, *hidden, channels)
    return _largest(lambda g: _kan(widths, g, order, ov, first), size, cap, MAX_GRID)



def choose_kan(
    height: int,
    width: int,
    channels: int,
    bpp: float,
    bits: int,
    ov: Overrides,
    size: Size,
    bpw: float,
) -> KanSpec:
    """The KAN closest to the budget without going over.

    B-spline (default): the first layer gets a finer grid of its own (``first_grid``) holding
    about ``FIRST_LAYER_SHARE`` of the weights, and the layers are as wide as the other layers'
    grid (filling the rest of the budget) allows while it keeps ``FIRST_MIN_OTHER_GRID``
    intervals. Where that fails (small budgets), and for the other bases with a grid: widths
    12-16 (the paper's) with the grid filling the budget. The tanh basis has no grid: the widest
    layers."""
    cap = budget_bytes(bpp, height, width)
    order = ov.spline_order or 3
    if ov.basis == "tanh":
        depth = ov.depth or KAN_DEPTH
        w = ov.width or _largest(
            lambda n: _kan((IN_FEATURES, *(n,) * depth, channels), 0, order, ov), size, cap, 4095
        )
        spec = _kan((IN_FEATURES, *(w,) * depth, channels), 0, order, ov) if w else None
        if spec is None or size(spec) > cap:
            raise KancoinError(impossible_rate(bpp, bits, height, width, cap))
        return spec
    depths = [ov.depth] if ov.depth else [KAN_DEPTH]
    auto = ov.width is None and ov.grid_size is None and ov.first_grid_size is None
    if ov.basis == "bspline" and auto:
        wide = _widest_with_first_grid(height, width, channels, depths[0], order, size, cap,
                                       bpw, ov)  # fmt: skip
        if wide is not None:
            return wide
    if ov.width:
        width_sets = [[ov.width]]
    else:  # the paper's range first; wider when the grid would be huge, narrower when tiny
        width_sets = [list(KAN_WIDTHS), list(range(17, 257)), list(range(11, 0, -1))]
    best: KanSpec | None = None
    for n_set, widths in enumerate(width_sets):
        for depth in depths:
            for w in widths:
                hidden = (w,) * depth
                if ov.grid_size:
                    g1 = ov.first_grid_size or 0
                    spec = _kan((IN_FEATURES, *hidden, channels), ov.grid_size, order, ov, g1)
                    if size(spec) > cap:
                        continue
                else:
                    g, g1 = _grids(
                        height, width, hidden, channels, order, size, cap, bpw, ov
                    )
                    top = BASIS_MAX_GRID.get(ov.basis, KAN_MAX_GRID)
                    limit_ok = ov.width or KAN_MIN_GRID <= g <= top
                    if g < 1 or not limit_ok:
                        continue
                    spec = _kan((IN_FEATURES, *hidden, channels), g, order, ov, g1)
                if best is None or spec.n_params > best.n_params:
                    best = spec
                if n_set > 0:  # fallback sets are ordered by preference: take the first fit
                    break
            if best is not None and n_set > 0:
                break
        if best is not None:
            break
    if best is None:
        raise KancoinError(impossible_rate(bpp, bits, height, width, cap))
    return best


def _widest_with_first_grid(
    height: int,
    width: int,
    channels: int,
    depth: int,
    order: int,
    size,
    cap: int,
    bpw: float,
    ov: Overrides,
) -> KanSpec | None:
    """The widest B-spline KAN (from the paper's smallest width up) whose first layer holds
    ``FIRST_LAYER_SHARE`` of the weights on a finer grid and whose other layers keep a grid of
    at least ``FIRST_MIN_OTHER_GRID``; None where no width does."""
    best = None
    for w in range(KAN_WIDTHS[0], 257):
        hidden = (w,) * depth
        g, g1 = _split(height, width, hidden, channels, order, size, cap, bpw, ov,
                       FIRST_LAYER_SHARE)  # fmt: skip
        if g < FIRST_MIN_OTHER_GRID:
            break  # wider only makes the grids coarser
        if g1 > g:  # (narrower layers may leave the others a grid finer than the first's)
            best = _kan((IN_FEATURES, *hidden, channels), g, order, ov, g1)
    return best


def _split(
    height: int,
    width: int,
    hidden: tuple[int, ...],
    channels: int,
    order: int,
    size,
    cap: int,
    bpw: float,
    ov: Overrides,
    share: float,
) -> tuple[int, int]:
    """(grid of the other layers, first-layer grid) with ``share`` of the weights on the first
    layer; (0, 0) where no first-layer grid fits."""
    g1 = first_grid(height, width, hidden[0], cap * 8 / bpw, order, share)
    return (_largest_grid(hidden, channels, order, size, cap, ov, g1), g1) if g1 else (0, 0)


def _grids(
    height: int,
    width: int,
    hidden: tuple[int, ...],
    channels: int,
    order: int,
    size,
    cap: int,
    bpw: float,
    ov: Overrides,
) -> tuple[int, int]:
    """(grid of the other layers, first-layer grid; 0: the same) filling the budget."""
    if ov.first_grid_size is not None:
        g1 = ov.first_grid_size
        return _largest_grid(hidden, channels, order, size, cap, ov, g1), g1
    if ov.basis == "bspline":
        for share in FIRST_LAYER_SHARES:
            g, g1 = _split(height, width, hidden, channels, order, size, cap, bpw, ov, share)
            if g >= FIRST_MIN_OTHER_GRID and g1 > g:
                return g, g1
    return _largest_grid(hidden, channels, order, size, cap, ov), 0

