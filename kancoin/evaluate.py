"""`kancoin eval`: run the codec (and Pillow baselines) over a folder of images, resumably.

Images: ``images_dir`` if given, else the environment variable ``KANCOIN_KODAK``, else
``<repo>/../shared/data/kodak``, else ``./data/kodak``. Every ``*.png`` (also .ppm, .bmp, .tif)
in the folder is an image, named by its stem (``kodim03``). ``images`` picks a subset: a comma
list of names (``"kodim03,kodim23"``) or an integer N (the first N in name order).

Every (image, setting) pair runs the real path: a network is fitted, quantized and serialised by
``encode_pixels`` and its PSNR is measured on what the decoder produces from the file bytes;
a baseline is encoded by Pillow at the highest quality that fits and decoded from its bytes.

Output folder (``out_dir``):
- ``rows/<image>__<setting>.json``: one row per (image, setting), written atomically. A rerun
  skips a pair whose row exists and whose ``key`` (every setting that affects the result, plus
  the image's SHA-1) matches, so an interrupted run resumes where it stopped.
- ``files/``: the encoded files; ``decoded/``: decoded PNGs for a few images (for crops).
- ``results.csv`` / ``results.json``: all rows in ``rows/`` (per image).
- ``summary.json`` and ``summary/<setting>.json``: CompressAI schema, one entry per setting with
  lists over rates: ``{"name", "description", "results": {"bpp", "psnr-rgb",
  "psnr-of-mean-mse", "n_images", ...}}``. ``psnr-rgb`` is the mean of per-image PSNR.
- ``compare_0.3bpp.csv`` / ``.md``: per image vs published COIN and KAN-COIN at 0.3 bpp.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kancoin.errors import KancoinError
from kancoin.fileio import write_atomic

ARCHS = ("kan", "siren")
IMAGE_EXTS = (".png", ".ppm", ".bmp", ".tif", ".tiff")
# decoded PNGs are kept for these images (and for every image of a run of at most 2 images)
DECODED_IMAGES = ("kodim03", "kodim23")
COMPARE_BPP = 0.3
ROW_FIELDS = (
    "image", "height", "width", "setting", "codec", "arch", "architecture", "params", "bits",
    "quality", "coding", "payload_bits_per_weight", "file_bytes", "bpp", "psnr", "mse",
    "float_psnr", "qat_psnr", "encode_s", "decode_s", "steps",
    "iters", "device", "threads", "seed", "target_bpp",
)  # fmt: skip

ProgressFn = Callable[[str], None]


def default_images_dir() -> Path:
    """KANCOIN_KODAK, else <repo>/../shared/data/kodak, else ./data/kodak."""
    env = os.environ.get("KANCOIN_KODAK")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parent.parent
    shared = repo.parent / "shared" / "data" / "kodak"
    if shared.is_dir():
        return shared
    return Path("data") / "kodak"


@dataclass(frozen=True)
class Setting:
    """Everything that affects one result (besides the image)."""

    kind: str  # "kan", "siren" or a baseline codec
    bpp: float
    bits: int | None = None  # nets only (resolved: 9 KAN, 16 SIREN by default)
    iters: int | None = None
    seed: int | None = None
    device: str | None = None  # resolved device type ("cpu"/"cuda"): results differ slightly
    batch_size: int | None = None
    lr: float | None = None
    coding: str | None = None  # nets: "range" or "fixed"
    qat: float | None = None  # nets: fraction of iters spent on quantization-aware training
    encoder: str | None = None  # nets: kancoin version (rows of an older encoder are redone)

    @property
    def is_net(self) -> bool:
        return self.kind in ARCHS

    @property
    def name(self) -> str:
        """Setting without the rate: one curve in the summary."""
        if not self.is_net:
            return self.kind
        extra = ""
        if (self.coding, self.qat) != ("range", 0.1):  # not the defaults: say so
            extra = f"-{self.coding}-qat{self.qat:g}"
        if self.lr is not None:
            extra += f"-lr{self.lr:g}"
        return f"{self.kind}-{self.bits}bit-{self.iters}it-seed{self.seed}-{self.device}{extra}"

    @property
    def slug(self) -> str:
        return f"{self.name}_bpp{self.bpp:g}"

    def description(self) -> str:
        if self.is_net:
            label = "KAN" if self.kind == "kan" else "SIREN"
            return (
                f"kancoin {self.encoder} {label}, up to {self.bits}-bit weights, {self.coding} "
                f"coding, {self.iters} Adam steps ({self.qat:.0%} quantization-aware), "
                f"batch {self.batch_size}, seed {self.seed}, {self.device}; whole-file bpp"
            )
        from kancoin.baselines import DESCRIPTION

        return DESCRIPTION.get(self.kind, self.kind)

    def key(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def make_settings(
    bpps,
    archs,
    codecs,
    bits=None,
    iters=10_000,
    seed=0,
    device="auto",
    batch_size=None,
    lr=None,
    coding="range",
    qat=0.1,
) -> list[Setting]:
    from kancoin.baselines import check_codecs

    for b in bpps:
        if not b > 0:
            raise KancoinError(f"--bpp must be positive, got {b}")
    for a in archs:
        if a not in ARCHS:
            raise KancoinError(f"unknown --arch {a!r} (kan or siren)")
    check_codecs(list(codecs))
    if not archs and not codecs:
        raise KancoinError("nothing to evaluate: give --arch and/or --codec")
    out: list[Setting] = []
    if archs:
        from kancoin.encode import DEFAULT_BATCH, EncodeOptions, resolve_device

        if iters < 1:
            raise KancoinError("--iters must be at least 1")
        dev = resolve_device(device).type
        from kancoin import __version__

        for a in dict.fromkeys(archs):
            opts = EncodeOptions(arch=a, bits=bits, coding=coding, qat=qat)
            opts.coding_id  # noqa: B018 - validates --coding
            if not 0.0 <= qat < 1.0:
                raise KancoinError("--qat must be a fraction in [0, 1)")
            for b in dict.fromkeys(bpps):
                out.append(
                    Setting(
                        a, float(b), opts.resolved_bits, iters, seed, dev,
                        batch_size or DEFAULT_BATCH, lr, coding, float(qat), __version__,
                    )  # fmt: skip
                )
    for c in dict.fromkeys(codecs):
        for b in dict.fromkeys(bpps):
            out.append(Setting(c, float(b)))
    return out


def list_images(images_dir: str | Path | None, subset: str | int | None = None) -> list[Path]:
    d = Path(images_dir) if images_dir else default_images_dir()
    if not d.is_dir():
        raise KancoinError(f"{d}: image folder not found (give DIR or set KANCOIN_KODAK)")
    paths = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if not paths:
        raise KancoinError(f"{d}: no images (*.png) in the folder")
    if subset is None or subset == "":
        return paths
    s = str(subset).strip()
    if s.isdigit():
        n = int(s)
        if n < 1:
            raise KancoinError("--images N must be at least 1")
        return paths[:n]
    by_name = {p.stem: p for p in paths}
    chosen = []
    for name in (x.strip() for x in s.split(",") if x.strip()):
        stem = Path(name).stem
        if stem not in by_name:
            raise KancoinError(f"--images: no image {name!r} in {d}")
        chosen.append(by_name[stem])
    return list(dict.fromkeys(chosen))


def _finite(x: float | None, nd: int = 4) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), nd)


def row_path(out_dir: Path, image: str, s: Setting) -> Path:
    return out_dir / "rows" / f"{image}__{s.slug}.json"


def _load_row(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def _png(pixels: np.ndarray) -> bytes:
    from kancoin.grid import png_bytes

    return png_bytes(pixels)


def _run_one(
    pixels: np.ndarray, s: Setting, threads: int | None
) -> tuple[dict, bytes, np.ndarray, str]:
    """One (image, setting) through the real path; returns (row, file bytes, decoded, ext)."""
    if s.is_net:
        from kancoin.encode import EncodeOptions, encode_pixels

        opts = EncodeOptions(
            bpp=s.bpp, bits=s.bits, arch=s.kind, iters=s.iters, batch_size=s.batch_size,
            lr=s.lr, seed=s.seed, device=s.device, threads=threads, coding=s.coding,
            qat=s.qat,
        )  # fmt: skip
        r = encode_pixels(pixels, opts)
        from kancoin.metrics import mse

        row = {
            "codec": "kancoin", "arch": s.kind, "architecture": r.spec.describe(),
            "params": r.spec.n_params, "bits": r.bits, "quality": None,
            "coding": r.coding, "payload_bits_per_weight": round(r.payload_bpw, 4),
            "qat_psnr": _finite(r.qat_psnr) if r.qat_psnr is not None else None,
            "file_bytes": r.file_bytes, "bpp": r.bpp, "psnr": _finite(r.psnr),
            "mse": mse(r.decoded.pixels, pixels), "float_psnr": _finite(r.float_psnr),
            "encode_s": round(r.encode_seconds, 3), "decode_s": round(r.decoded.seconds, 3),
            "steps": r.steps, "iters": s.iters, "device": r.device, "threads": r.threads,
            "seed": s.seed, "spec": r.spec.as_dict(),
        }  # fmt: skip
        return row, r.data, r.decoded.pixels, "kc"
    from kancoin.baselines import DESCRIPTION, EXT, compress

    b = compress(pixels, s.kind, s.bpp)
    row = {
        "codec": s.kind, "arch": None, "architecture": DESCRIPTION[s.kind],
        "params": None, "bits": None, "quality": _finite(b.quality, 3),
        "file_bytes": b.file_bytes, "bpp": b.bpp, "psnr": _finite(b.psnr), "mse": b.mse,
        "float_psnr": None, "encode_s": round(b.encode_seconds, 4),
        "decode_s": round(b.decode_seconds, 4), "search_s": round(b.search_seconds, 3),
        "steps": None, "iters": None, "device": "cpu", "threads": 1, "seed": None,
    }  # fmt: skip
    return row, b.data, b.pixels, EXT[s.kind]


def _image_job(
    path: str, settings: list[Setting], out_dir: str, threads: int | None, keep_decoded: bool
) -> list[tuple[dict, bool]]:
    """All settings for one image (a unit of --jobs). Returns [(row, computed)]."""
    from kancoin.grid import load_image

    out = Path(out_dir)
    p = Path(path)
    name = p.stem
    raw = p.read_bytes()
    sha = hashlib.sha1(raw).hexdigest()[:16]
    pixels, _ = load_image(p)
    h, w, c = pixels.shape
    results = []
    for s in settings:
        rp = row_path(out, name, s)
        key = {**s.key(), "image_sha1": sha}
        old = _load_row(rp)
        if old is not None and old.get("key") == key:
            results.append((old, False))
            continue
        row, data, decoded, ext = _run_one(pixels, s, threads)
        row = {
            "image": name, "path": str(p.resolve()), "height": h, "width": w, "channels": c,
            "setting": s.name, "description": s.description(), "target_bpp": s.bpp, **row,
            "key": key, "file": f"files/{name}__{s.slug}.{ext}", "decoded": None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }  # fmt: skip
        (out / "files").mkdir(parents=True, exist_ok=True)
        write_atomic(out / row["file"], data)
        if keep_decoded:
            (out / "decoded").mkdir(parents=True, exist_ok=True)
            row["decoded"] = f"decoded/{name}__{s.slug}.png"
            write_atomic(out / row["decoded"], _png(decoded))
        write_atomic(rp, (json.dumps(row, indent=1) + "\n").encode())
        results.append((row, True))
    return results


@dataclass
class EvalReport:
    out_dir: Path
    rows: list[dict]  # this run's rows (computed or reused), in image × setting order
    computed: int
    skipped: int
    settings: list[Setting]
    summary: list[dict] = field(default_factory=list)  # over every row in out_dir


def run_eval(
    images_dir: str | Path | None = None,
    out_dir: str | Path = "results",
    bpps=(0.3,),
    archs=("kan",),
    codecs=(),
    bits: int | None = None,
    iters: int = 10_000,
    images: str | int | None = None,
    jobs: int = 1,
    device: str = "auto",
    seed: int = 0,
    progress: ProgressFn | None = None,
    keep_decoded: tuple[str, ...] | None = None,
    coding: str = "range",
    qat: float = 0.1,
    lr: float | None = None,
) -> EvalReport:
    """Evaluate every image × setting (see the module docstring); returns this run's rows."""
    if jobs < 1:
        raise KancoinError("--jobs must be at least 1")
    settings = make_settings(
        bpps, archs, codecs, bits, iters, seed, device, lr=lr, coding=coding, qat=qat
    )
    paths = list_images(images_dir, images)
    out = Path(out_dir)
    try:
        (out / "rows").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise KancoinError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    keep = set(DECODED_IMAGES if keep_decoded is None else keep_decoded)
    if len(paths) <= 2 and keep_decoded is None:
        keep |= {p.stem for p in paths}
    say = progress or (lambda m: None)
    threads = 1 if jobs > 1 else None
    by_image: dict[str, list[tuple[dict, bool]]] = {}
    if jobs == 1 or len(paths) == 1:
        for i, p in enumerate(paths):
            res = []
            for s in settings:  # one setting at a time so progress is per row
                res += _image_job(str(p), [s], str(out), threads, p.stem in keep)
                row, done = res[-1]
                say(_progress_line(i + 1, len(paths), row, done))
            by_image[p.stem] = res
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # torch/numba thread pools are not fork-safe
        with ProcessPoolExecutor(max_workers=min(jobs, len(paths)), mp_context=ctx) as ex:
            futs = {
                ex.submit(_image_job, str(p), settings, str(out), threads, p.stem in keep): p
                for p in paths
            }
            n = 0
            for f in as_completed(futs):
                n += 1
                res = f.result()
                by_image[futs[f].stem] = res
                for row, done in res:
                    say(_progress_line(n, len(paths), row, done))
    rows, computed = [], 0
    for p in paths:
        for row, done in by_image[p.stem]:
            rows.append(row)
            computed += done
    summary = write_outputs(out)
    return EvalReport(out, rows, computed, len(rows) - computed, settings, summary)


