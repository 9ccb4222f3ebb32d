"""The encoder's options, declared once: defaults, help, valid values.

``EncodeOptions`` is what every encode takes (the CLI, ``kancoin eval``'s settings, the sweep
and the Python API). Each field carries its help text and its valid values (``OptionInfo``); the
CLI builds its ``--options`` from them (Typer enums and ranges), and ``EncodeOptions`` checks the
same declarations when it is made, so an invalid encode fails before any work, one line, however
it was asked for.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from kancoin.errors import KancoinError
from kancoin.format.layout import CODINGS
from kancoin.format.quant import MAX_BITS, MIN_BITS
from kancoin.nets import ARCHS, Overrides, family
from kancoin.nets.kan import BASES
from kancoin.nets.latent import DEFAULT_SYNTHESIS, SYNTHESES, resolved_synthesis

DEFAULT_ITERS = 10_000
DEFAULT_BATCH = 10_000
# --effort presets: training steps (docs/results.md has the time and PSNR of each).
EFFORT_ITERS = {"fast": 3_000, "default": DEFAULT_ITERS, "best": 30_000}
OPTIMIZERS = ("adam", "lbfgs")
LBFGS_LR = 1.0  # LBFGS's lr is the first trial step of its line search: 1 is the natural one
BIT_ALLOCS = ("common", "tensor")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


def check_device(name: str) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (spelling only; availability is checked where
    the work runs, ``resolve_device``)."""
    base, _, index = name.partition(":")
    if base == "cuda" and (not index or index.isdigit()):
        return
    if name in ("auto", "cpu"):
        return
    raise KancoinError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")


@dataclass(frozen=True)
class OptionInfo:
    """How an option is shown and checked: help, inclusive range (``lo_open``/``hi_open`` make
    an end exclusive) or choices; ``run``: where or how fast the work runs, not what it
    computes (not part of an eval setting's key)."""

    help: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] | None = None
    run: bool = False

    def check(self, name: str, value: Any) -> None:
        if value is None:
            return
        flag = "--" + name.replace("_", "-")
        if self.choices is not None:
            if value not in self.choices:
                raise KancoinError(
                    f"{flag} must be one of {', '.join(self.choices)}, got {value!r}"
                )
            return
        if isinstance(value, float) and not math.isfinite(value):
            raise KancoinError(f"{flag} must be a finite number, got {value!r}")
        low_bad = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        high_bad = self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        if low_bad or high_bad:
            raise KancoinError(f"{flag} must be {self.range_text()}, got {value!r}")

    def range_text(self) -> str:
        lo = None if self.lo is None else f"{self.lo:g}"
        hi = None if self.hi is None else f"{self.hi:g}"
        if lo is not None and hi is not None:
            return f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        if lo is not None:
            return f"{'>' if self.lo_open else '≥'} {lo}"
        return f"{'<' if self.hi_open else '≤'} {hi}"


def _opt(default: Any, help: str, **info: Any) -> Any:
    return field(default=default, metadata={"info": OptionInfo(help, **info)})


