"""The autoencoder study's data: what ships (scikit-learn's digits and sample photographs, the
Kodak images cut into patches) and what a user has on disk (a folder of images, an ``.npz``).

Every loader returns a :class:`AEData`: samples (N, C, H, W) float32 in [0, 1], a held-out split
that never shares a source with training (Kodak: whole images held out), labels where the data
has them (for kNN on the latents), and extra test sets (other photographs).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kancoin.errors import KancoinError
from kancoin.imageio import load_image

PATCH = 32  # side of a Kodak / photograph patch (CIFAR's size)
KODAK_TEST = ("kodim21", "kodim22", "kodim23", "kodim24")  # held out: the last 4 of 24
DIGITS_TEST_FRACTION = 0.25  # 1,347 train / 450 test, stratified by class
SPLIT_SEED = 0  # the split is fixed: seeds vary the networks, not the data
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
# Largest study set held in memory (train + test, float32): bigger sets are refused, not swapped
MAX_VALUES = 400_000_000
MAX_SIDE = 64  # a sample is flattened into a dense layer: 64×64×3 = 12,288 inputs at most
NAMED = ("digits", "kodak-patches")


@dataclass
class AEData:
    """A study set. ``x_*``: (N, C, H, W) float32 in [0, 1]; ``y_*``: (N,) int64 or None;
    ``source_*``: (N,) which source (image or file) each sample came from, for the split check;
    ``extra``: further test sets (name -> (M, C, H, W)); ``notes``: the split, said in words."""

    name: str
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray | None = None
    y_test: np.ndarray | None = None
    source_train: np.ndarray | None = None
    source_test: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    notes: str = ""

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def labelled(self) -> bool:
        return self.y_train is not None and self.y_test is not None


def _sklearn():
    try:
        import sklearn.datasets as ds
    except ImportError:
        raise KancoinError(
            "this data set ships with scikit-learn: pip install 'kancoin[study]'"
        ) from None
    return ds


def stratified_split(
    y: np.ndarray, test_fraction: float, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): ``test_fraction`` of each class held out, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(test_fraction * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def digits() -> AEData:
    """scikit-learn's 1,797 8×8 digits (grey levels 0–16), 10 classes: the MNIST stand-in."""
    d = _sklearn().load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    y = d.target.astype(np.int64)
    tr, te = stratified_split(y, DIGITS_TEST_FRACTION)
    return AEData(
        "digits", x[tr], x[te], y[tr], y[te], tr, te,
        notes=f"{len(tr)} train / {len(te)} test digits, stratified by class (split seed "
        f"{SPLIT_SEED})",
    )  # fmt: skip


def patches(pixels: np.ndarray, size: int = PATCH) -> np.ndarray:
    """Non-overlapping size×size patches of an (H, W, C) uint8 image, row-major, the right and
    bottom remainders dropped: (N, C, size, size) float32 in [0, 1]."""
    h, w, c = pixels.shape
    ny, nx = h // size, w // size
    p = pixels[: ny * size, : nx * size].reshape(ny, size, nx, size, c)
    return (p.transpose(0, 2, 4, 1, 3).reshape(ny * nx, c, size, size) / 255.0).astype(
        np.float32
    )


def _rgb(pixels: np.ndarray) -> np.ndarray:
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def sample_photos() -> dict[str, np.ndarray]:
    """scikit-learn's two sample photographs (china, flower; 427×640) as 32×32 patches."""
    ds = _sklearn()
    imgs = ds.load_sample_images()
    return {
        Path(f).stem: patches(np.asarray(im, dtype=np.uint8))
        for f, im in zip(imgs.filenames, imgs.images)
    }


