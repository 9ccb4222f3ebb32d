"""`kancoin sweep`: reproducible draws, real files, resumable rows, summary and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from kancoin.cli import app
from kancoin.errors import KancoinError
from kancoin.format.container import read_header
from kancoin.metrics import psnr
from kancoin.research.sweep import draw_trial, run_sweep, summarize

from .conftest import crop, reference_decode


@pytest.fixture
def img(tmp_path: Path, monkeypatch) -> Path:
    """A 20x24 crop; the trials (one process, ``jobs=1``: the encoder's thread policy) run as
    on one core, as the other tests' small encodes do (their tensors are tiny)."""
    import kancoin.codec.runtime

    monkeypatch.setattr(kancoin.codec.runtime, "usable_cores", lambda: 1)
    p = tmp_path / "tiny.png"
    Image.fromarray(crop(20, 24)).save(p)
    return p


def test_draws_are_reproducible_and_fit_the_budget() -> None:
    a = [draw_trial(i, (512, 768, 3), 0.3, 100, seed=0) for i in range(8)]
    b = [draw_trial(i, (512, 768, 3), 0.3, 100, seed=0) for i in range(8)]
    assert a == b
    assert a != [draw_trial(i, (512, 768, 3), 0.3, 100, seed=1) for i in range(8)]
    assert len({t.basis for t in a}) > 1 and len({t.width for t in a}) > 1


def test_sweep_rows_are_real_files_and_resume(img: Path, tmp_path: Path) -> None:
    out = tmp_path / "sw"
    rep = run_sweep(img, out, bpp=8.0, trials=3, iters=15, bases=("bspline", "fourier"))
    assert rep.computed == 3 and rep.reused == 0 and len(rep.rows) == 3
    pixels = np.asarray(Image.open(img).convert("RGB"))
    for row in rep.rows:
        data = (out / row["file"]).read_bytes()
        assert len(data) == row["file_bytes"]
        # the row's PSNR is the file's: an independent decode of it gives the same
        assert row["psnr"] == pytest.approx(psnr(reference_decode(data), pixels), abs=0.05)
        header, _ = read_header(data)
        assert header.spec.basis == row["basis"] and row["bpp"] <= 8.0
    again = run_sweep(img, out, bpp=8.0, trials=4, iters=15, bases=("bspline", "fourier"))
    assert again.reused == 3 and again.computed == 1  # only the new trial runs
    for name in ("trials.csv", "summary.md", "summary.json"):
        assert (out / name).is_file()
    s = json.loads((out / "summary.json").read_text())
    assert s["best"][0]["psnr"] == max(r["psnr"] for r in again.rows)


def test_summary_profiles() -> None:
    rows = [
        dict(trial=i, optimizer="adam", lr=10.0**-i, width=8 + i, depth=1 + i % 2,
             basis="rbf" if i < 3 else "tanh", grid_size=3, architecture="x", params=1,
             psnr=30.0 - i, float_psnr=31.0, bpp=0.3, file_bytes=1, seconds=1, step_ms=1)
        for i in range(8)
    ]  # fmt: skip
    s = summarize(rows)
    assert [r["trial"] for r in s["best"][:3]] == [0, 1, 2]
    assert s["best_quarter"]["basis"] == {"rbf": 3} and s["all"]["n"] == 8


def test_bad_requests(img: Path, tmp_path: Path) -> None:
    with pytest.raises(KancoinError, match="basis"):
        run_sweep(img, tmp_path / "x", trials=1, iters=5, bases=("splines",))
    with pytest.raises(KancoinError, match="at least 1"):
        run_sweep(img, tmp_path / "x", trials=0)
    with pytest.raises(KancoinError, match="--bpp must be positive"):
        run_sweep(img, tmp_path / "x", bpp=0.0, trials=1)
    (tmp_path / "afile").write_text("")
    with pytest.raises(KancoinError, match="results folder"):
        run_sweep(img, tmp_path / "afile", trials=1, iters=5)


def test_cli_json_and_errors(img: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["sweep", str(img), "--bpp", "8", "--trials", "2", "--iters", "10", "--basis",
            "bspline,rsf", "--out", str(tmp_path / "o"), "--no-plot", "--json"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["computed"] == 2 and len(d["rows"]) == 2
    bad = runner.invoke(app, ["sweep", str(tmp_path / "missing.png"), "--out", str(tmp_path)])
    assert bad.exit_code == 1 and "error:" in bad.output and "Traceback" not in bad.output


def test_a_failed_trial_is_a_row_not_a_crash(img: Path, tmp_path: Path, monkeypatch) -> None:
    import kancoin.codec.encode

    def boom(*a, **k):
        raise ValueError("weights are not finite")

    monkeypatch.setattr(kancoin.codec.encode, "encode_pixels", boom)
    rep = run_sweep(img, tmp_path / "f", bpp=8.0, trials=2, iters=5, bases=("bspline",))
    assert all(r["psnr"] is None and "not finite" in r["error"] for r in rep.rows)
    assert rep.summary["failed"] == 2 and rep.summary["best"] == []
    assert "failed" in (tmp_path / "f" / "summary.md").read_text()
