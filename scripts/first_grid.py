"""Float fit of one B-spline KAN with a first-layer grid of its own: the study behind the rate
control's first-layer rule (docs/research/first-layer-grid.md).

    python scripts/first_grid.py IMG --width 20 --first-grid 157 --grid 11 --iters 2000

Prints one JSON line: the settings, stored weights, best full-image PSNR of the float network
(8-bit rounded output, as ``kancoin.codec.fit`` measures it; no quantization), seconds, and the
0.1 % / 50 % / 99.9 % quantiles of each layer's output on every 37th pixel (are the hidden
activations inside the next layer's grid?). ``--hidden-range R`` puts the other layers' grids
on [-R, R] instead of [-1, 1].
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from kancoin.codec import runtime
from kancoin.codec.fit import FitConfig, fit
from kancoin.imageio import load_image
from kancoin.nets import build
from kancoin.nets.coords import coordinates
from kancoin.nets.kan import KanSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("image")
    ap.add_argument("--width", type=int, default=20)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--grid", type=int, default=11, help="grid of the other layers")
    ap.add_argument("--first-grid", type=int, default=157, help="grid of the first layer")
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--hidden-range", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    pixels, _ = load_image(a.image)
    spec = KanSpec(
        (2, *(a.width,) * a.depth, pixels.shape[2]), grid_size=a.grid, first_grid_size=a.first_grid
    )
    runtime.configure(spec, a.threads)
    torch.manual_seed(a.seed)
    model = build(spec)
    for layer in model.layers[1:]:
        layer.grid_range = (-a.hidden_range, a.hidden_range)
    t0 = time.perf_counter()
    cfg = FitConfig(iters=a.iters, lr=a.lr, seed=a.seed)
    res = fit(model, spec, pixels, cfg, torch.device("cpu"))
    seconds = time.perf_counter() - t0
    coords = coordinates(pixels.shape[0], pixels.shape[1])[::37]
    quantiles = []
    with torch.no_grad():
        h = coords
        for layer in model.layers:
            h = layer.infer(h)
            q = torch.quantile(h.flatten(), torch.tensor([0.001, 0.5, 0.999]))
            quantiles.append([round(float(v), 3) for v in q])
    print(json.dumps({
        "image": a.image.split("/")[-1], "architecture": spec.describe(),
        "weights": spec.n_params, "iters": a.iters, "lr": a.lr, "hidden_range": a.hidden_range,
        "float_psnr": round(res.best_psnr, 3), "seconds": round(seconds, 1),
        "layer_output_quantiles": quantiles,
    }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