def _progress_line(i: int, n: int, row: dict, computed: bool) -> str:
    what = "done" if computed else "skip (already in rows/)"
    return (
        f"[{i}/{n}] {row['image']} {row['setting']} @ {row['target_bpp']:g} bpp: "
        f"{row['bpp']:.4f} bpp, {row['psnr']:.2f} dB, {what}"
    )


# ---------------------------------------------------------------------------- outputs


def load_rows(out_dir: str | Path) -> list[dict]:
    rows = []
    for p in sorted((Path(out_dir) / "rows").glob("*.json")):
        r = _load_row(p)
        if r is not None and "image" in r:
            rows.append(r)
    return rows


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def summarize(rows: list[dict]) -> list[dict]:
    """CompressAI-style entries, one per setting, lists over target rates."""
    groups: dict[str, dict[float, list[dict]]] = {}
    desc: dict[str, str] = {}
    for r in rows:
        groups.setdefault(r["setting"], {}).setdefault(r["target_bpp"], []).append(r)
        desc[r["setting"]] = r.get("description", r["setting"])
    out = []
    for name, by_rate in sorted(groups.items()):
        res: dict[str, list] = {
            k: []
            for k in (
                "target_bpp", "bpp", "psnr-rgb", "psnr-of-mean-mse", "n_images",
                "encoding_time", "decoding_time",
            )
        }  # fmt: skip
        for tb in sorted(by_rate):
            rs = by_rate[tb]
            from kancoin.metrics import psnr_from_mse

            res["target_bpp"].append(tb)
            res["bpp"].append(_finite(_mean(r["bpp"] for r in rs), 5))
            res["psnr-rgb"].append(_finite(_mean(r["psnr"] for r in rs)))
            res["psnr-of-mean-mse"].append(_finite(psnr_from_mse(_mean(r["mse"] for r in rs))))
            res["n_images"].append(len(rs))
            res["encoding_time"].append(_finite(_mean(r["encode_s"] for r in rs), 4))
            res["decoding_time"].append(_finite(_mean(r["decode_s"] for r in rs), 4))
        out.append({"name": name, "description": desc[name], "results": res})
    return out


