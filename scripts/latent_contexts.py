"""Context models for latent grids, compared offline on the grids of existing latent files.

    python scripts/latent_contexts.py FILE.kc... [--json] [--arm [--arm-steps 400]]

For each file, its grids are read back and costed (ideal bits: a Laplace on unit bins, each
context's scale its maximum-likelihood one) under several models of the already-decoded
causal neighbours; the printed figure per model is its total against the first one's, mean
over the files (docs/research/latent.md, "The predictor"). The grids were trained for the
model their file codes with, so a model is judged here on grids not made for it: retraining
decides (scripts/latent_runs.py). A file whose grids the latents' network codes (format 8)
also gets that row: its network's bits of the grids, its parameters included as the file
codes them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kancoin.format.container import read_bytes

Grid = np.ndarray


def shifted(q: Grid, dr: int, dc: int) -> Grid:
    """q[r − dr, c − dc] at every (r, c), 0 outside the grid (dr ≥ 0)."""
    h, w = q.shape
    out = np.zeros_like(q)
    if dr >= h or abs(dc) >= w:
        return out
    if dc >= 0:
        out[dr:, dc:] = q[: h - dr, : w - dc]
    else:
        out[dr:, : w + dc] = q[: h - dr, -dc:]
    return out


def laplace_bits(q: Grid, mu, b) -> float:
    """Bits of q under Laplaces (μ, b) on unit bins."""
    z1, z2 = (q - 0.5 - mu) / b, (q + 0.5 - mu) / b
    right = 0.5 * (np.exp(-np.maximum(z1, 0)) - np.exp(-np.maximum(z2, 0)))
    left = 0.5 * (np.exp(np.minimum(z2, 0)) - np.exp(np.minimum(z1, 0)))
    across = 1 - 0.5 * np.exp(np.minimum(z1, 0)) - 0.5 * np.exp(-np.maximum(z2, 0))
    p = np.where(z1 >= 0, right, np.where(z2 <= 0, left, across))
    return float(-np.log2(np.maximum(p, 2.0**-24)).sum())


def context_bits(q: Grid, mu, ctx: Grid, k: int) -> float:
    """Bits with one Laplace scale per context (the mean |q − μ| of its positions)."""
    mu = np.broadcast_to(np.asarray(mu, np.float64), q.shape)
    total = 0.0
    for j in range(k):
        m = ctx == j
        if m.any():
            b = max(0.05, float(np.abs(q[m] - mu[m]).mean()))
            total += laplace_bits(q[m], mu[m], b)
    return total


def least_squares(q: Grid, inputs: list[Grid], unit: int | None = None) -> Grid:
    """The prediction of q from ``inputs`` by least squares (weights rounded to 1/unit)."""
    x = np.stack(inputs, -1).reshape(-1, len(inputs)).astype(np.float64)
    w = np.linalg.lstsq(x, q.reshape(-1).astype(np.float64), rcond=None)[0]
    if unit:
        w = np.round(w * unit) / unit
    return (x @ w).reshape(q.shape)


def med(left: Grid, up: Grid, ul: Grid) -> Grid:
    """JPEG-LS's median edge detector."""
    hi, lo = np.maximum(left, up), np.minimum(left, up)
    return np.where(ul >= hi, lo, np.where(ul <= lo, hi, left + up - ul))


def models(q: Grid, parent: Grid) -> dict[str, Callable[[], float]]:
    left, up, ul, ur = (shifted(q, *d) for d in ((0, 1), (1, 0), (1, 1), (1, -1)))
    ll, uu = shifted(q, 0, 2), shifted(q, 2, 0)
    a2 = np.abs(left) + np.abs(up)
    a4 = a2 + np.abs(ul) + np.abs(ur)
    activity = np.abs(left - ul) + np.abs(up - ul) + np.abs(ur - up)
    four = [left, up, ul, ur]
    return {
        "zero-mean, 4 contexts of |left| + |up| (format 6)": lambda: context_bits(
            q, 0.0, np.minimum(a2, 3), 4),
        "zero-mean, 7 contexts of the 4 neighbours' |values|": lambda: context_bits(
            q, 0.0, np.minimum(a4, 6), 7),
        "median edge predictor (JPEG-LS), 4 contexts of |left| + |up|": lambda: context_bits(
            q, med(left, up, ul), np.minimum(a2, 3), 4),
        "median edge predictor, 7 contexts of the gradients": lambda: context_bits(
            q, med(left, up, ul), np.minimum(activity, 6), 7),
        "linear, 4 neighbours, 7 contexts of their |values| (format 7)": lambda: context_bits(
            q, least_squares(q, four, 64), np.minimum(a4, 6), 7),
        "the same, float weights": lambda: context_bits(
            q, least_squares(q, four), np.minimum(a4, 6), 7),
        "the same, 15 contexts": lambda: context_bits(
            q, least_squares(q, four, 64), np.minimum(a4, 14), 15),
        "linear, 4 neighbours, 7 contexts of the gradients": lambda: context_bits(
            q, least_squares(q, four, 64), np.minimum(activity, 6), 7),
        "linear, 6 neighbours (and left-left, up-up)": lambda: context_bits(
            q, least_squares(q, [*four, ll, uu], 64), np.minimum(a4, 6), 7),
        "linear, 4 neighbours and the coarser grid's value": lambda: context_bits(
            q, least_squares(q, [*four, parent], 64), np.minimum(a4, 6), 7),
    }  # fmt: skip


