"""KAN against MLP synthesis in the latent family, at equal parameters (so about equal bytes)
and equal steps, on one image at one rate.

    python scripts/latent_synthesis.py IMAGE [--bpp 0.3] [--iters 1500] [--equal-time]
        [--act gelu|gelu_tanh|relu|silu] [--mlp-only]

Both are trained by the latent encoder's ``train`` with the recipe ``kancoin encode`` uses (the
same grids, rate in the loss, λ to the same budget). The MLP here is any activation's (the
file's MLP, ``--synthesis mlp``, is GELU's tanh form: ``scripts/latent_runs.py`` measures it
through real files), so its result is not a file: it is measured
the same way, from parts that are real — the grids range-coded with the file's context model,
the synthesis's weights quantized at 9 bits and range-coded as a file codes them, the header
of the KAN file — and the PSNR of the synthesis (quantized weights) on the rounded grids,
8-bit output; the KAN's figures are its real file's (written and decoded). λ steers both to
the same budget, with no last-byte fitting. ``--equal-time`` adds an MLP trained for as many
steps as fit in the KAN's training time (measured in this process, side by side). Prints one
JSON line per run (docs/research/latent.md).
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch
from torch import nn

from kancoin.codec.decode import decode_bytes
from kancoin.codec.encode import plan
from kancoin.codec.latent import rounded, serialise, train
from kancoin.codec.latent_recipe import default_recipe
from kancoin.codec.options import EncodeOptions
from kancoin.format import entropy
from kancoin.format.container import overhead_bytes
from kancoin.format.quant import choose_params, dequantize, quantize
from kancoin.imageio import load_image
from kancoin.metrics import psnr
from kancoin.nets import build
from kancoin.nets.base import budget_bytes

ACTIVATIONS = {"gelu": nn.GELU, "gelu_tanh": lambda: nn.GELU(approximate="tanh"), "relu": nn.ReLU,
               "silu": nn.SiLU}  # fmt: skip


def mlp_like(n_in: int, n_out: int, params: int, act: str = "gelu") -> nn.Module:
    """An MLP n_in-h-h-n_out (activation ``act``) with about ``params`` parameters."""
    h = int((-(n_in + n_out + 2) + math.sqrt((n_in + n_out + 2) ** 2 + 4 * params)) / 2)
    a = ACTIVATIONS[act]
    net = nn.Sequential(nn.Linear(n_in, h), a(), nn.Linear(h, h), a(), nn.Linear(h, n_out))
    with torch.no_grad():
        net[-1].bias.fill_(0.5)
    return net


def measure(pixels, spec, model, synth: nn.Module) -> dict:
    h, w, c = pixels.shape
    from kancoin.codec.latent import _grids_stream

    ints = rounded(model)
    shadow = build(spec)  # a KAN file with these grids: its grids' and context model's bytes
    shadow.steps = model.steps
    if spec.arm:  # the latents' network the training fitted
        shadow.arm_state = model.arm_state
    _, header, qtensors = serialise(pixels.shape, spec, shadow, ints, 9)
    a = spec.first_grid

    grid_bytes = len(_grids_stream(header, qtensors))
    ctx_bytes = len(entropy.encode(qtensors[:a], header.tensor_bits[:a], list(header.emodels[:a])))
    weights = [p.detach().numpy().copy() for p in synth.parameters()]
    qps = [choose_params(wt, 9) for wt in weights]
    ints_w = [quantize(wt, qp) for wt, qp in zip(weights, qps)]
    models = entropy.choose_models(ints_w, [9] * len(ints_w))
    synth_bytes = len(entropy.encode(ints_w, [9] * len(ints_w), models))
    with torch.no_grad():  # the quantized synthesis on the rounded grids
        for p, q, qp in zip(synth.parameters(), ints_w, qps):
            p.copy_(torch.from_numpy(dequantize(q, qp)))
        grids = [torch.from_numpy(g.astype(np.float32)) * s for g, s in zip(ints, model.steps)]
        out = torch.cat([synth(model.features(grids, (r, min(h, r + 64)), (0, w)))
                         for r in range(0, h, 64)])  # fmt: skip
        img = torch.round(out.clamp(0, 1) * 255).to(torch.uint8).reshape(h, w, c).numpy()
    total = overhead_bytes(spec, 1) + ctx_bytes + grid_bytes + synth_bytes
    return {
        "psnr": round(psnr(img, pixels), 3), "bpp": round(8 * total / (h * w), 4),
        "grid_bytes": grid_bytes, "synthesis_bytes": synth_bytes,
        "synthesis_params": sum(x.size for x in weights),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("image")
    ap.add_argument("--bpp", type=float, default=0.3)
    ap.add_argument("--iters", type=int, default=1500)
    ap.add_argument("--equal-time", action="store_true")
    ap.add_argument("--act", choices=sorted(ACTIVATIONS), default="gelu",
                    help="the MLP's activation")
    ap.add_argument("--mlp-only", action="store_true", help="skip the KAN run")
    args = ap.parse_args()
    pixels, _ = load_image(args.image)
    opts = EncodeOptions(arch="latent", bpp=args.bpp, iters=args.iters, device="cpu",
                         synthesis="kan")  # fmt: skip
    spec = plan(pixels.shape, opts)
    # aimed at by λ as the encoder aims (neither is refitted to the last byte)
    budget = budget_bytes(args.bpp, *pixels.shape[:2])
    fixed = overhead_bytes(spec, 1) + spec.n_synthesis * 6 / 8
    # the synthesis's own parameters (not the context model's, which both files carry)
    kan_params = sum(math.prod(s) for n, s in spec.tensor_shapes() if n.startswith("synthesis."))
    # the recipe `kancoin encode` trains with under these options; the same for both
    recipe = default_recipe(opts)
    runs = [("kan", args.iters), ("mlp", args.iters)][1 if args.mlp_only else 0 :]
    seconds: dict[str, float] = {}
    while runs:
        kind, iters = runs.pop(0)
        torch.manual_seed(0)
        model = build(spec)
        if kind == "mlp":
            model.synthesis = mlp_like(spec.levels, spec.channels, kan_params, args.act)
        res = train(pixels, spec, recipe, iters, torch.device("cpu"), None,
                    budget * recipe.target_frac, fixed, model=model)  # fmt: skip
        seconds.setdefault(kind, res.seconds)
        if args.equal_time and kind == "mlp" and iters == args.iters:
            runs.append(("mlp", round(args.iters * seconds["kan"] / seconds["mlp"])))
        row = {"synthesis": kind if kind == "kan" else f"mlp-{args.act}", "steps": iters,
               "seconds": round(res.seconds, 1)}  # fmt: skip
        if kind == "kan":  # the real file
            data, _, _ = serialise(pixels.shape, spec, model, rounded(model), 9)
            dec = decode_bytes(data)
            row |= {"psnr": round(psnr(dec.pixels, pixels), 3), "bpp": round(dec.bpp, 4),
                    "synthesis_params": kan_params, "file": True}  # fmt: skip
        else:
            row |= measure(pixels, spec, model, model.synthesis) | {"file": False}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
