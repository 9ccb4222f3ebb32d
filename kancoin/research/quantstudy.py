"""`kancoin quant-study`: how much PSNR post-training quantization costs a KAN and a SIREN.

The KAN-COIN paper reports that a KAN loses < 0.1 dB at 9 bits per weight while a SIREN loses
> 1 dB. Per image and architecture this fits ONE float network (sized by the fixed-coding rate
control at the target bpp, as ``kancoin encode --coding fixed`` would: KAN at 9 bits, SIREN at
16), then, for every bit depth, quantizes the same float weights per tensor over their
least-squared-error range, writes real files (fixed and range coding), decodes them and measures
the PSNR. The architecture stays fixed, so the file bpp grows with the bits: the study isolates
the quantization loss, it is not a rate-distortion curve.

Outputs (folder): rows.csv, rows.json, table.md, quant_loss.png/.svg, files/*.kc. Per row:
psnr of the decoded file (dB), float_psnr of the unquantized network rendered to 8 bits on the
training device (``FitResult.best_psnr``), loss_db = float_psnr - psnr. A range-coded file holds
the same integers as the fixed one: same PSNR, a different size.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from kancoin.codec import runtime
from kancoin.codec.decode import decode_bytes
from kancoin.codec.encode import mse_ranges, plan, ptq, serialise_bytes
from kancoin.codec.fit import FitConfig, ProgressFn, fit
from kancoin.codec.options import EncodeOptions
from kancoin.errors import KancoinError
from kancoin.fileio import check_study_folder, write_atomic
from kancoin.format.container import CODINGS
from kancoin.format.quant import MAX_BITS, MIN_BITS
from kancoin.imageio import load_image
from kancoin.metrics import psnr
from kancoin.nets import WEIGHT_ARCHS, NetSpec, build, family

ROW_FIELDS = (
    "image", "arch", "architecture", "params", "bits", "coding", "file_bytes", "bpp", "psnr",
    "float_psnr", "loss_db",
)  # fmt: skip
OUTPUT_NAMES = ("rows.csv", "rows.json", "table.md")  # a finished study: one of these exists
LOSS_FLOOR_DB = 1e-3  # the plot's log axis: smaller losses (and exact zeros) drawn here
# The paper's claim, drawn as reference lines: KAN < 0.1 dB at 9 bits, SIREN > 1 dB.
PAPER_LINES_DB = (0.1, 1.0)

# progress: label -> context manager yielding a step callback (or None)
ProgressFactory = Callable[[str], AbstractContextManager[ProgressFn | None]]


@dataclass(frozen=True)
class StudyConfig:
    bpp: float = 0.3  # target of the rate control that sizes each network
    iters: int = 3_000  # float training steps per (image, arch)
    archs: tuple[str, ...] = WEIGHT_ARCHS
    bits: tuple[int, ...] = tuple(range(4, 17))
    seed: int = 0
    threads: int | None = None
    device: str = "auto"


@dataclass
class StudyReport:
    out_dir: Path
    rows: list[dict]
    summary: dict
    written: list[Path] = field(default_factory=list)  # tables and figures
    seconds: float = 0.0


def parse_bits(text: str) -> tuple[int, ...]:
    """Bit depths from "4-16" (4 … 16), "9" or a comma list "4,8,12-16": sorted, unique."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo_s, hi_s = part.split("-", 1)
                lo, hi = int(lo_s), int(hi_s)
            else:
                lo = hi = int(part)
        except ValueError:
            raise KancoinError(f"--bits must look like 4-16 or 4,9,16, got {text!r}") from None
        if not (MIN_BITS <= lo <= MAX_BITS and MIN_BITS <= hi <= MAX_BITS):
            raise KancoinError(f"--bits must lie in {MIN_BITS}..{MAX_BITS}, got {text!r}")
        if lo > hi:
            raise KancoinError(f"--bits range {part!r} is empty (low end above high end)")
        out.update(range(lo, hi + 1))
    return tuple(sorted(out))


def check_archs(archs: Iterable[str]) -> tuple[str, ...]:
    archs = tuple(dict.fromkeys(a.strip().lower() for a in archs))  # unique, in order
    for a in archs:
        if a not in WEIGHT_ARCHS:
            raise KancoinError(f"--arch {a!r}: the study runs on {' or '.join(WEIGHT_ARCHS)}")
    if not archs:
        raise KancoinError("give at least one --arch")
    return archs


def study_spec(pixels_shape: tuple[int, int, int], arch: str, cfg: StudyConfig) -> NetSpec:
    """The architecture the fixed-width codec would pick (KAN 9 bits, SIREN 16 bits)."""
    opts = EncodeOptions(arch=arch, coding="fixed", bpp=cfg.bpp, qat=0.0, iters=cfg.iters)
    return plan(pixels_shape, opts)


