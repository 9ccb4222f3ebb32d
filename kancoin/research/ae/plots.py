"""The autoencoder study's figures (matplotlib, Agg, imported lazily): PSNR against the
bottleneck and against the parameter count, and reconstructions at the smallest bottleneck."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kancoin.eval.plots import _plt
from kancoin.research.ae.models import FAMILIES, KAN

COLOURS = {"kan": "tab:red", "cnn": "tab:blue", "mlp": "tab:green"}
MARKERS = {"paper": "o", "params": "s", "time": "^"}


def _save(fig, stem: Path, svg: bool = True) -> list[Path]:
    paths = [stem.with_suffix(".png")] + ([stem.with_suffix(".svg")] if svg else [])
    for p in paths:
        fig.savefig(p, dpi=130 if p.suffix == ".png" else None, bbox_inches="tight")
    return paths


def _finish(plt, fig, ax, xlabel: str, title: str, stem: Path, legend_size: int = 8):
    """Labels, grid and legend of a PSNR plot; saved and closed."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test PSNR (dB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    paths = _save(fig, stem)
    plt.close(fig)
    return paths


def psnr_vs_bottleneck(summary: list[dict], config: dict, stem: Path) -> list[Path]:
    """The ``paper`` comparison: mean PSNR ± std over seeds per family, log2 bottleneck."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for fam in FAMILIES:
        pts = [s for s in summary if s["comparison"] == "paper" and s["family"] == fam]
        if pts:
            label = f"{fam.upper()} ({pts[0]['network']})"
            ax.errorbar([s["bottleneck"] for s in pts], [s["psnr"] for s in pts],
                        yerr=[s["psnr_std"] for s in pts], marker="o", capsize=3,
                        color=COLOURS[fam], label=label)  # fmt: skip
    ax.set_xscale("log", base=2)
    title = f"{config['data']}: {config['epochs']} epochs, {config['seeds']} seeds"
    return _finish(plt, fig, ax, "bottleneck (latent values)", title, stem)


def psnr_vs_params(summary: list[dict], config: dict, stem: Path) -> list[Path]:
    """Every (comparison, family, bottleneck) mean: PSNR against parameters (log)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    seen = set()
    first = config["comparisons"][0]
    for s in summary:
        if s["family"] == KAN and s["comparison"] != first:
            continue  # the same KAN is the reference of every comparison: drawn once
        key = (s["family"], s["comparison"])
        name = "KAN" if s["family"] == KAN else f"{s['family'].upper()} ({s['comparison']})"
        label = name if key not in seen else None
        seen.add(key)
        ax.scatter(s["params"], s["psnr"], color=COLOURS[s["family"]],
                   marker=MARKERS[s["comparison"]], label=label, s=22)  # fmt: skip
        ax.annotate(str(s["bottleneck"]), (s["params"], s["psnr"]), fontsize=6,
                    xytext=(3, 2), textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    title = f"{config['data']}: PSNR against size (labels: bottleneck)"
    return _finish(plt, fig, ax, "parameters", title, stem, legend_size=7)


def _image(x: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> what imshow takes."""
    return x[0] if x.shape[0] == 1 else np.clip(x.transpose(1, 2, 0), 0, 1)


def reconstructions(shown: dict[str, np.ndarray], config: dict, stem: Path) -> list[Path]:
    """Test samples (first row) and each family's reconstruction at the smallest bottleneck
    (``paper`` sizes, seed 0)."""
    plt = _plt()
    rows = ["input", *[f for f in FAMILIES if f in shown]]
    n = len(shown["input"])
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n, 1.2 * len(rows)), squeeze=False)
    for i, name in enumerate(rows):
        for j in range(n):
            ax = axes[i][j]
            ax.imshow(_image(shown[name][j]), cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i][0].set_ylabel(name.upper() if name != "input" else "input", fontsize=8)
    fig.suptitle(f"{config['data']}: bottleneck {min(config['bottlenecks'])}", fontsize=9)
    paths = _save(fig, stem, svg=False)  # pixels: a vector file would only wrap the PNG
    plt.close(fig)
    return paths


def draw_all(summary: list[dict], shown: dict, config: dict, out: Path) -> list[Path]:
    paths = []
    if any(s["comparison"] == "paper" for s in summary):
        paths += psnr_vs_bottleneck(summary, config, out / "psnr_vs_bottleneck")
    paths += psnr_vs_params(summary, config, out / "psnr_vs_params")
    if "input" in shown and len(shown) > 1:
        paths += reconstructions(shown, config, out / "reconstructions")
    return paths