ARM_SIDE_BITS = 9  # bits per stored parameter of an autoregressive network (the synthesis's)


def arm_inputs(q: Grid, parent: Grid) -> np.ndarray:
    """(H·W, 9) causal context of each value: left, left-left, up-left, up, up-right, up-up,
    up-left-left, up-right-right and the coarser grid's value."""
    offsets = ((0, 1), (0, 2), (1, 1), (1, 0), (1, -1), (2, 0), (1, 2), (1, -2))
    cols = [shifted(q, *d) for d in offsets] + [parent]
    return np.stack(cols, -1).reshape(-1, len(cols)).astype(np.float32)


def arm_bits(
    grids: list[Grid], parents: list[Grid], hidden: tuple[int, ...], steps: int = 400
) -> float:
    """Bits of the grids under one small network shared by all of them (as Cool-chic's ARM):
    causal context → (μ, log b) of a Laplace per value, fitted to these grids by Adam on their
    ideal bits, plus its parameters at ``ARM_SIDE_BITS`` each. The encoder would train it with
    the grids; fitted afterwards, this is what it could save on grids made for format 7."""
    import torch

    torch.manual_seed(0)
    x = torch.from_numpy(np.concatenate([arm_inputs(q, p) for q, p in zip(grids, parents)]))
    y = torch.from_numpy(np.concatenate([q.reshape(-1) for q in grids]).astype(np.float32))
    layers: list[torch.nn.Module] = []
    n_in = x.shape[1]
    for h in hidden:
        layers += [torch.nn.Linear(n_in, h), torch.nn.ReLU()]
        n_in = h
    layers.append(torch.nn.Linear(n_in, 2))
    net = torch.nn.Sequential(*layers)
    n_params = sum(p.numel() for p in net.parameters())
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)

    def bits() -> torch.Tensor:
        out = net(x)
        mu, b = out[:, 0], torch.exp(out[:, 1]).clamp_min(0.05)
        d = torch.distributions.Laplace(mu, b)
        p = d.cdf(y + 0.5) - d.cdf(y - 0.5)
        return -torch.log2(p.clamp_min(2.0**-24)).sum()

    for _ in range(steps):
        opt.zero_grad()
        loss = bits()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(bits()) + ARM_SIDE_BITS * n_params


def grids_of(path: Path) -> list[Grid]:
    header, qtensors = read_bytes(path.read_bytes())
    spec = header.spec
    a = spec.first_grid
    shapes = [s for _, s in spec.tensor_shapes()]
    return [
        qtensors[i].reshape(shapes[i]).astype(np.int64) - (1 << (header.tensor_bits[i] - 1))
        for i in range(a, a + spec.levels)
    ]


def own_network_bits(path: Path) -> float | None:
    """Ideal bits of a file's grids under its own network, plus the network's parameters
    under their header models; None when the file has none."""
    from kancoin.format import arm, entropy
    from kancoin.format.context import arm_params

    header, qtensors = read_bytes(path.read_bytes())
    net = arm_params(header, qtensors)
    if net is None:
        return None
    a = header.spec.first_grid
    bits = header.tensor_bits
    side = sum(entropy.model_bits(qtensors[i], header.emodels[i], bits[i]) for i in range(a))
    grids = grids_of(path)
    return side + sum(arm.ideal_bits(q, bits[a + i], net) for i, q in enumerate(grids))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--arm", action="store_true", help="also small autoregressive networks")
    ap.add_argument("--arm-steps", type=int, default=400, help="Adam steps fitting each network")
    args = ap.parse_args()
    ratios: dict[str, list[float]] = {}
    for path in args.files:
        grids = grids_of(path)
        totals: dict[str, float] = {}
        parents: list[Grid] = []
        for lv, q in enumerate(grids):
            if lv + 1 < len(grids):  # the coarser grid's value at (r // 2, c // 2)
                p = grids[lv + 1]
                rows = np.minimum(np.arange(q.shape[0]) // 2, p.shape[0] - 1)
                cols = np.minimum(np.arange(q.shape[1]) // 2, p.shape[1] - 1)
                parent = p[rows][:, cols]
            else:
                parent = np.zeros_like(q)
            parents.append(parent)
            for name, bits in models(q, parent).items():
                totals[name] = totals.get(name, 0.0) + bits()
        own = own_network_bits(path)
        if own is not None:
            totals["the file's own network (format 8), its parameters included"] = own
        if args.arm:
            for hidden in ((8,), (16, 16)):
                shape = "-".join(map(str, hidden))
                name = f"a network 9-{shape}-2 over all grids, its weights included"
                totals[name] = arm_bits(grids, parents, hidden, args.arm_steps)
        base = next(iter(totals.values()))
        for name, t in totals.items():
            ratios.setdefault(name, []).append(t / base - 1)
    rows = {name: round(100 * float(np.mean(r)), 1) for name, r in ratios.items()}
    if args.json:
        print(json.dumps({"files": len(args.files), "percent": rows}))
        return
    print(f"{len(args.files)} files; latent bits against the first model, mean:")
    for name, pct in rows.items():
        print(f"  {pct:+6.1f} %  {name}")


if __name__ == "__main__":
    main()
