"""Golden .kc files whose decode is pinned.

tests/golden/ holds, per format version, a file and the PNG it must decode to, exactly:

- ``tiny.kc`` / ``tiny_decoded.png``: the current format (version 11), range-coded, written by
  the KAN encoder with a first-layer grid of its own (16 intervals) from a 24x32 crop of
  data/kodim23.png; ``tiny_latent.kc`` / ``tiny_latent_decoded.png``: the same crop, 40x48,
  by the latent encoder (its grids coded with the predictor); ``tiny_latent_arm.kc`` /
  ``tiny_latent_arm_decoded.png``: a 64x96 crop whose grids are coded by the latents'
  autoregressive network (a 7-6-6-2 network, line by line across the pyramid);
  ``tiny_latent_mlp.kc`` /
  ``tiny_latent_mlp_decoded.png``: the same crop with the MLP synthesis (in fixed point). If
  the format or the decoder changes on purpose, regenerate them with

      KANCOIN_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py

  and say why in the commit. The decoded PNGs are also checked against independent decodes
  (tests/conftest.py ``reference_decode``, tests/test_latent.py ``latent_reference_decode``),
  so a regeneration cannot pin a wrong decode.
- ``tiny_v1.kc`` (kancoin 0.1: fixed-width payload), ``tiny_v2.kc`` (0.2: range-coded),
  ``tiny_v3.kc`` (0.3: one grid for every layer), ``tiny_v4.kc`` (0.4: a first-layer grid
  of its own, 16 intervals; a 1-bit entropy-model field), ``tiny_v5.kc`` (a 4-bit
  entropy-model field), ``tiny_v6.kc`` and ``tiny_latent_v6.kc`` (the latent family, its grids
  under zero-mean context Laplaces), ``tiny_v7.kc`` and ``tiny_latent_v7.kc`` (the latents'
  predictor), ``tiny_v8.kc``, ``tiny_latent_v8.kc`` and ``tiny_latent_arm_v8.kc`` (the
  latents' network), ``tiny_v9.kc``, ``tiny_latent_v9.kc``, ``tiny_latent_arm_v9.kc`` and
  ``tiny_latent_mlp_v9.kc`` (the MLP synthesis in float32), ``tiny_v10.kc``,
  ``tiny_latent_v10.kc``, ``tiny_latent_arm_v10.kc`` (the network's grids one after another) and
  ``tiny_latent_mlp_v10.kc`` (the MLP in fixed point), each with its ``_decoded.png``: older
  versions, never regenerated: files users already have must keep decoding to the same pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kancoin.codec.decode import decode_bytes
from kancoin.codec.encode import encode_pixels
from kancoin.codec.options import EncodeOptions
from kancoin.format.layout import VERSION
from kancoin.imageio import png_bytes

from .conftest import crop, reference_decode

GOLDEN = Path(__file__).parent / "golden"
CURRENT = GOLDEN / "tiny.kc", GOLDEN / "tiny_decoded.png"
LATENT = GOLDEN / "tiny_latent.kc", GOLDEN / "tiny_latent_decoded.png"
LATENT_ARM = GOLDEN / "tiny_latent_arm.kc", GOLDEN / "tiny_latent_arm_decoded.png"
LATENT_MLP = GOLDEN / "tiny_latent_mlp.kc", GOLDEN / "tiny_latent_mlp_decoded.png"


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_golden_decode_is_pinned() -> None:
    kc, png = CURRENT
    if os.environ.get("KANCOIN_REGEN_GOLDEN"):
        opts = EncodeOptions(arch="kan", bpp=6.0, iters=200, device="cpu", first_grid_size=16)
        res = encode_pixels(crop(24, 32), opts)
        kc.write_bytes(res.data)
        png.write_bytes(png_bytes(res.decoded.pixels))
    decoded = decode_bytes(kc.read_bytes())
    assert decoded.pixels.shape == (24, 32, 3)
    assert decoded.header.coding == 1 and decoded.header.version == VERSION == 11
    spec = decoded.header.spec
    assert spec.basis == "bspline" and spec.first_grid_size == 16 and spec.grid_size != 16
    assert np.array_equal(decoded.pixels, _png(png))


def test_golden_png_is_the_independent_decode() -> None:
    """The pinned PNG (the one regenerated file) is what the file holds: an independent float64
    decode (no kernel, separable path or render code of kancoin) agrees up to float rounding."""
    kc, png = CURRENT
    ref = reference_decode(kc.read_bytes()).astype(int)
    diff = np.abs(ref - _png(png).astype(int))
    assert diff.max() <= 1
    assert np.count_nonzero(diff) <= 5  # a level at a handful of the 24 x 32 x 3 values


def test_latent_golden_decode_is_pinned() -> None:
    from .test_latent import assert_near_reference

    kc, png = LATENT
    if os.environ.get("KANCOIN_REGEN_GOLDEN"):
        opts = EncodeOptions(arch="latent", bpp=4.0, iters=300, batch_size=24 * 24, device="cpu",
                             synthesis="kan")  # fmt: skip
        res = encode_pixels(crop(40, 48), opts)
        kc.write_bytes(res.data)
        png.write_bytes(png_bytes(res.decoded.pixels))
    decoded = decode_bytes(kc.read_bytes())
    assert decoded.pixels.shape == (40, 48, 3) and decoded.header.version == VERSION
    assert decoded.header.spec.arch == "latent" and decoded.header.spec.predictor == 1
    assert not decoded.header.spec.mlp  # the KAN synthesis (tiny_latent_mlp.kc: the MLP)
    assert np.array_equal(decoded.pixels, _png(png))
    assert_near_reference(_png(png), kc.read_bytes())


@pytest.mark.parametrize(
    "version, coding",
    [(1, 0), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1), (7, 1), (8, 1), (9, 1), (10, 1)],
)
def test_older_versions_still_decode(version: int, coding: int) -> None:
    decoded = decode_bytes((GOLDEN / f"tiny_v{version}.kc").read_bytes())
    expected = _png(GOLDEN / f"tiny_v{version}_decoded.png")
    assert decoded.header.version == version and decoded.header.coding == coding
    spec = decoded.header.spec
    assert spec.basis == "bspline" and not spec.node_bias
    if version < 4:  # before 4: one grid for all layers
        assert spec.first_grid_size == spec.grid_size
    else:  # 4 on: the first layer's own grid
        assert spec.first_grid_size == 16 and spec.grid_size != 16
    if coding == 0:  # before 2: every tensor at the header's bits
        assert decoded.header.tensor_bits == [decoded.header.bits] * len(spec.tensor_shapes())
    assert np.array_equal(decoded.pixels, expected)


@pytest.mark.parametrize(
    "name, version, predictor, context, arm, mlp, fixed_frac",
    [("latent_v6", 6, 0, 4, 0, False, 0), ("latent_v7", 7, 1, 7, 0, False, 0),
     ("latent_v8", 8, 1, 7, 0, False, 0), ("latent_arm_v8", 8, 0, 0, 6, False, 0),
     ("latent_v9", 9, 1, 7, 0, False, 0), ("latent_arm_v9", 9, 0, 0, 6, False, 0),
     ("latent_mlp_v9", 9, 1, 7, 0, True, 0), ("latent_v10", 10, 1, 7, 0, False, 0),
     ("latent_arm_v10", 10, 0, 0, 6, False, 0), ("latent_mlp_v10", 10, 1, 7, 0, True, 16)],
)  # fmt: skip
def test_older_latent_files_still_decode(
    name: str, version: int, predictor: int, context: int, arm: int, mlp: bool, fixed_frac: int
) -> None:
    """A latent file of format 6 (no predictor field: zero-mean context Laplaces), 7 (the
    predictor; no network field), 8 (no synthesis field: a KAN), 9 (no fixed-point field:
    an MLP synthesis in float32) or 10 (no order field: the network's grids one after
    another) decodes to its pixels, which the independent decode also gives."""
    from .test_latent import assert_near_reference

    data = (GOLDEN / f"tiny_{name}.kc").read_bytes()
    decoded = decode_bytes(data)
    spec = decoded.header.spec
    assert decoded.header.version == version and spec.predictor == predictor
    assert spec.context == context and spec.arm == arm and spec.mlp == mlp
    assert spec.fixed_frac == fixed_frac and spec.arm_order == 0
    expected = _png(GOLDEN / f"tiny_{name}_decoded.png")
    assert np.array_equal(decoded.pixels, expected)
    assert_near_reference(expected, data)


def test_latent_network_golden_decode_is_pinned() -> None:
    """A file whose grids the autoregressive network codes (fixed-point, ``format.arm``)
    decodes to its pinned pixels, which the independent decode also gives."""
    import kancoin.nets.latent as family

    from .test_latent import assert_near_reference

    kc, png = LATENT_ARM
    if os.environ.get("KANCOIN_REGEN_GOLDEN"):
        saved = family.DEFAULT_ARM, family.ARM_SHARE
        family.DEFAULT_ARM, family.ARM_SHARE = 6, 1.0  # a network for this small budget
        try:
            opts = EncodeOptions(arch="latent", bpp=1.0, iters=300, batch_size=1024, device="cpu",
                                 synthesis="kan")  # fmt: skip
            res = encode_pixels(crop(64, 96), opts)
        finally:
            family.DEFAULT_ARM, family.ARM_SHARE = saved
        kc.write_bytes(res.data)
        png.write_bytes(png_bytes(res.decoded.pixels))
    decoded = decode_bytes(kc.read_bytes())
    assert decoded.pixels.shape == (64, 96, 3) and decoded.header.version == VERSION
    spec = decoded.header.spec
    assert spec.arm == 6 and spec.context == 0 and spec.predictor == 0 and not spec.mlp
    assert spec.arm_order == 1  # line by line across the pyramid
    assert np.array_equal(decoded.pixels, _png(png))
    assert_near_reference(_png(png), kc.read_bytes())


def test_latent_mlp_golden_decode_is_pinned() -> None:
    """A file with the MLP synthesis decodes to its pinned pixels, which the independent
    decode (torch's float64 layers) also gives."""
    from .test_latent import assert_near_reference

    kc, png = LATENT_MLP
    if os.environ.get("KANCOIN_REGEN_GOLDEN"):
        opts = EncodeOptions(arch="latent", bpp=1.0, iters=300, batch_size=1024, device="cpu",
                             synthesis="mlp")  # fmt: skip
        res = encode_pixels(crop(64, 96), opts)
        kc.write_bytes(res.data)
        png.write_bytes(png_bytes(res.decoded.pixels))
    decoded = decode_bytes(kc.read_bytes())
    assert decoded.pixels.shape == (64, 96, 3) and decoded.header.version == VERSION
    spec = decoded.header.spec
    assert spec.mlp and len(spec.widths) == 4 and spec.fixed_frac == 16
    assert np.array_equal(decoded.pixels, _png(png))
    assert_near_reference(_png(png), kc.read_bytes())
