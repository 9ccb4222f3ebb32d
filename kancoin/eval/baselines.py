"""Classical baselines through Pillow: JPEG, WebP, JPEG 2000 (and AVIF where Pillow has it).

Each codec is run at the highest quality whose *real* encoded file is <= the target bpp
(bpp = 8 × bytes / (H × W), the whole file), and PSNR is measured on the bytes decoded by Pillow.

- JPEG: bisection over quality 1..95, ``optimize=True``.
- WebP: ``method=6``, bisection over quality 0..100.
- JPEG 2000 (OpenJPEG): irreversible wavelet, colour transform ``mct=1``, one quality layer at a
  compression ratio found by bisection (``quality_mode="rates"``); the real size is checked.
- AVIF: bisection over quality 0..100 (default speed).

The bisection keeps the invariant "lo fits, hi does not", so the quality returned fits and
quality + 1 (one step finer) was encoded and does not.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, features

from kancoin.errors import KancoinError
from kancoin.metrics import bpp as bpp_of
from kancoin.metrics import mse, psnr_from_mse

CODECS = ("jpeg", "webp", "jpeg2000", "avif")
EXT = {"jpeg": "jpg", "webp": "webp", "jpeg2000": "jp2", "avif": "avif"}
DESCRIPTION = {
    "jpeg": "JPEG (Pillow/libjpeg, optimize=True, quality bisection 1-95)",
    "webp": "WebP (Pillow/libwebp, method=6, quality bisection 0-100)",
    "jpeg2000": "JPEG 2000 (Pillow/OpenJPEG, irreversible, mct=1, rate bisection)",
    "avif": "AVIF (Pillow, quality bisection 0-100)",
}
_FEATURE = {"jpeg": "jpg", "webp": "webp", "jpeg2000": "jpg_2000", "avif": "avif"}


def available(codec: str) -> bool:
    if codec not in CODECS:
        return False
    try:
        return bool(features.check(_FEATURE[codec]))
    except ValueError:  # feature unknown to this Pillow
        return False


def available_codecs() -> list[str]:
    return [c for c in CODECS if available(c)]


def check_codecs(codecs: list[str]) -> None:
    for c in codecs:
        if c not in CODECS:
            raise KancoinError(f"unknown --codec {c!r} (one of {', '.join(CODECS)})")
        if not available(c):
            raise KancoinError(f"--codec {c}: this Pillow build has no {c} support")


@dataclass
class BaselineResult:
    codec: str
    quality: float  # quality (JPEG/WebP/AVIF) or compression ratio (JPEG 2000)
    data: bytes
    pixels: np.ndarray  # decoded uint8 (H, W, C)
    psnr: float
    mse: float
    encode_seconds: float  # one encode at the chosen setting
    decode_seconds: float
    search_seconds: float  # the whole search
    tries: int
    height: int = 0
    width: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def file_bytes(self) -> int:
        return len(self.data)

    @property
    def bpp(self) -> float:
        return bpp_of(len(self.data), self.height, self.width)


def _to_image(pixels: np.ndarray) -> Image.Image:
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        return Image.fromarray(pixels[:, :, 0], "L")
    return Image.fromarray(pixels, "RGB")


def _encode(img: Image.Image, codec: str, q: float) -> bytes:
    buf = io.BytesIO()
    if codec == "jpeg":
        img.save(buf, "JPEG", quality=int(q), optimize=True)
    elif codec == "webp":
        img.save(buf, "WEBP", quality=int(q), method=6)
    elif codec == "jpeg2000":
        img.save(
            buf, "JPEG2000", irreversible=True, mct=1 if img.mode == "RGB" else 0,
            quality_mode="rates", quality_layers=[float(q)],
        )  # fmt: skip
    elif codec == "avif":
        img.save(buf, "AVIF", quality=int(q))
    else:  # pragma: no cover - checked before
        raise KancoinError(f"unknown codec {codec!r}")
    return buf.getvalue()


def decode_image(data: bytes, channels: int) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    img = img.convert("L" if channels == 1 else "RGB")
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None].copy() if arr.ndim == 2 else arr.copy()


def _bisect_int(fits: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """Highest q in [lo, hi] with fits(q), assuming fits is monotone (decreasing in q)."""
    if not fits(lo):
        return None
    if fits(hi):
        return hi
    while hi - lo > 1:  # invariant: fits(lo), not fits(hi)
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _bisect_ratio(
    fits: Callable[[float], bool], start: float, rel_tol: float = 2e-3
) -> float | None:
    """Smallest compression ratio (best quality) that fits, by bisection in log space."""
    hi = start  # a ratio that fits
    for _ in range(60):
        if fits(hi):
            break
        hi *= 1.25
    else:
        return None
    lo = hi
    for _ in range(60):  # a ratio that does not fit (or ratio 1: lossless-ish, the best)
        lo = lo / 1.25
        if lo <= 1.0:
            lo = 1.0
            if fits(lo):
                return lo
            break
        if not fits(lo):
            break
    while hi / lo > 1 + rel_tol:
        mid = (lo * hi) ** 0.5
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return hi


def compress(pixels: np.ndarray, codec: str, target_bpp: float) -> BaselineResult:
    """Highest-quality encoding of pixels (uint8 H×W×C) with codec whose file is <= target_bpp."""
    check_codecs([codec])
    if not target_bpp > 0:
        raise KancoinError(f"--bpp must be positive, got {target_bpp}")
    h, w, c = pixels.shape
    budget = int(target_bpp * h * w // 8)  # whole bytes that fit in the budget
    img = _to_image(pixels)
    cache: dict[float, tuple[bytes, float]] = {}
    t0 = time.perf_counter()

    def fits(q: float) -> bool:
        if q not in cache:
            t = time.perf_counter()
            data = _encode(img, codec, q)
            cache[q] = (data, time.perf_counter() - t)
        return len(cache[q][0]) <= budget

    if codec == "jpeg":
        q = _bisect_int(fits, 1, 95)
    elif codec in ("webp", "avif"):
        q = _bisect_int(fits, 0, 100)
    else:  # JPEG 2000: the ratio is relative to 8 bits per sample
        q = _bisect_ratio(fits, 8.0 * c / target_bpp)
    search = time.perf_counter() - t0
    if q is None:
        raise KancoinError(
            f"{codec}: no quality fits {target_bpp:g} bpp ({budget} bytes) on a {w}x{h} image"
        )
    data, enc_s = cache[q]
    t = time.perf_counter()
    dec = decode_image(data, c)
    dec_s = time.perf_counter() - t
    m = mse(dec, pixels)
    return BaselineResult(
        codec=codec, quality=q, data=data, pixels=dec, psnr=psnr_from_mse(m), mse=m,
        encode_seconds=enc_s, decode_seconds=dec_s, search_seconds=search, tries=len(cache),
        height=h, width=w,
    )  # fmt: skip


def encoded_size(pixels: np.ndarray, codec: str, quality: float) -> int:
    """Bytes of one encoding at a given quality (for tests and plots)."""
    return len(_encode(_to_image(pixels), codec, quality))