def compare_table(rows: list[dict], bpp: float = COMPARE_BPP) -> tuple[list[str], list[list]]:
    """Per-image PSNR at `bpp` of each setting vs published COIN and KAN-COIN (differences)."""
    from kancoin.references import COIN, KAN_COIN, per_image_03

    ref = per_image_03()
    at = [r for r in rows if abs(r["target_bpp"] - bpp) < 1e-9]
    settings = sorted({r["setting"] for r in at})
    images = sorted({r["image"] for r in at})
    val = {(r["image"], r["setting"]): r["psnr"] for r in at}
    header = ["image", "COIN", "KAN-COIN paper"]
    for s in settings:
        header += [s, f"{s} - COIN", f"{s} - KAN-COIN"]
    body = []
    for im in images:
        coin, kanp = ref.get(im, {}).get(COIN), ref.get(im, {}).get(KAN_COIN)
        line = [im, coin, kanp]
        for s in settings:
            v = val.get((im, s))
            line += [
                v,
                None if v is None or coin is None else round(v - coin, 2),
                None if v is None or kanp is None else round(v - kanp, 2),
            ]
        body.append(line)
    if body:
        means = ["mean"]
        for j in range(1, len(header)):
            means.append(_finite(_mean(b[j] for b in body), 2))
        body.append(means)
    return header, body


