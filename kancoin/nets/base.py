"""The contract of a network family: everything kancoin knows about one kind of network.

A family (one module, one ``register`` call in ``kancoin.nets``) says:

- what a file stores about it: its spec type and header fields (``kancoin.bitfields.Field``,
  each with the format version it appeared in), and which tensors in which order;
- how to build the module from a spec, export / load the stored tensors, and which parameters
  *are* the stored tensors (quantization-aware training);
- how rate control sizes it for a budget (``choose``) and which architecture overrides apply;
- its defaults: bits, learning rate, the saving of range coding used to size it, threads;
- how it predicts a minibatch of pixels while training (``predictor``) and how it renders the
  whole pixel grid for decoding (``render``, the decode path: never training kernels).

The codec (encode, decode, fit, QAT, rate control) talks to networks only through this class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from kancoin.bitfields import Field
from kancoin.errors import KancoinError
from kancoin.nets.spec import NetSpec, Overrides, budget_bytes, impossible_rate

__all__ = ["NetFamily", "NetSpec", "Overrides", "budget_bytes", "impossible_rate"]


if TYPE_CHECKING:  # torch loads only when a network is built: a header is read without it
    import torch
    from torch import nn

Predictor = Callable[["torch.Tensor"], "torch.Tensor"]


class ContextLayout(NamedTuple):
    """Indices, among a file's stored tensors, of a context-coded family's parts."""

    scales: int | None  # the (L, K) context scales; None: an autoregressive network
    weights: int | None  # the (L, 4) predictor weights; None: no predictor
    first: int  # the first context-coded grid
    levels: int  # how many grids follow it
    arm: int | None = None  # the first of the network's tensors (``format.arm``); None: none


class NetFamily:
    """Base class of a family; subclasses set the class attributes and the marked methods."""

    name: ClassVar[str] = ""  # what --arch says
    arch_id: ClassVar[int] = -1  # what the header's ``arch`` field stores
    label: ClassVar[str] = ""  # for people: "KAN", "SIREN"
    spec_type: ClassVar[type[NetSpec]] = NetSpec
    header_fields: ClassVar[tuple[Field, ...]] = ()
    default_bits: ClassVar[int] = 9  # bits of the quantization range (both codings)
    # encoder options the family's encoder does not use: only their defaults are accepted (any
    # other value is refused, not ignored)
    unused_options: ClassVar[tuple[str, ...]] = ()
    range_saving: ClassVar[float] = 0.0  # coded bits per weight saved by range coding
    default_lr: ClassVar[float] = 1e-3
    override_names: ClassVar[tuple[str, ...]] = ("width", "depth")
    has_stages: ClassVar[bool] = False  # coarser versions trained first (``train_stages``)
    since_version: ClassVar[int] = 1  # the format version that added the family
    # trained by its own encoder (``kancoin.codec.latent``) rather than the weights-only loop
    trains_latents: ClassVar[bool] = False
    # --effort presets: training steps
    effort_iters: ClassVar[dict[str, int]] = {"fast": 3_000, "default": 10_000, "best": 30_000}

    def default_qat(self, iters: int) -> float:
        """--qat's default: the fraction of ``iters`` trained on quantized values."""
        return 0.1

    # -- the file ---------------------------------------------------------------------------
    def input_width(self, values: dict[str, Any]) -> int:
        """Width of the network's input for a header's family fields (x, y coordinates: 2)."""
        return 2

    def spec_values(self, spec: NetSpec) -> dict[str, Any]:
        """The family's header field values for ``spec`` (by field name)."""
        raise NotImplementedError

    def spec_from_values(
        self, widths: tuple[int, ...], values: dict[str, Any], image: tuple[int, int] = (1, 1)
    ) -> NetSpec:
        """Rebuild the spec from a header (``image``: its H, W); KancoinError for values that
        contradict each other."""
        raise NotImplementedError

    def context_layout(self, spec: NetSpec) -> ContextLayout | None:
        """Where the tensors of the causal context model are (``format.context``) when the
        file codes grids with it; None: every tensor has its own model."""
        return None

    def paid_numbers(self, spec: NetSpec) -> int:
        """Stored numbers a range-coded payload must pay for (at least ``limits.MIN_CODED_BITS``
        each): a short payload cannot ask for millions of symbols."""
        return spec.n_params

    # -- the module -------------------------------------------------------------------------
    def build(self, spec: NetSpec) -> nn.Module:
        raise NotImplementedError

    def stored_parameters(self, model: nn.Module) -> list[tuple[nn.Module, str]]:
        """(module, attribute) of each stored tensor in file order, once ``prepare_qat`` ran:
        the parameters that *are* the stored tensors."""
        raise NotImplementedError

    def prepare_qat(self, model: nn.Module) -> None:
        """Make every stored tensor a parameter of its own (same function)."""

    def export_tensors(self, model: nn.Module) -> list[torch.Tensor]:
        """The stored tensors, in file order (may be computed, e.g. a folded scale)."""
        return [getattr(m, a) for m, a in self.stored_parameters(model)]

    def load_tensors(self, model: nn.Module, tensors: list[torch.Tensor]) -> None:
        import torch

        for (m, a), t in zip(self.stored_parameters(model), tensors, strict=True):
            with torch.no_grad():
                getattr(m, a).copy_(t)

    def export_arrays(self, model: nn.Module, spec: NetSpec) -> list[np.ndarray]:
        """The tensors to store, float32 numpy copies, in ``spec.tensor_shapes()`` order."""
        import torch

        with torch.no_grad():
            arrays = [t.detach().float().cpu().numpy().copy() for t in self.export_tensors(model)]
        shapes = spec.tensor_shapes()
        got = [a.shape for a in arrays]
        if got != [s for _, s in shapes]:  # the module and the spec disagree: a bug
            raise RuntimeError(f"stored tensors {got} do not match the spec {shapes}")
        return arrays

    def load_arrays(self, model: nn.Module, arrays: list[np.ndarray]) -> None:
        """Inverse of ``export_arrays``."""
        import torch

        self.load_tensors(model, [torch.from_numpy(np.asarray(a)) for a in arrays])

    # -- rate control and defaults ----------------------------------------------------------
    def check_overrides(self, ov: Overrides, extend: int = 0) -> None:
        """KancoinError for overrides (or coarser training stages, ``extend``) that do not
        apply to this family."""
        extra = sorted(set(ov.given()) - set(self.override_names))
        if extend and not self.has_stages:
            extra.append("grid_extend")
        if extra:
            flags = ", ".join("--" + n.replace("_", "-") for n in extra)
            raise KancoinError(f"{flags}: not an option of --arch {self.name}")

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
    ) -> NetSpec:
        """The network closest to the budget (bpp × H × W / 8 bytes) without going over: its
        file's size is ``size(spec)``; ``bpw`` is the coded bits per weight that size assumes."""
        raise NotImplementedError

    def torch_threads(self, spec: NetSpec, cores: int) -> int:
        """torch intra-op threads for CPU training (numba kernels, if any, take every core)."""
        return cores

    def train_stages(self, spec: NetSpec, extend: int) -> tuple:
        """``extend`` coarser versions of the network, trained first (``has_stages``)."""
        return ()

    def enter_stage(self, model: nn.Module, stage: Any) -> None:
        raise NotImplementedError

    def final_stage(self, model: nn.Module) -> Any:
        raise NotImplementedError

    # -- evaluation -------------------------------------------------------------------------
    def predictor(
        self, model: nn.Module, height: int, width: int, device: torch.device,
        run: nn.Module | None = None,
    ) -> Predictor:  # fmt: skip
        """idx (N,) row-major pixel indices -> the network's output there (N, C), with
        gradients. ``run``: a wrapped model (e.g. compiled) to call instead of ``model``."""
        from kancoin.nets.coords import coordinates

        coords = coordinates(height, width).to(device)
        fn = model if run is None else run
        return lambda idx: fn(coords[idx])

    def infer(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The decoder's evaluation of x (N, I) -> (N, C), under no_grad."""
        return model(x)

    def render(
        self,
        model: nn.Module,
        height: int,
        width: int,
        device: str | torch.device = "cpu",
        chunk: int = 1 << 16,
    ) -> torch.Tensor:
        """Evaluate the network on the pixel grid in chunks of ``chunk`` pixels (bounded
        memory): uint8 (H, W, C) on ``device``: outputs clamped to [0, 1], × 255, rounded half
        to even."""
        import torch

        from kancoin.nets.coords import coordinates_of, to_uint8

        n = height * width
        out = torch.empty(n, model.widths[-1], dtype=torch.uint8, device=device)
        with torch.no_grad():
            for start in range(0, n, chunk):
                idx = torch.arange(start, min(n, start + chunk))
                x = coordinates_of(idx, height, width).to(device)
                out[start : start + len(idx)] = to_uint8(self.infer(model, x))
        return out.reshape(height, width, -1)

    def decode_pixels(
        self, spec: NetSpec, arrays: list[np.ndarray], height: int, width: int, chunk: int
    ) -> np.ndarray:
        """The decoder: dequantized stored tensors (file order) -> uint8 (H, W, C), on the CPU,
        deterministic at any thread count; ``chunk``: pixels rendered at once."""
        import torch

        model = self.build(spec)
        self.load_arrays(model, arrays)
        model.eval()
        # One torch thread: numba kernels are deterministic at any count, but a GEMM's summation
        # order (hence its last bit) can depend on it, and a file must decode to the same pixels
        # whatever the encoder's --threads was.
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.render(model, height, width, "cpu", chunk).numpy()
        finally:
            torch.set_num_threads(before)

    def decode_cost(self, spec: NetSpec, height: int, width: int) -> tuple[float, int]:
        """(operations, bytes per pixel) of rendering ``spec`` on an H×W grid: multiply-adds
        of the whole image, and the float temporaries one pixel of a chunk needs. The decoder
        refuses what costs more than its limits and sizes its chunks from the second."""
        macs = sum(i * o for i, o in spec.layer_dims())
        return float(macs) * height * width, 4 * 3 * max(spec.widths)
