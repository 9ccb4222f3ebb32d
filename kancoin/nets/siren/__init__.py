"""COIN's SIREN (sine activations, w0 = 30, COIN's initialisation): the baseline family.

Stored per layer: ``weight`` (O, I) and ``bias`` (O,). Rate control follows COIN: a fixed depth
(10 layers), the widest layers that fit. Its weights lose > 1 dB at 9 bits, so SIREN files use
COIN's 16 bits by default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kancoin.bitfields import Field
from kancoin.errors import KancoinError
from kancoin.nets.base import NetFamily
from kancoin.nets.spec import NetSpec, Overrides, budget_bytes, impossible_rate

if TYPE_CHECKING:  # the module (and torch) loads when a network is built, not to read a header
    from torch import nn

    from kancoin.nets.siren.network import Siren


SIREN_DEPTH = 10  # COIN: 10 layers (9 sine + linear output)
MAX_WIDTH = 4095


@dataclass(frozen=True)
class SirenSpec(NetSpec):
    """widths (2, W, ..., W, C); w0: hidden-layer frequency, w0_initial: first layer's. The
    header stores them as float32, so they are rounded to float32 here: encoder and decoder
    agree exactly."""

    w0: float = 30.0
    w0_initial: float = 30.0
    arch = "siren"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "w0", float(np.float32(self.w0)))
        object.__setattr__(self, "w0_initial", float(np.float32(self.w0_initial)))

    def tensor_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        shapes: list[tuple[str, tuple[int, ...]]] = []
        for n, (i, o) in enumerate(self.layer_dims()):
            shapes += [(f"layers.{n}.weight", (o, i)), (f"layers.{n}.bias", (o,))]
        return shapes

    def describe(self) -> str:
        return f"SIREN {'-'.join(str(x) for x in self.widths)}, w0 {self.w0:g}"

    def as_dict(self) -> dict:
        return super().as_dict() | {"w0": self.w0, "w0_initial": self.w0_initial}


class SirenFamily(NetFamily):
    name = "siren"
    arch_id = 1
    label = "SIREN"
    spec_type = SirenSpec
    header_fields = (
        Field("w0", "floatbe:32", 1e-6, 1e6, doc="hidden-layer frequency"),
        Field("w0_initial", "floatbe:32", 1e-6, 1e6, doc="first-layer frequency"),
    )
    default_bits = 16  # COIN's (fixed coding; range coding starts its step search there)
    range_saving = 0.4  # measured on trained Kodak networks (docs/design.md, rate control)
    default_lr = 2e-4  # COIN's
    override_names = ("width", "depth")

    def spec_values(self, spec: NetSpec) -> dict[str, Any]:
        return {"w0": spec.w0, "w0_initial": spec.w0_initial}

    def spec_from_values(
        self, widths: tuple[int, ...], values: dict[str, Any], image: tuple[int, int] = (1, 1)
    ) -> SirenSpec:
        return SirenSpec(widths, w0=values["w0"], w0_initial=values["w0_initial"])

    def build(self, spec: NetSpec) -> Siren:
        from kancoin.nets.siren.network import Siren

        return Siren(spec.widths, spec.w0, spec.w0_initial)

    def decode_cost(self, spec: NetSpec, height: int, width: int) -> tuple[float, int]:
        # GEMMs: a multiply-add per weight and pixel; the input, output and sine of a layer
        return float(sum(i * o for i, o in spec.layer_dims())) * height * width, 12 * max(
            spec.widths
        )

    def stored_parameters(self, model: nn.Module) -> list[tuple[nn.Module, str]]:
        out: list[tuple[nn.Module, str]] = []
        for layer in model.layers:
            out += [(layer.linear, "weight"), (layer.linear, "bias")]
        return out

    def choose(
        self,
        height: int,
        width: int,
        channels: int,
        bpp: float,
        bits: int,
        ov: Overrides,
        size: Callable[[NetSpec], int],
        bpw: float,
    ) -> SirenSpec:
        """COIN's rule: fixed depth (10 layers), the widest layers that fit."""
        cap = budget_bytes(bpp, height, width)
        depth = ov.depth or SIREN_DEPTH
        if depth < 2:
            raise KancoinError("--depth for SIREN must be at least 2")

        def make(w: int) -> SirenSpec:
            return SirenSpec((2, *([w] * (depth - 1)), channels))

        if ov.width:
            w = ov.width if size(make(ov.width)) <= cap else 0
        else:  # the file grows with the width: bisect (not thousands of widths from the top)
            lo, hi = 0, MAX_WIDTH
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if size(make(mid)) <= cap:
                    lo = mid
                else:
                    hi = mid - 1
            w = lo
        if not w:
            raise KancoinError(impossible_rate(bpp, bits, height, width, cap))
        return make(w)