def _csv_bytes(header: list[str], body: list[list]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for line in body:
        w.writerow(["" if x is None else x for x in line])
    return buf.getvalue().encode()


def _fmt(x) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.2f}"
    return str(x)


def markdown(header: list[str], body: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(x) for x in b) + " |" for b in body]
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: str | Path) -> list[dict]:
    """results.csv/json, summary.json (+ summary/<setting>.json), compare_0.3bpp.csv/md."""
    out = Path(out_dir)
    rows = load_rows(out)
    write_atomic(out / "results.json", (json.dumps(rows, indent=1) + "\n").encode())
    body = [[r.get(k) for k in ROW_FIELDS] for r in rows]
    write_atomic(out / "results.csv", _csv_bytes(list(ROW_FIELDS), body))
    summary = summarize(rows)
    write_atomic(out / "summary.json", (json.dumps(summary, indent=1) + "\n").encode())
    (out / "summary").mkdir(exist_ok=True)
    for entry in summary:
        data = (json.dumps(entry, indent=1) + "\n").encode()
        write_atomic(out / "summary" / f"{entry['name']}.json", data)
    header, cbody = compare_table(rows)
    if cbody:
        write_atomic(out / "compare_0.3bpp.csv", _csv_bytes(header, cbody))
        write_atomic(out / "compare_0.3bpp.md", markdown(header, cbody).encode())
    return summary


