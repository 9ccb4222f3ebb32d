"""Images in and out: any image Pillow reads as uint8 (H, W, C), PNG bytes out, size limits."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from kancoin.errors import KancoinError

MAX_SIDE = 16384  # largest image side the format (and the codec) accepts
MAX_PIXELS = 64 * 1024 * 1024


def load_image(path: str | Path) -> tuple[np.ndarray, str | None]:
    """Read any image Pillow reads as uint8 (H, W, C), C = 3 (RGB) or 1 (grey).

    Returns the pixels and a one-line notice when the image was converted (alpha dropped,
    palette expanded, 16-bit reduced), else None.
    """
    path = Path(path)
    if not path.exists():
        raise KancoinError(f"{path}: no such file")
    if path.is_dir():
        raise KancoinError(f"{path}: is a directory, not an image")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise KancoinError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS or w > MAX_SIDE or h > MAX_SIDE:
                raise KancoinError(
                    f"{path}: image is {w}x{h}; the limit is {MAX_SIDE} per side and "
                    f"{MAX_PIXELS} pixels"
                )
            if w == 0 or h == 0:
                raise KancoinError(f"{path}: image has zero size ({w}x{h})")
            img.load()
    except KancoinError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise KancoinError(
            f"{path}: image is too large; the limit is {MAX_SIDE} per side and {MAX_PIXELS} pixels"
        ) from None
    except UnidentifiedImageError:
        raise KancoinError(f"{path}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise KancoinError(f"{path}: cannot decode image ({e})") from None
    return _to_uint8(img)


def _to_uint8(img: Image.Image) -> tuple[np.ndarray, str | None]:
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8).copy(), None
    if mode == "L":
        return np.asarray(img, dtype=np.uint8)[..., None].copy(), None
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8)
        return grey[..., None], f"note: {mode} image reduced to 8-bit greyscale"
    if mode == "LA" or (mode == "P" and _palette_is_grey(img) and "transparency" not in img.info):
        note = "alpha channel dropped" if mode == "LA" else "palette expanded"
        grey = np.asarray(img.convert("L"), dtype=np.uint8)[..., None].copy()
        return grey, f"note: {mode} image converted to 8-bit greyscale ({note})"
    note = "alpha channel dropped" if "A" in mode or "transparency" in img.info else "converted"
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    return rgb, f"note: {mode} image converted to 8-bit RGB ({note})"


def _palette_is_grey(img: Image.Image) -> bool:
    pal = img.getpalette() or []
    triples = [pal[i : i + 3] for i in range(0, len(pal), 3)]
    return bool(triples) and all(r == g == b for r, g, b in triples)


def png_bytes(pixels: np.ndarray) -> bytes:
    img = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def check_pixels(pixels: np.ndarray) -> np.ndarray:
    """An image array as the encoder takes it: uint8 (H, W, C), C = 3 or 1 (a 2-D array is grey),
    within the size limits; KancoinError otherwise."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
        raise KancoinError(
            f"an image array must be uint8 (H, W, 3) or (H, W, 1), got {pixels.dtype} "
            f"{tuple(pixels.shape)}"
        )
    h, w, _ = pixels.shape
    if h == 0 or w == 0:
        raise KancoinError(f"image has zero size ({w}x{h})")
    if h * w > MAX_PIXELS or w > MAX_SIDE or h > MAX_SIDE:
        raise KancoinError(
            f"image is {w}x{h}; the limit is {MAX_SIDE} per side and {MAX_PIXELS} pixels"
        )
    return np.ascontiguousarray(pixels)
