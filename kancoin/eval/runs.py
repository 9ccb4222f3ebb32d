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

import hashlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kancoin.codec.options import EncodeOptions
from kancoin.errors import KancoinError
from kancoin.eval.reports import finite, load_row, write_outputs
from kancoin.fileio import write_atomic
from kancoin.nets import family

IMAGE_EXTS = (".png", ".ppm", ".bmp", ".tif", ".tiff")
# decoded PNGs are kept for these images (and for every image of a run of at most 2 images)
DECODED_IMAGES = ("kodim03", "kodim23")

ProgressFn = Callable[[str], None]


def default_images_dir() -> Path:
    """KANCOIN_KODAK, else <repo>/../shared/data/kodak, else ./data/kodak."""
    env = os.environ.get("KANCOIN_KODAK")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    shared = repo.parent / "shared" / "data" / "kodak"
    if shared.is_dir():
        return shared
    return Path("data") / "kodak"


@dataclass(frozen=True)
class Setting:
    """Everything that affects one result (besides the image): a baseline codec at a rate, or
    the encoder's options (``EncodeOptions``, with ``bpp`` and ``arch`` set) plus the resolved
    device type and the kancoin version."""

    kind: str  # a network family (``--arch``) or a baseline codec
    bpp: float
    options: EncodeOptions | None = None  # nets only
    device: str | None = None  # resolved device type ("cpu"/"cuda"): results differ slightly
    encoder: str | None = None  # nets: kancoin version (rows of an older encoder are redone)

    @property
    def is_net(self) -> bool:
        return self.options is not None

    def changed(self) -> dict:
        """The options that differ from the encoder's defaults (besides those in the name)."""
        if self.options is None:
            return {}
        default = EncodeOptions(arch=self.kind)
        return {
            k: v for k, v in self.options.as_dict().items()
            if k not in _NAMED and k not in RUN_OPTIONS and v != getattr(default, k)
        }  # fmt: skip

    @property
    def name(self) -> str:
        """Setting without the rate: one curve in the summary."""
        if self.options is None:
            return self.kind
        o = self.options
        extra = "".join(
            f"-{k}" if v is True else f"-{k}-{v:g}" if isinstance(v, float) else f"-{k}-{v}"
            for k, v in self.changed().items()
        )
        return f"{self.kind}-{o.resolved_bits}bit-{o.iters}it-seed{o.seed}-{self.device}{extra}"

    @property
    def slug(self) -> str:
        return f"{self.name}_bpp{self.bpp:g}"

    def description(self) -> str:
        if self.options is not None:
            o = self.options
            label = family(self.kind).label
            extra = "".join(f", {k} {v}" for k, v in self.changed().items())
            return (
                f"kancoin {self.encoder} {label}, up to {o.resolved_bits}-bit weights, "
                f"{o.coding} coding, {o.iters} {o.optimizer} steps ({o.qat:.0%} "
                f"quantization-aware), batch {o.batch_size}, seed {o.seed}, {self.device}{extra}; "
                "whole-file bpp"
            )
        from kancoin.eval.baselines import DESCRIPTION

        return DESCRIPTION.get(self.kind, self.kind)

    def key(self) -> dict:
        """What a stored row must match to be reused: every option that changes the result."""
        key = {"kind": self.kind, "bpp": self.bpp}
        if self.options is not None:
            # effort only chooses iters (in the key): a rerun naming iters differently is the same
            opts = {
                k: v for k, v in self.options.as_dict().items()
                if k not in RUN_OPTIONS and k != "effort"
            }  # fmt: skip
            opts["bits"] = self.options.resolved_bits
            key |= {"device": self.device, "encoder": self.encoder, "options": opts}
        return key


# in the setting's name already, or not part of what a row computes
_NAMED = ("bpp", "arch", "bits", "iters", "effort", "seed")
RUN_OPTIONS = EncodeOptions.option_names(run=True)


def make_settings(
    bpps: list[float],
    archs: list[str],
    codecs: list[str],
    options: EncodeOptions | None = None,
    device: str = "auto",
) -> list[Setting]:
    """One setting per (family, rate) with the encoder's ``options`` (bpp and arch replaced),
    then one per (baseline codec, rate). Every option is checked here, before any work."""
    from kancoin.eval.baselines import check_codecs

    for b in bpps:
        if not b > 0:
            raise KancoinError(f"--bpp must be positive, got {b}")
    check_codecs(list(codecs))
    if not archs and not codecs:
        raise KancoinError("nothing to evaluate: give --arch and/or --codec")
    options = options or EncodeOptions()
    out: list[Setting] = []
    if archs:
        from kancoin import __version__
        from kancoin.codec.runtime import resolve_device

        dev = resolve_device(device).type
        for a in dict.fromkeys(archs):
            for b in dict.fromkeys(bpps):
                opts = options.replace(arch=a, bpp=float(b), device=dev, threads=None)
                out.append(Setting(a, float(b), opts, dev, __version__))
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


