"""The `kancoin` command line through real files: in-process with Typer's runner, plus a
real-process run (`python -m kancoin`) of its error path. The shared encode is conftest's
``encoded``; the fresh-process decode of its file is in test_layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from kancoin.cli import app
from kancoin.metrics import psnr

from .conftest import crop, reference_decode

ROOT = Path(__file__).resolve().parents[1]


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str, exception=None) -> None:
        self.returncode, self.stdout, self.stderr, self.exception = (
            returncode, stdout, stderr, exception,
        )  # fmt: skip


def run(*args: str | Path) -> Result:
    """One command in this process (the same app `kancoin` runs)."""
    r = CliRunner().invoke(app, [str(a) for a in args])
    exc = None if r.exception is None or isinstance(r.exception, SystemExit) else r.exception
    return Result(r.exit_code, r.stdout, r.stderr, exc)


def run_process(*args: str | Path) -> subprocess.CompletedProcess:
    """One command in a fresh process: `python -m kancoin ...`."""
    return subprocess.run(
        [sys.executable, "-m", "kancoin", *map(str, args)], capture_output=True, text=True,
        timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def assert_clean_error(proc, pattern: str, code: int | None = None) -> None:
    assert proc.returncode != 0
    if code is not None:
        assert proc.returncode == code
    assert getattr(proc, "exception", None) is None, proc.exception
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert pattern.lower() in lines[0].lower(), lines[0]


def test_encode_reports_the_file_it_wrote(encoded, tmp_path: Path) -> None:
    """The shared encode (conftest ``encoded``: 40x56, --bpp 4, --iters 100, --threads 1)."""
    img, out, rep = encoded
    size = out.stat().st_size
    assert rep["file_bytes"] == size
    assert rep["bpp"] == pytest.approx(8 * size / (40 * 56)) and rep["bpp"] <= 4.0
    assert rep["arch"] == "kan" and rep["device"] == "cpu" and rep["coding"] == "range"
    assert rep["steps"] == 100 and rep["threads"] == 1
    assert 2 <= rep["bits"] <= 16
    for key in ("psnr", "params", "architecture", "encode_seconds", "steps"):
        assert key in rep
    assert rep["psnr"] > 20  # it learned something
    # the reported PSNR is the file's: an independent float64 decode of the bytes on disk
    original = np.asarray(Image.open(img).convert("RGB"))
    assert psnr(reference_decode(out.read_bytes()), original) == pytest.approx(
        rep["psnr"], abs=0.05
    )
    # and `kancoin decode` writes pixels of exactly that PSNR (a fresh process's decode gives
    # the same pixels: test_layout.test_a_fresh_process_decodes_loading_no_training_code)
    dec = tmp_path / "dec.png"
    assert run("decode", out, dec).returncode == 0
    pixels = Image.open(dec)
    assert pixels.mode == "RGB" and pixels.size == (56, 40)
    assert psnr(np.asarray(pixels), original) == pytest.approx(rep["psnr"], abs=1e-4)


def test_info(encoded) -> None:
    _, kc, rep = encoded
    proc = run("info", kc, "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["params"] == rep["params"] and info["bits"] >= rep["bits"]
    assert max(t["bits"] for t in info["tensors"]) == rep["bits"]  # the deepest tensor's
    assert info["coding"] == "range" and info["format_version"] == 11
    assert info["basis"] == "bspline"
    assert info["file_bytes"] == kc.stat().st_size and (info["width"], info["height"]) == (56, 40)
    assert "grid" in run("info", kc).stdout


def test_fixed_coding_uses_exactly_the_requested_bits(tmp_path: Path) -> None:
    img = tmp_path / "s.png"
    Image.fromarray(crop(24, 32)).save(img)
    out = tmp_path / "s.kc"
    args = ("--arch", "kan", "--bpp", "4", "--iters", "20", "--json", "--device", "cpu",
            "--coding", "fixed", "--threads", "1")  # fmt: skip
    proc = run("encode", img, out, *args, "--bits", "7")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["bits"] == 7 and rep["coding"] == "fixed"
    assert rep["payload_bits_per_weight"] == pytest.approx(7, abs=8 / rep["params"])


def test_every_encoder_option_reaches_the_encoder(tmp_path: Path) -> None:
    """Options that are not the defaults show in what was written."""
    img = tmp_path / "s.png"
    Image.fromarray(crop(24, 32)).save(img)
    out = tmp_path / "s.kc"
    proc = run(
        "encode", img, out, "--arch", "kan", "--bpp", "6", "--iters", "20", "--json",
        "--device", "cpu", "--threads", "1", "--basis", "rsf", "--node-bias", "--width", "6",
        "--depth", "2", "--qat", "0",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["basis"] == "rsf" and rep["node_bias"] and rep["widths"] == [2, 6, 6, 3]
    assert rep["qat_psnr"] is None


def test_greyscale_stays_one_channel_and_rgba_is_converted(tmp_path: Path) -> None:
    grey = tmp_path / "g.png"
    Image.fromarray(crop(24, 24)[..., 1]).save(grey)
    rgba = tmp_path / "a.png"
    Image.fromarray(crop(24, 24)).convert("RGBA").save(rgba)
    fast = ("--bpp", "8", "--iters", "20", "--threads", "1")
    p = run("encode", grey, tmp_path / "g.kc", *fast, "-q")
    assert p.returncode == 0, p.stderr
    assert run("decode", tmp_path / "g.kc", tmp_path / "g2.png").returncode == 0
    assert Image.open(tmp_path / "g2.png").mode == "L"
    p = run("encode", rgba, tmp_path / "a.kc", *fast)
    assert p.returncode == 0 and "RGBA image converted to 8-bit RGB" in p.stderr


# ---- bad input: one line, non-zero exit, no output left behind -------------------------------


def test_missing_input(tmp_path: Path) -> None:
    assert_clean_error(run("encode", tmp_path / "nope.png", tmp_path / "o.kc"), "no such file", 1)
    assert_clean_error(run("decode", tmp_path / "nope.kc", tmp_path / "o.png"), "no such file", 1)
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
    # Pillow refuses a zero-width PNG itself; either way the message names the image
    assert_clean_error(run("encode", zero, tmp_path / "o.kc"), "zero.png")
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header(100_000, 100_000))
    assert_clean_error(run("encode", huge, tmp_path / "o.kc"), "the limit is 16384 per side")
    assert not (tmp_path / "o.kc").exists()


@pytest.mark.parametrize(
    "args, pattern, code",
    [
        (("--arch", "kan", "--bpp", "0.01"), "too small", 1),
        (("--bpp", "0"), "'--bpp'", 2),
        (("--bits", "1"), "'--bits'", 2),
        (("--bits", "17"), "'--bits'", 2),
        (("--arch", "mlp"), "'--arch'", 2),
        (("--basis", "spline"), "'--basis'", 2),
        (("--qat", "1"), "'--qat'", 2),
        (("--arch", "siren", "--first-grid-size", "40"), "--first-grid-size", 1),
        (("--arch", "siren", "--grid-extend", "1"), "--grid-extend", 1),
        (("--arch", "kan", "--basis", "rbf", "--grid-extend", "1"),
         "--grid-extend needs --basis bspline", 1),
        (("--arch", "kan", "--coding", "fixed", "--bit-alloc", "tensor"),
         "--bit-alloc tensor needs", 1),
        (("--first-grid-size", "5000"), "'--first-grid-size'", 2),
        (("--device", "tpu"), "--device", 1),
        (("--no-such-option",), "no such option", 2),
    ],
)
def test_bad_options_are_one_line_before_any_work(small_png, tmp_path, args, pattern, code):
    out = tmp_path / "o.kc"
    assert_clean_error(run("encode", small_png, out, *args), pattern, code)
    assert not out.exists()


def test_never_overwrites(small_png: Path, encoded, tmp_path: Path) -> None:
    before = small_png.read_bytes()
    assert_clean_error(run("encode", small_png, small_png, "--force"), "overwrite the input")
    assert small_png.read_bytes() == before
    existing = tmp_path / "exists.png"
    existing.write_bytes(b"precious")
    assert_clean_error(run("decode", encoded[1], existing), "already exists")
    assert existing.read_bytes() == b"precious"


def _field_mutation(d: bytes) -> bytes:
    body = d[:5] + b"\0\0" + d[7:-4]  # height 0
    return body + zlib.crc32(body).to_bytes(4, "big")


@pytest.mark.parametrize(
    "mutate,pattern",
    [
        (lambda d: b"XXXX" + d[4:], "magic"),
        (lambda d: d[:4] + bytes([200]) + d[5:], "version"),
        (lambda d: d[: len(d) // 2], "truncated"),
        (lambda d: d[:-6] + bytes([d[-6] ^ 1]) + d[-5:], "crc"),
        (_field_mutation, "out of range"),
        (lambda d: b"", "magic"),
    ],
    ids=["magic", "version", "truncated", "crc", "field", "empty"],
)
def test_corrupt_kc_files(encoded, tmp_path: Path, mutate, pattern) -> None:
    bad = tmp_path / "bad.kc"
    bad.write_bytes(mutate(encoded[1].read_bytes()))
    out = tmp_path / "o.png"
    assert_clean_error(run("decode", bad, out), pattern, 1)
    assert_clean_error(run("info", bad), pattern, 1)
    assert not out.exists() and not list(tmp_path.glob(".o.png*"))


def test_a_real_process_reports_errors_in_one_line(tmp_path: Path) -> None:
    """The installed entry point's error path: one line, exit 1 (a bad file) or 2 (a bad
    option), no traceback."""
    bad = tmp_path / "bad.kc"
    bad.write_bytes(b"KANC" + bytes(20))
    assert_clean_error(run_process("info", bad), "version", 1)
    assert_clean_error(run_process("encode", bad, tmp_path / "o.kc", "--bits", "1"), "--bits", 2)


def test_commands_are_importable_functions() -> None:
    from kancoin.cli import codec, research
    from kancoin.cli import eval as eval_cmds

    for fn in (codec.encode, codec.decode, codec.info, eval_cmds.eval_, eval_cmds.plot,
               research.quant_study, research.sweep):  # fmt: skip
        assert callable(fn) and fn.__doc__
