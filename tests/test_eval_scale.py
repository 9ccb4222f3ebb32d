"""`kancoin eval` at scale: shards, per-pair parallelism, MS-SSIM, BD-rate in the report,
CompressAI-readable summaries and provenance, and `--executor ray` without Ray (the Ray
executor itself: test_ray.py; BD-rate: test_bdrate.py)."""

from __future__ import annotations

import ast
import json
import math
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kancoin.errors import KancoinError
from kancoin.eval import executors, settings
from kancoin.eval import runs as evaluate
from kancoin.metrics import MS_SSIM_MIN_SIDE, MS_SSIM_WEIGHTS, ms_ssim, ms_ssim_db

from .conftest import crop
from .test_cli import run

RATES = ("0.5", "1", "1.5", "2")  # four rates: a curve BD-rate accepts


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    """One image just large enough for MS-SSIM (161 pixels a side)."""
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(crop(168, 176, top=100, left=200)).save(d / "a.png")
    return d


@pytest.fixture
def small_dir(tmp_path: Path) -> Path:
    """Two small images (too small for MS-SSIM)."""
    d = tmp_path / "small"
    d.mkdir()
    Image.fromarray(crop(24, 32)).save(d / "a.png")
    Image.fromarray(crop(24, 32, top=100)).save(d / "b.png")
    return d


def _rates(*rates: str) -> list[str]:
    return [x for r in rates for x in ("--bpp", r)]


def _rows(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "rows").glob("*.json")}


# --- shards --------------------------------------------------------------------------------


def _pairs(n_images: int = 7):
    s = settings.make_settings([0.3, 0.6, 1.2], ["kan"], ["jpeg", "webp"], predicted="cpu")
    return [(Path(f"im{i:02d}.png"), x) for i in range(n_images) for x in s]


def test_shards_partition_the_pairs_evenly_whatever_the_listing_order() -> None:
    pairs = _pairs()
    ids = {(p.stem, s.slug) for p, s in pairs}
    for n in (1, 2, 3, 5, len(pairs) + 3):
        parts = [settings.select_shard(pairs, k, n) for k in range(1, n + 1)]
        got = [(p.stem, s.slug) for part in parts for p, s in part]
        assert sorted(got) == sorted(ids)  # every pair in exactly one shard
        sizes = [len(part) for part in parts]
        assert max(sizes) - min(sizes) <= 1
        # a reversed listing splits the same way; each part keeps the list's order
        backwards = [settings.select_shard(pairs[::-1], k, n) for k in range(1, n + 1)]
        for a, b in zip(parts, backwards):
            assert [(p, s.slug) for p, s in a] == [(p, s.slug) for p, s in b[::-1]]
    # the rates of one setting do not all fall into one shard (hash order, not the list's)
    part = settings.select_shard(pairs, 1, 3)
    assert len({s.bpp for _, s in part}) == 3
    # the device type a worker resolves does not move a pair to another shard
    (p, s) = pairs[0]
    assert settings.shard_order(p.stem, s) == settings.shard_order(p.stem, s.resolved("cuda"))
    assert s.resolved("cuda").slug != s.slug


def test_shard_values_are_checked() -> None:
    assert settings.parse_shard("2/4") == (2, 4) and settings.parse_shard(" 1 / 1 ") == (1, 1)
    for bad in ("0/4", "5/4", "1/0", "a/b", "3", "", "-1/2", "1/2/3"):
        with pytest.raises(KancoinError, match="--shard"):
            settings.parse_shard(bad)


