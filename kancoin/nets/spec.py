"""What every network family's spec shares, and the architecture overrides a user may give.

Light on purpose (no torch): the command line and the format tables import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from math import prod
from typing import Any, ClassVar


@dataclass(frozen=True)
class NetSpec:
    """Architecture of one coded image's network: layer widths, input to output, e.g.
    (2, 12, 12, 12, 3). Families add their own hyperparameters."""

    widths: tuple[int, ...]
    arch: ClassVar[str] = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))

    @property
    def in_features(self) -> int:
        return self.widths[0]

    @property
    def hidden(self) -> tuple[int, ...]:
        return self.widths[1:-1]

    @property
    def channels(self) -> int:
        return self.widths[-1]

    def layer_dims(self) -> list[tuple[int, int]]:
        """(in, out) per layer."""
        return list(zip(self.widths[:-1], self.widths[1:]))

    def tensor_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """Stored tensors in file order: (name, shape)."""
        raise NotImplementedError

    @cached_property  # rate control asks thousands of candidates (frozen: computed once)
    def n_params(self) -> int:
        """Numbers stored in the file."""
        return sum(prod(s) for _, s in self.tensor_shapes())

    def describe(self) -> str:
        raise NotImplementedError

    def as_dict(self) -> dict:
        return {"arch": self.arch, "widths": list(self.widths)}


@dataclass(frozen=True)
class Overrides:
    """User overrides of the architecture (None: chosen by rate control). Which apply is the
    family's ``override_names``; a family refuses the others."""

    width: int | None = None
    depth: int | None = None
    grid_size: int | None = None
    spline_order: int | None = None
    # the first layer's grid: None chosen by rate control (B-spline), 0 the same as grid_size
    first_grid_size: int | None = None
    # the KAN family (stored in the file): not chosen by rate control, always the user's
    basis: str = "bspline"
    node_bias: bool = False
    layernorm: bool = False
    # the latent family: number of latent grids, and the synthesis ("kan", "mlp"; None: the
    # family's default)
    levels: int | None = None
    synthesis: str | None = None

    def given(self) -> dict[str, Any]:
        """The overrides that differ from 'not given'."""
        d = {}
        for name, none in (
            ("width", None), ("depth", None), ("grid_size", None), ("spline_order", None),
            ("first_grid_size", None), ("basis", "bspline"), ("node_bias", False),
            ("layernorm", False), ("levels", None), ("synthesis", None),
        ):  # fmt: skip
            v = getattr(self, name)
            if v != none:
                d[name] = v
        return d


def budget_bytes(bpp: float, height: int, width: int) -> int:
    """The whole file's budget in bytes: bpp × H × W / 8, rounded down."""
    return int(bpp * height * width // 8)


def impossible_rate(bpp: float, bits: int, height: int, width: int, cap: int) -> str:
    return (
        f"--bpp {bpp:g} is too small for any network at {bits} bits on a {width}x{height} image "
        f"(budget {cap} bytes for the whole file); raise --bpp or lower --bits"
    )
