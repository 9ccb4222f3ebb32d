"""Images in and out: any image Pillow reads as uint8 (H, W, C), PNG bytes out, size limits."""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from kancoin.errors import KancoinError

MAX_SIDE = 16384  # largest image side the format (and the codec) accepts
MAX_PIXELS = 64 * 1024 * 1024


def load_image(path: str | Path, first_frame: bool = False) -> tuple[np.ndarray, str | None]:
    """Read any image Pillow reads as uint8 (H, W, C), C = 3 (RGB) or 1 (grey), upright (its
    EXIF orientation applied).

    An image of several frames (animated GIF, APNG, multi-page TIFF) is refused unless
    ``first_frame`` (then frame 0 is read). Returns the pixels and a one-line notice of what was
    changed (EXIF orientation applied, frame 0 taken, alpha dropped, palette expanded, 16-bit
    reduced), else None.
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
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            check_size(*img.size, f"{path}: ")
            frames = _frame_count(img)
            if frames > 1:
                if not first_frame:
                    raise KancoinError(
                        f"{path}: has {frames} frames; kancoin encodes one image "
                        "(--first-frame takes frame 0)"
                    )
                img.seek(0)
                notes.append(f"{frames} frames, frame 0 taken")
            bits, raw = _source_depth(img)
            img.load()
            img, turned = _upright(img)
            if turned:
                notes.append(turned)
    except KancoinError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise KancoinError(
            f"{path}: image is too large{_bomb_size(e)}; the limit is {MAX_SIDE} per side and "
            f"{MAX_PIXELS} pixels"
        ) from None
    except UnidentifiedImageError:
        raise KancoinError(f"{path}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise KancoinError(f"{path}: cannot decode image ({e})") from None
    pixels, converted = _to_uint8(img, bits, raw)
    if converted:
        notes.append(converted)
    return pixels, ("note: " + "; ".join(notes)) if notes else None


# formats whose extra frames belong to one picture (an MPO's previews or second view, a PSD's
# layers): the image Pillow opens is the whole picture, so they are not refused
_ONE_PICTURE = ("MPO", "PSD")


def _frame_count(img: Image.Image) -> int:
    if img.format in _ONE_PICTURE:
        return 1
    try:
        return max(1, int(getattr(img, "n_frames", 1)))
    except (TypeError, ValueError):
        return 1


def _source_depth(img: Image.Image) -> tuple[int, str]:
    """Bits per channel the file stores and the decoder's raw mode (read before ``load()``,
    which drops the decoder's tiles). 8 bits unless the raw mode (``RGB;16B``, ``RGBA;16L``,
    ``LA;16B``: 16 bits per channel; not BMP's packed ``BGR;16``), a PPM's maximum value or a
    TIFF's BitsPerSample says more."""
    bits, first = 8, ""
    for tile in img.tile:
        args = tile[3]
        raw = args if isinstance(args, str) else ""
        if isinstance(args, tuple) and args:
            raw = args[0] if isinstance(args[0], str) else ""
            maxval = args[1] if len(args) > 1 else None
            if img.format == "PPM" and isinstance(maxval, int) and maxval > 255:
                bits = max(bits, 16)
        first = first or raw
        m = re.search(r";(16|32)[BLN]$", raw)
        if m:
            bits = max(bits, int(m.group(1)))
    tags = getattr(img, "tag_v2", None)
    if tags is not None:
        bps = tags.get(258)
        values = bps if isinstance(bps, tuple) else (bps,) if isinstance(bps, int) else ()
        if values and max(values) > 8:
            bits = max(bits, int(max(values)))
    return bits, first


_TURNS = {
    2: "mirrored", 3: "rotated", 4: "mirrored", 5: "rotated and mirrored", 6: "rotated",
    7: "rotated and mirrored", 8: "rotated",
}  # fmt: skip


def _upright(img: Image.Image) -> tuple[Image.Image, str | None]:
    """The image turned as its EXIF orientation says (phone photos are often stored on their
    side), with a notice; unchanged when it has none. Unreadable EXIF is no orientation."""
    try:
        orientation = img.getexif().get(0x0112)
    except Exception:  # metadata of any shape: never a reason to refuse the pixels
        return img, "EXIF unreadable, orientation not applied"
    if orientation not in _TURNS:
        return img, None
    img = ImageOps.exif_transpose(img)
    w, h = img.size
    return img, f"EXIF orientation {orientation} applied ({_TURNS[orientation]} to {w}x{h})"


def _bomb_size(e: Exception) -> str:
    """' (N pixels)' where Pillow's message gives the image's size, else ''."""
    m = re.search(r"\((\d+) pixels\)", str(e))
    return f" ({int(m.group(1))} pixels)" if m else ""


def _to_uint8(img: Image.Image, bits: int = 8, raw: str = "") -> tuple[np.ndarray, str | None]:
    """Pixels as uint8 and what was converted (without the ``note: `` prefix), else None."""
    mode = img.mode
    deep = f"{bits}-bit " if bits > 8 else ""
    if mode == "RGB":
        rgb = np.asarray(img, dtype=np.uint8).copy()
        if not deep:
            return rgb, None
        return rgb, f"{3 * bits}-bit RGB image ({bits} bits per channel) reduced to 8-bit RGB"
    if mode == "L":
        return np.asarray(img, dtype=np.uint8)[..., None].copy(), None
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8)
        return grey[..., None], f"{mode} image reduced to 8-bit greyscale"
    # a 16-bit grey + alpha PNG opens as RGBA (grey in R, G and B): keep it grey
    grey_alpha = mode == "RGBA" and raw.startswith("LA;")
    if (
        mode == "LA"
        or grey_alpha
        or (mode == "P" and _palette_is_grey(img) and "transparency" not in img.info)
    ):
        note = "alpha channel dropped" if mode != "P" else "palette expanded"
        what = "LA" if grey_alpha else mode
        grey = np.asarray(img.convert("L"), dtype=np.uint8)[..., None].copy()
        return grey, f"{deep}{what} image converted to 8-bit greyscale ({note})"
    note = "alpha channel dropped" if "A" in mode or "transparency" in img.info else "converted"
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    return rgb, f"{deep}{mode} image converted to 8-bit RGB ({note})"


def _palette_is_grey(img: Image.Image) -> bool:
    pal = img.getpalette() or []
    triples = [pal[i : i + 3] for i in range(0, len(pal), 3)]
    return bool(triples) and all(r == g == b for r, g, b in triples)


PNG_COMPRESS_LEVEL = 3  # zlib level: 3× faster than Pillow's default 6, files ~11 % larger


def png_bytes(pixels: np.ndarray) -> bytes:
    """uint8 (H, W, C) -> PNG file bytes (lossless: the pixels, whatever the level)."""
    img = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
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
    check_size(pixels.shape[1], pixels.shape[0])
    return np.ascontiguousarray(pixels)


def check_size(width: int, height: int, where: str = "") -> None:
    """KancoinError (one line, prefixed by ``where``) for an image past the size limits or
    of zero size."""
    if width * height > MAX_PIXELS or width > MAX_SIDE or height > MAX_SIDE:
        raise KancoinError(
            f"{where}image is {width}x{height}; the limit is {MAX_SIDE} per side and "
            f"{MAX_PIXELS} pixels"
        )
    if width == 0 or height == 0:
        raise KancoinError(f"{where}image has zero size ({width}x{height})")
