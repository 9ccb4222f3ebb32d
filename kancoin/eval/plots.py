"""Figures from `kancoin eval` result folders (matplotlib, Agg backend, imported lazily).

- ``rd_plot``: PSNR (mean of per-image PSNR) against bpp for every setting in the result
  folders, optional live Pillow baseline curves, and the published points (references).
- ``bars_plot``: per-image PSNR at 0.3 bpp: our KAN and SIREN rows and the published bars.
- ``crops_plot``: original / KAN / SIREN / JPEG crops of one image at the same target bpp, from
  the decoded PNGs that eval keeps under ``decoded/``.
Every figure is written as PNG and SVG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kancoin.errors import KancoinError


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise KancoinError("plotting needs matplotlib: pip install 'kancoin[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "svg"):
        p = stem.parent / f"{stem.name}.{ext}"
        fig.savefig(p, dpi=150, bbox_inches="tight")
        out.append(p)
    return out


def _rows(dirs) -> list[dict]:
    from kancoin.eval.reports import load_rows

    rows = []
    for d in dirs:
        if not (Path(d) / "rows").is_dir():
            raise KancoinError(f"{d}: not a result folder of `kancoin eval` (no rows/)")
        rows += load_rows(d)
    return rows


def live_baseline_curves(
    n_images: int, bpps=(0.1, 0.2, 0.3, 0.5, 0.75), codecs=("jpeg", "webp", "jpeg2000")
) -> dict[str, list[tuple[float, float]]]:
    """Measure Pillow baselines now on the first n default images: {codec: [(bpp, psnr)]}."""
    from kancoin.eval.baselines import available, compress
    from kancoin.eval.runs import list_images
    from kancoin.imageio import load_image

    pixels = [load_image(p)[0] for p in list_images(None, n_images)]
    out = {}
    for c in codecs:
        if not available(c):
            continue
        pts = []
        for b in bpps:
            rs = [compress(px, c, b) for px in pixels]
            pts.append((float(np.mean([r.bpp for r in rs])), float(np.mean([r.psnr for r in rs]))))
        out[f"{c} (live, {len(pixels)} images)"] = pts
    return out


def rd_plot(dirs, out_dir: Path, live: dict | None = None, published: bool = True) -> list[Path]:
    from kancoin.eval.references import rd_points
    from kancoin.eval.reports import summarize

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5))
    for d in dirs:
        for e in summarize(load_rows_dir(d)):
            r = e["results"]
            label = e["name"] if len(dirs) == 1 else f"{e['name']} ({Path(d).name})"
            label += f" [{r['n_images'][-1]} img]"
            ax.plot(r["bpp"], r["psnr-rgb"], "o-", label=label)
    for name, pts in (live or {}).items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "s--", label=name, alpha=0.8)
    if published:
        for name, pts in rd_points().items():
            ax.plot(
                [p["bpp"] for p in pts], [p["psnr"] for p in pts], "x:", label=f"{name} (pub.)",
                alpha=0.6,
            )  # fmt: skip
    ax.set_xlabel("bits per pixel (whole file)")
    ax.set_ylabel("PSNR (dB), mean over images")
    ax.set_title("Rate-distortion on Kodak")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower right")
    paths = _save(fig, out_dir / "rd")
    plt.close(fig)
    return paths


def load_rows_dir(d) -> list[dict]:
    return _rows([d])


def bars_plot(dirs, out_dir: Path, bpp: float = 0.3) -> list[Path]:
    from kancoin.eval.references import PER_IMAGE_LABELS, per_image_03

    plt = _plt()
    rows = [
        r
        for r in _rows(dirs)
        if abs(r["target_bpp"] - bpp) < 1e-9 and r.get("arch") in ("kan", "siren")
    ]
    ref = per_image_03()
    images = sorted({r["image"] for r in rows} or ref)
    series: dict[str, dict[str, float]] = {}
    for r in rows:
        series.setdefault(f"ours: {r['setting']}", {})[r["image"]] = r["psnr"]
    for col, label in PER_IMAGE_LABELS.items():
        series[label] = {im: ref[im][col] for im in images if col in ref.get(im, {})}
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(images) + 3), 4.5))
    x = np.arange(len(images))
    wbar = 0.8 / max(1, len(series))
    for i, (label, vals) in enumerate(series.items()):
        ys = [vals.get(im, np.nan) for im in images]
        ax.bar(x + (i - (len(series) - 1) / 2) * wbar, ys, wbar, label=label)
    ax.set_xticks(x, images, rotation=60, fontsize=7)
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"Per-image PSNR at {bpp:g} bpp")
    lo = min((v for s in series.values() for v in s.values() if v is not None), default=0)
    ax.set_ylim(max(0, lo - 3), None)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    paths = _save(fig, out_dir / f"bars_{bpp:g}bpp")
    plt.close(fig)
    return paths


def crops_plot(
    dirs, out_dir: Path, image: str | None = None, bpp: float = 0.3, size: int = 192
) -> list[Path]:
    from PIL import Image

    from kancoin.eval.runs import image_path
    from kancoin.imageio import load_image

    plt = _plt()
    found: dict[str, tuple[Path, dict, Path]] = {}  # label -> (decoded png, row, its folder)
    for d in dirs:
        for r in load_rows_dir(d):
            if not r.get("decoded") or abs(r["target_bpp"] - bpp) > 1e-9:
                continue
            if not (Path(d) / r["decoded"]).is_file():  # rows copied in without their PNGs
                continue
            if image and r["image"] != image:
                continue
            image = image or r["image"]
            label = r["arch"].upper() if r.get("arch") else r["codec"].upper()
            found.setdefault(label, (Path(d) / r["decoded"], r, Path(d)))
    if not found:
        raise KancoinError(f"no decoded images at {bpp:g} bpp in the result folders")
    order = [k for k in ("KAN", "SIREN", "JPEG") if k in found]
    _, any_row, folder = found[order[0] if order else next(iter(found))]
    orig, _ = load_image(image_path(any_row, folder))  # (an absolute path in older rows)
    h, w = orig.shape[:2]
    s = min(size, h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    panels = [("original", orig)]
    for k in order:
        p, r, _ = found[k]
        px = np.asarray(Image.open(p).convert("RGB"))
        panels.append((f"{k}: {r['psnr']:.2f} dB, {r['bpp']:.3f} bpp", px))
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.3))
    for ax, (title, px) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(px[y0 : y0 + s, x0 : x0 + s].squeeze(), cmap="gray" if px.shape[2] == 1 else None)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{image}, target {bpp:g} bpp (centre crop {s}×{s})", fontsize=9)
    paths = _save(fig, out_dir / f"crops_{image}_{bpp:g}bpp")
    plt.close(fig)
    return paths


def make_all(
    dirs, out_dir, image: str | None = None, live_baselines: int = 0, bpp: float = 0.3
) -> list[Path]:
    dirs = [Path(d) for d in dirs]
    if not dirs:
        raise KancoinError("give at least one result folder")
    _rows(dirs)  # check the folders first
    out_dir = Path(out_dir)
    live = live_baseline_curves(live_baselines) if live_baselines > 0 else None
    written = rd_plot(dirs, out_dir, live)
    written += bars_plot(dirs, out_dir, bpp)
    try:
        written += crops_plot(dirs, out_dir, image, bpp)
    except KancoinError:
        if image:
            raise
    return written
