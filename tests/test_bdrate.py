"""BD-rate and BD-PSNR with PCHIP: the interpolant against scipy's, the deltas against the
``bjontegaard`` package's, and ``kancoin bdrate`` over result folders and summary files; and,
over the same results folder, ``kancoin plot --metric psnr|ms-ssim``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kancoin.errors import KancoinError
from kancoin.eval import bdrate, plots
from kancoin.eval import runs as evaluate

from .conftest import crop
from .test_cli import run

# Golden values computed once with bjontegaard 1.3.0 (pip install bjontegaard; it calls
# scipy 1.17.1's PchipInterpolator) as
#   bd.bd_rate(rate_anchor, psnr_anchor, rate_test, psnr_test, method="pchip")
#   bd.bd_psnr(rate_anchor, psnr_anchor, rate_test, psnr_test, method="pchip")
# on the three examples of the package (README.md and example_usage.py, github.com/FAU-LMS/
# bjontegaard): (rate_anchor, psnr_anchor, rate_test, psnr_test, BD-rate %, BD-PSNR dB).
BJONTEGAARD = {
    "readme": (
        [9487.76, 4593.60, 2486.44, 1358.24], [40.037, 38.615, 36.845, 34.851],
        [9787.80, 4469.00, 2451.52, 1356.24], [40.121, 38.651, 36.970, 34.987],
        -4.417485350589045, 0.11969278542479489,
    ),
    "high rates": (
        [82472.76, 26875.24, 9487.76, 4593.6], [43.825, 41.404, 40.037, 38.615],
        [99896.96, 33952.04, 9787.8, 4469.0], [44.731, 41.875, 40.121, 38.651],
        -4.47218200276197, 0.08887484704747745,
    ),
    "six points": (
        [82472.76, 26875.24, 9487.76, 4593.6, 3600, 2900],
        [43.825, 41.404, 40.037, 38.615, 36.5, 35.1],
        [99896.96, 33952.04, 9787.8, 4469.0, 4040, 3300],
        [44.731, 41.875, 40.121, 38.651, 37, 36.5],
        -2.9528024116427964, 0.08953590194998828,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BJONTEGAARD))
def test_bd_rate_and_psnr_equal_the_bjontegaard_packages_pchip(case: str) -> None:
    ra, qa, rt, qt, want_rate, want_psnr = BJONTEGAARD[case]
    anchor, test = list(zip(ra, qa)), list(zip(rt, qt))
    assert bdrate.bd_rate(anchor, test) == pytest.approx(want_rate, abs=1e-10)
    assert bdrate.bd_psnr(anchor, test) == pytest.approx(want_psnr, abs=1e-12)


# scipy 1.17.1: PchipInterpolator(x, y).derivative()(x) and .integrate(lo, hi)
PCHIP = [
    # a turn and a flat piece: 0 slopes inside
    ([0, 1, 2.5, 3, 5], [1, 3, 2, 2, 7], (0.3, 4.2), [46 / 15, 0, 0, 0, 4.5], 9.769845555555555),
    # one-sided end slopes that would point against the curve: 0
    ([0, 1, 2, 3], [0, 1, 6, 7], (0, 3), [0, 5 / 3, 5 / 3, 0], 10.5),
    # the data turns next to an end: the end slope is held to 3x the first secant
    ([0, 3, 4, 5], [0, 3, -7, -6], (0.5, 4.5), [3, 0, 0, 3], 0.9305555555555554),
    ([-1, 2], [3, -3], (-0.5, 1), [-2, -2], 0.75),  # two points: a line
]  # fmt: skip


@pytest.mark.parametrize("x,y,interval,slopes,integral", PCHIP)
def test_pchip_equals_scipys(x, y, interval, slopes, integral) -> None:
    x, y = np.array(x, float), np.array(y, float)
    assert bdrate.pchip_slopes(x, y) == pytest.approx(slopes, abs=1e-12)
    assert bdrate.pchip_integral(x, y, *interval) == pytest.approx(integral, abs=1e-12)
    # the whole integral is the sum of its parts; an empty interval is 0
    mid = (interval[0] + interval[1]) / 2
    parts = bdrate.pchip_integral(x, y, interval[0], mid) + bdrate.pchip_integral(
        x, y, mid, interval[1]
    )
    assert parts == pytest.approx(integral, abs=1e-12)
    assert bdrate.pchip_integral(x, y, mid, mid) == 0.0
    with pytest.raises(ValueError, match="not inside"):
        bdrate.pchip_integral(x, y, x[0] - 1, x[-1])


CURVE = [(0.1, 25.0), (0.2, 27.6), (0.4, 30.1), (0.8, 32.9), (1.6, 35.2)]


def test_bd_deltas_of_shifted_curves_are_exact() -> None:
    less = [(r * 0.9, q) for r, q in CURVE]  # the same quality for 10 % less rate
    assert bdrate.bd_rate(CURVE, less) == pytest.approx(-10.0, abs=1e-9)
    assert bdrate.bd_rate(less, CURVE) == pytest.approx(100 / 0.9 - 100, abs=1e-9)
    up = [(r, q + 0.7) for r, q in CURVE]  # 0.7 dB more at every rate
    assert bdrate.bd_psnr(CURVE, up) == pytest.approx(0.7, abs=1e-9)
    assert bdrate.bd_psnr(CURVE, CURVE) == pytest.approx(0.0, abs=1e-12)
    assert bdrate.bd_rate(CURVE, CURVE[::-1]) == pytest.approx(0.0, abs=1e-12)  # any order
    # two points are a line in (PSNR, log rate): 25 % less rate at both ends is -25 %
    two = [(0.2, 27.0), (0.8, 33.0)]
    assert bdrate.bd_rate(two, [(r * 0.75, q) for r, q in two]) == pytest.approx(-25.0)


def test_bd_refuses_curves_that_give_no_delta() -> None:
    with pytest.raises(KancoinError, match="at least 2 rate points, has 1"):
        bdrate.bd_rate(CURVE, CURVE[:1])
    with pytest.raises(KancoinError, match="does not rise with rate.*monotone"):
        bdrate.bd_rate(CURVE, CURVE[:3] + [(0.8, 29.0)])
    with pytest.raises(KancoinError, match="does not rise"):  # a repeated rate
        bdrate.bd_psnr(CURVE, CURVE[:3] + [(0.4, 30.5)])
    with pytest.raises(KancoinError, match="positive rates"):
        bdrate.bd_rate(CURVE, [(0.0, 20.0), *CURVE])
    high = [(r * 20, q + 20) for r, q in CURVE]
    with pytest.raises(KancoinError, match="quality ranges do not overlap"):
        bdrate.bd_rate(CURVE, high)
    with pytest.raises(KancoinError, match="rate ranges do not overlap"):
        bdrate.bd_psnr(CURVE, high)
    # None and non-finite points (a rate without MS-SSIM) are left out, not errors
    assert bdrate.bd_rate(CURVE, [*CURVE, (3.2, None), (6.4, float("nan"))]) == 0.0


def _entry(name: str, pts, ms=None) -> dict:
    res = {"bpp": [r for r, _ in pts], "psnr-rgb": [q for _, q in pts]}
    if ms is not None:
        res["ms-ssim-rgb"] = ms
    return {"name": name, "description": name, "results": res}


MS = [0.90, 0.94, 0.96, 0.975, 0.985]


def test_bd_table_against_a_setting_a_published_curve_or_a_file(tmp_path: Path) -> None:
    summary = [
        _entry("anchor", CURVE, MS), _entry("better", [(r * 0.8, q) for r, q in CURVE], MS),
        _entry("short", CURVE[:1]), _entry("part", [(r * 5, q + 7) for r, q in CURVE]),
    ]  # fmt: skip
    doc = bdrate.bd_table(summary, "anchor")
    got = {r["name"]: r for r in doc["results"]}
    assert set(got) == {"better", "short", "part"} and doc["anchor_from"] == "this folder"
    better = got["better"]
    assert better["bd_rate_pct"] == pytest.approx(-20.0, abs=1e-3)
    assert better["bd_psnr_db"] > 0 and better["overlap_pct"] == 100 and "note" not in better
    # MS-SSIM: the same values at 80 % of the rate
    assert better["bd_rate_msssim_pct"] == pytest.approx(-20.0, abs=1e-3)
    assert better["bd_msssim_db"] > 0
    assert got["short"]["bd_rate_pct"] is None and "has 1" in got["short"]["note"]
    assert got["part"]["bd_rate_msssim_pct"] is None  # no MS-SSIM in that curve
    assert got["part"]["overlap_pct"] < 75 and "share" in got["part"]["note"]
    table = bdrate.format_bdrate(doc)
    assert table.startswith("BD-rate against anchor (this folder, 5 points; PCHIP)")
    assert "| better | 5 | -20.00 % | +" in table
    csv_text = bdrate.bdrate_csv(doc)
    assert csv_text.splitlines()[0] == "anchor," + ",".join(bdrate.COLUMNS)

    # published curves of kancoin/data/reference, matched without the exact spelling
    name, _, where = bdrate.find_anchor("c3", {})
    assert (name, where) == ("C3", "published")
    with pytest.raises(KancoinError, match="ambiguous: 'COIN"):
        bdrate.find_anchor("coin", {})
    with pytest.raises(KancoinError, match="no such setting or published curve"):
        bdrate.find_anchor("nope", {})
    doc = bdrate.bd_table(summary[:2], "JPEG (Pillow)")  # three published points
    assert doc["anchor_from"] == "published" and doc["anchor_points"] == 3
    with pytest.raises(KancoinError, match="has 1"):  # nothing could be compared: say why
        bdrate.bd_table(summary[2:3] + summary[:1], "anchor")

    # another result set: a summary file of one curve, or of several with anchor_setting
    one = tmp_path / "jpeg.json"
    one.write_text(json.dumps(_entry("JPEG", CURVE)))
    doc = bdrate.bd_table(summary[:2], str(one))
    assert doc["anchor"] == "JPEG" and doc["anchor_from"] == str(one)
    assert [r["name"] for r in doc["results"]] == ["anchor", "better"]  # both: not this folder
    many = tmp_path / "summary.json"
    many.write_text(json.dumps(summary[:2]))
    with pytest.raises(KancoinError, match="holds 2 curves.*--anchor-setting"):
        bdrate.bd_table(summary[:2], str(many))
    doc = bdrate.bd_table(summary[1:2], str(many), "anchor")
    assert doc["results"][0]["bd_rate_pct"] == pytest.approx(-20.0, abs=1e-3)
    with pytest.raises(KancoinError, match="--anchor-setting 'x': not in"):
        bdrate.bd_table(summary, str(many), "x")
    with pytest.raises(KancoinError, match="no such file"):
        bdrate.bd_table(summary, str(tmp_path / "missing.json"))


def test_load_curves_reads_our_files_and_compressais(tmp_path: Path) -> None:
    # CompressAI's published results files: {"name", "description", "results": {...}}
    compressai = {
        "name": "JPEG", "description": "JPEG. Pillow version 7.1.2",
        "results": {"psnr-rgb": [26.0, 29.0], "ms-ssim-rgb": [0.9, 0.99], "bpp": [0.3, 0.5],
                    "encoding_time": [0.01, 0.01]},
    }  # fmt: skip
    p = tmp_path / "jpeg.json"
    p.write_text(json.dumps(compressai))
    (c,) = bdrate.load_curves(p).values()
    assert c["psnr"] == [(0.3, 26.0), (0.5, 29.0)]
    assert c["ms-ssim"] == [(0.3, pytest.approx(10.0)), (0.5, pytest.approx(20.0))]  # in dB
    # a bare results dict is named by its file, as CompressAI's plot tool does
    bare = tmp_path / "mine.v2.json"
    bare.write_text(json.dumps(compressai["results"]))
    assert list(bdrate.load_curves(bare)) == ["mine"]
    for text, msg in (("{", "not JSON"), ('{"a": 1}', "not a summary"), ("[1]", "not a summary")):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(KancoinError, match=msg):
            bdrate.load_curves(bad)
    with pytest.raises(KancoinError, match="not a results folder"):
        bdrate.load_curves(tmp_path)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A real results folder: JPEG and WebP at three rates on one image of 168x176 pixels."""
    d = tmp_path_factory.mktemp("bd")
    (d / "imgs").mkdir()
    Image.fromarray(crop(168, 176, top=100, left=200)).save(d / "imgs" / "a.png")
    evaluate.run_eval(
        d / "imgs", d / "res", bpps=(0.75, 1.5, 3.0), archs=(), codecs=("jpeg", "webp")
    )
    return d / "res"