def _portable(image: Path, out_dir: Path) -> str:
    """The image's path as a row stores it: relative to the results folder, so a folder moved
    or committed together with its images still finds them (absolute only across drives)."""
    try:
        return os.path.relpath(image.resolve(), out_dir.resolve())
    except ValueError:  # another drive (Windows)
        return str(image.resolve())


def image_path(row: dict, out_dir: str | Path) -> Path:
    """Where a row's original image is (``path`` relative to its results folder)."""
    return Path(out_dir) / row["path"]


def row_path(out_dir: Path, image: str, s: Setting) -> Path:
    return out_dir / "rows" / f"{image}__{s.slug}.json"


def _png(pixels: np.ndarray) -> bytes:
    from kancoin.imageio import png_bytes

    return png_bytes(pixels)


def _run_one(
    pixels: np.ndarray, s: Setting, threads: int | None
) -> tuple[dict, bytes, np.ndarray, str]:
    """One (image, setting) through the real path; returns (row, file bytes, decoded, ext)."""
    if s.options is not None:
        from kancoin.codec.encode import encode_pixels
        from kancoin.metrics import mse

        r = encode_pixels(pixels, s.options.replace(threads=threads))

        row = {
            "codec": "kancoin", "arch": s.kind, "architecture": r.spec.describe(),
            "params": r.spec.n_params, "bits": r.bits, "quality": None,
            "coding": r.coding, "payload_bits_per_weight": round(r.payload_bpw, 4),
            "qat_psnr": finite(r.qat_psnr) if r.qat_psnr is not None else None,
            "file_bytes": r.file_bytes, "bpp": r.bpp, "psnr": finite(r.psnr),
            "mse": mse(r.decoded.pixels, pixels), "float_psnr": finite(r.float_psnr),
            "encode_s": round(r.encode_seconds, 3), "decode_s": round(r.decoded.seconds, 3),
            "steps": r.steps, "iters": s.options.iters, "device": r.device,
            "threads": r.threads, "seed": s.options.seed, "spec": r.spec.as_dict(),
            "options": s.key()["options"],
        }  # fmt: skip
        return row, r.data, r.decoded.pixels, "kc"
    from kancoin.eval.baselines import DESCRIPTION, EXT, compress

    b = compress(pixels, s.kind, s.bpp)
    row = {
        "codec": s.kind, "arch": None, "architecture": DESCRIPTION[s.kind],
        "params": None, "bits": None, "quality": finite(b.quality, 3),
        "file_bytes": b.file_bytes, "bpp": b.bpp, "psnr": finite(b.psnr), "mse": b.mse,
        "float_psnr": None, "encode_s": round(b.encode_seconds, 4),
        "decode_s": round(b.decode_seconds, 4), "search_s": round(b.search_seconds, 3),
        "steps": None, "iters": None, "device": "cpu", "threads": 1, "seed": None,
    }  # fmt: skip
    return row, b.data, b.pixels, EXT[s.kind]


def _image_job(
    path: str, settings: list[Setting], out_dir: str, threads: int | None, keep_decoded: bool
) -> list[tuple[dict, bool]]:
    """All settings for one image (a unit of --jobs). Returns [(row, computed)]."""
    from kancoin.imageio import load_image

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
        old = load_row(rp)
        if old is not None and old.get("key") == key:
            results.append((old, False))
            continue
        row, data, decoded, ext = _run_one(pixels, s, threads)
        row = {
            "image": name, "path": _portable(p, out), "height": h, "width": w, "channels": c,
            "setting": s.name, "description": s.description(), "target_bpp": s.bpp, **row,
            "key": key, "file": f"files/{name}__{s.slug}.{ext}", "decoded": None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }  # fmt: skip
        (out / "files").mkdir(parents=True, exist_ok=True)
        write_atomic(out / row["file"], data, force=True)
        if keep_decoded:
            (out / "decoded").mkdir(parents=True, exist_ok=True)
            row["decoded"] = f"decoded/{name}__{s.slug}.png"
            write_atomic(out / row["decoded"], _png(decoded), force=True)
        write_atomic(rp, (json.dumps(row, indent=1) + "\n").encode(), force=True)
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
    options: EncodeOptions | None = None,
    images: str | int | None = None,
    jobs: int = 1,
    device: str = "auto",
    progress: ProgressFn | None = None,
    keep_decoded: tuple[str, ...] | None = None,
) -> EvalReport:
    """Evaluate every image × setting (see the module docstring); returns this run's rows.
    ``options``: the encoder's options for every network setting (bpp and arch replaced)."""
    if jobs < 1:
        raise KancoinError("--jobs must be at least 1")
    settings = make_settings(list(bpps), list(archs), list(codecs), options, device)
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
