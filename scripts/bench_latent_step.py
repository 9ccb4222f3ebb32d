"""Speed of the latent family's training step on CPU: the numba kernels against the torch ops
they replace, side by side in one process.

    python scripts/bench_latent_step.py [IMAGE] [--steps 100] [--runs 3]

For the image's default spec at 0.3 bpp (kodim23 if none is given), on one thread, it times in
turn within each run:

- features   the drawn pixels' features and their backward (``LatentNet.features_at``,
             10,000 random pixels, every level);
- rate       every grid's bits under the file's context model and their backward
             (``codec.latent.grid_bits``; with the latents' network, the Laplaces it gave,
             ``codec.latent_rate.ArmState.bits``);
- step       a whole training step (``codec.latent.train``, ``--steps`` steps, rate control on);

each fused (the default on CPU) and through the torch ops (``fused=False``), and prints the
median milliseconds and the median of the per-run ratios. Times vary with the machine's load;
the ratios, measured side by side, are what to compare (docs/speed.md).
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager
from unittest import mock

import numpy as np
import torch

import kancoin.codec.latent as latent_codec
from kancoin.codec.encode import plan
from kancoin.codec.latent_rate import ArmState
from kancoin.codec.latent_recipe import default_recipe
from kancoin.codec.options import EncodeOptions
from kancoin.imageio import load_image
from kancoin.nets import build
from kancoin.nets.latent.network import LatentNet


@contextmanager
def torch_ops():
    """The training path without the numba kernels."""
    feats, bits = LatentNet.features_at, latent_codec.grid_bits
    arm_bits = ArmState.bits
    with (
        mock.patch.object(LatentNet, "features_at",
                          lambda self, g, i, fused=None: feats(self, g, i, fused=False)),
        mock.patch.object(latent_codec, "grid_bits",
                          lambda q, y, k, w, fused=None: bits(q, y, k, w, fused=False)),
        mock.patch.object(ArmState, "bits",
                          lambda self, lv, yq, fused=None: arm_bits(self, lv, yq, False)),
    ):  # fmt: skip
        yield


def time_parts(model, fused: bool, reps: int = 20) -> tuple[float, float]:
    h, w = model.spec.height, model.spec.width
    grids = [torch.randn(g.shape, requires_grad=True) for g in model.latents]
    ints = [torch.round(g.detach() * 2) for g in grids]
    weights = latent_codec.fit_weights(model) if model.spec.predictor else None
    arm = None
    if model.spec.arm:
        arm = ArmState(model)
        arm.fit(model, 0)
    t = time.perf_counter()
    for _ in range(reps):
        idx = torch.randint(0, h * w, (10_000,))
        model.features_at(grids, idx, fused=fused).sum().backward()
    t_feat = (time.perf_counter() - t) / reps
    t = time.perf_counter()
    for _ in range(reps):
        total = 0.0
        for lv, (g, y) in enumerate(zip(grids, ints)):
            if arm is not None:
                total = total + arm.bits(lv, g + 0.0, fused)
                continue
            wt = None if weights is None else weights[lv]
            total = total + latent_codec.grid_bits(g + 0.0, y, model.spec.context, wt, fused)
        total.backward()
    t_rate = (time.perf_counter() - t) / reps
    return 1e3 * t_feat, 1e3 * t_rate


def time_steps(pixels, spec, opts, steps: int, fused: bool) -> float:
    recipe = default_recipe(opts)
    fixed = 100.0
    target = pixels.shape[0] * pixels.shape[1] * 0.3 / 8

    def run():
        t = time.perf_counter()
        latent_codec.train(pixels, spec, recipe, steps, torch.device("cpu"), None, target, fixed)
        return time.perf_counter() - t

    if fused:
        return 1e3 * run() / steps
    with torch_ops():
        return 1e3 * run() / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", nargs="?", default="data/kodim23.png")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import numba

    numba.set_num_threads(1)
    pixels, _ = load_image(args.image)
    opts = EncodeOptions(arch="latent", bpp=0.3, device="cpu", threads=1)
    spec = plan(pixels.shape, opts)
    model = build(spec)
    with torch.no_grad():
        for g in model.latents:
            g.copy_(torch.from_numpy(np.random.default_rng(0).laplace(0, 1, g.shape)))
    time_parts(model, True, 2)  # compile and warm up
    time_steps(pixels, spec, opts, 5, True)
    rows: dict[str, list[tuple[float, float]]] = {"features": [], "rate": [], "step": []}
    for _ in range(args.runs):
        (f1, r1), (f0, r0) = time_parts(model, True), time_parts(model, False)
        s1, s0 = time_steps(pixels, spec, opts, args.steps, True), time_steps(
            pixels, spec, opts, args.steps, False
        )
        rows["features"].append((f1, f0))
        rows["rate"].append((r1, r0))
        rows["step"].append((s1, s0))
    print(f"{args.image}: {spec.levels} grids, synthesis {spec.widths}, one thread")
    print(f"{'part':<10} {'fused ms':>9} {'torch ms':>9} {'torch / fused':>14}")
    for name, pairs in rows.items():
        fused = statistics.median(a for a, _ in pairs)
        plain = statistics.median(b for _, b in pairs)
        ratio = statistics.median(b / a for a, b in pairs)
        print(f"{name:<10} {fused:9.2f} {plain:9.2f} {ratio:14.2f}")


if __name__ == "__main__":
    main()