def test_cli_bdrate_of_a_results_folder(results: Path, tmp_path: Path) -> None:
    r = run("bdrate", results, "--anchor", "jpeg")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("BD-rate against jpeg (this folder, 3 points; PCHIP)")
    (webp,) = [x for x in lines if x.startswith("| webp |")]
    cells = [c.strip() for c in webp.strip("|").split("|")]
    assert cells[2].startswith("-") and cells[3].startswith("+")  # WebP beats JPEG
    r = run("bdrate", results, "--anchor", "jpeg", "--json")
    doc = json.loads(r.stdout)
    (row,) = doc["results"]
    assert row["name"] == "webp" and row["bd_rate_pct"] < 0 and row["bd_psnr_db"] > 0
    assert row["bd_rate_msssim_pct"] is not None  # the image is large enough for MS-SSIM

    # the same from the summary files eval wrote, and against another result set
    r2 = run("bdrate", results / "summary" / "webp.json", "--anchor", results / "summary.json",
             "--anchor-setting", "jpeg", "--json")  # fmt: skip
    assert r2.returncode == 0, r2.stderr
    (row2,) = json.loads(r2.stdout)["results"]
    assert row2["bd_rate_pct"] == pytest.approx(row["bd_rate_pct"], abs=2e-3)
    # two result sets with the same setting names: told apart by their source
    r3 = run("bdrate", results, results / "summary.json", "--anchor", "jpeg", "--json")
    names = [x["name"] for x in json.loads(r3.stdout)["results"]]
    assert names == [
        "webp",
        f"jpeg ({results / 'summary.json'})",
        f"webp ({results / 'summary.json'})",
    ]

    for args, msg in (
        (("--anchor", "nope"), "error: --anchor 'nope': no such setting or published curve"),
        (("--anchor", tmp_path / "none.json"), "no such file"),
        (("--anchor", "C3"), "do not overlap"),  # C3 is far above JPEG and WebP here
    ):
        r = run("bdrate", results, *args)
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and msg in r.stderr, r.stderr
    r = run("bdrate", tmp_path, "--anchor", "jpeg")
    assert r.returncode == 1 and "not a results folder" in r.stderr


