"""Images in: EXIF orientation, images of several frames, 16-bit colour, size limits."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kancoin.errors import KancoinError
from kancoin.imageio import MAX_PIXELS, MAX_SIDE, load_image

from .conftest import ROOT, crop
from .test_cli import _png_header, assert_clean_error, run

SHARED_EXIF = ROOT.parent / "shared" / "reliability" / "exif_rot6.jpg"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png16(pixels: np.ndarray) -> bytes:
    """A 16-bit PNG of uint16 (H, W, C) pixels, C = 1, 2, 3 or 4, written by hand (Pillow writes
    16-bit grey only)."""
    h, w, c = pixels.shape
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = pixels.astype(">u2").reshape(h, w * c)
    raw = b"".join(b"\x00" + rows[r].tobytes() for r in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )  # fmt: skip


def _jpeg_with_orientation(path: Path, pixels: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, quality=95, exif=exif)


# ---- EXIF orientation ---------------------------------------------------------------------------


def test_exif_orientation_6_is_applied(tmp_path: Path) -> None:
    stored = crop(16, 24)  # stored lying on its side: 24 wide, 16 high
    p = tmp_path / "phone.jpg"
    _jpeg_with_orientation(p, stored, 6)
    plain = tmp_path / "plain.jpg"
    Image.fromarray(stored).save(plain, quality=95)
    as_stored, none = load_image(plain)
    assert none is None
    pixels, notice = load_image(p)
    # orientation 6: the stored image is turned 90° clockwise to stand upright
    assert pixels.shape == (24, 16, 3)
    assert np.array_equal(pixels, np.rot90(as_stored, k=-1))
    assert notice == "note: EXIF orientation 6 applied (rotated to 16x24)"


@pytest.mark.parametrize("orientation", [1, 3, 8])
def test_other_orientations(tmp_path: Path, orientation: int) -> None:
    stored = crop(16, 24)
    p = tmp_path / "o.jpg"
    _jpeg_with_orientation(p, stored, orientation)
    plain = tmp_path / "plain.jpg"
    Image.fromarray(stored).save(plain, quality=95)
    as_stored, _ = load_image(plain)
    pixels, notice = load_image(p)
    if orientation == 1:  # upright already: nothing to say
        assert notice is None and np.array_equal(pixels, as_stored)
    elif orientation == 3:
        assert np.array_equal(pixels, np.rot90(as_stored, k=2))
        assert notice == "note: EXIF orientation 3 applied (rotated to 24x16)"
    else:
        assert np.array_equal(pixels, np.rot90(as_stored, k=1))
        assert notice == "note: EXIF orientation 8 applied (rotated to 16x24)"


@pytest.mark.skipif(not SHARED_EXIF.is_file(), reason="shared reliability images not present")
def test_shared_phone_photo_is_upright() -> None:
    with Image.open(SHARED_EXIF) as img:
        w, h = img.size
    pixels, notice = load_image(SHARED_EXIF)
    assert pixels.shape[:2] == (w, h)  # the sides swap
    assert notice == f"note: EXIF orientation 6 applied (rotated to {h}x{w})"


def test_encode_reports_the_orientation(tmp_path: Path) -> None:
    p = tmp_path / "phone.jpg"
    _jpeg_with_orientation(p, crop(16, 24), 6)
    out = tmp_path / "o.kc"
    r = run("encode", p, out, "--arch", "kan", "--bpp", "4", "--iters", "5", "--device", "cpu",
            "--threads", "1")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "EXIF orientation 6 applied (rotated to 16x24)" in r.stderr
    from kancoin.format.container import read_bytes

    header, _ = read_bytes(out.read_bytes())
    assert (header.width, header.height) == (16, 24)


# ---- several frames -----------------------------------------------------------------------------


def _frames(n: int = 3, h: int = 6, w: int = 8) -> list[Image.Image]:
    return [Image.fromarray(crop(h, w, top=200 + 10 * i)) for i in range(n)]


@pytest.mark.parametrize("fmt, ext", [("GIF", "gif"), ("PNG", "png"), ("TIFF", "tif")])
def test_several_frames_are_refused(tmp_path: Path, fmt: str, ext: str) -> None:
    frames = _frames()
    p = tmp_path / f"x.{ext}"
    frames[0].save(p, fmt, save_all=True, append_images=frames[1:])
    with pytest.raises(KancoinError) as e:
        load_image(p)
    assert str(e.value) == (
        f"{p}: has 3 frames; kancoin encodes one image (--first-frame takes frame 0)"
    )
    pixels, notice = load_image(p, first_frame=True)
    assert pixels.shape[:2] == (6, 8)
    assert notice.startswith("note: 3 frames, frame 0 taken")
    if fmt != "GIF":  # lossless and not paletted: frame 0 exactly
        assert np.array_equal(pixels, crop(6, 8, top=200))


def test_one_frame_gif_is_not_refused(tmp_path: Path) -> None:
    p = tmp_path / "one.gif"
    _frames(1)[0].save(p)
    pixels, _ = load_image(p)
    assert pixels.shape[:2] == (6, 8)


def test_encode_first_frame_option(tmp_path: Path) -> None:
    frames = _frames(h=16, w=24)
    p = tmp_path / "anim.png"
    frames[0].save(p, "PNG", save_all=True, append_images=frames[1:])
    out = tmp_path / "o.kc"
    assert_clean_error(run("encode", p, out), "has 3 frames")
    assert not out.exists()
    args = ("--bpp", "4", "--iters", "5", "--device", "cpu", "--threads", "1")
    r = run("encode", p, out, "--arch", "kan", "--first-frame", *args)
    assert r.returncode == 0, r.stderr
    assert "note: 3 frames, frame 0 taken" in r.stderr and out.is_file()


def test_encode_file_first_frame(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kancoin.codec import encode
    from kancoin.codec.options import EncodeOptions

    frames = _frames(h=16, w=24)
    p = tmp_path / "anim.gif"
    frames[0].save(p, "GIF", save_all=True, append_images=frames[1:])
    opts = EncodeOptions(arch="kan", bpp=4.0, iters=5, device="cpu")
    with pytest.raises(KancoinError, match="has 3 frames"):
        encode.encode_file(p, tmp_path / "a.kc", opts)
    seen: list[np.ndarray] = []

    def stop(pixels, *a):  # what reaches the encoder; no fit needed
        seen.append(pixels)
        raise KancoinError("stopped")

    monkeypatch.setattr(encode, "encode_pixels", stop)
    notes: list[str] = []
    with pytest.raises(KancoinError, match="stopped"):
        encode.encode_file(p, tmp_path / "b.kc", opts, on_notice=notes.append, first_frame=True)
    assert seen[0].shape[:2] == (16, 24)
    assert len(notes) == 1 and "frame 0 taken" in notes[0]
    assert not (tmp_path / "b.kc").exists()


# ---- bit depth ----------------------------------------------------------------------------------


def test_48_bit_rgb_png_is_noted(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    deep = rng.integers(0, 65536, size=(5, 7, 3), dtype=np.uint16)
    p = tmp_path / "deep.png"
    p.write_bytes(png16(deep))
    with Image.open(p) as img:
        assert img.mode == "RGB"  # Pillow shows no sign of the depth in the mode
    pixels, notice = load_image(p)
    assert pixels.shape == (5, 7, 3) and pixels.dtype == np.uint8
    assert np.abs(pixels.astype(int) - deep.astype(int) // 257).max() <= 1
    assert notice == "note: 48-bit RGB image (16 bits per channel) reduced to 8-bit RGB"


def test_16_bit_grey_alpha_and_rgba_are_noted(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    p = tmp_path / "la.png"
    p.write_bytes(png16(rng.integers(0, 65536, size=(4, 6, 2), dtype=np.uint16)))
    pixels, notice = load_image(p)
    assert pixels.shape == (4, 6, 1)  # still grey
    assert notice == "note: 16-bit LA image converted to 8-bit greyscale (alpha channel dropped)"
    p = tmp_path / "rgba.png"
    p.write_bytes(png16(rng.integers(0, 65536, size=(4, 6, 4), dtype=np.uint16)))
    pixels, notice = load_image(p)
    assert pixels.shape == (4, 6, 3)
    assert notice == "note: 16-bit RGBA image converted to 8-bit RGB (alpha channel dropped)"


def test_16_bit_ppm_is_noted(tmp_path: Path) -> None:
    p = tmp_path / "deep.ppm"
    p.write_bytes(b"P6\n4 3\n65535\n" + np.full((3, 4, 3), 40000, ">u2").tobytes())
    pixels, notice = load_image(p)
    assert pixels.shape == (3, 4, 3)
    assert notice == "note: 48-bit RGB image (16 bits per channel) reduced to 8-bit RGB"


def test_8_bit_images_say_nothing_new(tmp_path: Path) -> None:
    p = tmp_path / "rgb.png"
    Image.fromarray(crop(4, 6)).save(p)
    assert load_image(p)[1] is None
    p = tmp_path / "rgb565.bmp"  # 16 bits per pixel, 5-6-5: not 16 bits per channel
    bmp_info = struct.pack("<IiiHHIIiiII", 40, 4, 3, 1, 16, 3, 4 * 3 * 2, 0, 0, 0, 0)
    masks = struct.pack("<III", 0xF800, 0x07E0, 0x001F)
    data = bytes(4 * 3 * 2)
    offset = 14 + len(bmp_info) + len(masks)
    header = b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset)
    p.write_bytes(header + bmp_info + masks + data)
    pixels, notice = load_image(p)
    assert pixels.shape == (3, 4, 3) and notice is None
    p = tmp_path / "grey16.png"
    Image.fromarray(np.full((3, 4), 30000, np.uint16)).save(p)
    assert load_image(p)[1] == "note: I;16 image reduced to 8-bit greyscale"


# ---- size limits --------------------------------------------------------------------------------


def test_decompression_bomb_names_its_size(tmp_path: Path) -> None:
    p = tmp_path / "huge.png"
    p.write_bytes(_png_header(100_000, 100_000))
    with pytest.raises(KancoinError) as e:
        load_image(p)
    assert str(e.value) == (
        f"{p}: image is too large (10000000000 pixels); the limit is {MAX_SIDE} per side and "
        f"{MAX_PIXELS} pixels"
    )
    # past Pillow's warning threshold but under its error one: the same message
    p = tmp_path / "big.png"
    p.write_bytes(_png_header(12_000, 12_000))
    with pytest.raises(KancoinError, match=r"too large \(144000000 pixels\)"):
        load_image(p)
    # under Pillow's threshold, over kancoin's: the sides
    p = tmp_path / "wide.png"
    p.write_bytes(_png_header(20_000, 10))
    with pytest.raises(KancoinError, match="image is 20000x10; the limit is 16384 per side"):
        load_image(p)
