"""`kancoin eval`: run the codec (and Pillow baselines) over a folder of images, resumably.

Images: ``images_dir`` if given, else the environment variable ``KANCOIN_KODAK``, else
``<repo>/../shared/data/kodak``, else ``./data/kodak``. Every ``*.png`` (also .ppm, .bmp, .tif)
in the folder is an image, named by its stem (``kodim03``). ``images`` picks a subset: a comma
list of names (``"kodim03,kodim23"``) or an integer N (the first N in name order).

Every (image, setting) pair runs the real path: a network is fitted, quantized and serialised by
``encode_pixels`` and its PSNR and MS-SSIM are measured on what the decoder produces from the
file bytes; a baseline is encoded by Pillow at the highest quality that fits and decoded from
its bytes.

The unit of work is one (image, setting) pair (``Job``), computed by ``compute`` wherever it
runs (this process, a local process pool, a Ray worker: ``kancoin.eval.executors``), which
resolves the device there and returns the row and its files; only this process (the driver)
writes them. ``shard=(K, N)`` runs part K of N of the pairs (``settings.select_shard``).

Output folder (``out_dir``):
- ``rows/<image>__<setting>.json``: one row per (image, setting), written atomically. A rerun
  skips a pair whose row exists and whose ``key`` (every setting that affects the result, plus
  the image's SHA-1) matches, so an interrupted run resumes where it stopped. An image that
  cannot be read or encoded (KancoinError) gives an error row (``"error"``: the message;
  ``psnr`` and ``bpp`` None; no file) and the run goes on; error rows are left out of the
  outputs below and redone on a rerun. Each row records where it ran (``environment``).
- ``files/``: the encoded files; ``decoded/``: decoded PNGs (``keep_decoded``).
- ``results.csv`` / ``results.json``: all good rows in ``rows/`` (per image).
- ``summary.json`` (a list of every setting's entry) and ``summary/<setting>.json`` (one entry
  each, the files CompressAI's plot tool reads): ``{"name", "description", "results": {"bpp",
  "psnr-rgb", "ms-ssim-rgb", "ms-ssim-db", "psnr-of-mean-mse", "n_images", ...}}``, lists over
  rates. ``psnr-rgb`` is the mean of per-image PSNR.
- ``compare_0.3bpp.csv`` / ``.md``: per image vs published COIN and KAN-COIN at 0.3 bpp.
- ``bdrate.json`` / ``.csv`` / ``.md`` with an anchor (``kancoin.eval.bdrate``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kancoin.errors import KancoinError
from kancoin.eval.reports import finite, load_row, load_rows, write_outputs
from kancoin.eval.settings import (  # noqa: F401 - the names callers know from this module
    DECODED_IMAGES,
    IMAGE_EXTS,
    RUN_OPTIONS,
    Setting,
    default_images_dir,
    keep_decoded_set,
    list_images,
    make_settings,
    parse_shard,
    select_shard,
)
from kancoin.fileio import write_atomic

ProgressFn = Callable[[str], None]
EXECUTORS = ("local", "ray")


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
            # the family's own figures (the latent encoder's λ, dead zone, estimated and coded
            # bits): where a file's rate control went, read from the row alone
            "encoder": dict(r.extra),
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


def _quality(decoded: np.ndarray, pixels: np.ndarray) -> dict:
    """MS-SSIM of the decoded image (None below 161 pixels a side, where it is undefined)."""
    from kancoin.metrics import MS_SSIM_MIN_SIDE, ms_ssim, ms_ssim_db

    if decoded.shape != pixels.shape or min(pixels.shape[:2]) < MS_SSIM_MIN_SIDE:
        return {"ms_ssim": None, "ms_ssim_db": None}
    v = ms_ssim(decoded, pixels)
    return {"ms_ssim": finite(v, 6), "ms_ssim_db": finite(ms_ssim_db(v))}


@dataclass(frozen=True)
class Job:
    """One (image, setting) pair to compute: all a worker needs, besides the image's bytes where
    it cannot read ``path`` (another machine)."""

    path: str  # the image file, as the driver sees it
    portable: str  # the row's "path": relative to the results folder
    setting: Setting  # with the device type the driver expects the worker to resolve
    keep_decoded: bool
    threads: int | None  # CPU threads of an encode (None: all usable cores)
    version: str  # the driver's kancoin version: a worker running another one refuses

    @property
    def image(self) -> str:
        return Path(self.path).stem


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def error_row(job: Job, message: str, setting: Setting | None = None, sha=None, shape=None):
    """The row of a pair that could not be computed: ``"error"`` (one line), no PSNR, bpp or
    file; left out of the reports and redone on a rerun."""
    s = setting or job.setting
    h, w, c = shape if shape is not None else (None, None, None)
    return {
        "image": job.image, "path": job.portable, "height": h, "width": w, "channels": c,
        "setting": s.name, "description": s.description(), "target_bpp": s.bpp,
        "codec": "kancoin" if s.is_net else s.kind, "arch": s.kind if s.is_net else None,
        "bpp": None, "psnr": None, "error": " ".join(str(message).split()),
        "key": {**s.key(), "image_sha1": sha}, "file": None, "decoded": None, "created": _now(),
    }  # fmt: skip


def _device(request: str, slot: int):
    """Resolve the device in the worker: ``auto`` is CUDA when there is one; ``cuda`` (or an
    ``auto`` that is CUDA) takes GPU ``slot`` mod the GPU count when there are several."""
    import torch

    from kancoin.codec.runtime import resolve_device

    dev = resolve_device(request)
    if dev.type == "cuda" and dev.index is None and torch.cuda.device_count() > 1:
        dev = torch.device(f"cuda:{slot % torch.cuda.device_count()}")
    return dev


def _load(job: Job, data: bytes | None):
    """(pixels, sha) of the job's image: read from ``job.path``, or decoded from ``data``."""
    from kancoin.imageio import load_image

    if data is None:
        p = Path(job.path)
        try:
            data = p.read_bytes()
        except OSError as e:
            raise KancoinError(f"{p}: cannot read ({e.strerror or e})") from None
        sha = hashlib.sha1(data).hexdigest()[:16]
        return load_image(p)[0], sha
    sha = hashlib.sha1(data).hexdigest()[:16]
    with tempfile.TemporaryDirectory(prefix="kancoin-eval-") as d:
        p = Path(d) / Path(job.path).name  # the same name: messages name the image
        p.write_bytes(data)
        return load_image(p)[0], sha


