"""Encoding with the latent family: grids and synthesis trained together, rate in the loss.

loss = MSE(decoded pixels, image pixels) + λ · (bits of every latent) / (image pixels)

- Training sees random pixels each step (``LatentRecipe.batch``), or random crops
  (``LatentRecipe.crop``), and every grid's rate.
- Quantization: uniform noise in (−½, ½) (optionally soft rounding around it, C3's) as a
  differentiable proxy of rounding, then the last ``hard`` fraction of the steps with hard
  rounding (straight-through gradients); the file stores the rounded latents of the last step.
- Rate: the bits of the file's own model of the latents: its autoregressive network
  (``format.arm``), trained beside the grids on their rounded values (``ArmState``), whose
  Laplaces the steps between its refreshes take as fixed; or format 7's context model
  (``format.context``), its parameters (the predictor's weights, each context's scale) fitted
  to the rounded grids as the file fits them. The encoder reports both this estimate and the
  coded size.
- Rate control in one encode: λ follows the estimated file size toward the budget during
  training; then the last bytes are fitted exactly: a dead zone on the rounding when over, finer
  synthesis weights when under. ``--lmbda`` fixes λ instead (one λ for a whole dataset).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from kancoin.codec import runtime
from kancoin.codec.decode import decode_bytes
from kancoin.codec.latent_rate import (
    ArmState,
    estimated_latent_bits,
    fit_weights,
    fitted_scale,
    grid_bits,
    laplace_bits,
    predicted,
)
from kancoin.codec.latent_recipe import LatentRecipe, default_recipe
from kancoin.codec.options import EncodeOptions
from kancoin.errors import KancoinError
from kancoin.format import arm, entropy
from kancoin.format import context as coding
from kancoin.format.container import FileHeader, overhead_bytes, write_bytes
from kancoin.format.context import WEIGHT_BITS, WEIGHT_UNIT
from kancoin.format.context import models_of as context_models
from kancoin.format.quant import MAX_BITS, MIN_BITS, QuantParams, choose_params, quantize
from kancoin.metrics import psnr, psnr_from_mse
from kancoin.nets import NetSpec, build
from kancoin.nets.base import budget_bytes

CONTEXT_BITS = 10  # of the stored context scales
FLOOR = 0.97  # of the budget: rate control lands between this and the budget
# of the budget: a file further over is brought down by training (a short hard phase at a
# higher λ) before a dead zone trims the rest; a dead zone that wide costs dB (kodim23 at
# 0.15 bpp, when the hard phase still added bits: 8 % over, a dead zone of 0.49, 27.6 dB;
# trained down, 30.3 dB; docs/research/latent.md)
OVER = 1.02


@dataclass
class LatentTrained:
    model: torch.nn.Module
    lmbda: float
    steps: int
    seconds: float


def soft_round(y: torch.Tensor, temp: float) -> torch.Tensor:
    """C3's soft rounding: ⌊y⌋ + ½ + tanh(r / T) / (2 tanh(1 / (2T))), r = y − ⌊y⌋ − ½; the
    identity as T → ∞, rounding as T → 0 (differentiable everywhere)."""
    m = torch.floor(y).detach() + 0.5
    return m + torch.tanh((y - m) / temp) / (2 * math.tanh(0.5 / temp))


def laplacian_pyramid(img: torch.Tensor, shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """A Laplacian pyramid of ``img``'s (H, W, C) grey levels on grids of ``shapes`` (finest
    first): each level the image's area mean at its size less the next coarser level brought
    up bicubically; the coarsest is its mean less ½ (the synthesis starts at mid-grey)."""
    grey = img.mean(-1)[None, None]
    means = [torch.nn.functional.interpolate(grey, size=s, mode="area") for s in shapes]
    out = [means[-1] - 0.5]
    for fine, coarse in zip(means[-2::-1], means[:0:-1]):
        up = torch.nn.functional.interpolate(
            coarse, size=fine.shape[-2:], mode="bicubic", align_corners=False
        )
        out.append(fine - up)
    return [t[0, 0] for t in out[::-1]]


def train(
    pixels: np.ndarray,
    spec: NetSpec,
    recipe: LatentRecipe,
    iters: int,
    device: torch.device,
    lmbda: float | None,
    target_bytes: float | None,
    fixed_bytes: float,
    seed: int = 0,
    progress=None,
    model=None,
    hard_only: bool = False,
    side=None,
) -> LatentTrained:
    """Train grids and synthesis on ``pixels`` (H, W, C uint8). ``lmbda`` None: λ follows the
    estimated size (latent bits / 8 + ``fixed_bytes``) toward ``target_bytes``; ``side``
    (model -> bytes), if given, replaces ``fixed_bytes`` every ``recipe.side_every`` steps."""
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    h, w, c = pixels.shape
    img = torch.from_numpy(pixels.astype(np.float32) / 255.0).to(device)
    if model is None:
        torch.manual_seed(seed)
        model = build(spec).to(device)
        model.steps = [float(np.float32(recipe.step))] * spec.levels
        if recipe.init_gain:
            with torch.no_grad():
                pyramid = laplacian_pyramid(img, spec.grid_shapes)
                for y, lap, q_step in zip(model.latents, pyramid, model.steps, strict=True):
                    y.copy_(lap * (recipe.init_gain / q_step))
    # the latents and the synthesis may learn at different rates (both follow one schedule)
    lr_synth = recipe.lr if recipe.lr_synthesis is None else recipe.lr_synthesis
    groups = [{"params": list(model.latents), "base": recipe.lr},
              {"params": list(model.synthesis.parameters()), "base": lr_synth}]  # fmt: skip
    opt = torch.optim.Adam(groups, lr=recipe.lr, fused=True)
    lam = recipe.lmbda0 if lmbda is None else lmbda
    ch, cw = min(h, recipe.crop), min(w, recipe.crop)
    n_hard = iters if hard_only else int(round(iters * recipe.hard))
    control_stop = int(iters * recipe.control_until)
    weights = None
    arm_state = getattr(model, "arm_state", None)
    if spec.arm and arm_state is None:  # the network starts from the initial grids
        model.arm_state = arm_state = ArmState(model, recipe.arm_neighbours)
        arm_state.fit(model, recipe.arm_first)
    for step in range(iters):
        if spec.predictor and step % recipe.control_every == 0:  # the file's fit, kept a while
            weights = fit_weights(model)
        if arm_state is not None and step and step % recipe.arm_every == 0:
            arm_state.fit(model, recipe.arm_steps)
        frac = step / max(1, iters)
        decay = recipe.final_lr_frac + (1 - recipe.final_lr_frac) * 0.5 * (
            1 + math.cos(math.pi * frac)
        )
        for g in opt.param_groups:
            g["lr"] = g["base"] * decay
        hard = step >= iters - n_hard
        grids, bits = [], 0.0
        if recipe.crop:  # a random crop: its latents' rate, its pixels' distortion
            r0 = int(torch.randint(0, h - ch + 1, (), generator=gen))
            c0 = int(torch.randint(0, w - cw + 1, (), generator=gen))
        soft = recipe.soft_t0 and not hard
        if soft:  # annealed over the steps before the hard phase
            t = step / max(1, iters - n_hard)
            temp = recipe.soft_t0 * (recipe.soft_t1 / recipe.soft_t0) ** t
        for lv, y in enumerate(model.latents):
            if hard and not (hard_only or recipe.hard_latents):  # the integers, fixed
                yq = torch.round(y).detach()
                ys = yq
            elif hard:
                yq = y + (torch.round(y) - y).detach()
                ys = yq
            elif soft:
                yq = soft_round(y, temp) + (torch.rand(y.shape, generator=gen).to(device) - 0.5)
                ys = soft_round(yq, temp)
            else:
                yq = y + (torch.rand(y.shape, generator=gen).to(device) - 0.5)
                ys = yq
            grids.append(ys * model.steps[lv])
            wt = None if weights is None else weights[lv]
            if arm_state is not None and not recipe.crop:
                bits = bits + arm_state.bits(lv, yq)
            elif recipe.crop:  # the crop's latents under the whole grid's model
                f = 1 << (spec.first_level + lv)
                rows, cols = slice(r0 // f, -(-(r0 + ch) // f)), slice(c0 // f, -(-(c0 + cw) // f))
                if arm_state is not None:
                    resid = yq - arm_state.mu[lv]
                    bits = bits + laplace_bits(resid[rows, cols], arm_state.scale[lv][rows, cols])
                    continue
                scale = fitted_scale(y, spec.context, wt)
                resid = yq if wt is None else yq - predicted(yq, wt)
                bits = bits + laplace_bits(resid[rows, cols],
                                           scale[rows, cols] if scale.dim() else scale)
            else:
                bits = bits + grid_bits(yq, y, spec.context, wt)
        if recipe.crop:
            feats = model.features(grids, (r0, r0 + ch), (c0, c0 + cw))
            target = img[r0 : r0 + ch, c0 : c0 + cw].reshape(-1, c)
            n_pix = ch * cw
        else:  # random pixels (or, the last full_last steps, every pixel): every latent's
            # rate, the pixels' distortion
            if step >= iters - recipe.full_last:
                idx = torch.arange(h * w, device=device)
            else:
                idx = torch.randint(0, h * w, (recipe.batch,), generator=gen).to(device)
            feats = model.features_at(grids, idx)
            target = img.reshape(-1, c)[idx]
            n_pix = h * w
        out = model.synthesize(feats)
        mse = ((out - target) ** 2).mean()
        loss = mse + lam * bits / n_pix
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        control = lmbda is None and target_bytes and step < control_stop
        if control and step % recipe.control_every == 0:
            if side is not None and step % recipe.side_every == 0:
                fixed_bytes = side(model)
            ratio = (estimated_latent_bits(model) / 8 + fixed_bytes) / target_bytes
            lam *= math.exp(max(-0.7, min(0.7, recipe.control_gain * math.log(ratio))))
            lam = max(lam, recipe.lmbda_min)
        if progress is not None and (step % 10 == 0 or step == iters - 1):
            # the minibatch's PSNR (read only here: on CUDA a read waits for the step)
            progress(step + 1, iters, psnr_from_mse(float(mse.detach()) * 255.0**2))
    if arm_state is not None:  # the network the file stores: fitted to the final grids
        arm_state.fit(model, recipe.arm_final, batch=None)
    return LatentTrained(model, lam, iters, time.perf_counter() - t0)


def network_psnr(model, pixels: np.ndarray, deadzone: float = 0.0) -> float:
    """PSNR of the file's grids through the synthesis before its weights are quantized, on
    every pixel, 8-bit output (what ``float_psnr`` reports): set against the file's PSNR, what
    quantizing the synthesis cost. ``deadzone`` as :func:`rounded`, the file's integers."""
    h, w, c = pixels.shape
    dev = model.latents[0].device
    with torch.no_grad():
        grids = [
            torch.from_numpy(q).to(dev, torch.float32) * s
            for q, s in zip(rounded(model, deadzone), model.steps)
        ]
        rows = max(1, (1 << 16) // w)
        out = torch.cat([
            model.synthesize(model.features(grids, (r, min(h, r + rows)), (0, w)))
            for r in range(0, h, rows)
        ])  # fmt: skip
        img = torch.round(out.clamp(0, 1) * 255).to(torch.uint8).reshape(h, w, c)
    return psnr(img.cpu().numpy(), pixels)


def _grid_params(q: np.ndarray, step: float) -> QuantParams:
    """Range of one grid's integers q (signed): t bits with q + 2^(t−1) in [0, 2^t − 1]."""
    m = int(np.abs(q).max()) if q.size else 0
    t = max(MIN_BITS, m.bit_length() + 1)
    if t > MAX_BITS:
        raise KancoinError(f"a latent grid spans ±{m}, more than {MAX_BITS} bits")
    s32 = np.float32(step)
    return QuantParams(float(np.float32(-(1 << (t - 1)) * s32)), float(s32), t)


def _boundary(ok, good: float, bad: float, steps: int = 12) -> float:
    """Bisection between a dead zone where ``ok`` holds (``good``) and one where it does not
    (``bad``): the good one found nearest the boundary."""
    for _ in range(steps):
        mid = (good + bad) / 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    return good


def rounded(model, deadzone: float = 0.0) -> list[np.ndarray]:
    """The grids' integers: ``deadzone`` 0, plain rounding (half to even, as training rounds);
    else sign(y) · floor(|y| + ½ − deadzone): larger, more zeros and fewer bytes; negative,
    more values next to ½ rounded away from zero."""
    out = []
    with torch.no_grad():
        for y in model.latents:
            v = y.detach().cpu().double().numpy()
            if deadzone:
                q = np.sign(v) * np.floor(np.abs(v) + 0.5 - deadzone)
            else:
                q = np.round(v)
            out.append(q.astype(np.int64))
    return out


def _side_tensors(
    spec: NetSpec, model, ints: list[np.ndarray], synth_bits: int
) -> tuple[tuple[list[QuantParams], list[np.ndarray]], tuple[list[QuantParams], list[np.ndarray]]]:
    """A file's tensors other than the grids, (qparams, tensors) for the context model's
    (its scales at ``CONTEXT_BITS``, the predictor's weights) and for the synthesis's."""
    ctx_qp, ctx_q, syn_qp, syn_q = [], [], [], []
    weights = [coding.fit_predictor(q) for q in ints] if spec.predictor else [None] * len(ints)
    if spec.context:
        table = np.stack([coding.fit_scales(q, spec.context, wt) for q, wt in zip(ints, weights)])
        qp = choose_params(table.astype(np.float32), CONTEXT_BITS)
        ctx_qp.append(qp)
        ctx_q.append(quantize(table.astype(np.float32), qp))
    if spec.predictor:  # integers in 1/64 units, stored exactly (the range −2 … 2 − 1/64)
        half = 1 << (WEIGHT_BITS - 1)
        unit = np.float32(1 / WEIGHT_UNIT)
        ctx_qp.append(QuantParams(float(-half * unit), float(unit), WEIGHT_BITS))
        ctx_q.append((np.stack(weights) + half).astype(np.uint32))
    if spec.arm:  # integers in units of 2^−FRAC, each tensor on the bits its values need
        unit = np.float32(2.0**-arm.FRAC)
        for v in model.arm_state.ints():
            t = max(MIN_BITS, int(np.abs(v).max()).bit_length() + 1)
            if t > MAX_BITS:
                raise KancoinError("the latents' network has a parameter beyond 16 bits")
            ctx_qp.append(QuantParams(float(-(1 << (t - 1)) * unit), float(unit), t))
            ctx_q.append((v + (1 << (t - 1))).astype(np.uint32))
    for wt in model.synthesis_arrays():
        qp = choose_params(wt, synth_bits)
        syn_qp.append(qp)
        syn_q.append(quantize(wt, qp))
    return (ctx_qp, ctx_q), (syn_qp, syn_q)


def side_bytes(spec: NetSpec, model, synth_bits: int) -> float:
    """Estimated bytes of a file's tensors other than the grids (the context model's and the
    synthesis's at ``synth_bits``) for the model as it stands: each tensor's ideal bits under
    the entropy model the file would choose for it. The rate control adds them to the grids'
    bits; a guess of ``synth_bits`` − 3 bits a weight and nothing for the context tensors
    left every file 1–2 % over its budget (docs/research/latent.md)."""
    parts = _side_tensors(spec, model, rounded(model), synth_bits)
    total = 0.0
    for qparams, tensors in parts:
        bits = [qp.bits for qp in qparams]
        for q, m, b in zip(tensors, entropy.choose_models(tensors, bits), bits):
            total += entropy.model_bits(q, m, b)
    return total / 8


def serialise(
    pixels_shape: tuple[int, ...],
    spec: NetSpec,
    model,
    ints: list[np.ndarray],
    synth_bits: int,
) -> tuple[bytes, FileHeader, list[np.ndarray]]:
    """The whole file (range coding): the context scales (``CONTEXT_BITS``), the grids
    (integers) and the synthesis (``synth_bits`` bits, least-squared-error ranges)."""
    (ctx_qp, ctx_q), (syn_qp, syn_q) = _side_tensors(spec, model, ints, synth_bits)
    qparams, qtensors = list(ctx_qp), list(ctx_q)
    for q, s in zip(ints, model.steps):
        qp = _grid_params(q, s)
        qparams.append(qp)
        qtensors.append((q + (1 << (qp.bits - 1))).astype(np.uint32))
    qparams += syn_qp
    qtensors += syn_q
    bits = [qp.bits for qp in qparams]
    a, n = spec.first_grid, spec.first_grid + spec.levels
    # grids: the zero-mean Laplace training used (its scale the mean |q|; with contexts the
    # header's model is not used, the context scales are)
    emodels = (
        tuple(entropy.choose_models(qtensors[:a], bits[:a]))
        + tuple(
            entropy.laplace_model(q.astype(np.int64) - (1 << (b - 1)), 1 << (b - 1))
            for q, b in zip(qtensors[a:n], bits[a:n])
        )
        + tuple(entropy.choose_models(qtensors[n:], bits[n:]))
    )
    header = FileHeader(pixels_shape[0], pixels_shape[1], max(bits), spec, tuple(qparams), 1,
                        emodels)  # fmt: skip
    return write_bytes(header, qtensors), header, qtensors


def model_bits(header: FileHeader, qtensors: list[np.ndarray], grids_only: bool = False) -> float:
    """Ideal bits of the tensors (or of the grids only) under the file's own models: the
    context model for grids when the file has one (the estimate the coded size is compared
    with)."""
    spec = header.spec
    a, n = spec.first_grid, spec.first_grid + spec.levels
    scales, weights = context_models(header, qtensors) if spec.context else (None, None)
    net = coding.arm_params(header, qtensors)
    total = 0.0
    for i, (q, m, qp) in enumerate(zip(qtensors, header.emodels, header.qparams)):
        is_grid = a <= i < n
        if grids_only and not is_grid:
            continue
        if is_grid and net is not None:
            signed = q.astype(np.int64) - (1 << (qp.bits - 1))
            total += arm.ideal_bits(signed, qp.bits, net)
        elif is_grid and scales is not None:
            signed = q.astype(np.int64) - (1 << (qp.bits - 1))
            wt = None if weights is None else weights[i - a]
            total += coding.ideal_bits(signed, scales[i - a], qp.bits, wt)
        else:
            total += entropy.model_bits(q, m, qp.bits)
    return total


def _grids_stream(header: FileHeader, qtensors: list[np.ndarray]) -> bytes:
    """The grids alone, range-coded as the file codes them (to compare with the estimate)."""
    spec = header.spec
    a, n = spec.first_grid, spec.first_grid + spec.levels
    enc = entropy.new_encoder()
    if spec.arm:
        coding.encode_arm_grids(enc, header, qtensors, a, spec.levels)
        return entropy.finish(enc)
    scales, weights = context_models(header, qtensors) if spec.context else (None, None)
    for i in range(a, n):
        q, b = qtensors[i], header.tensor_bits[i]
        if scales is None:
            entropy.encode_with(enc, q, b, header.emodels[i])
        else:
            wt = None if weights is None else weights[i - a]
            coding.encode_grid(enc, q.astype(np.int64) - (1 << (b - 1)), b, scales[i - a], wt)
    return entropy.finish(enc)


def encode_latent(pixels: np.ndarray, opts: EncodeOptions, progress=None,
                  recipe: LatentRecipe | None = None):  # fmt: skip
    """Encode ``pixels`` with the latent family (``encode.encode_pixels`` for this family)."""
    from kancoin.codec.encode import EncodeResult, plan

    t0 = time.perf_counter()
    recipe = recipe or default_recipe(opts)
    spec = plan(pixels.shape, opts)
    device = runtime.resolve_device(opts.device)
    n_threads = runtime.configure(spec, opts.threads)
    h, w, _ = pixels.shape
    budget = budget_bytes(opts.bpp, h, w)
    bits = opts.resolved_bits
    # a guess of the tensors besides the grids; `side` measures them from the first step
    fixed = overhead_bytes(spec, 1) + spec.n_synthesis * (bits - 3.0) / 8
    target = budget * recipe.target_frac if opts.lmbda is None else None
    trained = train(
        pixels, spec, recipe, opts.iters, device, opts.lmbda, target, fixed, opts.seed, progress,
        side=lambda m: overhead_bytes(spec, 1) + side_bytes(spec, m, bits),
    )  # fmt: skip
    model = trained.model  # stays on its device: serialising reads it to the CPU
    train_bits = estimated_latent_bits(model)

    def attempt(deadzone: float, synth_bits: int):
        return serialise(pixels.shape, spec, model, rounded(model, deadzone), synth_bits)

    data, header, qtensors = attempt(0.0, bits)
    deadzone, synth_bits = 0.0, bits
    lam = trained.lmbda
    for _ in range(3 if opts.lmbda is None and recipe.refine else 0):
        if FLOOR * budget <= len(data) <= OVER * budget:
            break
        # under (or well over): a short hard-rounding phase at a λ moved by the miss (rate ∝
        # λ^−½ is about what images show), at the end of the schedule's learning rate
        lam *= (len(data) / budget) ** 2
        late = recipe.final_lr_frac * 4
        lr_synth = None if recipe.lr_synthesis is None else recipe.lr_synthesis * late
        more = train(
            pixels, spec, replace(recipe, lr=recipe.lr * late, lr_synthesis=lr_synth),
            max(1, int(opts.iters * recipe.refine)), device, lam, None, fixed, opts.seed + 1,
            None, model=trained.model, hard_only=True,
        )  # fmt: skip
        trained.steps += more.steps
        trained.seconds += more.seconds
        data, header, qtensors = attempt(0.0, bits)
    if opts.lmbda is None:

        sizes: dict[tuple[float, int], int] = {}

        def size(dz: float, b: int) -> int:  # each candidate is written once
            if (dz, b) not in sizes:
                sizes[dz, b] = len(attempt(dz, b)[0])
            return sizes[dz, b]

        def finer_synthesis(dz: float, b: int):
            """The most synthesis bits above ``b`` that still fit (they only help)."""
            while b < MAX_BITS and size(dz, b + 1) <= budget:
                b += 1
            return b

        if len(data) > budget:  # over: widen the dead zone until it fits
            if size(0.5, bits) > budget:
                raise KancoinError(f"the latents do not fit {budget} bytes; raise --bpp or --iters")
            deadzone = _boundary(lambda dz: size(dz, bits) <= budget, good=0.5, bad=0.0)
        elif len(data) < FLOOR * budget:  # under: first finer synthesis weights, then round
            # values next to ½ away from zero (the least distortion such a value can add, but
            # some), only as far as the floor needs
            synth_bits = finer_synthesis(0.0, bits)
            if size(0.0, synth_bits) < FLOOR * budget:
                reach = lambda dz: size(dz, synth_bits) >= FLOOR * budget  # noqa: E731
                deadzone = -0.45  # the most it does; size falls as the dead zone grows
                if reach(deadzone):
                    deadzone = _boundary(reach, good=deadzone, bad=0.0)
                if size(deadzone, synth_bits) > budget:  # past the budget too: the fullest fit
                    fits = lambda dz: size(dz, synth_bits) <= budget  # noqa: E731
                    deadzone = _boundary(fits, good=0.0, bad=deadzone)
        if size(deadzone, synth_bits) <= budget:  # spend what is left on the synthesis
            synth_bits = finer_synthesis(deadzone, synth_bits)
        data, header, qtensors = attempt(deadzone, synth_bits)
    if opts.lmbda is None and len(data) > budget:  # cannot happen: the fits above check it
        raise RuntimeError(f"rate control wrote {len(data)} bytes over a {budget}-byte budget")
    decoded = decode_bytes(data)
    estimated_latent = model_bits(header, qtensors, grids_only=True)
    trained.lmbda = lam
    res = EncodeResult(
        data=data,
        decoded=decoded,
        psnr=psnr(decoded.pixels, pixels),
        float_psnr=network_psnr(model, pixels, deadzone),
        qat_psnr=None,
        spec=spec,
        bits=synth_bits,
        steps=trained.steps,
        best_step=trained.steps,
        fit_seconds=trained.seconds,
        encode_seconds=time.perf_counter() - t0,
        device=str(device),
        threads=n_threads if device.type == "cpu" else 0,
    )
    stream_bytes = len(data) - overhead_bytes(spec, 1)  # the range-coded stream
    res.extra = {
        "lmbda": trained.lmbda,
        "deadzone": round(deadzone, 5),
        "synthesis_bits": synth_bits,
        "latent_bits_estimated": round(estimated_latent, 1),
        "latent_bits_coded": 8 * len(_grids_stream(header, qtensors)),
        "latent_bits_training": round(train_bits, 1),
        "payload_bytes": stream_bytes,
        "payload_bits_estimated": round(model_bits(header, qtensors), 1),
    }
    return res
