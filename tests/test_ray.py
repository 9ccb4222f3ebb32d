"""`kancoin eval --executor ray` on a Ray cluster of this machine alone: 2 CPUs and 2 logical
GPUs (declared, no GPU needed), every server on 127.0.0.1, no dashboard.

Skipped without Ray (``pip install -e ".[ray]"``). Marked slow, as a cluster takes about 10 s to
start on 2 cores: ``pytest -m slow tests/test_ray.py`` runs them (``.ci/run`` does, after
installing the extra)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from kancoin import __version__
from kancoin.errors import KancoinError
from kancoin.eval import executors, settings
from kancoin.eval import runs as evaluate

from .conftest import crop

if importlib.util.find_spec("ray") is None:
    pytest.skip("Ray is not installed (pip install 'kancoin[ray]')", allow_module_level=True)

pytestmark = pytest.mark.slow

ENV = ("RAY_USAGE_STATS_ENABLED", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")


@pytest.fixture(scope="module")
def local_ray():
    """The cluster: started once for the module, shut down after it."""
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray's single-machine mode
    import ray
    from ray._private import ray_constants

    if ray.is_initialized() or ray_constants.ENABLE_RAY_CLUSTER:
        pytest.skip("Ray was imported before in cluster mode: it would not bind to 127.0.0.1")
    ray.init(
        num_cpus=2, num_gpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
        logging_level="ERROR", log_to_driver=False,
    )  # fmt: skip
    try:
        assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
        assert ray.cluster_resources()["GPU"] == 2 and ray.cluster_resources()["CPU"] == 2
        yield ray
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    for i, name in enumerate("abcd"):
        Image.fromarray(crop(48, 64, top=50 * i)).save(d / f"{name}.png")
    return d


def _jobs(images_dir: Path, names: str = "abcd") -> list[tuple[int, evaluate.Job]]:
    (s,) = settings.make_settings([1.0], [], ["webp"])
    return [
        (i, evaluate.Job(str(images_dir / f"{n}.png"), f"../imgs/{n}.png", s, False, 1,
                         __version__))
        for i, n in enumerate(names)
    ]  # fmt: skip


def _probe(job, data):
    """A task that records where it ran instead of encoding (Ray ships it by value)."""
    import os as _os
    import time as _time

    import ray as _ray

    t0 = _time.time()
    _time.sleep(0.4)
    row = {
        "image": job.image, "gpus": [str(g) for g in _ray.get_gpu_ids()],
        "cuda_visible": _os.environ.get("CUDA_VISIBLE_DEVICES"), "t0": t0, "t1": _time.time(),
        "bytes": len(data),
    }  # fmt: skip
    return row, {}


def _collect(todo, **kw) -> dict[int, dict]:
    got: dict[int, dict] = {}
    executors.run_ray(todo, lambda i, row, files: got.__setitem__(i, row), task=_probe, **kw)
    return got


def test_gpu_tasks_land_on_the_declared_gpus(local_ray, images_dir: Path) -> None:
    todo = _jobs(images_dir)
    # one GPU a task: each task is given GPU 0 or 1 (CUDA_VISIBLE_DEVICES set to it), and two
    # tasks that run at the same time never share one
    got = _collect(todo, gpus_per_job=1)
    assert sorted(got) == [0, 1, 2, 3]
    for row in got.values():
        assert row["gpus"] in (["0"], ["1"]) and row["cuda_visible"] == row["gpus"][0]
        assert row["bytes"] == (images_dir / f"{row['image']}.png").stat().st_size
    rows = list(got.values())
    for a in rows:
        for b in rows:
            if a is not b and a["t0"] < b["t1"] and b["t0"] < a["t1"]:
                assert a["gpus"] != b["gpus"]
    # half a GPU: still one of the two; none: no GPU and no CUDA device
    for row in _collect(todo[:2], gpus_per_job=0.5).values():
        assert row["gpus"] in (["0"], ["1"])
    for row in _collect(todo[:2], gpus_per_job=0).values():
        assert row["gpus"] == [] and not row["cuda_visible"]
    # more GPUs than any node has: an error before anything is submitted, not a hang
    with pytest.raises(KancoinError, match="--gpus-per-job 3: no node of the Ray cluster"):
        _collect(todo, gpus_per_job=3)


def test_ray_rows_equal_local_rows_and_a_rerun_submits_nothing(
    local_ray, images_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kw = dict(bpps=(2.0, 3.0), archs=(), codecs=("webp", "jpeg"), images="a,b")
    on_ray = evaluate.run_eval(images_dir, tmp_path / "ray", executor="ray", **kw)
    local = evaluate.run_eval(images_dir, tmp_path / "local", **kw)
    assert on_ray.computed == local.computed == 8 and not on_ray.failed
    for a, b in zip(on_ray.rows, local.rows):
        for k in ("image", "setting", "target_bpp", "bpp", "psnr", "ms_ssim", "file_bytes"):
            assert a[k] == b[k], k
        assert (tmp_path / "ray" / a["file"]).read_bytes() == (
            tmp_path / "local" / b["file"]
        ).read_bytes()
    submitted = []
    real = executors.run_ray
    monkeypatch.setattr(
        executors,
        "run_ray",
        lambda todo, *a, **k: submitted.append(len(todo)) or real(todo, *a, **k),
    )
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray" / "rows").glob("*.json")}
    again = evaluate.run_eval(images_dir, tmp_path / "ray", executor="ray", **kw)
    assert submitted == [0] and again.computed == 0 and again.skipped == 8
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # no row rewritten
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert {e["name"] for e in summary} == {"webp", "jpeg"}


def test_ray_retries_a_crashed_task_then_records_an_error_row(
    local_ray, images_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "crashed-once"

    def flaky(job, data):  # defined here: Ray ships it to the workers by value
        import os as _os

        if job.image == "a" and not marker.exists():
            marker.write_text("1")
            _os._exit(3)  # the worker process dies: Ray retries the task
        if job.image == "b":
            raise RuntimeError("always fails")
        return executors.ray_task(job, data)

    todo = _jobs(images_dir, "abc")
    todo[2] = (2, evaluate.Job(*[*todo[2][1].__dict__.values()][:5], "0.0.1"))  # another version
    got: dict[int, tuple] = {}
    executors.run_ray(todo, lambda i, row, files: got.__setitem__(i, (row, files)),
                      retries=1, task=flaky)  # fmt: skip
    ok, files = got[0]
    assert marker.exists() and "error" not in ok and ok["psnr"] > 0
    assert list(files) == ["files/a__webp_bpp1.webp"]
    failed, files = got[1]
    assert failed["error"].startswith("the task failed 2 time(s)") and files == {}
    assert "always fails" in failed["error"] and failed["psnr"] is None
    stale, _ = got[2]
    assert stale["error"] == (
        f"this worker runs kancoin {__version__}, the driver 0.0.1: install the same version "
        "everywhere"
    )


def test_ray_computes_kan_rows_the_driver_writes(local_ray, images_dir, tmp_path) -> None:
    from kancoin.codec.options import EncodeOptions

    kw = dict(bpps=(2.0, 3.0), archs=("kan",), codecs=("webp",), device="auto", images="c")
    kw["options"] = EncodeOptions(iters=5)
    lines: list[str] = []
    ray_run = evaluate.run_eval(
        images_dir, tmp_path / "ray", executor="ray", progress=lines.append, **kw
    )
    assert ray_run.computed == 4 and not ray_run.failed
    assert len(lines) == 4 and lines[0].startswith("[1/4, ETA ")
    local = evaluate.run_eval(images_dir, tmp_path / "local", **kw)
    for a, b in zip(ray_run.rows, local.rows):
        assert a["setting"] == b["setting"] and a["bpp"] == b["bpp"]
        assert (tmp_path / "ray" / a["file"]).stat().st_size == a["file_bytes"]
    # auto on a task given no GPU is the CPU, and keys the row so
    net = [r for r in ray_run.rows if r["codec"] == "kancoin"]
    assert {r["key"]["device"] for r in net} == {"cpu"} and {r["threads"] for r in net} == {1}
    webp = [r for r in ray_run.rows if r["codec"] == "webp"]
    assert [r["psnr"] for r in webp] == [r["psnr"] for r in local.rows if r["codec"] == "webp"]
