"""Everything the decoder needs to rebuild a network: architecture and sizes.

A ``ModelSpec`` is what the file header stores (besides the image size and quantization);
``tensor_shapes`` fixes the order and shapes of the stored tensors for both reader and writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

ARCHS = ("kan", "siren")
IN_FEATURES = 2  # (x, y)
MAX_SIDE = 16384  # largest image side the format (and the codec) accepts


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of one coded image's network.

    widths: all layer widths including input (2) and output (channels), e.g. (2, 12, 12, 12, 3).
    KAN:   grid_size G, spline_order k, grid_range.
    SIREN: w0 (hidden layers), w0_initial (first layer).
    """

    arch: str
    widths: tuple[int, ...]
    grid_size: int = 0
    spline_order: int = 3
    grid_range: tuple[float, float] = (-1.0, 1.0)
    w0: float = 30.0
    w0_initial: float = 30.0

    def __post_init__(self) -> None:
        # The header stores floats as float32: round here so encoder and decoder agree exactly.
        f32 = lambda v: float(np.float32(v))  # noqa: E731
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "grid_range", (f32(self.grid_range[0]), f32(self.grid_range[1])))
        object.__setattr__(self, "w0", f32(self.w0))
        object.__setattr__(self, "w0_initial", f32(self.w0_initial))

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
        """Stored tensors in file order. KAN stores O·I·(G+k+1) numbers per layer: the
        per-edge spline scale is folded into the coefficients."""
        shapes: list[tuple[str, tuple[int, ...]]] = []
        for n, (i, o) in enumerate(self.layer_dims()):
            if self.arch == "kan":
                shapes.append((f"layers.{n}.base_weight", (o, i)))
                shapes.append(
                    (f"layers.{n}.spline_coef", (o, i, self.grid_size + self.spline_order))
                )
            else:
                shapes.append((f"layers.{n}.weight", (o, i)))
                shapes.append((f"layers.{n}.bias", (o,)))
        return shapes

    @property
    def n_params(self) -> int:
        """Numbers stored in the file."""
        return sum(prod(s) for _, s in self.tensor_shapes())

    def describe(self) -> str:
        w = "-".join(str(x) for x in self.widths)
        if self.arch == "kan":
            return f"KAN {w}, grid {self.grid_size}, order {self.spline_order}"
        return f"SIREN {w}, w0 {self.w0:g}"

    def as_dict(self) -> dict:
        d = {"arch": self.arch, "widths": list(self.widths)}
        if self.arch == "kan":
            d |= {
                "grid_size": self.grid_size,
                "spline_order": self.spline_order,
                "grid_range": list(self.grid_range),
            }
        else:
            d |= {"w0": self.w0, "w0_initial": self.w0_initial}
        return d
