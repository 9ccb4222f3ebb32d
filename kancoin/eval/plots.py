"""Figures from `kancoin eval` result folders (matplotlib, Agg backend, imported lazily).

- ``rd_plot``: quality against bpp for every setting in the result folders, optional live
  Pillow baseline curves, and the published points (references). ``metric="psnr"``: the mean
  of per-image PSNR; ``"ms-ssim"``: the mean of per-image MS-SSIM in dB, -10·log10(1 - MS-SSIM)
  (as CompressAI plots it; the published points have no MS-SSIM and are left out).
- ``bars_plot``: per-image PSNR (or MS-SSIM in dB) at 0.3 bpp: our KAN and SIREN rows and the
  published bars (PSNR only).
- ``crops_plot``: original / KAN / SIREN / JPEG crops of one image at the same target bpp, from
  the decoded PNGs that eval keeps under ``decoded/``.
Every figure is written as PNG and SVG.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from kancoin.errors import KancoinError
from kancoin.nets import ARCHS

Dirs = Sequence[str | Path]  # result folders of `kancoin eval`
METRICS = ("psnr", "ms-ssim")
# the y axis of each metric, and the summary key / row field it plots
AXIS = {
    "psnr": "PSNR (dB), mean over images",
    "ms-ssim": "MS-SSIM (dB) = −10·log10(1 − MS-SSIM), MS-SSIM the mean over images",
}
BAR_AXIS = {"psnr": "PSNR (dB)", "ms-ssim": "MS-SSIM (dB) = −10·log10(1 − MS-SSIM)"}
SUMMARY_KEY = {"psnr": "psnr-rgb", "ms-ssim": "ms-ssim-db"}
ROW_KEY = {"psnr": "psnr", "ms-ssim": "ms_ssim_db"}


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise KancoinError(f"--metric must be psnr or ms-ssim, got {metric!r}")
    return metric


def _suffix(metric: str) -> str:
    """Figure names: rd.png for PSNR, rd_ms-ssim.png for MS-SSIM (both fit in one folder)."""
    return "" if metric == "psnr" else f"_{metric}"


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
    n_images: int,
    bpps: Iterable[float] = (0.1, 0.2, 0.3, 0.5, 0.75),
    codecs: Iterable[str] = ("jpeg", "webp", "jpeg2000"),
    metric: str = "psnr",
) -> dict[str, list[tuple[float, float]]]:
    """Measure Pillow baselines now on the first n default images: {codec: [(bpp, quality)]},
    quality the mean PSNR, or the mean MS-SSIM in dB (``metric="ms-ssim"``)."""
    from kancoin.eval.baselines import available, compress
    from kancoin.eval.runs import list_images
    from kancoin.imageio import load_image
    from kancoin.metrics import MS_SSIM_MIN_SIDE, ms_ssim, ms_ssim_db

    pixels = [load_image(p)[0] for p in list_images(None, n_images)]
    if metric == "ms-ssim" and min(min(px.shape[:2]) for px in pixels) < MS_SSIM_MIN_SIDE:
        raise KancoinError(f"--live-baselines: MS-SSIM needs images of {MS_SSIM_MIN_SIDE} "
                           "pixels a side or more")  # fmt: skip
    out = {}
    for c in codecs:
        if not available(c):
            continue
        pts = []
        for b in bpps:
            rs = [(px, compress(px, c, b)) for px in pixels]
            if metric == "ms-ssim":
                q = ms_ssim_db(float(np.mean([ms_ssim(r.pixels, px) for px, r in rs])))
            else:
                q = float(np.mean([r.psnr for _, r in rs]))
            pts.append((float(np.mean([r.bpp for _, r in rs])), q))
        out[f"{c} (live, {len(pixels)} images)"] = pts
    return out


def rd_curves(dirs: Dirs, metric: str = "psnr") -> list[dict]:
    """The curves of the RD figure: ``{"label", "bpp", "quality", "n_images"}`` per setting,
    lists over target rates, quality the mean of per-image ``metric`` (MS-SSIM in dB).

    A setting found in several folders is one curve when no target rate is in two of them
    (a 0.15 bpp run next to a 0.3 bpp run of the same setting); when one is, each folder keeps
    its own curve, since the setting's name does not say how the folders differ (say, two
    releases of the training recipe). A setting without the metric at every rate (MS-SSIM:
    images under 161 pixels a side) is left out."""
    from kancoin.eval.reports import summarize

    check_metric(metric)
    key = SUMMARY_KEY[metric]
    folders: dict[str, dict[float, list[str]]] = {}  # setting -> target bpp -> folder names
    by_dir = [(Path(d), load_rows_dir(d)) for d in dirs]
    for d, rows in by_dir:
        for r in rows:
            at = folders.setdefault(r["setting"], {}).setdefault(r["target_bpp"], [])
            if d.name not in at:
                at.append(d.name)
    joined = {s for s, at in folders.items() if all(len(f) == 1 for f in at.values())}
    groups: list[tuple[str, list[dict]]] = []
    if joined:
        rows = [r for _, rs in by_dir for r in rs if r["setting"] in joined]
        groups.append(("", rows))
    for d, rs in by_dir:
        groups.append((d.name, [r for r in rs if r["setting"] not in joined]))
    curves = []
    for folder, rows in groups:
        for e in summarize(rows):
            r = e["results"]
            ys = r.get(key)
            if metric != "psnr" and (not ys or any(y is None for y in ys)):
                continue
            names = sorted({f for at in folders[e["name"]].values() for f in at})
            where = folder or " + ".join(names)
            label = e["name"] if len(dirs) == 1 else f"{e['name']} ({where})"
            n = r["n_images"]
            label += f" [{n[0]} img]" if min(n) == max(n) else f" [{min(n)}–{max(n)} img]"
            curves.append({"label": label, "bpp": r["bpp"], "quality": ys, "n_images": n})
    return curves


def _colour(plt, i: int):
    """The i-th curve's colour: tab10's ten, then Dark2's eight, black and grey (matplotlib's
    default cycle has ten, so with more curves two would share one)."""
    colours = [*plt.get_cmap("tab10").colors, *plt.get_cmap("Dark2").colors, "black", "grey"]
    return colours[i % len(colours)]


def rd_plot(
    dirs: Dirs,
    out_dir: Path,
    live: dict | None = None,
    published: bool = True,
    metric: str = "psnr",
) -> list[Path]:
    """The RD figure of ``metric`` (``psnr`` or ``ms-ssim``, in dB): ``rd_curves`` (solid),
    the live Pillow curves (dashed) and the published points (dotted), each in its own colour.
    No setting with the metric is an error."""
    from kancoin.eval.references import rd_points

    curves = rd_curves(dirs, metric)
    if not curves and metric != "psnr":
        raise KancoinError(
            "no setting has MS-SSIM at every rate in these folders (MS-SSIM needs images of "
            "161 pixels a side or more)"
        )
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5))
    i = 0
    for c in curves:
        ax.plot(c["bpp"], c["quality"], "o-", label=c["label"], color=_colour(plt, i))
        i += 1
    for name, pts in (live or {}).items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "s--", label=name, alpha=0.8,
                color=_colour(plt, i))  # fmt: skip
        i += 1
    if published and metric == "psnr":
        for name, pts in rd_points().items():
            ax.plot(
                [p["bpp"] for p in pts], [p["psnr"] for p in pts], "x:", label=f"{name} (pub.)",
                color=_colour(plt, i),
            )  # fmt: skip
            i += 1
    if curves:
        # the axes span the measured curves: published curves run to 1.4 bpp and more, and
        # would squeeze the rates that were measured into a corner
        xmax = 1.15 * max((b for c in curves for b in c["bpp"] if b is not None), default=0)
        ys = [y for line in ax.get_lines() for x, y in zip(*line.get_data(), strict=True)
              if x is not None and y is not None and x <= xmax]  # fmt: skip
        if xmax > 0 and ys:
            ax.set_xlim(0, xmax)
            ax.set_ylim(min(ys) - 0.5, max(ys) + 0.5)
    ax.set_xlabel("bits per pixel (whole file)")
    ax.set_ylabel(AXIS[metric])
    title = "Rate-distortion on Kodak" if metric == "psnr" else "Rate-distortion (MS-SSIM)"
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1))  # beside the axes
    paths = _save(fig, out_dir / f"rd{_suffix(metric)}")
    plt.close(fig)
    return paths


def load_rows_dir(d: str | Path) -> list[dict]:
    return _rows([d])


def bars_plot(dirs: Dirs, out_dir: Path, bpp: float = 0.3, metric: str = "psnr") -> list[Path]:
    from kancoin.eval.references import PER_IMAGE_LABELS, per_image_03

    check_metric(metric)
    key = ROW_KEY[metric]
    plt = _plt()
    rows = [
        r
        for r in _rows(dirs)
        if abs(r["target_bpp"] - bpp) < 1e-9 and r.get("arch") in ARCHS
    ]
    ref = per_image_03() if metric == "psnr" else {}  # published bars: PSNR only
    images = sorted({r["image"] for r in rows} or ref)
    series: dict[str, dict[str, float]] = {}
    for r in rows:
        if r.get(key) is not None:
            series.setdefault(f"ours: {r['setting']}", {})[r["image"]] = r[key]
    for col, label in PER_IMAGE_LABELS.items():
        if ref:
            series[label] = {im: ref[im][col] for im in images if col in ref.get(im, {})}
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(images) + 3), 4.5))
    x = np.arange(len(images))
    wbar = 0.8 / max(1, len(series))
    for i, (label, vals) in enumerate(series.items()):
        ys = [vals.get(im, np.nan) for im in images]
        ax.bar(x + (i - (len(series) - 1) / 2) * wbar, ys, wbar, label=label)
    ax.set_xticks(x, images, rotation=60, fontsize=7)
    ax.set_ylabel(BAR_AXIS[metric])
    ax.set_title(f"Per-image {'PSNR' if metric == 'psnr' else 'MS-SSIM'} at {bpp:g} bpp")
    lo = min((v for s in series.values() for v in s.values() if v is not None), default=0)
    ax.set_ylim(max(0, lo - 3), None)
    if series:
        ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    paths = _save(fig, out_dir / f"bars{_suffix(metric)}_{bpp:g}bpp")
    plt.close(fig)
    return paths


def crops_plot(
    dirs: Dirs,
    out_dir: Path,
    image: str | None = None,
    bpp: float = 0.3,
    size: int = 192,
    metric: str = "psnr",
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
        q = r.get(ROW_KEY[metric])
        what = "–" if q is None else f"{q:.2f} dB"
        what += "" if metric == "psnr" else " MS-SSIM"
        panels.append((f"{k}: {what}, {r['bpp']:.3f} bpp", px))
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.3))
    for ax, (title, px) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(px[y0 : y0 + s, x0 : x0 + s].squeeze(), cmap="gray" if px.shape[2] == 1 else None)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{image}, target {bpp:g} bpp (centre crop {s}×{s})", fontsize=9)
    paths = _save(fig, out_dir / f"crops{_suffix(metric)}_{image}_{bpp:g}bpp")
    plt.close(fig)
    return paths


def make_all(
    dirs: Dirs,
    out_dir: str | Path,
    image: str | None = None,
    live_baselines: int = 0,
    bpp: float = 0.3,
    metric: str = "psnr",
) -> list[Path]:
    """The RD, bars and crops figures of ``metric`` (``psnr`` or ``ms-ssim``)."""
    check_metric(metric)
    dirs = [Path(d) for d in dirs]
    if not dirs:
        raise KancoinError("give at least one result folder")
    _rows(dirs)  # check the folders first
    out_dir = Path(out_dir)
    live = live_baseline_curves(live_baselines, metric=metric) if live_baselines > 0 else None
    written = rd_plot(dirs, out_dir, live, metric=metric)
    written += bars_plot(dirs, out_dir, bpp, metric=metric)
    try:
        written += crops_plot(dirs, out_dir, image, bpp, metric=metric)
    except KancoinError:
        if image:
            raise
    return written
