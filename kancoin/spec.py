"""Everything the decoder needs to rebuild a network: architecture and sizes.

A ``ModelSpec`` is what the file header stores (besides the image size and quantization);
``tensor_shapes`` fixes the order and shapes of the stored tensors for both reader and writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

ARCHS = ("kan", "siren")
# KAN edge functions (``kan.py``); the index is what the file stores. ``grid_size`` means:
# intervals (bspline), centres (rbf, rsf), degree (chebyshev), frequencies (fourier), 0 (tanh).
BASES = ("bspline", "rbf", "rsf", "chebyshev", "fourier", "tanh")
# bases with a SiLU base branch (w_b · SiLU(x)) beside the edge function
BASE_BRANCH = ("bspline", "rbf", "rsf")
IN_FEATURES = 2  # (x, y)
MAX_SIDE = 16384  # largest image side the format (and the codec) accepts


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of one coded image's network.

    widths: all layer widths including input (2) and output (channels), e.g. (2, 12, 12, 12, 3).
    KAN:   basis (edge function family, ``BASES``), grid_size G, spline_order k (bspline),
           grid_range; first_grid_size G1: the first layer's grid (bspline; 0 means G): the
           first layer sees only x and y, and a fine grid there acts as a learned positional
           encoding at little cost; node_bias: a learnable bias per output node; layernorm:
           LayerNorm (with affine) on the input of every hidden layer (FastKAN; not the first
           layer, whose two inputs LayerNorm would collapse to ±1).
    SIREN: w0 (hidden layers), w0_initial (first layer).
    """

    arch: str
    widths: tuple[int, ...]
    grid_size: int = 0
    spline_order: int = 3
    grid_range: tuple[float, float] = (-1.0, 1.0)
    w0: float = 30.0
    w0_initial: float = 30.0
    basis: str = "bspline"
    node_bias: bool = False
    layernorm: bool = False
    first_grid_size: int = 0

    def __post_init__(self) -> None:
        if self.basis not in BASES:
            raise ValueError(f"unknown basis {self.basis!r}")
        if self.arch == "kan":
            if (self.grid_size == 0) != (self.basis == "tanh"):
                raise ValueError(f"grid_size {self.grid_size} is invalid for basis {self.basis}")
            if self.basis != "bspline":  # one file per network: the order means nothing here
                object.__setattr__(self, "spline_order", 3)
            if self.basis != "bspline" and self.first_grid_size not in (0, self.grid_size):
                raise ValueError("a first-layer grid of its own needs the bspline basis")
        # one spelling per network: 0 means "the same as grid_size"
        object.__setattr__(self, "first_grid_size", int(self.first_grid_size or self.grid_size))
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

    def layer_grid(self, n: int) -> int:
        """Grid size of layer ``n`` (the first layer may have its own)."""
        return self.first_grid_size if n == 0 else self.grid_size

    @property
    def layer_grids(self) -> tuple[int, ...]:
        return tuple(self.layer_grid(n) for n in range(len(self.widths) - 1))

    def layer_dims(self) -> list[tuple[int, int]]:
        """(in, out) per layer."""
        return list(zip(self.widths[:-1], self.widths[1:]))

    def kan_layer_tensors(self, n: int, i: int, o: int) -> list[tuple[str, tuple[int, ...]]]:
        """One KAN layer's stored tensors (name within the layer, shape), in file order:
        LayerNorm weight and bias, the edge function's tensors, the node bias."""
        out: list[tuple[str, tuple[int, ...]]] = []
        if self.layernorm and n > 0:
            out += [("ln_weight", (i,)), ("ln_bias", (i,))]
        if self.basis in BASE_BRANCH:
            out.append(("base_weight", (o, i)))
        g = self.layer_grid(n)
        out += {
            # the per-edge spline scale is folded into the coefficients
            "bspline": [("spline_coef", (o, i, g + self.spline_order))],
            "rbf": [("rbf_coef", (o, i, g))],
            "rsf": [("rsf_coef", (o, i, g))],
            "chebyshev": [("cheby_coef", (o, i, g + 1))],
            "fourier": [("fourier_cos", (o, i, g)), ("fourier_sin", (o, i, g))],
            "tanh": [("tanh_a", (o, i)), ("tanh_b", (o, i)), ("tanh_w", (o, i))],
        }[self.basis]
        if self.node_bias:
            out.append(("bias", (o,)))
        return out

    def tensor_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """Stored tensors in file order (``layers.<n>.<name>``)."""
        shapes: list[tuple[str, tuple[int, ...]]] = []
        for n, (i, o) in enumerate(self.layer_dims()):
            if self.arch == "kan":
                shapes += [(f"layers.{n}.{t}", s) for t, s in self.kan_layer_tensors(n, i, o)]
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
            extras = "".join(
                f", {e}" for e, on in (("node bias", self.node_bias), ("LayerNorm", self.layernorm))
                if on
            )  # fmt: skip
            if self.basis == "bspline":
                grid = f"grid {self.grid_size}"
                if self.first_grid_size != self.grid_size:
                    grid = f"grid {self.first_grid_size}/{self.grid_size} (first/other layers)"
                return f"KAN {w}, {grid}, order {self.spline_order}{extras}"
            size = {"rbf": "centres", "rsf": "centres", "chebyshev": "degree",
                    "fourier": "frequencies"}.get(self.basis)  # fmt: skip
            sized = f", {size} {self.grid_size}" if size else ""
            return f"KAN {w}, {self.basis}{sized}{extras}"
        return f"SIREN {w}, w0 {self.w0:g}"

    def as_dict(self) -> dict:
        d = {"arch": self.arch, "widths": list(self.widths)}
        if self.arch == "kan":
            d |= {
                "basis": self.basis,
                "node_bias": self.node_bias,
                "layernorm": self.layernorm,
                "grid_size": self.grid_size,
                "first_grid_size": self.first_grid_size,
                "spline_order": self.spline_order,
                "grid_range": list(self.grid_range),
            }
        else:
            d |= {"w0": self.w0, "w0_initial": self.w0_initial}
        return d