def test_eval_checks_the_anchor_before_any_work(results: Path, tmp_path: Path) -> None:
    imgs = results.parent / "imgs"
    r = run("eval", imgs, "--codec", "webp", "--out", tmp_path / "o", "--anchor", "nope")
    assert r.returncode == 1 and "--anchor 'nope'" in r.stderr
    assert not list((tmp_path / "o" / "rows").glob("*.json"))
    # an anchor from another result set: eval's table has the BD columns
    r = run("eval", "--report-only", results, "--anchor", results / "summary" / "jpeg.json",
            "--no-plots")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "BD-rate against jpeg (" in r.stdout and "| BD-rate (PSNR) | BD-PSNR |" in r.stdout
    doc = json.loads((results / "bdrate.json").read_text())
    assert [x["name"] for x in doc["results"]] == ["jpeg", "webp"]
    assert doc["results"][0]["bd_rate_pct"] == 0.0


# --- kancoin plot --metric ----------------------------------------------------------------


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The figures as they would be saved: {file stem: (y label, {curve label: y values})}; no
    file is written (test_eval.py's test_plots writes them)."""
    seen: dict = {}

    def save(fig, stem):
        ax = fig.axes[0]
        seen[stem.name] = (ax.get_ylabel(), {ln.get_label(): list(ln.get_ydata()) for ln in
                                              ax.get_lines()})  # fmt: skip
        return [stem.parent / f"{stem.name}.{ext}" for ext in ("png", "svg")]

    monkeypatch.setattr(plots, "_save", save)
    return seen


def test_plot_ms_ssim_draws_ms_ssim_in_db(results: Path, tmp_path: Path, figures: dict) -> None:
    pytest.importorskip("matplotlib")
    r = run("plot", results, "--out", tmp_path / "p", "--metric", "ms-ssim", "--bpp", "1.5")
    assert r.returncode == 0, r.stderr
    names = {Path(x).name for x in r.stdout.split()}
    assert {"rd_ms-ssim.png", "rd_ms-ssim.svg", "bars_ms-ssim_1.5bpp.png"} <= names
    assert "crops_ms-ssim_a_1.5bpp.png" in names
    label, curves = figures["rd_ms-ssim"]
    assert label.startswith("MS-SSIM (dB) = −10·log10(1 − MS-SSIM)")
    assert set(curves) == {"jpeg [1 img]", "webp [1 img]"}  # no published points: PSNR only
    summary = {e["name"]: e["results"] for e in evaluate.report_only(results).summary}
    assert curves["webp [1 img]"] == summary["webp"]["ms-ssim-db"]
    assert figures["bars_ms-ssim_1.5bpp"][0].startswith("MS-SSIM (dB)")

    plots.rd_plot([results], tmp_path / "q")  # PSNR by default
    label, curves = figures["rd"]
    assert label == "PSNR (dB), mean over images"
    assert curves["webp [1 img]"] == summary["webp"]["psnr-rgb"]
    assert any(k.endswith("(pub.)") for k in curves)


def test_plot_ms_ssim_of_small_images_is_one_line(results: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    tiny = tmp_path / "tiny"
    (tmp_path / "small").mkdir()
    Image.fromarray(crop(64, 64)).save(tmp_path / "small" / "b.png")
    evaluate.run_eval(tmp_path / "small", tiny, bpps=(2.0,), archs=(), codecs=("webp",))
    r = run("plot", tiny, "--out", tmp_path / "p", "--metric", "ms-ssim")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "no setting has MS-SSIM at every rate" in r.stderr and "161 pixels" in r.stderr
    r = run("plot", results, "--metric", "ssim")
    assert r.returncode == 2 and "--metric" in r.stderr
