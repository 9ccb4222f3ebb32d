"""Golden .kc files whose decode is pinned.

The decoder must turn tests/golden/tiny.kc (current format, range-coded, written by the default
encoder with a first-layer grid of its own, 16 intervals) into exactly
tests/golden/tiny_decoded.png. If the format or the decoder changes on
purpose, regenerate both with

    KANCOIN_REGEN_GOLDEN=1 python -m pytest tests/test_golden.py

and say why in the commit. (Regeneration re-encodes a 24x32 crop of data/kodim23.png.)
tests/golden/tiny_v1.kc is a format-version-1 file (fixed-width payload) from kancoin 0.1,
tiny_v2.kc a version-2 file (range-coded) from kancoin 0.2 and tiny_v3.kc a version-3 file
(one grid for every layer) from kancoin 0.3; they are never regenerated: files
users already have must keep decoding to the same pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kancoin.decode import decode_bytes
from kancoin.encode import EncodeOptions, encode_pixels
from kancoin.grid import png_bytes
from kancoin.ratecontrol import Overrides

from .conftest import crop

GOLDEN = Path(__file__).parent / "golden"


def test_golden_decode_is_pinned() -> None:
    kc, png = GOLDEN / "tiny.kc", GOLDEN / "tiny_decoded.png"
    if os.environ.get("KANCOIN_REGEN_GOLDEN"):
        opts = EncodeOptions(
            bpp=6.0, iters=200, device="cpu", overrides=Overrides(first_grid_size=16)
        )
        res = encode_pixels(crop(24, 32), opts)
        kc.write_bytes(res.data)
        png.write_bytes(png_bytes(res.decoded.pixels))
    decoded = decode_bytes(kc.read_bytes())
    expected = np.asarray(Image.open(png).convert("RGB"))
    assert decoded.pixels.shape == (24, 32, 3)
    assert decoded.header.coding == 1 and decoded.header.version == 4
    spec = decoded.header.spec
    assert spec.first_grid_size == 16 and spec.grid_size != 16
    assert np.array_equal(decoded.pixels, expected)


@pytest.mark.parametrize("version, coding", [(1, 0), (2, 1), (3, 1)])
def test_older_versions_still_decode(version: int, coding: int) -> None:
    decoded = decode_bytes((GOLDEN / f"tiny_v{version}.kc").read_bytes())
    expected = np.asarray(Image.open(GOLDEN / f"tiny_v{version}_decoded.png").convert("RGB"))
    assert decoded.header.version == version and decoded.header.coding == coding
    spec = decoded.header.spec
    assert spec.basis == "bspline" and not spec.node_bias
    assert spec.first_grid_size == spec.grid_size  # before 4: one grid for all layers
    assert np.array_equal(decoded.pixels, expected)
