"""`kancoin ae-study`: KAN autoencoders against CNN and MLP autoencoders (Moradi et al.,
"Kolmogorov-Arnold Network Autoencoders", arXiv 2410.02077), in three comparisons:

- ``paper``: as published: each family at its own size (KAN and MLP at the same hidden width,
  the CNN at its channels), the paper's recipe (AdamW, lr 1e-3, weight decay 1e-4, MSE,
  ``epochs`` epochs);
- ``params``: the MLP and the CNN widened to the KAN's parameter count (within 5 %);
- ``time``: the MLP and the CNN at their ``paper`` sizes, trained for the KAN's measured
  training time (they stop mid-epoch when it is spent).

The KAN of one (bottleneck, seed) is trained once and is the reference of all three. Every
figure is measured on the held-out split: reconstruction MSE of [0, 1] values and its PSNR
(10·log10(1 / MSE) over all test values), kNN accuracy of the test latents against the train
latents (labelled data), parameters, training seconds per epoch, and inference time (encode +
decode of the test set, after a warm-up pass).
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from kancoin.errors import KancoinError
from kancoin.eval.provenance import environment
from kancoin.fileio import check_study_folder, write_atomic
from kancoin.research.ae.data import AEData
from kancoin.research.ae.models import (
    FAMILIES,
    KAN,
    AESize,
    build,
    count_params,
    match_params,
    paper_size,
)

COMPARISONS = ("paper", "params", "time")
COMPARISON_TITLES = {
    "paper": "As published: each family at its own size, the same epochs",
    "params": "Equal parameters: MLP and CNN widened to the KAN's count (within 5 %)",
    "time": "Equal training time: MLP and CNN at their own sizes, for the KAN's training time",
}
OUTPUT_NAMES = ("rows.csv", "rows.json", "tables.md", "summary.json")
FIGURES = ("psnr_vs_bottleneck", "psnr_vs_params", "reconstructions")
ROW_FIELDS = (
    "comparison", "family", "bottleneck", "seed", "network", "params", "epochs", "train_s",
    "s_per_epoch", "infer_ms_per_1000", "mse", "psnr", "knn_acc", "photos_psnr",
)  # fmt: skip
N_SHOWN = 8  # reconstructions in the figure

# progress: label -> context manager yielding a callback (done, total, last psnr) or None
ProgressFactory = Callable[[str], AbstractContextManager[Callable[[int, int, float], None] | None]]


@dataclass(frozen=True)
class AEConfig:
    bottlenecks: tuple[int, ...] = (2, 4, 8, 16, 32)
    epochs: int = 10
    seeds: int = 3
    hidden: int = 128  # KAN and MLP hidden width in the paper comparison
    channels: tuple[int, int] = (16, 32)  # the CNN's in the paper comparison
    grid_size: int = 5
    spline_order: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    knn_k: int = 5
    comparisons: tuple[str, ...] = COMPARISONS
    kan_backend: str = "auto"  # auto: the faster of fused and dense, measured (pick_backend)

    def check(self) -> None:
        if not self.bottlenecks or min(self.bottlenecks) < 1:
            raise KancoinError("give bottleneck sizes ≥ 1 (--bottleneck 2,4,8)")
        if self.epochs < 1 or self.seeds < 1 or self.batch_size < 1 or self.knn_k < 1:
            raise KancoinError("--epochs, --seeds, --batch-size and --knn-k must be ≥ 1")
        if self.kan_backend not in ("auto", "fused", "dense"):
            raise KancoinError("--kan-backend: auto, fused or dense")
        bad = set(self.comparisons) - set(COMPARISONS)
        if bad or not self.comparisons:
            raise KancoinError(f"--compare: one or more of {', '.join(COMPARISONS)}")


@dataclass
class AEReport:
    out_dir: Path
    rows: list[dict]
    summary: list[dict]
    config: dict
    written: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def parse_sizes(text: str) -> tuple[int, ...]:
    """"2,4,8" -> (2, 4, 8): sorted, unique, each ≥ 1."""
    try:
        sizes = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise KancoinError(f"--bottleneck {text!r}: give whole numbers, e.g. 2,4,8,16") from None
    if not sizes or sizes[0] < 1:
        raise KancoinError(f"--bottleneck {text!r}: give sizes ≥ 1, e.g. 2,4,8,16")
    return tuple(sizes)


def train(
    model: torch.nn.Module,
    x: torch.Tensor,
    cfg: AEConfig,
    seed: int,
    epochs: float | None = None,
    seconds: float | None = None,
) -> tuple[float, float]:
    """AdamW on the MSE for ``epochs`` epochs, or until ``seconds`` of training have passed
    (stopping mid-epoch). Returns (epochs done, fractional; training seconds)."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    n = len(x)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    done = 0
    t0 = time.perf_counter()
    model.train()
    while True:
        order = torch.randperm(n, generator=gen)
        for i in range(steps_per_epoch):
            batch = x[order[i * cfg.batch_size : (i + 1) * cfg.batch_size]]
            loss = torch.nn.functional.mse_loss(model(batch), batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if seconds is not None and time.perf_counter() - t0 >= seconds:
                return done / steps_per_epoch, time.perf_counter() - t0
        if epochs is not None and done >= epochs * steps_per_epoch:
            return done / steps_per_epoch, time.perf_counter() - t0


def _batches(model, x: torch.Tensor, fn: str, size: int = 4096) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([getattr(model, fn)(x[i : i + size]) for i in range(0, len(x), size)])


def reconstruct(model, x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> reconstructions, in eval mode, without autograd."""
    model.eval()
    return _batches(model, x, "forward")


def encode(model, x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> latents (N, b)."""
    model.eval()
    return _batches(model, x, "encode")


def mse_psnr(model, x: torch.Tensor) -> tuple[float, float]:
    """Reconstruction MSE of [0, 1] values over every test value, and 10·log10(1 / MSE)."""
    m = float(torch.mean((reconstruct(model, x).double() - x.double()) ** 2))
    return m, (math.inf if m == 0 else -10 * math.log10(m))


def knn_accuracy(
    z_train: torch.Tensor, y_train: np.ndarray, z_test: torch.Tensor, y_test: np.ndarray, k: int
) -> float:
    """Fraction of test samples whose k nearest train latents (Euclidean) vote their class;
    a tie goes to the class of the nearest among the tied."""
    k = min(k, len(z_train))
    d = torch.cdist(z_test.double(), z_train.double())
    idx = torch.topk(d, k, largest=False).indices.numpy()  # nearest first
    votes = np.asarray(y_train)[idx]
    right = 0
    for row, truth in zip(votes, np.asarray(y_test)):
        counts = np.bincount(row)
        top = np.flatnonzero(counts == counts.max())
        pred = next(v for v in row if v in top)  # nearest of the tied classes
        right += int(pred == truth)
    return right / len(y_test)


def inference_ms(model, x: torch.Tensor) -> float:
    """Milliseconds per 1,000 samples to encode and decode ``x`` (best of 3, after one
    warm-up pass)."""
    reconstruct(model, x[: min(len(x), 256)])
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        reconstruct(model, x)
        best = min(best, time.perf_counter() - t0)
    return 1000 * best * 1000 / len(x)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def study_tensors(data: AEData) -> dict[str, torch.Tensor]:
    """The splits as tensors, made once per study: train, test and the extra test sets."""
    return {"train": _tensor(data.x_train), "test": _tensor(data.x_test),
            **{k: _tensor(v) for k, v in data.extra.items()}}  # fmt: skip


def run_one(
    data: AEData, size: AESize, cfg: AEConfig, seed: int, *, epochs: float | None = None,
    seconds: float | None = None, tensors: dict | None = None,
) -> tuple[dict, torch.nn.Module]:  # fmt: skip
    """Train one network and measure it: a row (without ``comparison``) and the model."""
    t = tensors or study_tensors(data)
    torch.manual_seed(seed)
    model = build(size, data.sample_shape)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    done, train_s = train(model, t["train"], cfg, seed, epochs=epochs, seconds=seconds)
    m, p = mse_psnr(model, t["test"])
    row = {
        "family": size.family, "bottleneck": size.bottleneck, "seed": seed,
        "network": size.describe(), "params": params, "epochs": round(done, 3),
        "train_s": round(train_s, 3), "s_per_epoch": round(train_s / done, 4),
        "infer_ms_per_1000": round(inference_ms(model, t["test"]), 3),
        "mse": m, "psnr": round(p, 4), "knn_acc": None, "photos_psnr": None,
    }  # fmt: skip
    if data.labelled:
        row["knn_acc"] = round(
            knn_accuracy(encode(model, t["train"]), data.y_train, encode(model, t["test"]),
                         data.y_test, cfg.knn_k), 5,
        )  # fmt: skip
    if "photos" in t:
        row["photos_psnr"] = round(mse_psnr(model, t["photos"])[1], 4)
    return row, model


def pick_backend(
    size: AESize, shape: tuple[int, int, int], x: torch.Tensor, cfg: AEConfig, steps: int = 5
) -> tuple[str, dict[str, float]]:
    """The faster KAN layer evaluation for this size, measured: ``fused`` (the codec's numba
    kernels, made for narrow layers and many pixels) or ``dense`` (a basis tensor and a BLAS
    product, faster for wide layers). Returns the choice and the seconds per step."""
    batch = x[: cfg.batch_size]
    timing = {}
    for backend in ("fused", "dense"):
        model = build(replace(size, backend=backend), shape)
        train(model, batch, cfg, 0, seconds=0.0)  # compilation, first allocations
        t0 = time.perf_counter()
        for _ in range(steps):
            train(model, batch, cfg, 0, seconds=0.0)
        timing[backend] = round((time.perf_counter() - t0) / steps, 5)
    return min(timing, key=timing.get), timing


def _plan(cfg: AEConfig) -> list[tuple[str, str]]:
    """(comparison, family) runs per (bottleneck, seed), the KAN first (the reference)."""
    runs = [("paper", KAN)]
    for comp in cfg.comparisons:
        runs += [(comp, f) for f in FAMILIES if f != KAN]
    return runs


def run_study(
    data: AEData,
    out: str | Path,
    cfg: AEConfig,
    force: bool = False,
    progress: ProgressFactory | None = None,
    log: Callable[[str], None] | None = None,
    plot: bool = True,
) -> AEReport:
    """The whole study: every size is checked (parameter matching included) before training."""
    t_start = time.perf_counter()
    cfg.check()
    out = Path(out)
    check_study_folder(out, OUTPUT_NAMES, force)
    shape = data.sample_shape
    sizes: dict[tuple[str, str, int], AESize] = {}
    for b in cfg.bottlenecks:
        for f in FAMILIES:
            sizes["paper", f, b] = paper_size(
                f, b, cfg.hidden, cfg.channels, cfg.grid_size, cfg.spline_order
            )
        if "params" in cfg.comparisons:
            target = count_params(sizes["paper", KAN, b], shape)
            for f in ("mlp", "cnn"):
                sizes["params", f, b] = match_params(f, target, b, shape)
        if "time" in cfg.comparisons:
            for f in ("mlp", "cnn"):
                sizes["time", f, b] = sizes["paper", f, b]
    try:
        out.mkdir(parents=True, exist_ok=True)
        for n in (*OUTPUT_NAMES, *(f"{s}.{e}" for s in FIGURES for e in ("png", "svg"))):
            (out / n).unlink(missing_ok=True)  # reached only with --force
    except OSError as e:
        raise KancoinError(f"{out}: cannot prepare the folder ({e.strerror or e})") from None

    tensors = study_tensors(data)
    b_min = min(cfg.bottlenecks)
    backend, backend_s = cfg.kan_backend, {}
    if backend == "auto":
        backend, backend_s = pick_backend(sizes["paper", KAN, b_min], shape, tensors["train"],
                                          cfg)  # fmt: skip
    sizes = {k: replace(v, backend=backend) if k[1] == KAN else v for k, v in sizes.items()}
    for f in FAMILIES:  # first steps (a kernel's compilation, allocator warm-up) are not timed
        warm = build(sizes["paper", f, b_min], shape)
        train(warm, tensors["train"][: cfg.batch_size], cfg, 0, seconds=0.0)
        inference_ms(warm, tensors["test"][:8])
    runs = _plan(cfg)
    total = len(runs) * len(cfg.bottlenecks) * cfg.seeds
    rows: list[dict] = []
    shown: dict[str, np.ndarray] = {}  # smallest bottleneck, seed 0: reconstructions
    n_done, best = 0, -math.inf
    pick = np.linspace(0, len(data.x_test) - 1, min(N_SHOWN, len(data.x_test))).astype(int)
    with progress(f"ae-study {data.name}") if progress else nullcontext() as cb:
        for b in cfg.bottlenecks:
            for seed in range(cfg.seeds):
                kan_s = None
                for comp, fam in runs:
                    size = sizes[comp, fam, b]
                    if comp == "time":
                        row, model = run_one(data, size, cfg, seed, seconds=kan_s, tensors=tensors)
                    else:
                        row, model = run_one(data, size, cfg, seed, epochs=cfg.epochs,
                                             tensors=tensors)  # fmt: skip
                    if fam == KAN:
                        kan_s = row["train_s"]
                        # the reference of every comparison
                        rows += [{"comparison": c, **row} for c in cfg.comparisons]
                    else:
                        rows.append({"comparison": comp, **row})
                    if comp == "paper" and b == b_min and seed == 0:
                        shown[fam] = reconstruct(model, tensors["test"][pick]).numpy()
                    n_done += 1
                    best = max(best, row["psnr"])
                    if cb:
                        cb(n_done, total, best)
                    if log:
                        log(f"b={b} seed {seed} {comp:6s} {row['network']}: "
                            f"{row['psnr']:.2f} dB, {row['epochs']:g} epochs, "
                            f"{row['train_s']:.1f} s")  # fmt: skip
    shown["input"] = data.x_test[pick]
    summary = summarize(rows)
    config = {
        **asdict(cfg), "data": data.name, "split": data.notes,
        "sample_shape": list(shape), "n_train": len(data.x_train), "n_test": len(data.x_test),
        "extra_tests": {k: len(v) for k, v in data.extra.items()},
        # the latents' reference: kNN on the raw test pixels against the raw train pixels
        "knn_acc_pixels": (
            round(knn_accuracy(tensors["train"].flatten(1), data.y_train,
                               tensors["test"].flatten(1), data.y_test, cfg.knn_k), 5)
            if data.labelled else None
        ),
        "kan_backend": backend, "kan_backend_step_s": backend_s,
        "threads": torch.get_num_threads(), "environment": environment(),
    }  # fmt: skip
    report = AEReport(out, rows, summary, config)
    report.written = write_outputs(report, shown, plot=plot, log=log)
    report.seconds = time.perf_counter() - t_start
    return report


def _mean_std(xs: list[float]) -> tuple[float | None, float | None]:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


SUMMED = ("psnr", "mse", "knn_acc", "photos_psnr", "params", "epochs", "s_per_epoch",
          "train_s", "infer_ms_per_1000")  # fmt: skip


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds per (comparison, family, bottleneck)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["comparison"], r["family"], r["bottleneck"]), []).append(r)
    out = []
    for (comp, fam, b), rs in groups.items():
        s = {"comparison": comp, "family": fam, "bottleneck": b, "network": rs[0]["network"],
             "seeds": len(rs)}  # fmt: skip
        for k in SUMMED:
            s[k], s[k + "_std"] = _mean_std([r[k] for r in rs])
        out.append(s)
    order = {c: i for i, c in enumerate(COMPARISONS)}
    fam_order = {f: i for i, f in enumerate(FAMILIES)}
    return sorted(out, key=lambda s: (order[s["comparison"]], s["bottleneck"],
                                      fam_order[s["family"]]))  # fmt: skip


