"""kancoin: KAN implicit neural representations as an image codec.

    >>> import kancoin
    >>> enc = kancoin.encode("img.png", bpp=0.3)        # or a uint8 (H, W, C) array
    >>> enc.psnr, enc.bpp                                # measured by decoding enc.data
    >>> pixels = kancoin.decode(enc.data)                # uint8 (H, W, C) numpy array

Importing kancoin is light: torch, numba and the codec load on the first call, and
``kancoin.decode`` loads no training code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from kancoin.codec.encode import EncodeResult

__version__ = "0.4.2"
__all__ = ["__version__", "decode", "encode"]


def encode(
    image: str | Path | np.ndarray,
    bpp: float = 0.3,
    *,
    progress: Any = None,
    **options: Any,
) -> EncodeResult:
    """Encode an image at ``bpp`` (whole file) and return the result: ``.data`` (the file's
    bytes), ``.psnr`` and ``.bpp`` (measured by decoding ``.data``), ``.decoded.pixels``, the
    network (``.spec``) and timings.

    image: a path to any image Pillow reads, or a uint8 array (H, W, 3) or (H, W, 1) / (H, W).
    options: any encoder option by name (``kancoin.codec.options.EncodeOptions``: ``arch``,
    ``bits``, ``iters``, ``effort``, ``grid_size``, ``basis``, ``coding``, ...), validated
    before any work (``KancoinError`` with one line). progress: optional callable
    ``(step, total, best_psnr)``.
    """
    import numpy as np

    from kancoin.codec.encode import encode_pixels
    from kancoin.codec.options import EncodeOptions
    from kancoin.errors import KancoinError
    from kancoin.imageio import check_pixels, load_image

    try:
        opts = EncodeOptions(bpp=bpp, **options)
    except TypeError as e:  # an unknown option name
        raise KancoinError(str(e).replace("EncodeOptions.__init__()", "kancoin.encode()")) from None
    if isinstance(image, (str, Path)):
        pixels, _ = load_image(image)
    else:
        pixels = check_pixels(np.asarray(image))
    return encode_pixels(pixels, opts, progress)


def decode(data: bytes | bytearray | memoryview) -> np.ndarray:
    """The image a .kc file's bytes decode to: uint8 (H, W, C), C = 3 (RGB) or 1 (grey)."""
    from kancoin.codec.decode import decode_bytes

    return decode_bytes(bytes(data)).pixels