def compute(job: Job, data: bytes | None = None, slot: int = 0) -> tuple[dict, dict[str, bytes]]:
    """Compute one row where this runs: check the kancoin version, resolve the device, load
    the image (``data``: its bytes, for a worker that cannot read ``job.path``), encode and
    decode, measure. Returns (row, {path in the results folder: bytes}); writes nothing.
    A KancoinError (an unreadable image, an impossible rate, no CUDA) is an error row."""
    from kancoin import __version__
    from kancoin.eval.provenance import environment

    s, sha, shape = job.setting, None, None
    try:
        if job.version != __version__:
            raise KancoinError(
                f"this worker runs kancoin {__version__}, the driver {job.version}: install the "
                "same version everywhere"
            )
        device = None
        if s.is_net:
            dev = _device(s.options.device, slot)
            device = str(dev)
            s = s.resolved(dev.type, device)
        pixels, sha = _load(job, data)
        shape = pixels.shape
        row, blob, decoded, ext = _run_one(pixels, s, job.threads)
    except KancoinError as e:
        return error_row(job, str(e), s, sha, shape), {}
    h, w, c = shape
    name = f"{job.image}__{s.slug}"
    row = {
        "image": job.image, "path": job.portable, "height": h, "width": w, "channels": c,
        "setting": s.name, "description": s.description(), "target_bpp": s.bpp,
        **row, **_quality(decoded, pixels), "environment": environment(device),
        "key": {**s.key(), "image_sha1": sha}, "file": f"files/{name}.{ext}", "decoded": None,
        "created": _now(),
    }  # fmt: skip
    files = {row["file"]: blob}
    if job.keep_decoded:
        row["decoded"] = f"decoded/{name}.png"
        files[row["decoded"]] = _png(decoded)
    return row, files