def _pm(m: float | None, s: float | None, digits: int, scale: float = 1.0) -> str:
    if m is None:
        return "–"
    return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}"


def format_tables(summary: list[dict], config: dict) -> str:
    """One Markdown table per comparison."""
    knn = any(s["knn_acc"] is not None for s in summary)
    photos = any(s["photos_psnr"] is not None for s in summary)
    head = ["bottleneck", "family", "network", "params", "epochs", "s / epoch", "PSNR (dB)",
            "MSE ×1000"]  # fmt: skip
    head += [f"kNN acc. (k={config['knn_k']}, %)"] if knn else []
    head += ["photos PSNR (dB)"] if photos else []
    head += ["inference (ms / 1000)"]
    lines: list[str] = []
    for comp in config["comparisons"]:
        lines += [f"### {COMPARISON_TITLES[comp]}", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]  # fmt: skip
        for s in (s for s in summary if s["comparison"] == comp):
            cells = [str(s["bottleneck"]), s["family"].upper(), s["network"],
                     f"{s['params']:,.0f}", f"{s['epochs']:.1f}",
                     _pm(s["s_per_epoch"], s["s_per_epoch_std"], 3),
                     _pm(s["psnr"], s["psnr_std"], 2),
                     _pm(s["mse"], s["mse_std"], 2, 1000)]  # fmt: skip
            if knn:
                cells.append(_pm(s["knn_acc"], s["knn_acc_std"], 1, 100))
            if photos:
                cells.append(_pm(s["photos_psnr"], s["photos_psnr_std"], 2))
            cells.append(f"{s['infer_ms_per_1000']:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _csv_bytes(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=ROW_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def write_outputs(
    report: AEReport, shown: dict[str, np.ndarray], plot: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[Path]:  # fmt: skip
    out = report.out_dir
    files = {
        "rows.csv": _csv_bytes(report.rows),
        "rows.json": json.dumps({"config": report.config, "rows": report.rows}, indent=1).encode(),
        "summary.json": json.dumps(report.summary, indent=1).encode(),
        "tables.md": format_tables(report.summary, report.config).encode(),
    }
    written = []
    for name, data in files.items():
        write_atomic(out / name, data, force=True)
        written.append(out / name)
    if plot:
        try:
            from kancoin.research.ae.plots import draw_all

            written += draw_all(report.summary, shown, report.config, out)
        except KancoinError as e:
            if log:
                log(f"note: no plots ({e})")
    return written
