"""`kancoin sweep`: random hyperparameter search on one image, like the KAN-COIN paper's §3.2.

Each trial draws an optimizer, a log-uniform learning rate, a hidden width, a depth and a basis
(the grid size is then chosen by rate control to fill the budget; the tanh basis has no grid, so
its width fills the budget and the drawn width is unused), encodes the image through the
real path (``encode_pixels``: fit, quantize, write, decode) and records the PSNR of the decoded
file. Trial ``i`` is drawn from its own seeded generator, so a sweep is reproducible and
resumable: ``OUT/rows/trial_<i>.json`` is written atomically and reused when its key (settings,
image SHA-1, encoder version) matches.

Output folder: ``rows/``, ``trials.csv`` (every trial), ``summary.md`` / ``summary.json`` (the
best 10, and what the best quarter of trials share against all), ``sweep.png``/``.svg``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from kancoin import __version__
from kancoin.errors import KancoinError
from kancoin.fileio import write_atomic
from kancoin.nets.kan import BASES

# Search space (paper §3.2: optimizer, log-uniform lr, width, depth, grid filling the budget).
OPTIMIZER_WEIGHTS = {"adam": 3, "lbfgs": 1}  # LBFGS steps cost several evaluations: fewer
LR_RANGE = {"adam": (1e-4, 3e-2), "lbfgs": (0.05, 1.0)}
WIDTH_RANGE = (6, 24)
DEPTH_RANGE = (2, 4)  # one hidden layer puts the whole budget in one huge grid: slow and poor
MAX_DRAWS = 100  # redraws when a drawn architecture cannot fit the budget
TRIAL_FIELDS = (
    "trial", "optimizer", "lr", "width", "depth", "basis", "grid_size", "architecture",
    "params", "psnr", "float_psnr", "bpp", "file_bytes", "seconds", "step_ms",
)  # fmt: skip

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class Trial:
    """One point of the search space (the grid size follows from rate control)."""

    trial: int
    optimizer: str
    lr: float
    width: int
    depth: int
    basis: str


def _draw(rng: random.Random, index: int, bases: tuple[str, ...]) -> Trial:
    opt = rng.choices(list(OPTIMIZER_WEIGHTS), weights=list(OPTIMIZER_WEIGHTS.values()))[0]
    lo, hi = LR_RANGE[opt]
    lr = float(f"{math.exp(rng.uniform(math.log(lo), math.log(hi))):.3g}")
    return Trial(
        index, opt, lr, rng.randint(*WIDTH_RANGE), rng.randint(*DEPTH_RANGE), rng.choice(bases)
    )


def options(t: Trial, bpp: float, iters: int, seed: int, threads: int | None, device: str):
    """EncodeOptions of a trial (defaults for everything the sweep does not draw)."""
    from kancoin.codec.options import EncodeOptions

    # the tanh basis has no grid to fill the budget: rate control sets its width instead
    width = None if t.basis == "tanh" else t.width
    return EncodeOptions(  # the paper's KAN: its hyperparameters are what the sweep draws
        arch="kan", bpp=bpp, iters=iters, lr=t.lr, seed=seed, threads=threads, device=device,
        width=width, depth=t.depth, basis=t.basis, optimizer=t.optimizer,
    )  # fmt: skip


def draw_trial(
    index: int, shape: tuple[int, int, int], bpp: float, iters: int, seed: int,
    bases: tuple[str, ...] = BASES,
) -> Trial:  # fmt: skip
    """Trial ``index`` of sweep ``seed``: redrawn until its network fits the budget."""
    from kancoin.codec.encode import plan

    rng = random.Random(f"kancoin-sweep-{seed}-{index}")
    for _ in range(MAX_DRAWS):
        t = _draw(rng, index, bases)
        try:
            plan(shape, options(t, bpp, iters, seed, None, "cpu"))
            return t
        except KancoinError:
            continue
    raise KancoinError(f"--bpp {bpp:g}: no drawn architecture fits the budget; raise --bpp")


def _run_trial(
    path: str, t: Trial, bpp: float, iters: int, seed: int, threads: int | None, device: str,
    out_dir: str, key: dict,
) -> dict:  # fmt: skip
    """Encode the image with one trial's settings; writes and returns its row."""
    from kancoin.codec.encode import encode_pixels
    from kancoin.imageio import load_image

    pixels, _ = load_image(path)
    t0 = time.perf_counter()
    try:
        r = encode_pixels(pixels, options(t, bpp, iters, seed, threads, device))
    except Exception as e:  # a diverged fit or a network that cannot fit: a failed trial
        row = {**asdict(t), "psnr": None, "error": f"{type(e).__name__}: {e}", "key": key,
               "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
        write_atomic(
            Path(out_dir) / "rows" / f"trial_{t.trial:03d}.json",
            (json.dumps(row) + "\n").encode(),
            force=True,
        )
        return row
    row = {
        **asdict(t), "width": r.spec.hidden[0], "grid_size": r.spec.grid_size,
        "architecture": r.spec.describe(),
        "params": r.spec.n_params, "psnr": round(r.psnr, 4), "float_psnr": round(r.float_psnr, 4),
        "bpp": r.bpp, "file_bytes": r.file_bytes, "seconds": round(time.perf_counter() - t0, 2),
        "step_ms": round(1000 * r.fit_seconds / max(1, r.steps), 2), "steps": r.steps,
        "device": r.device, "threads": r.threads, "key": key,
        "file": f"files/trial_{t.trial:03d}.kc",
    }  # fmt: skip
    out = Path(out_dir)
    (out / "files").mkdir(parents=True, exist_ok=True)
    write_atomic(out / row["file"], r.data, force=True)
    rows_file = out / "rows" / f"trial_{t.trial:03d}.json"
    write_atomic(rows_file, (json.dumps(row) + "\n").encode(), force=True)
    return row


@dataclass
class SweepReport:
    out_dir: Path
    rows: list[dict]  # every trial of this sweep, by index
    computed: int
    reused: int
    summary: dict


def run_sweep(
    image: str | Path,
    out_dir: str | Path,
    bpp: float = 0.3,
    trials: int = 20,
    iters: int = 2_000,
    seed: int = 0,
    jobs: int = 1,
    device: str = "cpu",
    bases: tuple[str, ...] = BASES,
    progress: ProgressFn | None = None,
) -> SweepReport:
    """Run (or resume) trials 0..trials-1 on ``image``; returns every row and the summary."""
    from kancoin.imageio import load_image

    if trials < 1 or jobs < 1 or iters < 1:
        raise KancoinError("--trials, --jobs and --iters must be at least 1")
    if not bpp > 0:
        raise KancoinError(f"--bpp must be positive, got {bpp}")
    bad = [b for b in bases if b not in BASES]
    if bad or not bases:
        raise KancoinError(f"--basis: choose from {', '.join(BASES)} (got {', '.join(bad)})")
    image = Path(image)
    pixels, _ = load_image(image)  # errors (missing, not an image) before any work
    sha = hashlib.sha1(image.read_bytes()).hexdigest()[:16]
    out = Path(out_dir)
    try:
        (out / "rows").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise KancoinError(f"{out}: cannot use as the results folder ({e.strerror or e})") from None
    rows: dict[int, dict] = {}
    todo = []
    for i in range(trials):
        t = draw_trial(i, pixels.shape, bpp, iters, seed, tuple(bases))
        key = {**asdict(t), "bpp": bpp, "iters": iters, "seed": seed, "device": device,
               "threads": 1 if jobs > 1 else None, "image_sha1": sha,
               "encoder": __version__}  # fmt: skip
        old = _load(out / "rows" / f"trial_{i:03d}.json")
        if old is not None and old.get("key") == key:
            rows[i] = old
        else:
            todo.append((t, key))
    reused = len(rows)
    threads = 1 if jobs > 1 else None
    args = [(str(image), t, bpp, iters, seed, threads, device, str(out), key) for t, key in todo]

    def done(row: dict) -> None:
        rows[row["trial"]] = row
        if progress and row["psnr"] is None:
            progress(f"trial {row['trial']:>3} failed: {row['error']} [{len(rows)}/{trials}]")
        elif progress:
            progress(
                f"trial {row['trial']:>3} {row['optimizer']:<5} lr {row['lr']:<8g} "
                f"{row['architecture']}: {row['psnr']:.2f} dB ({row['seconds']:.0f} s) "
                f"[{len(rows)}/{trials}]"
            )

    if jobs == 1:
        for a in args:
            done(_run_trial(*a))
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # torch/numba thread pools are not fork-safe
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            for fut in as_completed([pool.submit(_run_trial, *a) for a in args]):
                done(fut.result())
    ordered = [rows[i] for i in sorted(rows)]
    summary = summarize(ordered)
    write_outputs(out, ordered, summary, image.stem, bpp)
    return SweepReport(out, ordered, len(todo), reused, summary)


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def summarize(rows: list[dict], top: int = 10) -> dict:
    """The best ``top`` trials, and how the best quarter (at least 3) differs from all trials."""
    ranked = sorted((r for r in rows if r["psnr"] is not None), key=lambda r: -r["psnr"])
    failed = len(rows) - len(ranked)
    if not ranked:
        return {"best": [], "best_quarter": None, "all": None, "failed": failed}
    best_q = ranked[: max(3, math.ceil(len(ranked) / 4))]

    def profile(rs: list[dict]) -> dict:
        adam_lr = [r["lr"] for r in rs if r["optimizer"] == "adam"]
        # a tanh network's width is set by rate control, not drawn: left out of the widths
        widths = [r["width"] for r in rs if r["basis"] != "tanh"] or [0]
        return {
            "n": len(rs),
            "psnr_median": round(statistics.median(r["psnr"] for r in rs), 3),
            "adam_lr_median": float(f"{statistics.median(adam_lr):.3g}") if adam_lr else None,
            "adam_lr_range": [min(adam_lr), max(adam_lr)] if adam_lr else None,
            "width_median": statistics.median(widths),
            "width_range": [min(widths), max(widths)],
            "depth": dict(Counter(r["depth"] for r in rs).most_common()),
            "basis": dict(Counter(r["basis"] for r in rs).most_common()),
            "optimizer": dict(Counter(r["optimizer"] for r in rs).most_common()),
        }

    return {
        "best": [{k: r[k] for k in TRIAL_FIELDS} for r in ranked[:top]],
        "best_quarter": profile(best_q),
        "all": profile(ranked),
        "failed": failed,
    }


def _markdown(summary: dict, image: str, bpp: float) -> str:
    lines = [
        f"Best trials on {image} at {bpp:g} bpp (PSNR of the decoded file):", "",
        "| trial | PSNR | bpp | optimizer | lr | basis | architecture | params | s |",
        "|---:|---:|---:|---|---:|---|---|---:|---:|",
    ]  # fmt: skip
    for r in summary["best"]:
        lines.append(
            f"| {r['trial']} | {r['psnr']:.2f} | {r['bpp']:.4f} | {r['optimizer']} | "
            f"{r['lr']:g} | {r['basis']} | {r['architecture']} | {r['params']} | "
            f"{r['seconds']:.0f} |"
        )
    bq, al = summary["best_quarter"], summary["all"]
    if bq is None:
        return "\n".join(lines) + f"\n\nEvery trial failed ({summary['failed']}).\n"

    def fmt(d):
        return ", ".join(f"{k} {v}" for k, v in d.items())

    lines += [
        "", "| what | best quarter | all trials |", "|---|---|---|",
        f"| trials | {bq['n']} | {al['n']} |",
        f"| median PSNR | {bq['psnr_median']} | {al['psnr_median']} |",
        f"| Adam lr, median [range] | {bq['adam_lr_median']} {bq['adam_lr_range']} | "
        f"{al['adam_lr_median']} {al['adam_lr_range']} |",
        f"| width, median [range] | {bq['width_median']} {bq['width_range']} | "
        f"{al['width_median']} {al['width_range']} |",
        f"| depth | {fmt(bq['depth'])} | {fmt(al['depth'])} |",
        f"| basis | {fmt(bq['basis'])} | {fmt(al['basis'])} |",
        f"| optimizer | {fmt(bq['optimizer'])} | {fmt(al['optimizer'])} |",
        f"| failed trials | | {summary['failed']} |",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, rows: list[dict], summary: dict, image: str, bpp: float) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=TRIAL_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_atomic(out / "trials.csv", buf.getvalue().encode(), force=True)
    write_atomic(out / "summary.json", (json.dumps(summary, indent=1) + "\n").encode(), force=True)
    write_atomic(out / "summary.md", _markdown(summary, image, bpp).encode(), force=True)


def plot(rows: list[dict], stem: Path, title: str) -> list[Path]:
    """PSNR against learning rate (Adam and LBFGS panels) and width, coloured by basis."""
    from kancoin.eval.plots import _plt, _save

    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharey=True)
    colours = {b: f"C{i}" for i, b in enumerate(BASES)}
    rows = [r for r in rows if r["psnr"] is not None]
    for ax, opt in zip(axes[:2], ("adam", "lbfgs")):
        for b in BASES:
            rs = [r for r in rows if r["basis"] == b and r["optimizer"] == opt]
            if rs:
                ax.scatter([r["lr"] for r in rs], [r["psnr"] for r in rs], c=colours[b], label=b)
        ax.set_xscale("log")
        ax.set_xlabel(f"learning rate ({opt})")
    for b in BASES:
        rs = [r for r in rows if r["basis"] == b]
        if rs:
            axes[2].scatter([r["width"] for r in rs], [r["psnr"] for r in rs], c=colours[b])
    axes[2].set_xlabel("hidden width")
    axes[0].set_ylabel("PSNR of the decoded file (dB)")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    paths = _save(fig, stem)
    plt.close(fig)
    return paths