def store(out: Path, row: dict, files: dict[str, bytes]) -> Path:
    """Write a computed row's files, then the row (atomically, the row last: a row on disk
    always has its files)."""
    for rel, blob in files.items():
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(p, blob, force=True)
    rp = out / "rows" / f"{row['image']}__{row['setting']}_bpp{row['target_bpp']:g}.json"
    write_atomic(rp, (json.dumps(row, indent=1) + "\n").encode(), force=True)
    return rp


@dataclass
class EvalReport:
    out_dir: Path
    rows: list[dict]  # this run's rows (computed or reused), in image × setting order
    computed: int
    skipped: int
    settings: list[Setting]
    summary: list[dict] = field(default_factory=list)  # over every good row in out_dir
    shard: tuple[int, int] | None = None
    total: int = 0  # pairs of the whole run (every shard)
    bdrate: dict | None = None

    @property
    def failed(self) -> list[dict]:
        """This run's error rows (an image that could not be read or encoded)."""
        return [r for r in self.rows if r.get("error")]


def _image_sha(p: Path) -> tuple[str | None, str | None]:
    try:
        return hashlib.sha1(p.read_bytes()).hexdigest()[:16], None
    except OSError as e:
        return None, f"{p}: cannot read ({e.strerror or e})"


def _keep_arg(keep_decoded) -> str | None:
    if keep_decoded is None or isinstance(keep_decoded, str):
        return keep_decoded
    names = [str(x) for x in keep_decoded]
    return ",".join(names) if names else "none"


def run_eval(
    images_dir: str | Path | None = None,
    out_dir: str | Path = "results",
    bpps=(0.3,),
    archs=("latent",),
    codecs=(),
    options=None,
    images: str | int | None = None,
    jobs: int = 1,
    device: str = "auto",
    progress: ProgressFn | None = None,
    keep_decoded: str | Iterable[str] | None = None,
    shard: tuple[int, int] | str | None = None,
    executor: str = "local",
    address: str | None = None,
    gpus_per_job: float = 0.0,
    retries: int = 2,
    anchor: str | None = None,
    anchor_setting: str | None = None,
) -> EvalReport:
    """Evaluate every image × setting (see the module docstring); returns this run's rows.
    ``options``: the encoder's options (``EncodeOptions``) for every network setting (bpp and
    arch replaced). ``executor``: ``local`` (``jobs`` processes) or ``ray`` (one task per pair on
    the cluster at ``address``, ``gpus_per_job`` GPUs each, ``retries`` retries of a task that
    crashed). ``anchor``: also the BD-rates of every setting against this curve (a setting, a
    published curve, or a path to another result set, ``anchor_setting`` picking one of its
    curves), checked before any work."""
    from kancoin import __version__
    from kancoin.eval import executors

    if jobs < 1:
        raise KancoinError("--jobs must be at least 1")
    if executor not in EXECUTORS:
        raise KancoinError(f"--executor must be local or ray, got {executor!r}")
    if isinstance(shard, str):
        shard = parse_shard(shard)
    elif shard is not None:
        shard = parse_shard(f"{shard[0]}/{shard[1]}")
    predicted = None
    if executor == "ray":
        predicted = executors.check_ray(device, jobs, gpus_per_job, retries, address)
    settings = make_settings(list(bpps), list(archs), list(codecs), options, device, predicted)
    paths = list_images(images_dir, images)
    keep = keep_decoded_set(_keep_arg(keep_decoded), paths)
    out = Path(out_dir)
    try:
        (out / "rows").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise KancoinError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    if anchor:
        from kancoin.eval.bdrate import check_anchor

        here = {r["setting"] for r in load_rows(out)} if (out / "rows").is_dir() else set()
        check_anchor(anchor, [s.name for s in settings] + sorted(here), anchor_setting)
    pairs = [(p, s) for p in paths for s in settings]
    total = len(pairs)
    if shard is not None:
        pairs = select_shard(pairs, *shard)
    threads = 1 if jobs > 1 or executor == "ray" else None
    bar = Progress(len(pairs), progress)
    results: dict[int, tuple[dict, bool]] = {}
    decided: dict[int, tuple[dict, bool]] = {}  # (row, computed) known without a worker
    todo: list[tuple[int, Job]] = []
    shas = {p: _image_sha(p) for p in dict.fromkeys(p for p, _ in pairs)}
    for i, (p, s) in enumerate(pairs):
        job = Job(str(p), _portable(p, out), s, p.stem in keep, threads, __version__)
        sha, failed = shas[p]
        if failed is not None:  # unreadable here: an error row, no worker needed
            decided[i] = (error_row(job, failed), True)
            continue
        old = load_row(row_path(out, p.stem, s))
        key = {**s.key(), "image_sha1": sha}
        if old is not None and old.get("key") == key and not old.get("error"):
            decided[i] = (old, False)
            continue
        todo.append((i, job))
    bar.start(len(todo))

    def settle(i: int) -> None:
        row, computed = results[i] = decided[i]
        if computed:
            store(out, row, {})
        bar.row(row, computed)

    def done(i: int, row: dict, files: dict[str, bytes]) -> None:
        store(out, row, files)
        results[i] = (row, True)
        bar.row(row, True)

    if executor == "local" and (jobs == 1 or len(todo) <= 1):  # in order, one at a time
        waiting = dict(todo)
        for i in range(len(pairs)):
            if i in decided:
                settle(i)
            else:
                executors.run_serial([(i, waiting[i])], done)
    else:  # the rows known first, then the others as they finish
        for i in sorted(decided):
            settle(i)
        if executor == "ray":
            executors.run_ray(todo, done, address, gpus_per_job, retries)
        else:
            executors.run_pool(todo, done, jobs)
    rows = [results[i][0] for i in range(len(pairs))]
    computed = sum(results[i][1] for i in range(len(pairs)))
    summary = write_outputs(out)
    report = EvalReport(out, rows, computed, len(rows) - computed, settings, summary, shard, total)
    if anchor:
        from kancoin.eval.bdrate import write_bdrate

        report.bdrate = write_bdrate(out, summary, anchor, anchor_setting)
    return report