@dataclass(frozen=True)
class EncodeOptions:
    """Every option of one encode. ``iters`` None: the ``effort`` preset's steps."""

    bpp: float = _opt(0.3, "Target bits per pixel for the whole file.", lo=0.0, lo_open=True)
    bits: int | None = _opt(
        None, "Quantization bits \\[default: KAN 9, SIREN 16, latent 9].", lo=MIN_BITS, hi=MAX_BITS
    )
    arch: str = _opt("latent", "Network family.", choices=ARCHS)
    effort: str = _opt(
        "default", "Preset: " + ", ".join(  # each family's steps, from the registry
            f"{e} ({family('latent').effort_iters[e] // 1000}k steps; KAN and SIREN "
            f"{family('kan').effort_iters[e] // 1000}k)" for e in EFFORT_ITERS
        ) + ".",
        choices=tuple(EFFORT_ITERS),
    )  # fmt: skip
    iters: int | None = _opt(None, "Training steps \\[default: from --effort].", lo=1)
    batch_size: int = _opt(DEFAULT_BATCH, "Pixels per minibatch.", lo=1)
    lmbda: float | None = _opt(
        None, "latent: a fixed rate-distortion λ (loss MSE + λ·bpp) instead of --bpp's rate "
        "control; the file's size then follows from λ.", lo=0.0, lo_open=True,
    )  # fmt: skip
    levels: int | None = _opt(None, "latent: number of latent grids (override).", lo=1, hi=12)
    synthesis: str | None = _opt(
        None, "latent: the network that turns the grids into pixels "
        f"\\[default: {DEFAULT_SYNTHESIS}].", choices=SYNTHESES,
    )  # fmt: skip
    lr: float | None = _opt(
        None, "Learning rate \\[default: 2e-2 KAN, 2e-4 SIREN, 4e-2 latent; 1 with lbfgs].",
        lo=0.0, lo_open=True,
    )  # fmt: skip
    seed: int = _opt(0, "Random seed (reproducible on CPU).")
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N.", run=True)
    threads: int | None = _opt(
        None, "CPU threads \\[default: all usable cores].", lo=1, hi=1024, run=True
    )
    width: int | None = _opt(None, "Hidden layer width (override).", lo=1, hi=4095)
    depth: int | None = _opt(None, "Number of hidden layers (override).", lo=1, hi=30)
    grid_size: int | None = _opt(
        None, "KAN grid intervals G (override; latent: chooses the KAN synthesis).",
        lo=1, hi=4095,
    )  # fmt: skip
    spline_order: int | None = _opt(
        None, "B-spline order k (override; latent: chooses the KAN synthesis).", lo=1, hi=7
    )
    first_grid_size: int | None = _opt(
        None, "B-spline KAN: the first layer's grid G1 (override; 0: the same as G).",
        lo=0, hi=4095,
    )  # fmt: skip
    basis: str = _opt("bspline", "KAN edge functions.", choices=BASES)
    node_bias: bool = _opt(False, "KAN: a learnable bias per node.")
    layernorm: bool = _opt(False, "KAN: LayerNorm on the input of each hidden layer (FastKAN).")
    grid_extend: int = _opt(
        0, "B-spline KAN: train N coarser grids first (each half the next).", lo=0, hi=6
    )
    optimizer: str = _opt("adam", "Optimizer of the float fit.", choices=OPTIMIZERS)
    bit_alloc: str = _opt(
        "common", "Range coding: one common step factor, or per-tensor (tensor).",
        choices=BIT_ALLOCS,
    )  # fmt: skip
    qat: float | None = _opt(
        None, "Fraction of --iters spent on quantization-aware fine-tuning (latent: on rounded "
        "latents) \\[default: 0.1; latent 0.1, at most 300 steps].", lo=0.0, hi=1.0, hi_open=True,
    )  # fmt: skip
    qat_lr: float = _opt(
        0.03, "Peak learning rate of the fine-tune, as a fraction of --lr.", lo=0.0, lo_open=True
    )
    coding: str = _opt(
        "range", "Weights coding: range (entropy-coded) or fixed (bits each).", choices=CODINGS
    )
    compile: str | None = _opt(
        None, "torch.compile mode for the training step (CUDA; reduce-overhead: CUDA graphs).",
        choices=COMPILE_MODES,
    )  # fmt: skip

    def __post_init__(self) -> None:
        for f in fields(self):
            f.metadata["info"].check(f.name, getattr(self, f.name))
        check_device(self.device)
        # whether the steps are the preset's (iters not given): they then follow a new preset
        # or family (``replace``); steps the user gave stay, even when equal to a preset's
        object.__setattr__(self, "preset_iters", self.iters is None)
        if self.iters is None:
            object.__setattr__(self, "iters", family(self.arch).effort_iters[self.effort])
        fam = family(self.arch)
        if self.lmbda is not None and not fam.trains_latents:
            raise KancoinError(f"--lmbda: not an option of --arch {self.arch}")
        for name in fam.unused_options:  # refused, never silently ignored
            value = getattr(self, name)
            if value != self.info(name)[0]:
                flag = "--" + name.replace("_", "-")
                raise KancoinError(f"{flag} {value}: not an option of --arch {self.arch}")
        if self.bit_alloc == "tensor" and self.coding == "fixed":
            raise KancoinError(
                "--bit-alloc tensor needs --coding range (fixed coding has no slack)"
            )
        family(self.arch).check_overrides(self.overrides, self.grid_extend)

    @classmethod
    def option_names(cls, run: bool | None = None) -> tuple[str, ...]:
        """Every option's name (``run``: only the run options, or only the others)."""
        return tuple(f.name for f in fields(cls) if run is None or f.metadata["info"].run == run)

    @classmethod
    def info(cls, name: str) -> tuple[Any, OptionInfo, Any]:
        """(default, OptionInfo, annotation) of one option."""
        f = {f.name: f for f in fields(cls)}[name]
        default = None if f.default is MISSING else f.default
        return default, f.metadata["info"], f.type

    def replace(self, **changes: Any) -> EncodeOptions:
        if "iters" not in changes and (self.preset_iters or "effort" in changes):
            changes["iters"] = None  # the (new) preset's steps, of the (new) family
        return replace(self, **changes)

    @property
    def overrides(self) -> Overrides:
        return Overrides(
            width=self.width, depth=self.depth, grid_size=self.grid_size,
            spline_order=self.spline_order, first_grid_size=self.first_grid_size,
            basis=self.basis, node_bias=self.node_bias, layernorm=self.layernorm,
            levels=self.levels, synthesis=self.synthesis,
        )  # fmt: skip

    @property
    def coding_id(self) -> int:
        return CODINGS.index(self.coding)

    @property
    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return LBFGS_LR if self.optimizer == "lbfgs" else family(self.arch).default_lr

    @property
    def resolved_qat(self) -> float:
        return self.qat if self.qat is not None else family(self.arch).default_qat(self.iters)

    @property
    def qat_iters(self) -> int:
        return int(round(self.iters * self.resolved_qat))

    @property
    def resolved_synthesis(self) -> str | None:
        """latent: the synthesis network the encode trains; None for the other families."""
        return resolved_synthesis(self.overrides) if self.arch == "latent" else None

    @property
    def resolved_bits(self) -> int:
        return self.bits if self.bits is not None else family(self.arch).default_bits

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.option_names()}
