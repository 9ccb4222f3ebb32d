"""`kancoin ae-study`: loaders and their splits, parameter matching, kNN, the study end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from kancoin.cli import app
from kancoin.errors import KancoinError
from kancoin.research.ae import data as ae_data
from kancoin.research.ae.models import FAMILIES, AESize, build, count_params, match_params
from kancoin.research.ae.study import AEConfig, knn_accuracy, parse_sizes, run_study, train

sklearn = pytest.importorskip("sklearn")


def _built_params(size: AESize, shape) -> int:
    return sum(p.numel() for p in build(size, shape).parameters() if p.requires_grad)


SHAPES = [(1, 8, 8), (3, 32, 32), (1, 7, 9)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("family", FAMILIES)
def test_parameter_count_is_the_built_networks(shape, family) -> None:
    size = AESize(family, 6, hidden=20, channels=(5, 9), grid_size=4, spline_order=2)
    assert count_params(size, shape) == _built_params(size, shape)
    x = torch.rand(3, *shape)
    model = build(size, shape)
    assert model(x).shape == x.shape
    assert model.encode(x).shape == (3, 6)


@pytest.mark.parametrize("shape", SHAPES[:2])
@pytest.mark.parametrize("bottleneck", [2, 32, 150])
@pytest.mark.parametrize("hidden", [16, 64])
def test_equal_parameters_within_5_percent(shape, bottleneck, hidden) -> None:
    """Counted on the built networks, not by the formula the matching uses."""
    kan = _built_params(AESize("kan", bottleneck, hidden=hidden), shape)
    for family in ("mlp", "cnn"):
        size = match_params(family, kan, bottleneck, shape)
        assert abs(_built_params(size, shape) - kan) <= 0.05 * kan, (family, size)


def test_matching_that_cannot_be_met_is_refused() -> None:
    with pytest.raises(KancoinError, match="within 5 %"):
        match_params("cnn", 10, 2, (3, 32, 32))


def test_knn_agrees_with_scikit_learn() -> None:
    """k = 1 (no ties) on 4 classes and k = 3 on 2 classes (no ties possible)."""
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(1)
    z_tr, z_te = rng.normal(size=(200, 5)), rng.normal(size=(80, 5))
    for k, n_cls in ((1, 4), (3, 2)):
        y_tr, y_te = rng.integers(0, n_cls, 200), rng.integers(0, n_cls, 80)
        ref = KNeighborsClassifier(n_neighbors=k).fit(z_tr, y_tr).score(z_te, y_te)
        ours = knn_accuracy(torch.tensor(z_tr), y_tr, torch.tensor(z_te), y_te, k)
        assert ours == pytest.approx(ref)


def test_training_for_a_time_stops_when_it_is_spent() -> None:
    x = torch.rand(64, 1, 8, 8)
    model = build(AESize("mlp", 4, hidden=8), (1, 8, 8))
    epochs, seconds = train(model, x, AEConfig(batch_size=8), 0, seconds=0.2)
    assert seconds >= 0.2 and epochs > 0
    epochs, _ = train(model, x, AEConfig(batch_size=8), 0, epochs=3)
    assert epochs == 3


def test_digits_split_is_stratified_and_disjoint() -> None:
    d = ae_data.digits()
    assert len(d.x_train) + len(d.x_test) == 1797
    assert not set(d.source_train) & set(d.source_test)
    assert d.x_train.shape[1:] == (1, 8, 8) and 0 <= d.x_train.min() and d.x_train.max() <= 1
    for c in range(10):  # a quarter of each class held out
        n = np.sum(d.y_train == c) + np.sum(d.y_test == c)
        assert abs(np.sum(d.y_test == c) - 0.25 * n) <= 1


def _kodak_like(folder: Path, names: list[str], size=(70, 100)) -> dict[str, np.ndarray]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    out = {}
    for n in names:
        px = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(px).save(folder / f"{n}.png")
        out[n] = px
    return out


def test_kodak_patches_never_train_on_a_test_image(tmp_path) -> None:
    names = [f"kodim{i:02d}" for i in (1, 2, 3, 21, 22, 23, 24)]
    imgs = _kodak_like(tmp_path / "k", names)
    d = ae_data.kodak_patches(tmp_path / "k")
    assert not set(d.source_train) & set(d.source_test)
    # 70×100 images: 2×3 whole patches each, row-major, remainders dropped
    assert len(d.x_train) == 3 * 6 and len(d.x_test) == 4 * 6
    test_set = {tuple(p.ravel()) for p in d.x_test}
    for n, px in imgs.items():
        first = (px[:32, :32].transpose(2, 0, 1) / 255.0).astype(np.float32)
        held = n in ae_data.KODAK_TEST
        assert (tuple(first.ravel()) in test_set) == held
        assert any(np.array_equal(first, p) for p in (d.x_test if held else d.x_train))
    assert "photos" in d.extra and d.extra["photos"].shape[1:] == (3, 32, 32)


def test_kodak_patches_need_the_test_images(tmp_path) -> None:
    _kodak_like(tmp_path / "k", ["kodim01", "kodim21"])
    with pytest.raises(KancoinError, match="no test image kodim22"):
        ae_data.kodak_patches(tmp_path / "k")


def test_npz_with_a_split_and_labels(tmp_path) -> None:
    """Keras' layout: uint8 (N, H, W, C)."""
    rng = np.random.default_rng(0)
    x_tr = rng.integers(0, 256, (20, 6, 6, 3), dtype=np.uint8)
    x_te = rng.integers(0, 256, (5, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "c.npz", x_train=x_tr, x_test=x_te, y_train=np.arange(20) % 2,
             y_test=np.arange(5) % 2)  # fmt: skip
    d = ae_data.load(str(tmp_path / "c.npz"))
    assert d.x_train.shape == (20, 3, 6, 6) and d.labelled
    np.testing.assert_array_equal(d.x_test[2, 1], x_te[2, :, :, 1] / np.float32(255))


def test_npz_without_a_split_is_split_80_20(tmp_path) -> None:
    x = np.random.default_rng(0).random((50, 5, 5)).astype(np.float32)
    np.savez(tmp_path / "m.npz", x=x)
    d = ae_data.load(str(tmp_path / "m.npz"))
    assert (len(d.x_train), len(d.x_test)) == (40, 10) and not d.labelled
    assert not set(d.source_train) & set(d.source_test)
    np.testing.assert_array_equal(d.x_test[0, 0], x[d.source_test[0]])


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((4, 2, 5, 5, 5))}, "samples must be"),
        ({"x": np.full((4, 5, 5), 2.0)}, "floats in \\[0, 1\\]"),
        ({"x": np.zeros((4, 100, 100), np.uint8)}, "larger than 64"),
        ({"images": np.zeros((4, 5, 5))}, "give x_train and x_test"),
        ({"x_train": np.zeros((4, 5, 5)), "x_test": np.zeros((2, 5, 5)),
          "y_train": np.zeros(4, int)}, "labels for one split only"),  # fmt: skip
        ({"x": np.zeros((4, 5, 5)), "y": np.zeros(3, int)}, "4 integers"),
    ],
)
def test_bad_npz_is_one_clear_error(tmp_path, arrays, message) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(KancoinError, match=message):
        ae_data.load(str(tmp_path / "bad.npz"))