@dataclass
class FolderReport:
    out_dir: Path
    rows: list[dict]  # every row in the folder, error rows included
    summary: list[dict]
    bdrate: dict | None = None

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r.get("error")]


def report_only(
    out_dir: str | Path, anchor: str | None = None, anchor_setting: str | None = None
) -> FolderReport:
    """The report of the rows already in ``out_dir`` (every shard's), without encoding
    anything: results.csv/json, the summaries, the comparison, and the BD-rates with
    ``anchor``."""
    out = Path(out_dir)
    if not (out / "rows").is_dir():
        raise KancoinError(f"{out}: not a results folder of `kancoin eval` (no rows/)")
    rows = load_rows(out, errors=True)
    if not rows:
        raise KancoinError(f"{out}: no rows in {out / 'rows'}")
    summary = write_outputs(out)
    report = FolderReport(out, rows, summary)
    if anchor:
        from kancoin.eval.bdrate import write_bdrate

        report.bdrate = write_bdrate(out, summary, anchor, anchor_setting)
    return report


def _duration(s: float) -> str:
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """One line per row: ``[rows done/total, ETA] image setting @ rate: result``; the ETA from
    the rows computed so far (their throughput, whatever the parallelism)."""

    def __init__(self, total: int, say: ProgressFn | None) -> None:
        self.total, self.say, self.n = total, say, 0
        self.todo, self.computed, self.t0 = 0, 0, time.monotonic()

    def start(self, todo: int) -> None:
        self.todo, self.computed, self.t0 = todo, 0, time.monotonic()

    def row(self, row: dict, computed: bool) -> None:
        self.n += 1
        eta = ""
        if computed and self.todo:
            self.computed += 1
            left = self.todo - self.computed
            if left > 0:
                per = (time.monotonic() - self.t0) / self.computed
                eta = f", ETA {_duration(per * left)}"
        if self.say is not None:
            self.say(_progress_line(f"{self.n}/{self.total}{eta}", row, computed))


def _progress_line(count: str, row: dict, computed: bool) -> str:
    head = f"[{count}] {row['image']} {row['setting']} @ {row['target_bpp']:g} bpp: "
    if row.get("error"):
        return head + f"error: {row['error']}"
    what = "done" if computed else "skip (already in rows/)"
    psnr = "–" if row["psnr"] is None else f"{row['psnr']:.2f}"
    return head + f"{row['bpp']:.4f} bpp, {psnr} dB, {what}"
