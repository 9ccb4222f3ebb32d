"""What a file stores about a KAN: its spec, its header fields and its tensors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kancoin.bitfields import Field
from kancoin.nets.spec import NetSpec

# KAN edge functions (``layers``, ``bases``); the index is what the file stores. ``grid_size``
# means: intervals (bspline), centres (rbf, rsf), degree (chebyshev), frequencies (fourier),
# 0 (tanh).
BASES = ("bspline", "rbf", "rsf", "chebyshev", "fourier", "tanh")
# bases with a SiLU base branch (w_b · SiLU(x)) beside the edge function
BASE_BRANCH = ("bspline", "rbf", "rsf")
_SIZE_WORD = {"rbf": "centres", "rsf": "centres", "chebyshev": "degree", "fourier": "frequencies"}

HEADER_FIELDS = (
    Field("basis", "uint:3", 0, len(BASES) - 1, since=3, default=0,
          doc="edge functions: " + ", ".join(f"{i} {b}" for i, b in enumerate(BASES))),
    Field("node_bias", "uint:1", 0, 1, since=3, default=0, doc="1: a bias per output node"),
    Field("layernorm", "uint:1", 0, 1, since=3, default=0,
          doc="1: LayerNorm on hidden layers' inputs"),
    Field("grid_size", "uint:12", 0, 4095,
          doc="grid intervals G (bspline), centres (rbf, rsf), degree (chebyshev), "
              "frequencies (fourier), 0 (tanh)"),
    Field("first_grid_size", "uint:12", 0, 4095, since=4, default_from="grid_size",
          doc="the first layer's grid intervals G1 (bspline; = grid_size for other bases)"),
    Field("spline_order", "uint:3", 1, 7, doc="B-spline order k (3 for other bases)"),
    Field("grid_lo", "floatbe:32", -1e6, 1e6, doc="grid_range[0]"),
    Field("grid_hi", "floatbe:32", -1e6, 1e6, doc="grid_range[1] (> grid_lo)"),
)  # fmt: skip


@dataclass(frozen=True)
class KanSpec(NetSpec):
    """A KAN's architecture.

    widths: all layer widths including input (2) and output (channels), e.g. (2, 12, 12, 12, 3);
    basis: edge function family (``BASES``); grid_size G; spline_order k (bspline); grid_range;
    first_grid_size G1: the first layer's grid (bspline; 0 means G): the first layer sees only x
    and y, and a fine grid there acts as a learned positional encoding at little cost;
    node_bias: a learnable bias per output node; layernorm: LayerNorm (with affine) on the input
    of every hidden layer (FastKAN; not the first layer, whose two inputs LayerNorm would
    collapse to ±1).
    """

    grid_size: int = 0
    spline_order: int = 3
    grid_range: tuple[float, float] = (-1.0, 1.0)
    basis: str = "bspline"
    node_bias: bool = False
    layernorm: bool = False
    first_grid_size: int = 0
    arch = "kan"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.basis not in BASES:
            raise ValueError(f"unknown basis {self.basis!r}")
        if (self.grid_size == 0) != (self.basis == "tanh"):
            raise ValueError(f"grid_size {self.grid_size} is invalid for basis {self.basis}")
        if self.basis != "bspline":  # one file per network: the order means nothing here
            object.__setattr__(self, "spline_order", 3)
            if self.first_grid_size not in (0, self.grid_size):
                raise ValueError("a first-layer grid of its own needs the bspline basis")
        # one spelling per network: 0 means "the same as grid_size"
        object.__setattr__(self, "first_grid_size", int(self.first_grid_size or self.grid_size))
        # The header stores floats as float32: round here so encoder and decoder agree exactly.
        lo, hi = (float(np.float32(v)) for v in self.grid_range)
        object.__setattr__(self, "grid_range", (lo, hi))

    def layer_grid(self, n: int) -> int:
        """Grid size of layer ``n`` (the first layer may have its own)."""
        return self.first_grid_size if n == 0 else self.grid_size

    @property
    def layer_grids(self) -> tuple[int, ...]:
        return tuple(self.layer_grid(n) for n in range(len(self.widths) - 1))

    def layer_tensors(self, n: int, i: int, o: int) -> list[tuple[str, tuple[int, ...]]]:
        """One layer's stored tensors (name within the layer, shape), in file order:
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
            shapes += [(f"layers.{n}.{t}", s) for t, s in self.layer_tensors(n, i, o)]
        return shapes

    def describe(self) -> str:
        w = "-".join(str(x) for x in self.widths)
        extras = "".join(
            f", {e}" for e, on in (("node bias", self.node_bias), ("LayerNorm", self.layernorm))
            if on
        )  # fmt: skip
        if self.basis == "bspline":
            grid = f"grid {self.grid_size}"
            if self.first_grid_size != self.grid_size:
                grid = f"grid {self.first_grid_size}/{self.grid_size} (first/other layers)"
            return f"KAN {w}, {grid}, order {self.spline_order}{extras}"
        size = _SIZE_WORD.get(self.basis)
        sized = f", {size} {self.grid_size}" if size else ""
        return f"KAN {w}, {self.basis}{sized}{extras}"

    def as_dict(self) -> dict:
        return super().as_dict() | {
            "basis": self.basis,
            "node_bias": self.node_bias,
            "layernorm": self.layernorm,
            "grid_size": self.grid_size,
            "first_grid_size": self.first_grid_size,
            "spline_order": self.spline_order,
            "grid_range": list(self.grid_range),
        }