def _folder(root: Path, layout: dict[str, int], size=(6, 6)) -> None:
    rng = np.random.default_rng(0)
    for sub, n in layout.items():
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            px = rng.integers(0, 256, size, dtype=np.uint8)
            Image.fromarray(px).save(root / sub / f"{i}.png")


def test_folder_with_class_subfolders(tmp_path) -> None:
    _folder(tmp_path / "f", {"cat": 10, "dog": 5})
    d = ae_data.load(str(tmp_path / "f"))
    assert d.labelled and d.x_train.shape[1:] == (1, 6, 6)
    assert len(d.x_train) + len(d.x_test) == 15
    assert sorted(np.concatenate([d.y_train, d.y_test]).tolist()) == [0] * 10 + [1] * 5


def test_folder_with_train_and_test(tmp_path) -> None:
    _folder(tmp_path / "f", {"train/0": 4, "train/1": 4, "test/0": 2, "test/1": 1})
    d = ae_data.load(str(tmp_path / "f"))
    assert (len(d.x_train), len(d.x_test)) == (8, 3)
    assert d.y_test.tolist() == [0, 0, 1]


def test_folder_of_mixed_sizes_is_refused(tmp_path) -> None:
    _folder(tmp_path / "f", {"a": 3})
    Image.fromarray(np.zeros((7, 6), np.uint8)).save(tmp_path / "f" / "a" / "z.png")
    with pytest.raises(KancoinError, match="all one size"):
        ae_data.load(str(tmp_path / "f"))


def test_parse_sizes() -> None:
    assert parse_sizes("8,2, 4,8") == (2, 4, 8)
    for bad in ("", "0,2", "a"):
        with pytest.raises(KancoinError):
            parse_sizes(bad)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("ae") / "out"
    d = ae_data.digits()  # a part of it: the study's code paths, in seconds
    data = ae_data.AEData("digits", d.x_train[:300], d.x_test[:100], d.y_train[:300],
                          d.y_test[:100], d.source_train[:300], d.source_test[:100])  # fmt: skip
    cfg = AEConfig(bottlenecks=(2, 3), epochs=1, seeds=2, hidden=8, channels=(2, 4),
                   kan_backend="dense")  # the CLI test measures the choice  # fmt: skip
    return run_study(data, out, cfg, plot=True), data


