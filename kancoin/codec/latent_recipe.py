"""How the latent family trains (``codec.latent``): the recipe and the choices that follow
from the encoder's options."""

from __future__ import annotations

from dataclasses import dataclass

from kancoin.codec.options import EncodeOptions

# Why the grids start from the image (a Laplacian pyramid of its grey levels, 8 × its
# values at the synthesis input) and not from zeros: on the four tuning images at 0.3 bpp and
# 6,000 steps, 28.27 dB against 28.03 (kodim05 +0.30, kodim15 +0.50, kodim23 +0.59, kodim01
# −0.44; docs/research/latent.md).
INIT_GAIN = 8.0


@dataclass(frozen=True)
class LatentRecipe:
    """How the grids and the synthesis are trained (docs/research/latent.md)."""

    crop: int = 0  # side of square training crops, pixels; 0: random pixels (``batch``)
    batch: int = 10_000  # pixels per step when crop is 0
    lr: float = 4e-2  # Adam, latents (and synthesis unless lr_synthesis)
    lr_synthesis: float | None = None  # Adam, the synthesis; None: lr
    final_lr_frac: float = 0.05  # cosine decay to lr × this
    hard: float = 0.2  # fraction of the steps with rounded latents (the last ones)
    # False: the hard phase trains the synthesis alone, on the integers the noise phase
    # left. Why: straight-through gradients there moved latents across halves and added
    # bits after λ was frozen (kodim23 at 0.15 bpp: +8 %, a file over its budget trimmed by a
    # dead zone of 0.49, 27.6 dB; fixed, 32.2 dB; docs/research/latent.md)
    hard_latents: bool = False
    # soft rounding before the hard phase (C3): the synthesis sees s(s(y) + u), the rate
    # s(y) + u, s of temperature annealed from soft_t0 to soft_t1; 0: uniform noise alone
    soft_t0: float = 0.0
    soft_t1: float = 0.1
    step: float = 1.0  # a latent integer's value at the synthesis input (``latent_step``)
    lmbda0: float = 0.002  # λ to start from (rate control moves it)
    control_every: int = 10  # steps between λ updates
    side_every: int = 100  # steps between measurements of the tensors besides the grids
    control_gain: float = 0.3  # log λ += gain · log(estimated size / target)
    control_until: float = 0.95  # λ is frozen for the last 5 % of the steps
    # λ's floor under the control. Why: where the grids cannot spend the budget (kodim23 at
    # 0.6 bpp) the control would lower λ without end (to 6e-10), the grids then grew past
    # the budget faster than λ could climb back before the hard phase held them, and a dead
    # zone trimmed the file (32.65 dB against 34.90; docs/research/latent.md)
    lmbda_min: float = 1e-5
    target_frac: float = 1.0  # of the budget, aimed at during training (the dead zone trims)
    refine: float = 0.1  # × steps of hard rounding at a moved λ, if a file lands under 97 %
    # or over 102 % of the budget (``codec.latent.OVER``)
    # the grids start from a Laplacian pyramid of the image's grey levels × this (0: zeros)
    init_gain: float = INIT_GAIN
    full_last: int = 0  # the last steps see every pixel instead of ``batch`` drawn ones
    # the latents' network (``arm`` ≥ 1): Adam steps on the rounded grids, first, every
    # ``arm_every`` steps and (on every value) at the end, when the file's network is taken
    # the rate's gradient reaches a latent also as a neighbour the network reads (through its
    # Jacobians at each refresh), not only as the value it codes
    arm_neighbours: bool = False
    arm_first: int = 100
    arm_every: int = 50
    arm_steps: int = 5
    arm_final: int = 200


STEP_BPP = 0.3  # past RICH_BPP the step is it / bpp
LOW_STEP = 2 / 3  # the latent step up to RICH_BPP
RICH_BPP = 0.45  # above it the step is 0.3 / bpp (continuous: 0.3 / 0.45 = 2/3)


def latent_step(bpp: float | None) -> float:
    """The latent step for a target of ``bpp``: 2/3 up to 0.45 bpp, then 0.3 / bpp (0.5 at
    0.6 bpp); 1 with a fixed λ (no target).

    Why: at step 1 the features of smooth images reach the edge of the synthesis's input
    grid, more latent precision stops paying for itself, and a rich budget is not spent. On
    kodim23 at 0.6 bpp step 0.5 gives 33.43 dB at 0.590 bpp where step 1 gives 29.06 dB at
    0.582 bpp. On the four tuning images step 2/3 against 1 is +0.10 dB at 0.15 bpp and
    +0.21 dB at 0.3 bpp (textured images level, kodim23 +0.2 to +0.7 dB)
    (docs/research/latent.md)."""
    if not bpp:
        return 1.0
    if bpp <= RICH_BPP:
        return LOW_STEP
    return STEP_BPP / bpp


TARGET_FRAC = 0.99  # of the budget, aimed at in training


def latent_target_frac(bpp: float | None) -> float:
    """The share of the budget training aims at for a target of ``bpp``: 99 % (1 with a
    fixed λ).

    Why not all of it: a file that ends training over its budget is trimmed by a dead zone,
    which zeroes values the synthesis relies on. Aimed at all of it, a 6,000-step kodim06
    needed a dead zone of 0.13 and gave 25.70 dB; aimed at 99 %, 0.003 and 26.44 dB (with the
    latents held in the hard phase, aiming at all of it no longer fills files more:
    docs/research/latent.md).

    Why the same at every rate: rich targets aimed at 93 % while the straight-through hard
    phase added bits after λ froze; with the latents held, 93 % leaves a file under 97 % and
    three refining phases (kodim06 at 0.6 bpp: 28.68 dB in 13,000 steps, against 29.45 dB in
    10,000 aimed at 99 %)."""
    return TARGET_FRAC if bpp else 1.0


def default_recipe(opts: EncodeOptions) -> LatentRecipe:
    """The recipe ``kancoin encode`` trains with under ``opts``."""
    target = None if opts.lmbda is not None else opts.bpp
    return LatentRecipe(
        batch=opts.batch_size, hard=opts.resolved_qat, lr=opts.resolved_lr,
        step=latent_step(target), target_frac=latent_target_frac(target),
    )  # fmt: skip
