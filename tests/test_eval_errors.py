"""`kancoin eval` past a bad image: error rows, the run goes on, exit 1 at the end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from kancoin.codec.options import EncodeOptions
from kancoin.errors import KancoinError
from kancoin.eval import reports
from kancoin.eval import runs as evaluate

from .conftest import crop
from .test_cli import run

BPP = "2"  # a 24x32 image needs a high rate for any network to fit
SETTING = "kan-9bit-10it-seed0-cpu"


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    (d / "a_broken.png").write_bytes(b"this is text, not a PNG\n")  # first in name order
    Image.fromarray(crop(24, 32)).save(d / "good.png")
    return d


def _eval(images_dir: Path, out: Path, *extra: str):
    return run(
        "eval", images_dir, "--out", out, "--arch", "kan", "--bpp", BPP, "--iters", "10",
        "--device", "cpu", "--no-plots", *extra,
    )  # fmt: skip


def _rows(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "rows").glob("*.json")}


def test_bad_image_becomes_an_error_row(images_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "res"
    r = _eval(images_dir, out)
    assert r.exception is None, r.exception
    assert r.returncode == 1
    assert "Traceback" not in r.stderr + r.stdout
    # the table is printed, with the good image's PSNR and the bad one marked
    assert "good" in r.stdout and "error" in r.stdout and "dB" in r.stdout
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines[-1] == (
        "error: 1 of 2 rows failed (a_broken); their rows in rows/ hold the error and are "
        "redone on a rerun"
    )
    progress = [line for line in lines if line.startswith("[")]
    assert len(progress) == 2
    assert "a_broken" in progress[0] and "error: " in progress[0]
    assert "not an image Pillow can read" in progress[0]
    assert "good" in progress[1] and progress[1].endswith("done")

    rows = _rows(out)
    assert set(rows) == {f"a_broken__{SETTING}_bpp2", f"good__{SETTING}_bpp2"}
    bad, good = rows[f"a_broken__{SETTING}_bpp2"], rows[f"good__{SETTING}_bpp2"]
    assert bad["error"].endswith("a_broken.png: not an image Pillow can read")
    assert "\n" not in bad["error"]
    assert bad["psnr"] is None and bad["bpp"] is None and bad["file"] is None
    assert bad["image"] == "a_broken" and bad["setting"] == SETTING and bad["target_bpp"] == 2.0
    assert "error" not in good and good["psnr"] > 0 and (out / good["file"]).is_file()
    assert sorted(p.name for p in (out / "files").iterdir()) == [f"good__{SETTING}_bpp2.kc"]

    # summaries and results come from the good row only
    (entry,) = json.loads((out / "summary.json").read_text())
    assert entry["name"] == SETTING and entry["results"]["n_images"] == [1]
    assert entry["results"]["psnr-rgb"] == [good["psnr"]]
    results = json.loads((out / "results.json").read_text())
    assert [x["image"] for x in results] == ["good"]

    # a rerun reuses the good row and redoes the error row (it fails again)
    r2 = _eval(images_dir, out)
    assert r2.returncode == 1
    progress = [line for line in r2.stderr.splitlines() if line.startswith("[")]
    assert "error: " in progress[0] and "skip (already in rows/)" in progress[1]
    assert "1 computed, 1 reused" in r2.stdout


def test_a_fixed_image_is_redone(images_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "res"
    args = ("eval", images_dir, "--out", out, "--bpp", BPP, "--codec", "webp", "--no-plots")
    assert run(*args).returncode == 1
    Image.fromarray(crop(24, 32, top=100)).save(images_dir / "a_broken.png")
    r = run(*args)
    assert r.returncode == 0, r.stderr
    assert "1 computed, 1 reused" in r.stdout
    row = _rows(out)["a_broken__webp_bpp2"]
    assert "error" not in row and row["psnr"] > 0 and (out / row["file"]).is_file()
    (entry,) = json.loads((out / "summary.json").read_text())
    assert entry["results"]["n_images"] == [2]


def test_json_output_still_exits_non_zero(images_dir: Path, tmp_path: Path) -> None:
    r = run(
        "eval", images_dir, "--out", tmp_path / "res", "--bpp", BPP, "--codec", "webp",
        "--no-plots", "--json",
    )  # fmt: skip
    assert r.returncode == 1 and r.exception is None
    doc = json.loads(r.stdout)
    assert doc["computed"] == 2
    assert [(x["image"], x["codec"], bool(x.get("error"))) for x in doc["rows"]] == [
        ("a_broken", "webp", True), ("good", "webp", False)
    ]  # fmt: skip
    assert r.stderr.strip().splitlines() == [
        "error: 1 of 2 rows failed (a_broken); their rows in rows/ hold the error and are "
        "redone on a rerun"
    ]


def test_an_encode_error_is_a_row_and_the_other_settings_run(
    images_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (images_dir / "a_broken.png").unlink()
    real = evaluate._run_one

    def failing(pixels, s, threads):
        if s.is_net:
            raise KancoinError("--bpp 2 is too small for any network (for the test)")
        return real(pixels, s, threads)

    monkeypatch.setattr(evaluate, "_run_one", failing)
    out = tmp_path / "res"
    lines: list[str] = []
    rep = evaluate.run_eval(
        images_dir, out, bpps=(2.0,), archs=("kan",), codecs=("webp",),
        options=EncodeOptions(iters=10), device="cpu", progress=lines.append,
    )  # fmt: skip
    assert [r.get("error") for r in rep.rows] == [
        "--bpp 2 is too small for any network (for the test)",
        None,
    ]
    assert [r["codec"] for r in rep.failed] == ["kancoin"]
    assert "error: --bpp 2 is too small" in lines[0] and lines[1].endswith("done")
    assert [e["name"] for e in rep.summary] == ["webp"]
    table = reports.format_table(rep.rows)
    assert "error" in table and "1 failed" in table


def test_reports_skip_error_rows() -> None:
    good = {
        "image": "a", "setting": "s", "description": "d", "target_bpp": 0.3, "bpp": 0.29,
        "psnr": 30.0, "mse": 65.0, "encode_s": 1.0, "decode_s": 0.1,
    }  # fmt: skip
    bad = {"image": "b", "setting": "s", "target_bpp": 0.3, "bpp": None, "psnr": None,
           "error": "b.png: not an image Pillow can read"}  # fmt: skip
    (entry,) = reports.summarize([good, bad])
    assert entry["results"]["n_images"] == [1] and entry["results"]["psnr-rgb"] == [30.0]
    header, body = reports.compare_table([good, bad])
    assert [line[0] for line in body] == ["a", "mean"]
    assert reports.format_table([bad]).splitlines()[1].split() == ["b", "error"]