def test_study_rows_and_tables(tiny_study) -> None:
    rep, data = tiny_study
    assert len(rep.rows) == 3 * 3 * 2 * 2  # comparisons × families × bottlenecks × seeds
    kan = {(r["bottleneck"], r["seed"]): r for r in rep.rows if r["family"] == "kan"}
    for r in rep.rows:
        assert r["psnr"] == pytest.approx(-10 * np.log10(r["mse"]), abs=1e-4)
        assert 0 <= r["knn_acc"] <= 1
        ref = kan[r["bottleneck"], r["seed"]]
        if r["comparison"] == "params":
            assert abs(r["params"] - ref["params"]) <= 0.05 * ref["params"]
        if r["comparison"] == "time":  # trained for at least the KAN's time, stopped then
            assert r["train_s"] >= ref["train_s"]
        if r["comparison"] in ("paper", "params") or r["family"] == "kan":
            assert r["epochs"] == 1
    tables = (rep.out_dir / "tables.md").read_text()
    assert tables.count("### ") == 3 and tables.count("| 3 | MLP |") == 3
    for name in ("rows.csv", "rows.json", "summary.json", "psnr_vs_bottleneck.png",
                 "psnr_vs_params.png", "reconstructions.png"):  # fmt: skip
        assert (rep.out_dir / name).stat().st_size > 0
    assert rep.config["kan_backend"] == "dense"


def test_the_psnr_of_a_row_is_the_networks_on_the_test_split(tiny_study) -> None:
    """Recomputed here from a network trained the same way (same seed: same weights)."""
    rep, data = tiny_study
    row = next(r for r in rep.rows if r["family"] == "mlp" and r["comparison"] == "paper")
    torch.manual_seed(row["seed"])
    model = build(AESize("mlp", row["bottleneck"], hidden=8), (1, 8, 8))
    cfg = AEConfig(epochs=1, hidden=8)
    train(model, torch.from_numpy(data.x_train), cfg, row["seed"], epochs=1)
    model.eval()
    with torch.no_grad():
        rec = model(torch.from_numpy(data.x_test)).numpy().astype(np.float64)
    mse = np.mean((rec - data.x_test.astype(np.float64)) ** 2)
    assert row["mse"] == pytest.approx(mse, rel=1e-6)


def test_study_refuses_to_overwrite(tiny_study) -> None:
    rep, data = tiny_study
    with pytest.raises(KancoinError, match="already holds a study"):
        run_study(data, rep.out_dir, AEConfig(bottlenecks=(2,), epochs=1, seeds=1, hidden=4))


def test_cli_end_to_end(tmp_path) -> None:
    """The real command on a tiny configuration: JSON out, and one-line errors."""
    runner = CliRunner()
    out = tmp_path / "s"
    args = ["ae-study", "--bottleneck", "2", "--epochs", "1", "--seeds", "1", "--hidden", "4",
            "--channels", "2,2", "--compare", "paper,params", "--no-plot",
            "--out", str(out)]  # fmt: skip
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert {(s["comparison"], s["family"]) for s in got["summary"]} == {
        (c, f) for c in ("paper", "params") for f in FAMILIES
    }
    assert got["config"]["knn_acc_pixels"] > 0.9  # raw-pixel kNN on the digits
    timing = got["config"]["kan_backend_step_s"]
    assert got["config"]["kan_backend"] == min(timing, key=timing.get)
    res = runner.invoke(app, [*args, "--quiet"])
    assert res.exit_code == 1 and "already holds a study" in res.stderr
    for bad, msg in ((["--data", str(tmp_path / "none")], "no such file or folder"),
                     (["--compare", "speed"], "--compare"),
                     (["--channels", "4"], "--channels")):  # fmt: skip
        res = runner.invoke(app, [*args, "--force", *bad])
        assert res.exit_code == 1 and msg in res.stderr and len(res.stderr.splitlines()) == 1


def test_an_npz_too_big_for_memory_is_refused_from_its_header(tmp_path) -> None:
    """The shape in the .npy header is checked before any data is read (here there is none)."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (200_000, 64, 64, 3)}
    )
    with zipfile.ZipFile(tmp_path / "big.npz", "w") as zf:
        zf.writestr("x.npy", header.getvalue())  # a header and no data
    with pytest.raises(KancoinError, match="more than the study holds"):
        ae_data.load(str(tmp_path / "big.npz"))


def test_a_truncated_npz_is_one_clear_error(tmp_path) -> None:
    np.savez(tmp_path / "ok.npz", x=np.zeros((4, 5, 5), np.uint8))
    data = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(KancoinError, match="not a readable .npz"):
        ae_data.load(str(tmp_path / "cut.npz"))