def kodak_patches(folder: str | Path, test_names: tuple[str, ...] = KODAK_TEST) -> AEData:
    """32×32 patches of the Kodak images: train on every image but ``test_names``, test on
    those (whole images held out, so no test patch's image is seen in training); scikit-learn's
    sample photographs as a second test set."""
    folder = Path(folder)
    if not folder.is_dir():
        raise KancoinError(f"{folder}: image folder not found (set KANCOIN_KODAK)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise KancoinError(f"{folder}: holds no images")
    test_set = set(test_names)
    missing = test_set - {p.stem for p in files}
    if missing:
        raise KancoinError(f"{folder}: no test image {', '.join(sorted(missing))}")
    parts: dict[bool, tuple[list, list]] = {False: ([], []), True: ([], [])}
    for i, p in enumerate(files):
        px = patches(_rgb(load_image(p)[0]))
        xs, src = parts[p.stem in test_set]
        xs.append(px)
        src.append(np.full(len(px), i))
    if not parts[False][0]:
        raise KancoinError(f"{folder}: every image is a test image; nothing to train on")
    x_tr, s_tr = (np.concatenate(v) for v in parts[False])
    x_te, s_te = (np.concatenate(v) for v in parts[True])
    data = AEData(
        "kodak-patches", x_tr, x_te, source_train=s_tr, source_test=s_te,
        notes=f"{len(x_tr)} train patches from {len(files) - len(test_set)} images, "
        f"{len(x_te)} test patches from {', '.join(sorted(test_set))}",
    )  # fmt: skip
    try:
        data.extra = {"photos": np.concatenate(list(sample_photos().values()))}
    except KancoinError:
        pass  # without scikit-learn: the Kodak test set alone
    return data


def _as_nchw(x: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3}; uint8 (0–255) or float in
    [0, 1] -> (N, C, H, W) float32 in [0, 1]."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1] in (1, 3)):
        raise KancoinError(
            f"{where}: samples must be (N, H, W), (N, H, W, C) or (N, C, H, W) with 1 or 3 "
            f"channels, not {x.shape}"
        )
    if len(x) == 0:
        raise KancoinError(f"{where}: holds no samples")
    if max(x.shape[2:]) > MAX_SIDE:
        raise KancoinError(
            f"{where}: samples of {x.shape[2]}×{x.shape[3]} are larger than {MAX_SIDE}×"
            f"{MAX_SIDE} (each one is flattened into a dense layer)"
        )
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise KancoinError(f"{where}: samples of dtype {x.dtype} (give uint8 or float)")
    x = x.astype(np.float32)
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise KancoinError(f"{where}: values must be uint8 or floats in [0, 1]")
    return x


def _labels(y, n: int, where: str) -> np.ndarray | None:
    if y is None:
        return None
    y = np.asarray(y).reshape(-1)
    if len(y) != n or not np.issubdtype(y.dtype, np.integer):
        raise KancoinError(f"{where}: labels must be {n} integers, one per sample")
    return y.astype(np.int64)


def _check_size(n_values: int, where: str) -> None:
    if n_values > MAX_VALUES:
        raise KancoinError(
            f"{where}: {n_values:,} values, more than the study holds in memory "
            f"({MAX_VALUES:,}); use a subset"
        )


def _npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Each array's shape, read from its .npy header inside the zip (the data stays on disk)."""
    out = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, _ = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, _, _ = np.lib.format.read_array_header_2_0(f)
            out[info.filename[:-4]] = shape
    return out


def from_npz(path: Path) -> AEData:
    """``x_train``, ``x_test`` (and ``y_train``, ``y_test``) as Keras' mnist.npz and cifar10
    exports name them; or ``x`` (and ``y``), split 80/20 (stratified when labelled)."""
    try:
        for k, shape in _npz_shapes(path).items():  # from the headers: nothing loaded yet
            _check_size(int(np.prod(shape)), f"{path}[{k}]")
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise KancoinError(f"{path}: not a readable .npz ({e})") from None
    if "x_train" in arrays and "x_test" in arrays:
        x_tr = _as_nchw(arrays["x_train"], f"{path}[x_train]")
        x_te = _as_nchw(arrays["x_test"], f"{path}[x_test]")
        if x_tr.shape[1:] != x_te.shape[1:]:
            raise KancoinError(f"{path}: x_train and x_test samples differ in shape")
        y_tr = _labels(arrays.get("y_train"), len(x_tr), f"{path}[y_train]")
        y_te = _labels(arrays.get("y_test"), len(x_te), f"{path}[y_test]")
        if (y_tr is None) != (y_te is None):
            raise KancoinError(f"{path}: labels for one split only (give y_train and y_test)")
        note = f"{len(x_tr)} train / {len(x_te)} test samples (the file's split)"
        return AEData(path.stem, x_tr, x_te, y_tr, y_te, notes=note)
    if "x" not in arrays:
        raise KancoinError(
            f"{path}: holds {', '.join(sorted(arrays)) or 'nothing'}; give x_train and x_test "
            "(y_train, y_test) or x (y)"
        )
    x = _as_nchw(arrays["x"], f"{path}[x]")
    y = _labels(arrays.get("y"), len(x), f"{path}[y]")
    return _split(path.stem, x, y, np.arange(len(x)))


def _split(name: str, x: np.ndarray, y: np.ndarray | None, source: np.ndarray) -> AEData:
    if len(x) < 2:
        raise KancoinError(f"{name}: needs at least 2 samples (one to train, one to test)")
    if y is not None:
        tr, te = stratified_split(y, 0.2)
    else:
        perm = np.random.default_rng(SPLIT_SEED).permutation(len(x))
        n_te = max(1, int(round(0.2 * len(x))))
        tr, te = np.sort(perm[n_te:]), np.sort(perm[:n_te])
    if len(tr) == 0 or len(te) == 0:
        raise KancoinError(f"{name}: too few samples per class to hold some out")
    yt = (y[tr], y[te]) if y is not None else (None, None)
    return AEData(
        name, x[tr], x[te], yt[0], yt[1], source[tr], source[te],
        notes=f"{len(tr)} train / {len(te)} test samples (80/20, split seed {SPLIT_SEED})",
    )  # fmt: skip


def from_folder(folder: Path) -> AEData:
    """A folder of equally sized images, one sample each. Class subfolders (``3/img.png``) give
    labels; ``train/`` and ``test/`` subfolders give the split, else 80/20."""
    splits = {s: folder / s for s in ("train", "test") if (folder / s).is_dir()}
    if len(splits) == 1:
        raise KancoinError(f"{folder}: has a {next(iter(splits))}/ folder but not the other")
    if splits:
        tr = _read_images(splits["train"])
        te = _read_images(splits["test"])
        if tr[0].shape[1:] != te[0].shape[1:]:
            raise KancoinError(f"{folder}: train/ and test/ images differ in size")
        if (tr[1] is None) != (te[1] is None):
            raise KancoinError(f"{folder}: class folders in one of train/ and test/ only")
        classes = sorted(set(tr[2]) | set(te[2]))
        ys = [None if y is None else np.array([classes.index(c) for c in names])
              for y, names in ((tr[1], tr[2]), (te[1], te[2]))]  # fmt: skip
        return AEData(
            folder.name, tr[0], te[0], ys[0], ys[1],
            notes=f"{len(tr[0])} train / {len(te[0])} test images (train/, test/)",
        )  # fmt: skip
    x, y, _ = _read_images(folder)
    return _split(folder.name, x, y, np.arange(len(x)))


def _read_images(folder: Path) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """(x, labels or None, class name per sample): images directly in ``folder`` (no labels), or
    in its subfolders (one class each)."""
    direct = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    subs = sorted(p for p in folder.iterdir() if p.is_dir())
    if direct and subs:
        raise KancoinError(f"{folder}: has images and class folders side by side")
    files: list[tuple[Path, str]] = [(p, "") for p in direct]
    for s in subs:
        files += [(p, s.name) for p in sorted(s.iterdir()) if p.suffix.lower() in IMAGE_EXTS]
    if not files:
        raise KancoinError(f"{folder}: holds no images")
    first = load_image(files[0][0])[0]
    _as_nchw(first[None], str(files[0][0]))  # its shape and size, before the others load
    _check_size(len(files) * first.size, str(folder))
    x = np.empty((len(files), *first.shape), np.uint8)
    for i, (p, _) in enumerate(files):
        px = load_image(p)[0] if i else first
        if px.shape != first.shape:
            raise KancoinError(
                f"{p}: {px.shape[1]}×{px.shape[0]}×{px.shape[2]}, not "
                f"{first.shape[1]}×{first.shape[0]}×{first.shape[2]} as {files[0][0].name} "
                "(a study set's images are all one size)"
            )
        x[i] = px
    names = [c for _, c in files]
    classes = [s.name for s in subs]
    y = np.array([classes.index(c) for c in names], np.int64) if subs else None
    return _as_nchw(x, str(folder)), y, names


def load(data: str, kodak_dir: str | Path | None = None) -> AEData:
    """``digits``, ``kodak-patches`` (from ``kodak_dir``), a folder of images or an ``.npz``."""
    if data == "digits":
        return digits()
    if data == "kodak-patches":
        if kodak_dir is None:
            raise KancoinError("kodak-patches: no Kodak folder (set KANCOIN_KODAK)")
        return kodak_patches(kodak_dir)
    path = Path(data)
    if not path.exists():
        raise KancoinError(f"{data}: not {' or '.join(NAMED)}, and no such file or folder")
    if path.is_dir():
        return from_folder(path)
    if path.suffix.lower() == ".npz":
        return from_npz(path)
    raise KancoinError(f"{data}: give a folder of images or an .npz file")
