"""The KAN family's registry entry: everything the codec needs to know about a KAN."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kancoin.errors import KancoinError
from kancoin.nets.base import NetFamily, Predictor
from kancoin.nets.kan.spec import BASES, HEADER_FIELDS, KanSpec
from kancoin.nets.spec import NetSpec, Overrides

if TYPE_CHECKING:  # the module (and torch) loads when a network is built, not to read a header
    import torch
    from torch import nn

    from kancoin.nets.kan.network import KAN


class KanFamily(NetFamily):
    name = "kan"
    arch_id = 0
    label = "KAN"
    spec_type = KanSpec
    header_fields = HEADER_FIELDS
    # The paper's 9 bits. With range coding the step is scaled to fill the budget, so 9 only
    # sets where the search starts and the size estimate, 9 - range_saving = 6 coded bits per
    # weight. Measured (kodim03 + kodim23, default preset, docs/research/bits.md): 7 bits
    # 29.86 dB, 8 bits 29.94, 9 bits 30.35, 10 bits 29.99; smaller steps lose less to
    # quantization (1.1 dB at 7 bits, 0.1 at 9) than the larger networks gain.
    default_bits = 9
    # coded bits per weight saved against fixed width (trained Kodak networks, docs/design.md)
    range_saving = 3.0
    # Measured on kodim23 at 0.3 bpp, 3000 steps (docs/research/ablation.md): 1e-3 (the
    # KAN-COIN paper's) 27.27 dB, 4e-3 28.49, 8e-3 28.77, 1.6e-2 28.84. With the fine first
    # layer (2-20-20-20-3, grid 158/11; float fits of 2,000 steps, kodim05 / kodim23,
    # docs/research/first-layer-grid.md): 1e-2 21.60 / 30.65 dB, 2e-2 21.82 / 30.95, 4e-2
    # 21.84 / 31.22, but at 4e-2 hidden activations reach -16 (far outside the grids): 2e-2.
    default_lr = 2e-2
    override_names = (
        "width", "depth", "grid_size", "spline_order", "first_grid_size", "basis", "node_bias",
        "layernorm",
    )  # fmt: skip
    has_stages = True

    # -- the file ---------------------------------------------------------------------------
    def spec_values(self, spec: NetSpec) -> dict[str, Any]:
        return {
            "basis": BASES.index(spec.basis),
            "node_bias": int(spec.node_bias),
            "layernorm": int(spec.layernorm),
            "grid_size": spec.grid_size,
            "first_grid_size": spec.first_grid_size,
            "spline_order": spec.spline_order,
            "grid_lo": spec.grid_range[0],
            "grid_hi": spec.grid_range[1],
        }

    def spec_from_values(
        self, widths: tuple[int, ...], values: dict[str, Any], image: tuple[int, int] = (1, 1)
    ) -> KanSpec:
        lo, hi = values["grid_lo"], values["grid_hi"]
        grid_size, order = values["grid_size"], values["spline_order"]
        first_grid = values["first_grid_size"]
        if not hi > lo:
            raise KancoinError("field 'grid_hi' out of range: must exceed grid_lo")
        basis = BASES[values["basis"]]
        if (grid_size == 0) != (basis == "tanh"):
            raise KancoinError(f"field 'grid_size' out of range: {grid_size} for basis {basis}")
        if (first_grid == 0) != (grid_size == 0) or (
            basis != "bspline" and first_grid != grid_size
        ):
            raise KancoinError(
                f"field 'first_grid_size' out of range: {first_grid} for basis {basis}"
            )
        if basis != "bspline" and order != 3:
            raise KancoinError(f"field 'spline_order' out of range: {order} for basis {basis}")
        return KanSpec(
            widths, grid_size=grid_size, spline_order=order, grid_range=(lo, hi), basis=basis,
            node_bias=bool(values["node_bias"]), layernorm=bool(values["layernorm"]),
            first_grid_size=first_grid,
        )  # fmt: skip

    # -- the module -------------------------------------------------------------------------
    def build(self, spec: NetSpec, backend: str = "auto") -> KAN:
        from kancoin.nets.kan.network import KAN

        return KAN(
            spec.widths, spec.grid_size, spec.spline_order, spec.grid_range, backend,
            basis=spec.basis, node_bias=spec.node_bias, layernorm=spec.layernorm,
            first_grid_size=spec.first_grid_size,
        )  # fmt: skip

    def stored_parameters(self, model: nn.Module) -> list[tuple[nn.Module, str]]:
        # after ``prepare_qat`` (the B-spline scale folded) each attribute is the stored tensor
        return [(layer, layer.stored_attr(n)) for layer in model.layers for n in layer.stored_names]

    def prepare_qat(self, model: nn.Module) -> None:
        for layer in model.layers:
            layer.fold_scale()

    def export_tensors(self, model: nn.Module) -> list[torch.Tensor]:
        # a B-spline layer stores its coefficients with the per-edge scale folded in
        return [layer.stored_tensor(n) for layer in model.layers for n in layer.stored_names]

    def load_tensors(self, model: nn.Module, tensors: list[torch.Tensor]) -> None:
        it = iter(tensors)
        for layer in model.layers:
            for n in layer.stored_names:
                layer.load_stored(n, next(it))  # a B-spline layer's scale becomes 1

    # -- rate control and defaults ----------------------------------------------------------
    def check_overrides(self, ov: Overrides, extend: int = 0) -> None:
        super().check_overrides(ov, extend)
        if extend and ov.basis != "bspline":
            raise KancoinError("--grid-extend needs --basis bspline")
        if ov.basis not in BASES:
            raise KancoinError(f"--basis must be one of {', '.join(BASES)}")
        if ov.first_grid_size and ov.basis != "bspline":
            raise KancoinError("--first-grid-size needs a B-spline KAN (--basis bspline)")

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
    ) -> KanSpec:
        from kancoin.nets.kan.sizing import choose_kan  # rate control: the encoder's, not decode's

        return choose_kan(height, width, channels, bpp, bits, ov, size, bpw)

    def torch_threads(self, spec: NetSpec, cores: int) -> int:
        # A B-spline KAN's heavy work runs in numba kernels that split the batch over every
        # core; torch's threading costs more than it gains on the tiny tensors left (Adam on a
        # few thousand numbers, the loss): 1 thread. The other bases run on torch ops.
        return 1 if spec.basis == "bspline" else cores

    def train_stages(self, spec: NetSpec, extend: int) -> tuple[tuple[int, ...], ...]:
        """Grid extension (pykan): ``extend`` coarser stages before the final grids, each
        layer's grid half the next stage's (one size per layer)."""
        if not extend:
            return ()
        final = spec.layer_grids
        stages = {tuple(max(1, math.ceil(g / 2**j)) for g in final) for j in range(extend, 0, -1)}
        return tuple(sorted(stages - {final}))

    def enter_stage(self, model: nn.Module, stage: tuple[int, ...]) -> None:
        model.extend_grid(stage)  # refits every layer on the stage's grids

    def final_stage(self, model: nn.Module) -> tuple[int, ...]:
        return model.layer_grids

    # -- evaluation -------------------------------------------------------------------------
    @staticmethod
    def separable(model: nn.Module, device: str | torch.device) -> bool:
        """A CPU B-spline KAN whose first layer splits on the pixel grid: rendering and
        training evaluate that layer on W + H coordinates, not per pixel, with the same bits."""
        import torch

        return torch.device(device).type == "cpu" and model.grid_separable()

    def predictor(
        self, model: nn.Module, height: int, width: int, device: torch.device,
        run: nn.Module | None = None,
    ) -> Predictor:  # fmt: skip
        if (run is not None and run is not model) or not self.separable(model, device):
            return super().predictor(model, height, width, device, run)
        from kancoin.nets.coords import axis
        from kancoin.nets.kan.fused import grid_sum  # training only

        xs, ys = axis(width), axis(height)

        def separable(idx: torch.Tensor) -> torch.Tensor:
            tx, ty = model.grid_terms(xs, ys)
            return model.forward_from_first(grid_sum(tx, ty, idx))

        return separable

    def infer(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model.infer(x)

    def render(
        self,
        model: nn.Module,
        height: int,
        width: int,
        device: str | torch.device = "cpu",
        chunk: int = 1 << 16,
    ) -> torch.Tensor:
        if not self.separable(model, device):
            return super().render(model, height, width, device, chunk)
        import torch

        from kancoin.nets.coords import axis, to_uint8

        out = torch.empty(height * width, model.widths[-1], dtype=torch.uint8)
        with torch.no_grad():  # the same numbers as per pixel, from W + H evaluations
            tx, ty = model.grid_terms_infer(axis(width), axis(height))
            rows = max(1, chunk // width)
            for r in range(0, height, rows):
                h = (ty[r : r + rows, None, :] + tx[None, :, :]).reshape(-1, tx.shape[1])
                out[r * width : r * width + h.shape[0]] = to_uint8(model.infer_from_first(h))
        return out.reshape(height, width, -1)

    def decode_cost(self, spec: NetSpec, height: int, width: int) -> tuple[float, int]:
        pixels = height * width
        ops, per_pixel = 0.0, 0
        for n, (i, o) in enumerate(spec.layer_dims()):
            if spec.basis == "bspline":  # k + 2 multiply-adds per edge (the fused kernels)
                edge, temp = spec.spline_order + 2, 0
            elif spec.basis == "tanh":
                edge, temp = 4, 8 * o
            else:  # a dense basis (N, I, C) times the coefficients
                c = {"chebyshev": spec.grid_size + 1, "fourier": 2 * spec.grid_size}.get(
                    spec.basis, spec.grid_size
                )
                edge, temp = c, 2 * i * c
            per = i * o * edge
            if n == 0 and spec.basis == "bspline" and i == 2 and not spec.layernorm:
                per = o  # separable: W + H evaluations, then one add per pixel and output
                ops += float(2 * o * edge) * (height + width)
            ops += float(per) * pixels
            per_pixel = max(per_pixel, 4 * (3 * max(i, o, 32) + temp))
        return ops, per_pixel