def fit_float(
    pixels: np.ndarray,
    spec: NetSpec,
    cfg: StudyConfig,
    progress: ProgressFn | None = None,
) -> tuple[torch.nn.Module, float, float]:
    """Fit spec's network to (H, W, C) uint8 pixels in float, no QAT. Returns the model (on the
    CPU, best weights), its float PSNR (dB, output rounded to 8 bits) and the fit seconds."""
    device = runtime.resolve_device(cfg.device)
    runtime.configure(spec, cfg.threads)
    torch.manual_seed(cfg.seed)
    model = build(spec)
    fcfg = FitConfig(iters=cfg.iters, lr=family(spec.arch).default_lr, seed=cfg.seed, qat_iters=0)
    result = fit(model, spec, pixels, fcfg, device, progress)
    model.eval()
    return model, result.best_psnr, result.seconds


def quantize_rows(
    pixels: np.ndarray,
    image: str,
    spec: NetSpec,
    model: torch.nn.Module,
    float_psnr: float,
    bits: Iterable[int],
    files_dir: Path | None = None,
) -> list[dict]:
    """One row per (bits, coding): the same float weights quantized per tensor over their
    MSE-searched ``bits``-bit range, written as a real file, decoded, measured. With
    ``files_dir``, each file is kept as ``<image>_<arch>_<bits>b_<coding>.kc``."""
    rows = []
    for b in bits:
        qparams = mse_ranges(model, spec, b)
        qtensors = ptq(model, spec, qparams)
        for coding_id, coding in enumerate(CODINGS):
            data = serialise_bytes(pixels.shape, spec, b, coding_id, qtensors, qparams)
            decoded = decode_bytes(data)
            p = psnr(decoded.pixels, pixels)
            name = f"{image}_{spec.arch}_{b}b_{coding}.kc"
            if files_dir is not None:
                write_atomic(files_dir / name, data, force=True)
            rows.append({
                "image": image, "arch": spec.arch, "architecture": spec.describe(),
                "params": spec.n_params, "bits": b, "coding": coding, "file_bytes": len(data),
                "bpp": round(decoded.bpp, 5), "psnr": _num(p), "float_psnr": _num(float_psnr),
                "loss_db": _loss(float_psnr, p), "file": f"files/{name}",
            })  # fmt: skip
    return rows


def _num(x: float) -> float | None:
    """Rounded for the tables; None for an infinite PSNR (identical images)."""
    return None if math.isinf(x) else round(x, 4)


def _loss(float_psnr: float, q_psnr: float) -> float | None:
    if math.isinf(float_psnr) and math.isinf(q_psnr):
        return 0.0
    if math.isinf(float_psnr):
        return None
    return round(float_psnr - q_psnr, 4) + 0.0  # + 0.0: no "-0.0" in the tables


def _clear_study(out: Path) -> None:
    """Remove a previous study's outputs (and only those) from ``out``."""
    for name in (*OUTPUT_NAMES, "quant_loss.png", "quant_loss.svg"):
        (out / name).unlink(missing_ok=True)
    if (out / "files").is_dir():
        for f in (out / "files").glob("*.kc"):
            f.unlink()


def run_study(
    images: list[str | Path],
    out: str | Path,
    cfg: StudyConfig,
    force: bool = False,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] | None = None,
    plot: bool = True,
) -> StudyReport:
    """The whole study; every input and the output folder are checked before any training."""
    t0 = time.perf_counter()
    out = Path(out)
    archs = check_archs(cfg.archs)
    if not cfg.bits:
        raise KancoinError("give at least one bit depth")
    if not images:
        raise KancoinError("give at least one image")
    check_study_folder(out, OUTPUT_NAMES, force)
    loaded: list[tuple[str, np.ndarray]] = []
    for src in images:
        pixels, notice = load_image(src)
        if notice and log:
            log(notice)
        name = Path(src).stem
        if any(name == n for n, _ in loaded):
            raise KancoinError(f"{src}: two images named {name!r}; the files would collide")
        loaded.append((name, pixels))
    specs = {(n, a): study_spec(px.shape, a, cfg) for n, px in loaded for a in archs}
    runtime.resolve_device(cfg.device)
    try:
        _clear_study(out)  # reached only with --force: a stopped rerun must not look finished
        (out / "files").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise KancoinError(f"{out}: cannot prepare the folder ({e.strerror or e})") from None

    rows: list[dict] = []
    fits: list[dict] = []
    for name, pixels in loaded:
        for arch in archs:
            spec = specs[name, arch]
            label = f"{name} {arch}"
            with progress(label) if progress else nullcontext() as cb:
                model, float_psnr, fit_s = fit_float(pixels, spec, cfg, cb)
            t1 = time.perf_counter()
            rows += quantize_rows(pixels, name, spec, model, float_psnr, cfg.bits, out / "files")
            fits.append({
                "image": name, "arch": arch, "architecture": spec.describe(),
                "params": spec.n_params, "float_psnr": _num(float_psnr),
                "fit_seconds": round(fit_s, 2),
                "quantize_seconds": round(time.perf_counter() - t1, 2),
            })  # fmt: skip
            if log:
                log(
                    f"{label}: {spec.describe()}, {spec.n_params} weights, float "
                    f"{float_psnr:.2f} dB after {cfg.iters} steps ({fit_s:.0f} s)"
                )
    summary = summarize(rows, cfg, fits)
    report = StudyReport(out, rows, summary)
    report.written = write_outputs(report, plot=plot, log=log)
    report.seconds = time.perf_counter() - t0
    return report


