"""The latent family: a pyramid of entropy-coded latent grids decoded by a small network.

The file stores L one-channel grids (level l: ceil(H / 2^l) × ceil(W / 2^l) integers, each
grid with its own step and entropy model) and a synthesis network (L inputs, the grids
interpolated to each pixel; ``channels`` outputs): an MLP by default (format 9), or a B-spline
KAN. Decoding range-decodes the grids,
interpolates them to the pixel grid (``grids``) and runs the synthesis (``render``): numpy
alone, no torch and no numba. Training (``kancoin.codec.latent``)
learns the grids and the network together with the rate in the loss (the family of Cool-chic
and C3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from kancoin.bitfields import Field
from kancoin.errors import KancoinError
from kancoin.nets.base import ContextLayout, NetFamily
from kancoin.nets.latent.arm import MAX_HIDDEN as ARM_MAX_HIDDEN
from kancoin.nets.latent.arm import TAPS as ARM_TAPS
from kancoin.nets.latent.arm import tensor_shapes as arm_tensor_shapes
from kancoin.nets.latent.grids import level_shape
from kancoin.nets.spec import NetSpec, Overrides, budget_bytes

if TYPE_CHECKING:
    from torch import nn

MAX_LEVELS = 12
SINCE = 6  # the format version that added the family
PREDICTOR_SINCE = 7  # the version that added the latents' predictor
PREDICTOR_TAPS = 4  # causal neighbours a predictor weighs (``format.context.NEIGHBOURS``)
ARM_SINCE = 8  # the version that added the latents' autoregressive network
SYNTHESIS_SINCE = 9  # the version that added the MLP synthesis
SYNTHESES = ("kan", "mlp")  # the ``synthesis`` field's values, in order
FIXED_SINCE = 10  # the version that added the MLP synthesis in fixed point
FIXED_FRAC = 16  # what an encode writes: the MLP's activations in units of 2^−16
FIXED_FRACS = (14, 20)  # the fixed point's fraction bits F a file may give
ARM_ORDER_SINCE = 11  # the version that added the grids' interleaved coding order

HEADER_FIELDS = (
    Field("levels", "uint:4", 1, MAX_LEVELS, since=SINCE, default=0,
          doc="latent grids L (level l: ceil(H/2^l) × ceil(W/2^l)); the synthesis has L inputs"),
    Field("grid_size", "uint:8", 1, 255, since=SINCE, default=0,
          doc="the synthesis KAN's B-spline grid intervals G"),
    Field("spline_order", "uint:3", 1, 7, since=SINCE, default=3, doc="B-spline order k"),
    Field("grid_bound", "floatbe:32", 1e-3, 1e6, since=SINCE, default=1.0,
          doc="the synthesis grid covers [−grid_bound, grid_bound]"),
    Field("first_level", "uint:3", 0, 7, since=SINCE, default=0,
          doc="the finest grid's level f: grid i is ceil(H/2^(f+i)) × ceil(W/2^(f+i))"),
    Field("context", "uint:3", 0, 7, since=SINCE, default=0,
          doc="latent contexts K: 0, one Laplace per grid (its header model); K ≥ 2, a scale "
              "per grid and context (`predictor`), a stored (L, K) tensor"),
    Field("predictor", "uint:1", 0, 1, since=PREDICTOR_SINCE, default=0,
          doc="0: zero-mean Laplaces, context min(abs(left) + abs(up), K − 1); 1: Laplaces "
              "centred on a prediction from left, up, up-left and up-right (integer weights "
              "/64, a stored (L, 4) tensor), context min(sum of their abs, K − 1); needs K ≥ 2"),
    Field("arm", "uint:5", 0, ARM_MAX_HIDDEN, since=ARM_SINCE, default=0,
          doc="0: no network; A ≥ 1: every grid coded with Laplaces from one network of 7 "
              "causal neighbours, 7 → A → A → 2, in fixed point (`format.arm`; six stored "
              "tensors); needs K = 0 and no predictor"),
    Field("synthesis", "uint:2", 0, len(SYNTHESES) - 1, since=SYNTHESIS_SINCE, default=0,
          doc="the synthesis: 0 a B-spline KAN (`grid_size`, `spline_order`, `grid_bound`; "
              "per layer a base weight (O, I), spline coefficients (O, I, G + k), a bias "
              "(O,)); 1 an MLP, GELU (tanh form) after each hidden layer (per layer a "
              "weight (O, I) and a bias (O,); the three B-spline fields are stored, unused)"),
    Field("fixed_frac", "uint:5", choices=(0, *range(FIXED_FRACS[0], FIXED_FRACS[1] + 1)),
          since=FIXED_SINCE, default=0,
          doc="the MLP synthesis's arithmetic: 0, float32 elementwise, each sum in a fixed "
              f"order (version 9); F in {FIXED_FRACS[0]}..{FIXED_FRACS[1]}, fixed point: "
              "activations integers in units of 2^−F, matrix products summed exactly, GELU "
              "from a table every 2^−12 (`nets.latent.fixed`); 0 with the KAN"),
    Field("arm_order", "uint:1", 0, 1, since=ARM_ORDER_SINCE, default=0,
          doc="the order of the network-coded grids' values in the stream: 0, grid after "
              "grid, each along its lines 2r + c = d (version 8); 1, line by line across the "
              "pyramid: line d of every grid, finest first, then line d + 1 (one network "
              "pass and one coder call per line for all grids); needs arm ≥ 1"),
)  # fmt: skip


@dataclass(frozen=True)
class LatentSpec(NetSpec):
    """A latent pyramid and its synthesis network.

    widths: the synthesis's layer widths, input (= levels) to output (channels), e.g.
    (7, 16, 3); height, width: the image (the grids' sizes follow); synthesis: 0 a B-spline
    KAN, 1 an MLP (GELU); grid_size G, spline_order k and grid_bound R of the KAN's B-splines
    (grid over [−R, R]); every synthesis layer has a bias per output node.
    """

    height: int = 1
    width: int = 1
    grid_size: int = 5
    spline_order: int = 3
    grid_bound: float = 2.0
    context: int = 4
    first_level: int = 1
    predictor: int = 0
    arm: int = 0
    synthesis: int = 0
    fixed_frac: int = 0
    arm_order: int = 0
    arch: ClassVar[str] = "latent"

    def __post_init__(self) -> None:
        super().__post_init__()
        # stored as float32: round here so encoder and decoder agree exactly
        object.__setattr__(self, "grid_bound", float(np.float32(self.grid_bound)))
        if not 1 <= self.levels <= MAX_LEVELS:
            raise ValueError(f"levels must be in 1..{MAX_LEVELS}")
        if self.context == 1 or not 0 <= self.context <= 7:
            raise ValueError("context must be 0 or 2..7")
        if self.predictor not in (0, 1) or (self.predictor and not self.context):
            raise ValueError("predictor must be 0, or 1 with context ≥ 2")
        if not 0 <= self.arm <= ARM_MAX_HIDDEN or (self.arm and self.context):
            raise ValueError(f"arm must be 0, or 1..{ARM_MAX_HIDDEN} with context 0")
        if not 0 <= self.synthesis < len(SYNTHESES):
            raise ValueError(f"synthesis must be in 0..{len(SYNTHESES) - 1}")
        lo, hi = FIXED_FRACS
        if self.fixed_frac and not (self.mlp and lo <= self.fixed_frac <= hi):
            raise ValueError(f"fixed_frac must be 0, or {lo}..{hi} with the MLP synthesis")
        if self.arm_order not in (0, 1) or (self.arm_order and not self.arm):
            raise ValueError("arm_order must be 0, or 1 with arm ≥ 1")

    @property
    def mlp(self) -> bool:
        """Whether the synthesis is an MLP (else a B-spline KAN)."""
        return SYNTHESES[self.synthesis] == "mlp"

    @property
    def levels(self) -> int:
        return self.widths[0]

    @property
    def grid_range(self) -> tuple[float, float]:
        return (-self.grid_bound, self.grid_bound)

    @property
    def grid_shapes(self) -> list[tuple[int, int]]:
        f = self.first_level
        return [level_shape(self.height, self.width, f + i) for i in range(self.levels)]

    def layer_tensors(self, i: int, o: int) -> list[tuple[str, tuple[int, ...]]]:
        if self.mlp:
            return [("weight", (o, i)), ("bias", (o,))]
        return [
            ("base_weight", (o, i)),
            ("spline_coef", (o, i, self.grid_size + self.spline_order)),
            ("bias", (o,)),
        ]

    @property
    def first_grid(self) -> int:
        """Index of the first grid among the stored tensors (after the context model)."""
        return (1 if self.context else 0) + self.predictor + len(self.arm_shapes)

    @property
    def arm_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """The latents' network's tensors (none without one)."""
        return arm_tensor_shapes(self.arm) if self.arm else []

    def tensor_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """Stored tensors in file order: the context scales (L, K) and predictor weights
        (L, 4) if any, the grids (finest first), then the synthesis."""
        shapes: list[tuple[str, tuple[int, ...]]] = []
        if self.context:
            shapes.append(("context_scales", (self.levels, self.context)))
        if self.predictor:
            shapes.append(("context_weights", (self.levels, PREDICTOR_TAPS)))
        shapes += self.arm_shapes
        shapes += [(f"latents.{lv}", s) for lv, s in enumerate(self.grid_shapes)]
        for n, (i, o) in enumerate(self.layer_dims()):
            shapes += [(f"synthesis.{n}.{t}", s) for t, s in self.layer_tensors(i, o)]
        return shapes

    @property
    def n_latents(self) -> int:
        return sum(h * w for h, w in self.grid_shapes)

    @property
    def n_synthesis(self) -> int:
        """Stored numbers other than the grids (the synthesis and the context scales)."""
        return self.n_params - self.n_latents

    def describe(self) -> str:
        w = "-".join(str(x) for x in self.widths)
        ctx = f", {self.context} contexts" if self.context else ""
        ctx += ", predicted" if self.predictor else ""
        ctx += f", network {ARM_TAPS}-{self.arm}-{self.arm}-2" if self.arm else ""
        synthesis = (f"MLP synthesis {w} (GELU)" if self.mlp else
                     f"KAN synthesis {w}, grid {self.grid_size}, order {self.spline_order}")
        return (
            f"{self.levels} latent grids (1/{1 << self.first_level}…"
            f"1/{1 << (self.first_level + self.levels - 1)}{ctx}), {synthesis}"
        )  # fmt: skip

    def as_dict(self) -> dict:
        return super().as_dict() | {
            "levels": self.levels,
            "latents": self.n_latents,
            "synthesis_params": self.n_synthesis,
            "grid_size": self.grid_size,
            "spline_order": self.spline_order,
            "grid_bound": self.grid_bound,
            "context": self.context,
            "first_level": self.first_level,
            "predictor": self.predictor,
            "arm": self.arm,
            "synthesis": SYNTHESES[self.synthesis],
            "fixed_frac": self.fixed_frac,
            "arm_order": self.arm_order,
        }


# Measured on kodim23 and kodim05 (docs/research/latent.md).
DEFAULT_LEVELS = 7
# 1/2 … 1/128: a trained kodim23 file at 0.3 bpp left its full-resolution grid all zeros
DEFAULT_FIRST_LEVEL = 1
DEFAULT_HIDDEN = (16,)
DEFAULT_MLP_HIDDEN = (32, 32)  # the MLP synthesis: about the KAN's parameters, so its bytes
# The MLP is the better synthesis at equal bytes and equal steps (Kodak, 24 images at 0.3
# bpp: 29.83 dB against the KAN's 29.62, every image better; four images at 0.6 bpp +0.37),
# so it is the default; it decodes about 35 % slower (docs/research/latent.md)
DEFAULT_SYNTHESIS = "mlp"


def splines_given(ov: Overrides) -> bool:
    """Whether a B-spline option (--grid-size, --spline-order) is given: they shape only the
    KAN synthesis."""
    return ov.grid_size is not None or ov.spline_order is not None


def resolved_synthesis(ov: Overrides) -> str:
    """The synthesis an encode trains: the one asked for; else the KAN when a B-spline option
    is given; else ``DEFAULT_SYNTHESIS``."""
    return ov.synthesis or ("kan" if splines_given(ov) else DEFAULT_SYNTHESIS)

DEFAULT_GRID = 5
DEFAULT_BOUND = 2.0
# a Laplace per grid and context centred on a prediction from 4 neighbours (7 contexts): on
# the 24 Kodak files of format 6 it codes the same grids in 16 % fewer bits than 4 contexts
# of 2 neighbours, zero-mean
DEFAULT_CONTEXT = 7
DEFAULT_PREDICTOR = 1
# the grids coded by a 7-16-16-2 network of causal neighbours (format 8) where the budget
# affords it: on the four tuning images at 0.3 bpp and 10,000 steps 28.96 dB against 28.47
# with the predictor (kodim01 +1.21, kodim15 +0.30, kodim05 +0.24, kodim23 +0.24); 7-24-24-2
# was level on kodim01 and −0.12 dB on kodim05, and slower (docs/research/latent.md)
DEFAULT_ARM = 16
# narrower below: the network's parameters at most 4 % of the budget (16 wide from 12.6 kB)
MIN_ARM, ARM_SHARE, ARM_BITS = 4, 0.04, 9.0
SYNTHESIS_SHARE = 0.25  # most of a file the default synthesis may take


MAX_HARD_STEPS = 300  # the latent encoder's hard-rounding phase, at most (``default_qat``)
MIN_GRID_BYTES = 200  # the header and the smallest useful grids, beside the synthesis


class LatentFamily(NetFamily):
    name = "latent"
    arch_id = 2
    label = "latent"
    since_version = SINCE
    spec_type = LatentSpec
    header_fields = HEADER_FIELDS
    default_bits = 9
    range_saving = 3.0
    # Kodak, 24 images at 0.3 bpp, 12,000 steps: 29.95 dB at 4e-2, 29.90 at 3e-2 (19 of 24
    # images better; docs/research/latent.md)
    default_lr = 4e-2
    override_names = ("width", "depth", "grid_size", "spline_order", "levels", "synthesis")
    trains_latents = True
    # its encoder (kancoin.codec.latent) range-codes, trains with Adam, has no fine-tune phase
    unused_options = ("coding", "bit_alloc", "optimizer", "compile", "qat_lr")
    # default 12,000 steps: one encode of a 768×512 image in under 5 minutes on 2 cores with
    # the MLP synthesis (+0.05 / +0.12 dB on kodim05 / kodim23 at 0.3 bpp over 10,000 steps;
    # docs/research/latent.md)
    effort_iters: ClassVar[dict[str, int]] = {"fast": 1_000, "default": 12_000, "best": 20_000}

    def default_qat(self, iters: int) -> float:
        """The hard-rounding phase: 10 % of the steps, at most ``MAX_HARD_STEPS``.

        Why: straight-through gradients drift the latents over a long hard phase. At 10,000
        steps 300 hard steps instead of 1,000 give +0.8 dB on kodim05 and +1.1 dB on kodim23;
        at 3,000 steps 90 instead of 300 help two tuning images and cost two others up to
        0.8 dB, and at 1,500 steps 300 cost 0.5 dB (docs/research/latent.md; measured when
        the phase still trained the latents, which it now holds at their integers)."""
        return min(0.1, MAX_HARD_STEPS / max(1, iters))

    def check_overrides(self, ov: Overrides, extend: int = 0) -> None:
        super().check_overrides(ov, extend)
        if ov.synthesis == "mlp" and splines_given(ov):  # refused before any work
            raise KancoinError("--grid-size and --spline-order shape the KAN synthesis; "
                               "--synthesis mlp has neither")  # fmt: skip

    # -- the file ---------------------------------------------------------------------------
    def input_width(self, values: dict[str, Any]) -> int:
        return values["levels"]

    def spec_values(self, spec: NetSpec) -> dict[str, Any]:
        return {
            "levels": spec.levels,
            "grid_size": spec.grid_size,
            "spline_order": spec.spline_order,
            "grid_bound": spec.grid_bound,
            "context": spec.context,
            "first_level": spec.first_level,
            "predictor": spec.predictor,
            "arm": spec.arm,
            "synthesis": spec.synthesis,
            "fixed_frac": spec.fixed_frac,
            "arm_order": spec.arm_order,
        }

    def spec_from_values(
        self, widths: tuple[int, ...], values: dict[str, Any], image: tuple[int, int] = (1, 1)
    ) -> LatentSpec:
        return LatentSpec(
            widths, height=image[0], width=image[1], grid_size=values["grid_size"],
            spline_order=values["spline_order"], grid_bound=values["grid_bound"],
            context=values["context"], first_level=values["first_level"],
            predictor=values["predictor"], arm=values["arm"], synthesis=values["synthesis"],
            fixed_frac=values["fixed_frac"], arm_order=values["arm_order"],
        )  # fmt: skip

    # -- the module (training) --------------------------------------------------------------
    def build(self, spec: NetSpec) -> nn.Module:
        from kancoin.nets.latent.network import LatentNet

        return LatentNet(spec)

    def stored_parameters(self, model: nn.Module) -> list[tuple[nn.Module, str]]:
        raise NotImplementedError("the latent family trains through kancoin.codec.latent")

    def export_arrays(self, model: nn.Module, spec: NetSpec) -> list[np.ndarray]:
        """Float32 copies of the stored tensors (the grids as the model holds them)."""
        return model.export_arrays()

    def load_arrays(self, model: nn.Module, arrays: list[np.ndarray]) -> None:
        model.load_arrays(arrays)

    # -- rate control -----------------------------------------------------------------------
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
    ) -> LatentSpec:
        """The pyramid and synthesis for an image: their sizes are chosen by measurement, not
        by the budget (the rate goes to the latents through λ); refused when the synthesis
        alone (at ``bpw`` coded bits per weight) would not fit the budget."""
        levels = ov.levels or DEFAULT_LEVELS
        levels = max(1, min(levels, _useful_levels(height, width, DEFAULT_FIRST_LEVEL)))
        budget = budget_bytes(bpp, height, width)

        arm_hidden = arm_width(budget)
        synthesis = resolved_synthesis(ov)
        default_hidden = DEFAULT_MLP_HIDDEN if synthesis == "mlp" else DEFAULT_HIDDEN

        def make(hidden: tuple[int, ...]) -> LatentSpec:
            models = ({"context": 0, "predictor": 0, "arm": arm_hidden, "arm_order": 1}
                      if arm_hidden else
                      {"context": DEFAULT_CONTEXT, "predictor": DEFAULT_PREDICTOR})
            return LatentSpec(
                (levels, *hidden, channels), height=height, width=width,
                grid_size=ov.grid_size or DEFAULT_GRID, spline_order=ov.spline_order or 3,
                grid_bound=DEFAULT_BOUND, first_level=DEFAULT_FIRST_LEVEL, **models,
                synthesis=SYNTHESES.index(synthesis),
                fixed_frac=FIXED_FRAC if synthesis == "mlp" else 0,
            )  # fmt: skip

        if ov.width is not None or ov.depth is not None:
            w = ov.width or default_hidden[0]
            spec = make((w,) * (ov.depth or len(default_hidden)))
        else:  # small budgets (small images) get a narrower synthesis: ≤ a quarter of the file
            w = default_hidden[0]
            spec = make(default_hidden)
            while w > 2 and spec.n_synthesis * bpw / 8 > SYNTHESIS_SHARE * budget:
                w -= 2
                spec = make((w,) * len(default_hidden))
        synthesis_bytes = spec.n_synthesis * bpw / 8
        if synthesis_bytes + MIN_GRID_BYTES > budget:
            raise KancoinError(
                f"--bpp {bpp:g} leaves {budget} bytes on a {width}x{height} image, less than the "
                f"~{synthesis_bytes + MIN_GRID_BYTES:.0f} the synthesis network (~"
                f"{synthesis_bytes:.0f}) and the header and grids need; raise --bpp or lower "
                "--width"
            )
        return spec

    def paid_numbers(self, spec: NetSpec) -> int:
        # The grids' size follows from the image's (bounded by the pixel limit), and they may
        # code far below a bit per value: only the synthesis must be paid for by the payload.
        return spec.n_synthesis

    # -- the stream -------------------------------------------------------------------------
    def context_layout(self, spec: NetSpec) -> ContextLayout | None:
        if spec.arm:
            return ContextLayout(None, None, spec.first_grid, spec.levels, arm=0)
        if not spec.context:
            return None
        return ContextLayout(0, 1 if spec.predictor else None, spec.first_grid, spec.levels)

    # -- decoding ---------------------------------------------------------------------------
    def decode_pixels(
        self, spec: NetSpec, arrays: list[np.ndarray], height: int, width: int, chunk: int
    ) -> np.ndarray:
        from kancoin.nets.latent.render import render

        return render(spec, arrays, chunk)

    def decode_cost(self, spec: NetSpec, height: int, width: int) -> tuple[float, int]:
        arm_cost = (ARM_TAPS + spec.arm + 2) * spec.arm * spec.n_latents  # once per value
        if spec.mlp:  # a multiply-add per weight and a GELU per hidden node
            per_pixel = sum(i * o + o for i, o in spec.layer_dims()) + 8 * spec.levels
            if spec.fixed_frac:  # render's temporaries per pixel: the features (float32 and
                # fixed point) and at most four float64 (O, N) arrays alive at once (a
                # layer's input and output, its table positions and indices)
                temporaries = 12 * (spec.levels + 1) + 32 * (max(spec.widths) + 1)
            else:  # the features, three float32 (O, N) arrays and the GELU's exp's three
                # float64 ones
                temporaries = 4 * (spec.levels + 3 * max(spec.widths)) + 24 * max(spec.widths)
            return float(per_pixel) * height * width + arm_cost, temporaries
        edge = spec.spline_order + 2  # multiply-adds per edge
        per_pixel = sum(i * o * edge + o for i, o in spec.layer_dims()) + 8 * spec.levels
        widest = max(spec.widths)
        # render's temporaries per pixel: the features; per layer k + 6 float32 (N, O) arrays,
        # about 64 bytes per input (its SiLU in float64, interval, position) and the SiLU
        # weights spread over the pixels (I × O)
        spread = max(i * o for i, o in spec.layer_dims())
        return float(per_pixel) * height * width + arm_cost, 4 * (
            spec.levels + (spec.spline_order + 6) * widest + 16 * widest + spread
        )


def arm_width(budget: float) -> int:
    """The latents' network's hidden width for a budget of ``budget`` bytes: ``DEFAULT_ARM``,
    narrowed until its parameters (at about ``ARM_BITS`` bits each) take at most
    ``ARM_SHARE`` of the budget; 0 (the predictor of format 7) below ``MIN_ARM``."""
    a = DEFAULT_ARM
    while a >= MIN_ARM:
        n = sum(int(np.prod(shape)) for _, shape in arm_tensor_shapes(a))
        if n * ARM_BITS / 8 <= ARM_SHARE * budget:
            return a
        a -= 2
    return 0


def _useful_levels(height: int, width: int, first: int) -> int:
    """Grids from level ``first`` on whose grid is at least 2×2 (at least one, at most
    MAX_LEVELS)."""
    n = 1
    while n < MAX_LEVELS and min(level_shape(height, width, first + n)) >= 2:
        n += 1
    return n