def format_table(rows: list[dict]) -> str:
    """Per-image PSNR (bpp) per setting and rate, and the means (of per-image PSNR)."""
    cols = list(dict.fromkeys((r["setting"], r["target_bpp"]) for r in rows))
    images = list(dict.fromkeys(r["image"] for r in rows))
    val = {(r["image"], r["setting"], r["target_bpp"]): r for r in rows}
    names = [f"{s}@{b:g}" for s, b in cols]
    width = max([18] + [len(n) + 1 for n in names])
    iw = max([8] + [len(i) for i in images])
    lines = [f"{'image':<{iw}}" + "".join(f"{n:>{width}}" for n in names)]

    def cell(r):
        if r is None or r["psnr"] is None:
            return f"{'–':>{width}}"
        return f"{r['psnr']:.2f} dB {r['bpp']:.3f}".rjust(width)

    for im in images:
        lines.append(f"{im:<{iw}}" + "".join(cell(val.get((im, s, b))) for s, b in cols))
    means = []
    for s, b in cols:
        rs = [val[(im, s, b)] for im in images if (im, s, b) in val]
        p, bp = _mean(r["psnr"] for r in rs), _mean(r["bpp"] for r in rs)
        means.append(f"{'–':>{width}}" if p is None else f"{p:.2f} dB {bp:.3f}".rjust(width))
    lines.append(f"{'mean':<{iw}}" + "".join(means))
    lines.append(f"({len(images)} images; cells: PSNR, bpp of the whole file)")
    return "\n".join(lines)
