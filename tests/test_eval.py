"""`kancoin eval`: result schema, resumption, baseline quality search, SIREN sizing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from kancoin.cli import app
from kancoin.codec.options import EncodeOptions
from kancoin.codec.ratecontrol import budget_bytes, choose
from kancoin.errors import KancoinError
from kancoin.eval import baselines
from kancoin.eval import runs as evaluate
from kancoin.eval.reports import load_rows
from kancoin.format.container import file_bytes
from kancoin.nets.siren import SirenSpec

from .conftest import crop

BPP = 2.0  # a 64x64 image needs a high rate for any network to fit
# what a row's key holds: every option that changes a result (effort only picks iters)
RESULT_OPTIONS = set(EncodeOptions.option_names(run=False)) - {"effort"}


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(crop(64, 64)).save(d / "a.png")
    Image.fromarray(crop(64, 64, top=100, left=500)).save(d / "b.png")
    return d


def _run(images_dir: Path, out: Path, **kw):
    args = dict(bpps=(BPP,), archs=("kan",), codecs=("jpeg",), device="cpu")
    args["options"] = EncodeOptions(iters=kw.pop("iters", 20), **kw.pop("encoder", {}))
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
        # the image's path is stored relative to the results folder, and found from there
        assert not Path(r["path"]).is_absolute()
        want = (images_dir / f"{r['image']}.png").resolve()
        assert evaluate.image_path(r, out).resolve() == want
    kan = [r for r in rep.rows if r["arch"] == "kan"]
    assert all(2 <= r["bits"] <= 16 and r["coding"] == "range" for r in kan)
    assert all(r["steps"] == 20 and r["params"] > 0 for r in kan)
    for r in kan:  # the key holds every encoder option that changes a result
        assert set(r["key"]["options"]) == RESULT_OPTIONS
        assert r["key"]["options"]["iters"] == 20 and r["key"]["options"]["bits"] == 9
        assert r["options"] == r["key"]["options"]

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
    # where it runs (threads) is not part of a setting: nothing to redo
    rep4 = _run(images_dir, out, iters=5, codecs=(), images="a", encoder={"threads": 1})
    assert rep4.computed == 0 and rep4.rows[0]["key"] == rep3.rows[0]["key"]
    assert len(list((out / "rows").glob("*.json"))) == 5


def test_images_subset_and_errors(images_dir):
    assert [p.stem for p in evaluate.list_images(images_dir, "b")] == ["b"]
    assert [p.stem for p in evaluate.list_images(images_dir, 1)] == ["a"]
    with pytest.raises(KancoinError):
        evaluate.list_images(images_dir, "nope")
    with pytest.raises(KancoinError):
        evaluate.make_settings([0.3], ["mlp"], [])
    with pytest.raises(KancoinError):
        evaluate.make_settings([0.3], [], ["gif"])
    # every option is checked for every family before any work
    with pytest.raises(KancoinError, match="--grid-size: not an option of --arch siren"):
        evaluate.make_settings([0.3], ["kan", "siren"], [], EncodeOptions(grid_size=8))


def test_settings_key_on_every_option_but_where_it_runs():
    def setting(arch="kan", **kw):
        opts = EncodeOptions(iters=20, arch=arch, **kw)
        (s,) = evaluate.make_settings([0.3], [arch], [], opts, "cpu")
        return s

    base = setting()
    assert base.name == "kan-9bit-20it-seed0-cpu" and base.options.bpp == 0.3
    assert set(base.key()["options"]) == RESULT_OPTIONS
    changes = dict(
        bits=10, seed=1, batch_size=500, lr=0.01, width=8, depth=2, grid_size=6, spline_order=2,
        first_grid_size=0, basis="rbf", node_bias=True, layernorm=True, grid_extend=1,
        optimizer="lbfgs", bit_alloc="tensor", qat=0.2, qat_lr=0.05, coding="fixed",
        compile="default",
    )  # fmt: skip
    latent_changes = dict(lmbda=0.01, levels=5, synthesis="kan")  # the latent family's own options
    assert set(changes) | set(latent_changes) | {"bpp", "arch", "iters"} == RESULT_OPTIONS
    names, keys = [base.name], [base.key()]
    latent = setting("latent")
    names.append(latent.name)
    keys.append(latent.key())
    for arch, kw in (("kan", changes), ("latent", latent_changes)):
        for k, v in kw.items():
            s = setting(arch, **{k: v})
            assert s.key()["options"][k] == v, k
            keys.append(s.key())
            names.append(s.name)
    assert all(keys.count(k) == 1 for k in keys)  # each option changes the key
    assert len(set(names)) == len(names)  # ... and the name: one row file each
    assert setting(threads=1).key() == base.key() and setting(threads=1).name == base.name
    # --effort with --iters given computes the same: the same row
    assert setting(effort="fast").key() == base.key()


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
    spec = choose("siren", 512, 768, 3, 0.3, 16)
    w = spec.widths[1]
    assert len(spec.widths) == 11 and spec.widths == (spec.in_features, *[w] * 9, 3)
    assert spec.in_features == 2  # x, y; 10 layers
    cap = budget_bytes(0.3, 512, 768)
    assert file_bytes(spec, 16) <= cap
    wider = SirenSpec((2, *[w + 1] * 9, 3))
    assert file_bytes(wider, 16) > cap


def test_references():
    from kancoin.eval.references import COIN, KAN_COIN, per_image_03, rd_points

    ref = per_image_03()
    assert len(ref) == 24
    mean = sum(v[KAN_COIN] for v in ref.values()) / 24
    assert mean == pytest.approx(25.41, abs=0.02)
    assert sum(v[COIN] for v in ref.values()) / 24 == pytest.approx(26.46, abs=0.02)
    assert any(p["bpp"] == pytest.approx(0.3074) for p in rd_points()["COIN (SIREN fp16)"])


def test_cli_eval_baseline_only(images_dir, tmp_path):
    out = tmp_path / "cli"
    args = ["eval", str(images_dir), "--codec", "jpeg,webp", "--bpp", "1", "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout.strip().splitlines()[-1])
    assert d["computed"] == 4 and {r["codec"] for r in d["rows"]} == {"jpeg", "webp"}
    assert (out / "plots" / "rd.png").is_file() and (out / "plots" / "bars_1bpp.svg").is_file()
    res = CliRunner().invoke(app, [*args, "--no-plots"])
    assert res.exit_code == 0 and "mean" in res.stdout and "0 computed, 4 reused" in res.stdout
    res = CliRunner().invoke(app, ["eval", str(images_dir), "--codec", "gif", "--out", str(out)])
    assert res.exit_code == 1 and "unknown --codec" in res.output


def test_plots(images_dir, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from kancoin.eval.plots import make_all

    out = tmp_path / "res"
    evaluate.run_eval(images_dir, out, bpps=(1.0, 2.0), archs=(), codecs=("jpeg",))
    # the crops load the original through the row's path, relative to the results folder,
    # not to the working directory
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    written = make_all([out], tmp_path / "plots", bpp=1.0)
    names = {p.name for p in written}
    assert {"rd.png", "rd.svg", "bars_1bpp.png", "crops_a_1bpp.png"} <= names


def test_crops_skip_rows_whose_decoded_png_is_missing(images_dir, tmp_path):
    """Rows copied into a results folder without their decoded PNGs (a resumed run) must not
    break the plots: the crops take an image whose PNG is there, or say none is."""
    pytest.importorskip("matplotlib")
    from kancoin.eval.plots import crops_plot

    out = tmp_path / "res"
    evaluate.run_eval(images_dir, out, bpps=(1.0,), archs=(), codecs=("jpeg",))
    (out / "decoded" / "a__jpeg_bpp1.png").unlink()
    written = crops_plot([out], tmp_path / "plots", bpp=1.0)
    assert [p.name for p in written if p.suffix == ".png"] == ["crops_b_1bpp.png"]
    for png in (out / "decoded").iterdir():
        png.unlink()
    with pytest.raises(KancoinError, match="no decoded images"):
        crops_plot([out], tmp_path / "plots2", bpp=1.0)


@pytest.fixture
def one_image(tmp_path: Path) -> Path:
    d = tmp_path / "one"
    d.mkdir()
    Image.fromarray(crop(24, 32)).save(d / "c.png")
    return d


def test_cli_eval_a_non_default_encoder_option(one_image, tmp_path):
    out = tmp_path / "cli"
    args = ["eval", str(one_image), "--images", "1", "--arch", "kan", "--iters", "20", "--bpp",
            "2", "--out", str(out), "--no-plots", "--quiet", "--device", "cpu"]  # fmt: skip
    res = CliRunner().invoke(app, [*args, "--basis", "rbf"])
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    (path,) = (out / "rows").glob("*.json")
    row = json.loads(path.read_text())
    assert row["spec"]["basis"] == "rbf" and row["architecture"].startswith("KAN")
    assert "rbf" in row["architecture"] and row["steps"] == 20
    assert row["setting"] == "kan-9bit-20it-seed0-cpu-basis-rbf" and "rbf" in path.name
    assert row["key"]["options"]["basis"] == "rbf" and row["path"] == "../one/c.png"
    # a second setting differing only in --grid-size: its own row file and key
    res = CliRunner().invoke(app, [*args, "--basis", "rbf", "--grid-size", "4"])
    assert res.exit_code == 0, res.output
    rows = {p.name: json.loads(p.read_text()) for p in (out / "rows").glob("*.json")}
    assert len(rows) == 2 and path.name in rows
    (other,) = [r for name, r in rows.items() if name != path.name]
    assert other["setting"] == "kan-9bit-20it-seed0-cpu-grid_size-4-basis-rbf"
    assert other["spec"]["grid_size"] == 4 and other["key"]["options"]["grid_size"] == 4
    assert other["key"] != row["key"] and other["file"] != row["file"]
    a, b = row["key"]["options"], other["key"]["options"]
    assert {k for k in a if a[k] != b[k]} == {"grid_size"}
    # a bad choice is Typer's usage error
    res = CliRunner().invoke(app, [*args, "--basis", "splines"])
    assert res.exit_code == 2 and "--basis" in res.output


def test_rd_curves_join_a_setting_across_folders(images_dir, tmp_path):
    """Runs of one setting at other rates in other folders make one curve; two folders with
    the same setting at the same rate keep a curve each (their names do not say how they
    differ)."""
    from kancoin.eval.plots import rd_curves

    for name, bpp in (("low", 1.0), ("high", 2.0), ("again", 1.0)):
        evaluate.run_eval(images_dir, tmp_path / name, bpps=(bpp,), archs=(), codecs=("jpeg",))
    low, high = (load_rows(tmp_path / n) for n in ("low", "high"))
    joined = rd_curves([tmp_path / "low", tmp_path / "high"])
    assert len(joined) == 1 and joined[0]["label"].endswith("(high + low) [2 img]")
    means = [np.mean([r["psnr"] for r in rows]) for rows in (low, high)]
    assert joined[0]["quality"] == pytest.approx(means, abs=1e-3)
    apart = rd_curves([tmp_path / n for n in ("low", "high", "again")])
    assert sorted(c["label"].split("(")[1].split(")")[0] for c in apart) == ["again", "high", "low"]
    assert all(len(c["bpp"]) == 1 for c in apart)
