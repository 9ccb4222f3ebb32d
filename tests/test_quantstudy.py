"""`kancoin quant-study`: rows, files that decode to the reported PSNR, tables, CLI errors."""

from __future__ import annotations

import csv
import json
from itertools import product
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from kancoin.cli import app
from kancoin.codec.decode import decode_bytes
from kancoin.codec.encode import plan
from kancoin.codec.options import EncodeOptions
from kancoin.errors import KancoinError
from kancoin.metrics import psnr
from kancoin.research.quantstudy import StudyConfig, parse_bits, run_study

from .conftest import crop, reference_decode

BPP = 4.0  # a 32x48 image needs a high rate for any network to fit
BITS = (4, 12, 16)


def _save(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One study of a 32x48 crop: both architectures, 3 bit depths, 80 float steps."""
    d = tmp_path_factory.mktemp("qs")
    img = _save(d / "img.png", crop(32, 48))
    cfg = StudyConfig(bpp=BPP, iters=80, bits=BITS, threads=1, device="cpu")
    return img, run_study([img], d / "out", cfg, plot=False)


def _row(rows, arch, bits, coding="fixed") -> dict:
    (r,) = [r for r in rows if (r["arch"], r["bits"], r["coding"]) == (arch, bits, coding)]
    return r


def test_a_row_per_arch_bits_coding(study) -> None:
    img, rep = study
    keys = [(r["arch"], r["bits"], r["coding"]) for r in rep.rows]
    assert sorted(keys) == sorted(product(("kan", "siren"), BITS, ("fixed", "range")))
    # the architecture the fixed-coding encoder picks (KAN 9 bits, SIREN 16 bits)
    shape = np.asarray(Image.open(img).convert("RGB")).shape
    spec = {
        a: plan(shape, EncodeOptions(arch=a, coding="fixed", bpp=BPP, qat=0.0)).describe()
        for a in ("kan", "siren")
    }
    for r in rep.rows:
        assert r["architecture"] == spec[r["arch"]]
        assert r["bpp"] == pytest.approx(8 * r["file_bytes"] / (32 * 48), abs=1e-4)
        assert r["loss_db"] == pytest.approx(r["float_psnr"] - r["psnr"], abs=2e-4)
        # range coding stores the same integers: same PSNR, another size
        assert r["psnr"] == _row(rep.rows, r["arch"], r["bits"])["psnr"]
    # one architecture per arch, so the bpp grows with the bits
    kan = [_row(rep.rows, "kan", b)["file_bytes"] for b in BITS]
    assert kan == sorted(kan) and kan[0] < kan[-1]


def test_kan_loses_nothing_at_16_bits_and_more_at_4_than_12(study) -> None:
    _, rep = study
    assert abs(_row(rep.rows, "kan", 16)["loss_db"]) < 0.05
    assert _row(rep.rows, "kan", 4)["loss_db"] > _row(rep.rows, "kan", 12)["loss_db"]


def test_kept_files_decode_to_the_reported_psnr(study, tmp_path: Path) -> None:
    img, rep = study
    pixels = np.asarray(Image.open(img).convert("RGB"))
    for r in rep.rows:
        path = rep.out_dir / r["file"]
        assert path.name == f"img_{r['arch']}_{r['bits']}b_{r['coding']}.kc"
        data = path.read_bytes()
        assert len(data) == r["file_bytes"]
        assert round(psnr(decode_bytes(data).pixels, pixels), 4) == r["psnr"]
    # the reported PSNR is the file's: an independent decode gives it too
    for arch, bits in (("kan", 4), ("siren", 12)):
        data = (rep.out_dir / _row(rep.rows, arch, bits, "range")["file"]).read_bytes()
        want = _row(rep.rows, arch, bits, "range")["psnr"]
        assert psnr(reference_decode(data), pixels) == pytest.approx(want, abs=0.05), arch
    # and one through the real `kancoin decode`
    r = _row(rep.rows, "kan", 4, "range")
    res = CliRunner().invoke(app, ["decode", str(rep.out_dir / r["file"]), str(tmp_path / "d.png")])
    assert res.exit_code == 0, res.output
    decoded = np.asarray(Image.open(tmp_path / "d.png").convert("RGB"))
    assert round(psnr(decoded, pixels), 4) == r["psnr"]


def test_outputs(study) -> None:
    _, rep = study
    out = rep.out_dir
    with open(out / "rows.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == len(rep.rows) == 12
    assert float(csv_rows[0]["loss_db"]) == rep.rows[0]["loss_db"]
    saved = json.loads((out / "rows.json").read_text())
    assert saved["rows"] == rep.rows and saved["summary"]["bits"] == list(BITS)
    table = (out / "table.md").read_text()
    assert "| bits | KAN loss (dB) |" in table and "SIREN loss (dB)" in table
    assert all(f"\n| {b} |" in table for b in BITS) and "Float PSNR: KAN" in table
    assert not (out / "quant_loss.png").exists()  # plot=False


def test_parse_bits() -> None:
    assert parse_bits("4-16") == tuple(range(4, 17))
    assert parse_bits("9") == (9,)
    assert parse_bits("12-13, 4,9,4") == (4, 9, 12, 13)
    for bad in ("1-8", "4-17", "9-4", "x", "4-", ""):
        with pytest.raises(KancoinError):
            parse_bits(bad)


def test_several_images_mean_and_sections(tmp_path: Path) -> None:
    a = _save(tmp_path / "a.png", crop(32, 48))
    b = _save(tmp_path / "b.png", crop(32, 48, top=100, left=500))
    cfg = StudyConfig(bpp=BPP, iters=40, archs=("kan",), bits=(6,), threads=1, device="cpu")
    rep = run_study([a, b], tmp_path / "out", cfg, plot=False)
    assert {r["image"] for r in rep.rows} == {"a", "b"} and len(rep.rows) == 4
    (mean,) = [m for m in rep.summary["mean"] if m["coding"] == "fixed"]
    assert mean["n_images"] == 2
    want = np.mean([r["loss_db"] for r in rep.rows if r["coding"] == "fixed"])
    assert mean["loss_db"] == pytest.approx(want, abs=1e-4)
    table = (tmp_path / "out" / "table.md").read_text()
    assert "## a" in table and "## b" in table
    twin = tmp_path / "sub"
    twin.mkdir()
    with pytest.raises(KancoinError, match="two images named"):
        run_study([a, _save(twin / "a.png", crop(32, 48))], tmp_path / "o2", cfg)


def _one_line_error(res, pattern: str) -> None:
    assert res.exit_code == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and pattern in lines[0], res.stderr


def test_cli(tmp_path: Path) -> None:
    img = _save(tmp_path / "c.png", crop(32, 48))
    out = tmp_path / "study"
    args = ["quant-study", str(img), "--bpp", "4", "--out", str(out), "--threads", "1"]
    fast = ["--iters", "20", "--arch", "kan", "--bits", "4,9", "--device", "cpu"]
    res = CliRunner().invoke(app, [*args, *fast, "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert len(d["rows"]) == 4 and d["summary"]["archs"] == ["kan"]
    assert (out / "rows.csv").is_file() and (out / "files" / "c_kan_9b_range.kc").is_file()
    try:
        import matplotlib  # noqa: F401

        assert (out / "quant_loss.png").is_file() and (out / "quant_loss.svg").is_file()
    except ImportError:
        pass
    # a finished study is not overwritten without --force; errors come before any training
    _one_line_error(CliRunner().invoke(app, [*args, *fast]), "already holds a study")
    again = [*args, "--iters", "20", "--arch", "kan", "--bits", "4", "--device", "cpu"]
    res = CliRunner().invoke(app, [*again, "--force", "--quiet", "--no-plot"])
    assert res.exit_code == 0 and res.stdout == "" and res.stderr == ""
    # --force replaced the study: no stale files of the first run
    assert sorted(p.name for p in (out / "files").iterdir()) == [
        "c_kan_4b_fixed.kc",
        "c_kan_4b_range.kc",
    ]
    assert not (out / "quant_loss.png").exists()
    new = tmp_path / "new"
    _one_line_error(CliRunner().invoke(app, [*args, "--bits", "3-17", "--out", str(new)]), "--bits")
    _one_line_error(CliRunner().invoke(app, [*args, "--bits", "9-4", "--out", str(new)]), "empty")
    _one_line_error(CliRunner().invoke(app, [*args, "--arch", "mlp", "--out", str(new)]), "mlp")
    missing = ["quant-study", str(tmp_path / "none.png"), "--out", str(new)]
    _one_line_error(CliRunner().invoke(app, missing), "no such file")
    assert not new.exists()
