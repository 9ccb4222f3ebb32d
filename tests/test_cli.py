"""End to end through real files and the real `kancoin` command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kancoin.metrics import psnr

from .conftest import crop

KANCOIN = [sys.executable, "-m", "kancoin.cli"]


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([*KANCOIN, *map(str, args)], capture_output=True, text=True, timeout=600)


def assert_clean_error(proc: subprocess.CompletedProcess, pattern: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert pattern.lower() in lines[0].lower(), lines[0]


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> tuple[Path, Path, dict]:
    """One real encode of a 40x56 crop, shared by the tests below."""
    d = tmp_path_factory.mktemp("e2e")
    img = d / "small.png"
    Image.fromarray(crop(40, 56)).save(img)
    out = d / "small.kc"
    proc = run("encode", img, out, "--bpp", "4", "--iters", "400", "--json", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    return img, out, json.loads(proc.stdout)


def test_encode_reports_the_file_it_wrote(encoded) -> None:
    img, out, rep = encoded
    size = out.stat().st_size
    assert rep["file_bytes"] == size
    assert rep["bpp"] == pytest.approx(8 * size / (40 * 56)) and rep["bpp"] <= 4.0
    assert rep["arch"] == "kan" and rep["device"] == "cpu" and rep["coding"] == "range"
    assert 2 <= rep["bits"] <= 16
    for key in ("psnr", "params", "architecture", "encode_seconds", "steps"):
        assert key in rep
    assert rep["psnr"] > 20  # it learned something


def test_decode_reproduces_reported_psnr(encoded, tmp_path: Path) -> None:
    img, kc, rep = encoded
    out = tmp_path / "dec.png"
    proc = run("decode", kc, out)
    assert proc.returncode == 0, proc.stderr
    dec = Image.open(out)
    assert dec.mode == "RGB" and dec.size == (56, 40)
    measured = psnr(np.asarray(dec), np.asarray(Image.open(img).convert("RGB")))
    assert measured == pytest.approx(rep["psnr"], abs=0.01)


def test_info(encoded) -> None:
    _, kc, rep = encoded
    proc = run("info", kc, "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["params"] == rep["params"] and info["bits"] == rep["bits"]
    assert info["coding"] == "range" and info["format_version"] == 4
    assert info["basis"] == "bspline"
    assert info["file_bytes"] == kc.stat().st_size and (info["width"], info["height"]) == (56, 40)
    assert "grid" in run("info", kc).stdout


def test_fixed_coding_uses_exactly_the_requested_bits(tmp_path: Path) -> None:
    img = tmp_path / "s.png"
    Image.fromarray(crop(24, 32)).save(img)
    out = tmp_path / "s.kc"
    args = ("--bpp", "4", "--iters", "20", "--json", "--device", "cpu", "--coding", "fixed")
    proc = run("encode", img, out, *args, "--bits", "7")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["bits"] == 7 and rep["coding"] == "fixed"
    assert rep["payload_bits_per_weight"] == pytest.approx(7, abs=8 / rep["params"])


def test_greyscale_stays_one_channel_and_rgba_is_converted(tmp_path: Path) -> None:
    grey = tmp_path / "g.png"
    Image.fromarray(crop(24, 24)[..., 1]).save(grey)
    rgba = tmp_path / "a.png"
    Image.fromarray(crop(24, 24)).convert("RGBA").save(rgba)
    p = run("encode", grey, tmp_path / "g.kc", "--bpp", "8", "--iters", "20", "-q")
    assert p.returncode == 0, p.stderr
    assert run("decode", tmp_path / "g.kc", tmp_path / "g2.png").returncode == 0
    assert Image.open(tmp_path / "g2.png").mode == "L"
    p = run("encode", rgba, tmp_path / "a.kc", "--bpp", "8", "--iters", "20")
    assert p.returncode == 0 and "RGBA image converted to 8-bit RGB" in p.stderr


# ---- bad input: one line, non-zero exit, no output left behind -------------------------------


def test_missing_input(tmp_path: Path) -> None:
    assert_clean_error(run("encode", tmp_path / "nope.png", tmp_path / "o.kc"), "no such file")
    assert_clean_error(run("decode", tmp_path / "nope.kc", tmp_path / "o.png"), "no such file")
    assert not (tmp_path / "o.kc").exists()


def test_not_an_image(tmp_path: Path) -> None:
    bad = tmp_path / "x.png"
    bad.write_text("hello")
    assert_clean_error(run("encode", bad, tmp_path / "o.kc"), "not an image")
    assert_clean_error(run("encode", tmp_path, tmp_path / "o.kc"), "directory")


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            len(data).to_bytes(4, "big") + kind + data
            + zlib.crc32(kind + data).to_bytes(4, "big")
        )  # fmt: skip

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_zero_size_and_huge_images(tmp_path: Path) -> None:
    zero = tmp_path / "zero.png"
    zero.write_bytes(_png_header(0, 10))
    proc = run("encode", zero, tmp_path / "o.kc")
    assert_clean_error(proc, "zero" if "zero" in proc.stderr else "image")
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header(100_000, 100_000))
    assert_clean_error(run("encode", huge, tmp_path / "o.kc"), "image")
    assert not (tmp_path / "o.kc").exists()


def test_impossible_rate_and_bits(small_png: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.kc"
    assert_clean_error(run("encode", small_png, out, "--bpp", "0.01"), "too small")
    assert_clean_error(run("encode", small_png, out, "--bits", "1"), "--bits")
    assert_clean_error(run("encode", small_png, out, "--bits", "17"), "--bits")
    assert_clean_error(run("encode", small_png, out, "--arch", "mlp"), "--arch")
    siren_grid = run("encode", small_png, out, "--arch", "siren", "--first-grid-size", "40")
    assert_clean_error(siren_grid, "--first-grid-size")
    assert_clean_error(run("encode", small_png, out, "--first-grid-size", "5000"), "4095")
    assert not out.exists()


def test_never_overwrites(small_png: Path, encoded, tmp_path: Path) -> None:
    before = small_png.read_bytes()
    assert_clean_error(run("encode", small_png, small_png, "--force"), "overwrite the input")
    assert small_png.read_bytes() == before
    existing = tmp_path / "exists.png"
    existing.write_bytes(b"precious")
    assert_clean_error(run("decode", encoded[1], existing), "already exists")
    assert existing.read_bytes() == b"precious"


@pytest.mark.parametrize(
    "mutate,pattern",
    [
        (lambda d: b"XXXX" + d[4:], "magic"),
        (lambda d: d[:4] + bytes([9]) + d[5:], "version"),
        (lambda d: d[: len(d) // 2], "truncated"),
        (lambda d: d[:-6] + bytes([d[-6] ^ 1]) + d[-5:], "crc"),
        (
            lambda d: (
                d[:5] + b"\0\0" + d[7:-4] + zlib.crc32(d[:5] + b"\0\0" + d[7:-4]).to_bytes(4, "big")
            ),
            "out of range",
        ),  # noqa: E501
        (lambda d: b"", "magic"),
    ],
    ids=["magic", "version", "truncated", "crc", "field", "empty"],
)
def test_corrupt_kc_files(encoded, tmp_path: Path, mutate, pattern) -> None:
    bad = tmp_path / "bad.kc"
    bad.write_bytes(mutate(encoded[1].read_bytes()))
    out = tmp_path / "o.png"
    assert_clean_error(run("decode", bad, out), pattern)
    assert_clean_error(run("info", bad), pattern)
    assert not out.exists() and not list(tmp_path.glob(".o.png*"))


def test_decode_copy_is_identical(encoded, tmp_path: Path) -> None:
    """CPU decode is deterministic: two decodes give the same bytes."""
    kc = tmp_path / "c.kc"
    shutil.copy(encoded[1], kc)
    assert run("decode", kc, tmp_path / "1.png").returncode == 0
    assert run("decode", kc, tmp_path / "2.png").returncode == 0
    a = np.asarray(Image.open(tmp_path / "1.png"))
    b = np.asarray(Image.open(tmp_path / "2.png"))
    assert np.array_equal(a, b)
