"""What `kancoin eval` evaluates: the images of a folder, the settings (a network family with the
encoder's options, or a baseline codec, at one rate each), and the split of the (image,
setting) pairs into shards (``--shard K/N``)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from kancoin.codec.options import EncodeOptions, check_device
from kancoin.errors import KancoinError
from kancoin.nets import family

IMAGE_EXTS = (".png", ".ppm", ".bmp", ".tif", ".tiff")


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
    the encoder's options (``EncodeOptions``, with ``bpp`` and ``arch`` set; ``options.device``
    is the device asked for, resolved where the row is computed) plus the resolved device type
    and the kancoin version."""

    kind: str  # a network family (``--arch``) or a baseline codec
    bpp: float
    options: EncodeOptions | None = None  # nets only
    device: str | None = None  # resolved device type ("cpu"/"cuda"): results differ slightly
    encoder: str | None = None  # nets: kancoin version (rows of an older encoder are redone)

    @property
    def is_net(self) -> bool:
        return self.options is not None

    def resolved(self, device_type: str, device: str | None = None) -> Setting:
        """This setting computed on ``device_type`` (and, for a network, on ``device``)."""
        if self.options is None:
            return self
        opts = self.options if device is None else self.options.replace(device=device)
        return dataclasses.replace(self, device=device_type, options=opts)

    def changed(self) -> dict:
        """The options that differ from the encoder's defaults (besides those in the name)."""
        if self.options is None:
            return {}
        default = EncodeOptions(arch=self.kind)
        return {
            k: v for k, v in self.options.as_dict().items()
            if k not in _NAMED and k not in RUN_OPTIONS and v != getattr(default, k)
        }  # fmt: skip

    def _name(self, device: str | None) -> str:
        if self.options is None:
            return self.kind
        o = self.options
        extra = "".join(
            f"-{k}" if v is True else f"-{k}-{v:g}" if isinstance(v, float) else f"-{k}-{v}"
            for k, v in self.changed().items()
        )
        return f"{self.kind}-{o.resolved_bits}bit-{o.iters}it-seed{o.seed}-{device}{extra}"

    @property
    def name(self) -> str:
        """Setting without the rate: one curve in the summary."""
        return self._name(self.device)

    @property
    def slug(self) -> str:
        return f"{self.name}_bpp{self.bpp:g}"

    @property
    def shard_id(self) -> str:
        """The setting as ``--shard`` splits it: its slug without the device type, which each
        worker resolves, so that every shard splits the same way wherever it runs."""
        return f"{self._name('any')}_bpp{self.bpp:g}"

    def description(self) -> str:
        if self.options is not None:
            o = self.options
            label = family(self.kind).label
            if o.resolved_synthesis:
                label += f" ({o.resolved_synthesis.upper()} synthesis)"
            extra = "".join(
                f", {k} {v}" for k, v in self.changed().items() if k != "synthesis"
            )  # fmt: skip
            return (
                f"kancoin {self.encoder} {label}, up to {o.resolved_bits}-bit weights, "
                f"{o.coding} coding, {o.iters} {o.optimizer} steps ({o.resolved_qat:.0%} "
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
            # a row made under another default synthesis is not this setting's
            opts["synthesis"] = self.options.resolved_synthesis
            key |= {"device": self.device, "encoder": self.encoder, "options": opts}
        return key


# in the setting's name already, or not part of what a row computes
_NAMED = ("bpp", "arch", "bits", "iters", "effort", "seed")
RUN_OPTIONS = EncodeOptions.option_names(run=True)


def device_type(device: str) -> str:
    """The device type a request runs on, resolved in this process (``auto``: CUDA when there
    is one); an unavailable CUDA device is an error here, before any work."""
    from kancoin.codec.runtime import resolve_device

    return resolve_device(device).type


def make_settings(
    bpps: list[float],
    archs: list[str],
    codecs: list[str],
    options: EncodeOptions | None = None,
    device: str = "auto",
    predicted: str | None = None,
) -> list[Setting]:
    """One setting per (family, rate) with the encoder's ``options`` (bpp and arch replaced),
    then one per (baseline codec, rate). Every option is checked here, before any work.

    ``device`` is what the workers resolve; the settings carry the device type it is expected
    to resolve to (``predicted``, else resolved in this process), which keys the rows a rerun
    can reuse."""
    from kancoin.eval.baselines import check_codecs

    for b in bpps:
        if not b > 0:
            raise KancoinError(f"--bpp must be positive, got {b}")
    check_codecs(list(codecs))
    check_device(device)
    if not archs and not codecs:
        raise KancoinError("nothing to evaluate: give --arch and/or --codec")
    options = options or EncodeOptions()
    out: list[Setting] = []
    if archs:
        from kancoin import __version__

        dev = predicted or device_type(device)
        for a in dict.fromkeys(archs):
            for b in dict.fromkeys(bpps):
                opts = options.replace(arch=a, bpp=float(b), device=device, threads=None)
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


_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N), 1 <= K <= N."""
    m = _SHARD.fullmatch(text or "")
    if m is None:
        raise KancoinError(f"--shard must be K/N (e.g. 1/4), got {text!r}")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= k <= n:
        raise KancoinError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
    return k, n


def shard_order(image: str, s: Setting) -> str:
    """A pair's place in the shuffled list that ``--shard`` deals out: a hash of the image's name
    and the setting, so that the split does not depend on the order of the folder listing and
    the settings of one rate do not all fall into one shard."""
    return hashlib.sha1(f"{image}\0{s.shard_id}".encode()).hexdigest()


def select_shard(pairs: list[tuple[Path, Setting]], k: int, n: int) -> list[tuple[Path, Setting]]:
    """Shard K of N: the pairs dealt round-robin over the list ordered by ``shard_order`` (every
    pair in exactly one shard, sizes within one of each other), kept in ``pairs``' order."""
    order = sorted(range(len(pairs)), key=lambda i: shard_order(pairs[i][0].stem, pairs[i][1]))
    mine = {i for j, i in enumerate(order) if j % n == k - 1}
    return [p for i, p in enumerate(pairs) if i in mine]


def keep_decoded_set(value: str | None, paths: list[Path]) -> set[str]:
    """``--keep-decoded``: ``all``, ``none``, or image names (comma list); by default kodim03 and
    kodim23, and every image of a run of at most 2 images."""
    names = {p.stem for p in paths}
    if value is None:
        keep = set(DECODED_IMAGES)
        return keep | names if len(paths) <= 2 else keep
    v = value.strip()
    if v == "all":
        return names
    if v == "none":
        return set()
    chosen = {Path(x.strip()).stem for x in v.split(",") if x.strip()}
    if not chosen:
        raise KancoinError("--keep-decoded must be all, none or image names")
    unknown = sorted(chosen - names)
    if unknown:
        raise KancoinError(f"--keep-decoded: no image {unknown[0]!r} in this run")
    return chosen


# decoded PNGs are kept for these images by default (and for every image of a run of at most 2)
DECODED_IMAGES = ("kodim03", "kodim23")