def _mean(xs: Iterable[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(float(np.mean(xs)), 4) if xs else None


def summarize(rows: list[dict], cfg: StudyConfig, fits: list[dict]) -> dict:
    """Mean over images per (arch, bits, coding): loss_db, psnr, bpp; the fits' float PSNRs."""
    keys = sorted({(r["arch"], r["bits"], r["coding"]) for r in rows})
    means = []
    for arch, b, coding in keys:
        sel = [r for r in rows if (r["arch"], r["bits"], r["coding"]) == (arch, b, coding)]
        means.append({
            "arch": arch, "bits": b, "coding": coding, "n_images": len(sel),
            "loss_db": _mean(r["loss_db"] for r in sel), "psnr": _mean(r["psnr"] for r in sel),
            "bpp": _mean(r["bpp"] for r in sel),
        })  # fmt: skip
    return {
        "target_bpp": cfg.bpp, "iters": cfg.iters, "seed": cfg.seed, "bits": list(cfg.bits),
        "archs": list(dict.fromkeys(r["arch"] for r in rows)),
        "images": list(dict.fromkeys(r["image"] for r in rows)), "fits": fits, "mean": means,
    }  # fmt: skip


def _fmt(x: float | None, digits: int) -> str:
    return "–" if x is None else f"{round(x, digits) + 0.0:.{digits}f}"  # never "-0.000"


def _arch_label(arch: str) -> str:
    return arch.upper()


def _cell(rows: list[dict], arch: str, bits: int, coding: str, key: str) -> float | None:
    """Mean of ``key`` over the images' rows of (arch, bits, coding)."""
    return _mean(
        r[key] for r in rows if (r["arch"], r["bits"], r["coding"]) == (arch, bits, coding)
    )


def _loss_table(rows: list[dict], archs: list[str]) -> list[str]:
    """Markdown lines: one row per bits; per arch the mean loss (fixed coding) and the bpp of
    the fixed- and range-coded files (range coding decodes to the same weights)."""
    head = ["bits"]
    for a in archs:
        head += [f"{_arch_label(a)} loss (dB)", f"{_arch_label(a)} bpp fixed", "range"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b in sorted({r["bits"] for r in rows}):
        cells = [str(b)]
        for a in archs:
            cells += [
                _fmt(_cell(rows, a, b, "fixed", "loss_db"), 3),
                _fmt(_cell(rows, a, b, "fixed", "bpp"), 3),
                _fmt(_cell(rows, a, b, "range", "bpp"), 3),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _caption(rows: list[dict], archs: list[str]) -> str:
    parts = []
    for a in archs:
        sel = [r for r in rows if r["arch"] == a and r["coding"] == "fixed"]
        by_image = {r["image"]: r for r in sel}  # one float PSNR per fit
        fp = _mean(r["float_psnr"] for r in by_image.values())
        parts.append(f"{_arch_label(a)} {_fmt(fp, 2)} dB ({rows_arch(sel, a)})")
    return "Float PSNR: " + "; ".join(parts) + "."


def format_table(rows: list[dict], summary: dict) -> str:
    """Markdown: the mean over images, then one section per image when there are several."""
    archs = summary["archs"]
    images = summary["images"]
    n = len(images)
    lines = [
        f"# Quantization loss (target {summary['target_bpp']:g} bpp, {summary['iters']} steps, "
        f"{n} image{'s' if n != 1 else ''}: {', '.join(images)})",
        "",
        "Loss = float PSNR − PSNR of the decoded file, fixed coding, mean over images; the "
        "range-coded file holds the same integers (same PSNR), only its bpp differs.",
        "",
        *_loss_table(rows, archs),
        "",
        _caption(rows, archs),
    ]
    if n > 1:
        for im in images:
            sel = [r for r in rows if r["image"] == im]
            lines += ["", f"## {im}", "", *_loss_table(sel, archs), "", _caption(sel, archs)]
    return "\n".join(lines) + "\n"


def _csv_bytes(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*ROW_FIELDS, "file"])
    for r in rows:
        w.writerow(["" if r[k] is None else r[k] for k in (*ROW_FIELDS, "file")])
    return buf.getvalue().encode()


def write_outputs(
    report: StudyReport, plot: bool = True, log: Callable[[str], None] | None = None
) -> list[Path]:
    """rows.csv, rows.json, table.md (each atomic) and, with matplotlib, the figure."""
    out = report.out_dir
    body = {"rows": report.rows, "summary": report.summary}
    items = {
        "rows.json": (json.dumps(body, indent=1) + "\n").encode(),
        "rows.csv": _csv_bytes(report.rows),
        "table.md": format_table(report.rows, report.summary).encode(),
    }
    written = []
    for fname, data in items.items():
        write_atomic(out / fname, data, force=True)
        written.append(out / fname)
    if plot:
        try:
            written += plot_loss(report.rows, out / "quant_loss")
        except KancoinError as e:
            if log:
                log(f"note: no plot ({e})")
    return written


def plot_loss(rows: list[dict], stem: Path) -> list[Path]:
    """Left: PSNR loss (dB, log axis floored at LOSS_FLOOR_DB) against bits, one thick line per
    arch (mean over images, fixed coding) and thin per-image lines when there are several.
    Right: file bpp against bits, fixed solid, range dashed. PNG and SVG."""
    from kancoin.eval.plots import _plt, _save

    plt = _plt()
    archs = list(dict.fromkeys(r["arch"] for r in rows))
    images = list(dict.fromkeys(r["image"] for r in rows))
    fig, (ax, ax_bpp) = plt.subplots(1, 2, figsize=(10, 4.2))
    colors = {a: f"C{i}" for i, a in enumerate(archs)}

    def series(a: str, coding: str, key: str, image: str | None = None):
        sel = [
            r for r in rows
            if r["arch"] == a and r["coding"] == coding and image in (None, r["image"])
        ]  # fmt: skip
        bits = sorted({r["bits"] for r in sel})
        ys = [_mean(r[key] for r in sel if r["bits"] == b) for b in bits]
        return bits, [np.nan if y is None else y for y in ys]

    for a in archs:
        c = colors[a]
        bits, loss = series(a, "fixed", "loss_db")
        label = rows_arch(rows, a) if len(images) == 1 else _arch_label(a)
        ax.plot(bits, np.maximum(loss, LOSS_FLOOR_DB), "o-", color=c, lw=2, label=label)
        if len(images) > 1:
            for im in images:
                b2, l2 = series(a, "fixed", "loss_db", im)
                ax.plot(b2, np.maximum(l2, LOSS_FLOOR_DB), "-", color=c, lw=0.6, alpha=0.5)
        for coding, style in (("fixed", "o-"), ("range", "s--")):
            bits, bpp = series(a, coding, "bpp")
            ax_bpp.plot(bits, bpp, style, color=c, label=f"{_arch_label(a)} {coding}")
    for y, text in zip(PAPER_LINES_DB, ("paper: KAN < 0.1 dB at 9 bits", "paper: SIREN > 1 dB")):
        ax.axhline(y, color="grey", ls=":", lw=0.8)
        ax.annotate(text, (1.0, y), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                    fontsize=6, color="grey")  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylim(bottom=LOSS_FLOOR_DB * 0.8)
    ax.set_xlabel("bits per weight (per-tensor uniform, MSE range)")
    ax.set_ylabel(f"PSNR loss (dB), mean over {len(images)} image(s)")
    ax.set_title("Post-training quantization loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower left")
    ax_bpp.set_xlabel("bits per weight")
    ax_bpp.set_ylabel("file bpp (architecture fixed)")
    ax_bpp.set_title("File size of the same network")
    ax_bpp.grid(alpha=0.3)
    ax_bpp.legend(fontsize=7)
    paths = _save(fig, stem)
    plt.close(fig)
    return paths


def rows_arch(rows: list[dict], arch: str) -> str:
    """The architecture of arch's rows, or "per image" when the images differ in size."""
    names = {r["architecture"] for r in rows if r["arch"] == arch}
    return names.pop() if len(names) == 1 else "per image"
