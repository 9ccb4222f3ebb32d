"""`kancoin eval`: result schema, resumption, baseline quality search, SIREN sizing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from kancoin import baselines, evaluate
from kancoin.bitstream import file_bytes
from kancoin.errors import KancoinError
from kancoin.ratecontrol import budget_bytes, choose_siren
from kancoin.spec import IN_FEATURES, ModelSpec

from .conftest import crop

BPP = 2.0  # a 64x64 image needs a high rate for any network to fit


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(crop(64, 64)).save(d / "a.png")
    Image.fromarray(crop(64, 64, top=100, left=500)).save(d / "b.png")
    return d


def _run(images_dir: Path, out: Path, **kw):
    args = dict(bpps=(BPP,), archs=("kan",), codecs=("jpeg",), iters=20, device="cpu")
    args.update(kw)
    return evaluate.run_eval(images_dir, out, **args)


def test_schema_and_resume(images_dir, tmp_path, monkeypatch):
    out = tmp_path / "res"
    rep = _run(images_dir, out)
    assert rep.computed == 4 and rep.skipped == 0
    for r in rep.rows:
        for k in (
            "image", "height", "width", "codec", "arch", "architecture", "params", "bits",
            "file_bytes", "bpp", "psnr", "encode_s", "decode_s", "steps", "device", "seed",
            "target_bpp",
        ):  # fmt: skip
            assert k in r, k
        assert r["bpp"] <= BPP + 1e-9 and r["psnr"] > 0
        assert r["bpp"] == pytest.approx(8 * r["file_bytes"] / (64 * 64))
        assert (out / r["file"]).stat().st_size == r["file_bytes"]
    kan = [r for r in rep.rows if r["arch"] == "kan"]
    assert all(2 <= r["bits"] <= 16 and r["coding"] == "range" for r in kan)
    assert all(r["steps"] == 20 and r["params"] > 0 for r in kan)

    summary = json.loads((out / "summary.json").read_text())
    assert {e["name"] for e in summary} == {"jpeg", "kan-9bit-20it-seed0-cpu"}
    for e in summary:
        assert set(e) >= {"name", "description", "results"}
        res = e["results"]
        for k in ("bpp", "psnr-rgb", "psnr-of-mean-mse", "n_images"):
            assert len(res[k]) == 1, k
        assert res["n_images"] == [2]
    assert len(json.loads((out / "results.json").read_text())) == 4
    assert (out / "results.csv").read_text().count("\n") == 5

    # a rerun encodes nothing; a changed setting (iters) is a new row
    calls = []
    real = evaluate._run_one
    monkeypatch.setattr(evaluate, "_run_one", lambda *a: calls.append(a) or real(*a))
    rep2 = _run(images_dir, out)
    assert calls == [] and rep2.computed == 0 and rep2.skipped == 4
    assert [r["psnr"] for r in rep2.rows] == [r["psnr"] for r in rep.rows]
    rep3 = _run(images_dir, out, iters=5, codecs=(), images="a")
    assert rep3.computed == 1 and len(calls) == 1


def test_images_subset_and_errors(images_dir):
    assert [p.stem for p in evaluate.list_images(images_dir, "b")] == ["b"]
    assert [p.stem for p in evaluate.list_images(images_dir, 1)] == ["a"]
    with pytest.raises(KancoinError):
        evaluate.list_images(images_dir, "nope")
    with pytest.raises(KancoinError):
        evaluate.make_settings([0.3], ["mlp"], [])
    with pytest.raises(KancoinError):
        evaluate.make_settings([0.3], [], ["gif"])


@pytest.mark.parametrize("codec,top", [("jpeg", 95), ("webp", 100)])
def test_baseline_highest_quality_that_fits(codec, top):
    px = crop(64, 96)
    for bpp in (0.5, 1.0, 2.0):
        r = baselines.compress(px, codec, bpp)
        budget = int(bpp * 64 * 96 // 8)
        assert r.file_bytes <= budget and r.bpp <= bpp
        assert r.file_bytes == baselines.encoded_size(px, codec, r.quality)
        if r.quality < top:
            assert baselines.encoded_size(px, codec, r.quality + 1) > budget
        assert r.psnr > 20


def test_jpeg2000_fits_budget():
    if not baselines.available("jpeg2000"):
        pytest.skip("no OpenJPEG in this Pillow")
    px = crop(64, 96)
    r = baselines.compress(px, "jpeg2000", 1.0)
    assert r.file_bytes <= int(1.0 * 64 * 96 // 8)
    assert r.file_bytes > 0.8 * 64 * 96 / 8  # uses most of the budget
    assert r.psnr > 20


def test_baseline_impossible_rate():
    with pytest.raises(KancoinError):
        baselines.compress(crop(16, 16), "jpeg", 0.01)


def test_siren_fills_budget():
    spec = choose_siren(512, 768, 3, 0.3, 16)
    w = spec.widths[1]
    assert len(spec.widths) == 11 and spec.widths == (IN_FEATURES, *[w] * 9, 3)  # 10 layers
    cap = budget_bytes(0.3, 512, 768)
    assert file_bytes(spec, 16) <= cap
    wider = ModelSpec("siren", (IN_FEATURES, *[w + 1] * 9, 3))
    assert file_bytes(wider, 16) > cap


def test_references():
    from kancoin.references import COIN, KAN_COIN, per_image_03, rd_points

    ref = per_image_03()
    assert len(ref) == 24
    mean = sum(v[KAN_COIN] for v in ref.values()) / 24
    assert mean == pytest.approx(25.41, abs=0.02)
    assert sum(v[COIN] for v in ref.values()) / 24 == pytest.approx(26.46, abs=0.02)
    assert any(p["bpp"] == pytest.approx(0.3074) for p in rd_points()["COIN (SIREN fp16)"])


def test_cli_eval_baseline_only(images_dir, tmp_path):
    from kancoin.cli import app

    out = tmp_path / "cli"
    args = ["eval", str(images_dir), "--codec", "jpeg,webp", "--bpp", "1", "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout.strip().splitlines()[-1])
    assert d["computed"] == 4 and {r["codec"] for r in d["rows"]} == {"jpeg", "webp"}
    assert (out / "plots" / "rd.png").is_file() and (out / "plots" / "bars_1bpp.svg").is_file()
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "mean" in res.stdout
    res = CliRunner().invoke(app, ["eval", str(images_dir), "--codec", "gif", "--out", str(out)])
    assert res.exit_code == 1 and "unknown --codec" in res.output


def test_plots(images_dir, tmp_path):
    pytest.importorskip("matplotlib")
    from kancoin.plots import make_all

    out = tmp_path / "res"
    evaluate.run_eval(images_dir, out, bpps=(1.0, 2.0), archs=(), codecs=("jpeg",))
    written = make_all([out], tmp_path / "plots", bpp=1.0)
    names = {p.name for p in written}
    assert {"rd.png", "rd.svg", "bars_1bpp.png", "crops_a_1bpp.png"} <= names


def test_crops_skip_rows_whose_decoded_png_is_missing(images_dir, tmp_path):
    """Rows copied into a results folder without their decoded PNGs (a resumed run) must not
    break the plots: the crops take an image whose PNG is there, or say none is."""
    pytest.importorskip("matplotlib")
    from kancoin.plots import crops_plot

    out = tmp_path / "res"
    evaluate.run_eval(images_dir, out, bpps=(1.0,), archs=(), codecs=("jpeg",))
    (out / "decoded" / "a__jpeg_bpp1.png").unlink()
    written = crops_plot([out], tmp_path / "plots", bpp=1.0)
    assert [p.name for p in written if p.suffix == ".png"] == ["crops_b_1bpp.png"]
    for png in (out / "decoded").iterdir():
        png.unlink()
    with pytest.raises(KancoinError, match="no decoded images"):
        crops_plot([out], tmp_path / "plots2", bpp=1.0)