def test_cli_shard_errors_are_one_line(images_dir: Path, tmp_path: Path) -> None:
    for bad in ("0/2", "3/2", "x"):
        r = run("eval", images_dir, "--codec", "webp", "--out", tmp_path / "o", "--shard", bad)
        assert r.returncode == 1 and r.stderr.count("\n") == 1
        assert r.stderr.startswith("error: --shard") and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_shards_into_one_folder_then_report_only(images_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "res"
    args = ("eval", images_dir, "--codec", "jpeg,webp", *_rates(*RATES), "--out", out)
    seen = []
    for k in (1, 2):
        r = run(*args, "--shard", f"{k}/2")
        assert r.returncode == 0, r.stderr
        assert f"shard {k}/2: 4 of 8 rows" in r.stdout and "--report-only" in r.stdout
        progress = [x for x in r.stderr.splitlines() if x.startswith("[")]
        assert len(progress) == 4 and progress[0].startswith("[1/4, ETA ")
        assert progress[-1].startswith("[4/4] ")
        seen.append(set(_rows(out)) - (seen[-1] if seen else set()))
    assert len(seen[0]) == len(seen[1]) == 4 and not seen[0] & seen[1]
    assert not (out / "plots").exists()  # a shard draws no figures from part of the rows
    # every shard's summary is written from all the rows present
    (entry,) = [e for e in json.loads((out / "summary.json").read_text()) if e["name"] == "webp"]
    assert entry["results"]["n_images"] == [1, 1, 1, 1]
    # a rerun of a shard reuses its rows
    r = run(*args, "--shard", "2/2", "--quiet")
    assert r.returncode == 0 and r.stderr == ""

    r = run("eval", "--report-only", out, "--anchor", "jpeg", "--no-plots")
    assert r.returncode == 0, r.stderr
    assert "8 rows; report in" in r.stdout and "BD-rate against jpeg" in r.stdout
    assert len(json.loads((out / "results.json").read_text())) == 8
    assert (out / "results.csv").read_text().count("\n") == 9
    doc = json.loads((out / "bdrate.json").read_text())
    assert doc["anchor"] == "jpeg" and doc["anchor_from"] == "this folder"
    (webp,) = doc["results"]
    assert webp["name"] == "webp" and webp["points"] == 4
    assert webp["bd_rate_pct"] < 0 and webp["bd_psnr_db"] > 0  # WebP beats JPEG
    assert webp["bd_rate_msssim_pct"] is not None
    assert (out / "bdrate.md").read_text().startswith("BD-rate against jpeg")
    assert (out / "bdrate.csv").read_text().splitlines()[1].startswith("jpeg,webp,4,")

    # CompressAI's plot tool reads the per-setting files (its parse_json_file, restated)
    for name in ("jpeg", "webp"):
        data = json.loads((out / "summary" / f"{name}.json").read_text())
        results = data["results"] if "results" in data else data
        for metric in ("psnr-rgb", "ms-ssim-rgb"):
            assert metric in results and len(results[metric]) == len(results["bpp"]) == 4
        assert data["name"] == name
        ms = np.array(results["ms-ssim-rgb"])
        assert np.all((0 < ms) & (ms < 1))
        assert np.allclose(-10 * np.log10(1 - ms), results["ms-ssim-db"], atol=1e-3)


def test_report_only_refuses_what_it_cannot_do(images_dir: Path, tmp_path: Path) -> None:
    r = run("eval", "--report-only", tmp_path / "none")
    assert r.returncode == 1 and "no rows/" in r.stderr and r.stderr.count("\n") == 1
    (tmp_path / "empty" / "rows").mkdir(parents=True)
    r = run("eval", "--report-only", tmp_path / "empty")
    assert r.returncode == 1 and "no rows in" in r.stderr
    r = run("eval", images_dir, "--report-only", tmp_path / "empty", "--bpp", "1")
    assert r.returncode == 1 and r.stderr.strip().endswith("drop DIR, --bpp")


# --- parallelism per (image, setting) -------------------------------------------------------


def test_jobs_parallelise_pairs_not_images(
    small_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def pool(todo, done, jobs):  # stands in for the process pool: same calls, in this process
        calls.append((len(todo), jobs))
        executors.run_serial(todo, done)

    monkeypatch.setattr(executors, "run_pool", pool)
    rep = evaluate.run_eval(
        small_dir, tmp_path / "res", bpps=(1.0, 2.0, 3.0), archs=(), codecs=("webp",),
        images="a", jobs=3,
    )  # fmt: skip
    assert calls == [(3, 3)]  # one image, three settings: three units of work
    assert rep.computed == 3 and [r["target_bpp"] for r in rep.rows] == [1.0, 2.0, 3.0]


def test_workers_spread_over_several_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert [str(evaluate._device("cuda", k)) for k in range(4)] == [
        "cuda:0", "cuda:1", "cuda:2", "cuda:0"
    ]  # fmt: skip
    assert str(evaluate._device("auto", 4)) == "cuda:1"
    assert str(evaluate._device("cuda:2", 0)) == "cuda:2"  # a named GPU stays
    assert str(evaluate._device("cpu", 1)) == "cpu"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert str(evaluate._device("cuda", 5)) == "cuda"


def test_pool_workers_take_consecutive_slots() -> None:
    import multiprocessing as mp

    counter = mp.get_context("spawn").Value("i", 0)
    slots = []
    for _ in range(3):
        executors._init_worker(counter)
        slots.append(executors._SLOT)
    assert slots == [0, 1, 2]
    executors._SLOT = 0


@pytest.mark.slow
def test_a_real_pool_computes_the_same_rows(images_dir: Path, tmp_path: Path) -> None:
    kw = dict(bpps=(0.5, 1.0), archs=(), codecs=("webp", "jpeg"))
    one = evaluate.run_eval(images_dir, tmp_path / "one", jobs=1, **kw)
    two = evaluate.run_eval(images_dir, tmp_path / "two", jobs=2, **kw)
    assert two.computed == 4
    assert [(r["image"], r["bpp"], r["psnr"], r["ms_ssim"]) for r in two.rows] == [
        (r["image"], r["bpp"], r["psnr"], r["ms_ssim"]) for r in one.rows
    ]


# --- MS-SSIM ---------------------------------------------------------------------------------


def _smooth(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.cumsum(np.cumsum(rng.normal(size=shape), 0), 1)
    return ((a - a.min()) / np.ptp(a) * 255).astype(np.uint8)


def _noisy(a: np.ndarray, sigma: float, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(a + rng.normal(0, sigma, a.shape), 0, 255).round().astype(np.uint8)


def test_ms_ssim_of_an_image_with_itself_is_one() -> None:
    a = crop(176, 200)
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert math.isinf(ms_ssim_db(1.0)) and ms_ssim_db(0.99) == pytest.approx(20.0)


def test_ms_ssim_of_flat_images_by_hand() -> None:
    """Flat images: every contrast-structure term is 1, so MS-SSIM is the coarsest scale's
    luminance term to the power of its weight, (2ab + C1) / (a² + b² + C1) per channel. At
    176 pixels every scale has even sides (176, 88, 44, 22, 11): no padding changes a mean."""
    a = np.empty((176, 176, 3), np.uint8)
    b = np.empty_like(a)
    a[...], b[...] = (100, 50, 200), (110, 50, 180)
    c1 = (0.01 * 255) ** 2
    want = np.mean(
        [((2 * x * y + c1) / (x * x + y * y + c1)) ** MS_SSIM_WEIGHTS[-1]
         for x, y in ((100, 110), (50, 50), (200, 180))]
    )  # fmt: skip
    assert ms_ssim(a, b) == pytest.approx(want, abs=1e-9)
    assert ms_ssim(a[:, :, 0], b[:, :, 0]) == pytest.approx(
        ((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)) ** MS_SSIM_WEIGHTS[-1], abs=1e-9
    )


def test_ms_ssim_falls_with_noise_and_refuses_small_images() -> None:
    a = _smooth((170, 190, 3))
    values = [ms_ssim(a, _noisy(a, s)) for s in (1, 3, 8, 20, 50)]
    assert all(x > y for x, y in zip(values, values[1:])) and 0 < values[-1] < values[0] < 1
    assert MS_SSIM_MIN_SIDE == 161
    with pytest.raises(ValueError, match="161"):
        ms_ssim(a[:160], a[:160])
    with pytest.raises(ValueError, match="shape"):
        ms_ssim(a, a[:, :180])


def test_ms_ssim_agrees_with_pytorch_msssim() -> None:
    torch = pytest.importorskip("torch")
    ref = pytest.importorskip("pytorch_msssim")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: threads only cost here
    try:
        for shape, sigma in (((200, 240, 3), 8), ((175, 333, 3), 20), ((181, 161, 1), 4)):
            a = _smooth(shape)
            b = _noisy(a, sigma)
            x, y = (torch.from_numpy(v).permute(2, 0, 1)[None].double() for v in (a, b))
            want = ref.ms_ssim(x, y, data_range=255).item()
            # pytorch_msssim's window is float32 (its sum is 1 to about 1e-8): 1e-5 at most
            assert ms_ssim(a, b) == pytest.approx(want, abs=1e-5)
    finally:
        torch.set_num_threads(threads)


def test_ms_ssim_of_a_real_image_agrees_with_pytorch_msssim() -> None:
    """A real photograph (kodim23, 320x480 of it) and its JPEG at 0.3 bpp: the rows' MS-SSIM
    is CompressAI's (pytorch_msssim on RGB floats in [0, 1], data range 1, per channel then
    averaged), to within pytorch_msssim's float32 window."""
    torch = pytest.importorskip("torch")
    ref = pytest.importorskip("pytorch_msssim")
    from kancoin.eval.baselines import compress

    a = crop(320, 480, top=96, left=144)
    b = compress(a, "jpeg", 0.3).pixels
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, y = (torch.from_numpy(np.array(v)).permute(2, 0, 1)[None].float() / 255 for v in (a, b))
        want = ref.ms_ssim(x, y, data_range=1.0).item()
    finally:
        torch.set_num_threads(threads)
    got = ms_ssim(a, b)
    assert 0.9 < got < 0.99
    assert got == pytest.approx(want, abs=1e-5)


def test_metrics_need_no_torch() -> None:
    tree = ast.parse(Path(sys.modules["kancoin.metrics"].__file__).read_text("utf-8"))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}  # fmt: skip
    imported |= {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert imported <= {"math", "numpy", "__future__"}


# --- rows: MS-SSIM, provenance, decoded PNGs ---------------------------------------------------


def test_rows_record_ms_ssim_and_where_they_ran(images_dir: Path, tmp_path: Path) -> None:
    Image.fromarray(crop(24, 32)).save(images_dir / "tiny.png")
    rep = evaluate.run_eval(images_dir, tmp_path / "res", bpps=(1.0,), archs=(), codecs=("webp",))
    by = {r["image"]: r for r in rep.rows}
    r = by["a"]
    assert 0.9 < r["ms_ssim"] < 1
    assert r["ms_ssim_db"] == pytest.approx(-10 * math.log10(1 - r["ms_ssim"]), abs=1e-3)
    assert by["tiny"]["ms_ssim"] is None and by["tiny"]["ms_ssim_db"] is None  # under 161 px
    env = by["a"]["environment"]
    for pkg in ("torch", "numba", "constriction", "numpy", "Pillow"):
        assert env[pkg] == metadata.version(pkg), pkg
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["cpu"] and env["gpu"] is None
    # a rate with an image that has no MS-SSIM has no mean MS-SSIM either: the summary leaves
    # the metric out (CompressAI's plot tool cannot read a null)
    (entry,) = rep.summary
    assert "ms-ssim-rgb" not in entry["results"] and "ms-ssim-db" not in entry["results"]
    assert entry["results"]["psnr-rgb"][0] > 0


def test_keep_decoded(small_dir: Path, tmp_path: Path) -> None:
    def decoded(value):
        out = tmp_path / f"res-{value}"
        evaluate.run_eval(small_dir, out, bpps=(2.0,), archs=(), codecs=("webp",),
                          keep_decoded=value)  # fmt: skip
        return sorted(p.name for p in (out / "decoded").glob("*.png"))

    assert decoded("all") == ["a__webp_bpp2.png", "b__webp_bpp2.png"]
    assert decoded("none") == []
    assert decoded("b") == ["b__webp_bpp2.png"]
    assert decoded(None) == ["a__webp_bpp2.png", "b__webp_bpp2.png"]  # a run of two images
    r = run("eval", small_dir, "--codec", "webp", "--out", tmp_path / "x", "--keep-decoded", "c")
    assert r.returncode == 1 and r.stderr == "error: --keep-decoded: no image 'c' in this run\n"


# --- Ray missing ---------------------------------------------------------------------------


def test_ray_missing_is_one_line_naming_the_extra(
    images_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    r = run("eval", images_dir, "--codec", "webp", "--out", tmp_path / "o", "--executor", "ray")
    assert r.returncode == 1
    assert r.stderr == 'error: --executor ray needs Ray: pip install "kancoin[ray]"\n'
    for extra, msg in (
        (("--jobs", "2"), "--jobs is for --executor local"),
        (("--device", "cuda"), "--device cuda with --executor ray needs --gpus-per-job > 0"),
    ):
        r = run("eval", images_dir, "--codec", "webp", "--out", tmp_path / "o", "--executor",
                "ray", *extra)  # fmt: skip
        assert r.returncode == 1 and msg in r.stderr and r.stderr.count("\n") == 1
    r = run("eval", images_dir, "--codec", "webp", "--out", tmp_path / "o", "--retries", "1")
    assert r.returncode == 1 and "need --executor ray" in r.stderr


def test_ray_tasks_must_fit_a_node() -> None:
    """A task asking for more GPUs than any live node has would wait for ever: an error."""

    class FakeRay:
        def __init__(self, *nodes: dict) -> None:
            self._nodes = [{"Alive": alive, "Resources": r} for r, alive in nodes]

        def nodes(self) -> list[dict]:
            return self._nodes

    cluster = FakeRay(({"CPU": 8.0}, True), ({"CPU": 2.0, "GPU": 2.0}, True),
                      ({"CPU": 4.0, "GPU": 8.0}, False))  # fmt: skip
    for fits in (0, 0.25, 1, 2):
        executors.check_fits(cluster, fits)
    with pytest.raises(KancoinError, match=r"--gpus-per-job 3: .*the most GPUs on a node: 2\)"):
        executors.check_fits(cluster, 3)  # the 8-GPU node is down
    with pytest.raises(KancoinError, match="most GPUs on a node: 0"):
        executors.check_fits(FakeRay(({"CPU": 8.0}, True)), 0.5)
    with pytest.raises(KancoinError, match="1 CPU"):
        executors.check_fits(FakeRay(({"GPU": 1.0}, True)), 1)
