"""The benchmark scripts run end to end (tiny settings) and report what the docs quote.

bench_fit and bench_kernels run in this process (``main`` with a command line; the thread
policy and torch's random state they set are restored after): as subprocesses, starting torch
and loading the kernels took most of their time. bench_commits runs as the command.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    """A script of scripts/ imported as a module (its main does not run)."""
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_script(monkeypatch, capsys):
    """name, args -> what ``scripts/<name>.py args`` prints, run in this process."""
    import numba
    import torch

    threads = (torch.get_num_threads(), numba.get_num_threads())
    rng = torch.random.get_rng_state()

    def run(name: str, args: list[str]) -> str:
        monkeypatch.setattr(sys, "argv", [f"{name}.py", *args])
        capsys.readouterr()
        _script(name).main()
        return capsys.readouterr().out

    yield run
    torch.set_num_threads(threads[0])
    numba.set_num_threads(threads[1])
    torch.random.set_rng_state(rng)


def test_bench_fit_smoke(run_script) -> None:
    args = [
        "--models", "ours,siren", "--runs", "2", "--steps", "1", "--warmup", "0", "--threads",
        "1", "--no-peak", "--check-samples", "2000", "--json",
    ]  # fmt: skip
    result = json.loads(run_script("bench_fit", args))
    block = result["threads"][0]
    steps = block["steps"]
    assert steps["ours"]["backend"] == "fused" and steps["ours"]["ms"] > 0
    assert steps["siren"]["ms"] > 0 and steps["ours"]["runs"] == 2
    # the ratio is measured, from the same runs
    assert 0 < block["ratios"]["siren"] < 100
    assert block["decode"]["ms"] > 0 and block["decode"]["file_bytes"] > 0
    # the benchmark's KAN is the encoder's default architecture for 768x512 at 0.3 bpp
    assert result["meta"]["spec"].startswith("KAN 2-")
    for check in result["equality"].values():
        assert check["out_max_abs"] < 1e-2 * max(1.0, check["out_max_ref"])


def test_bench_fit_baselines_are_the_encoders_kan() -> None:
    """The reference and dense KANs it times are the encoder's network (first-layer grid
    included) on other backends."""
    bench = _script("bench_fit")
    ours = bench.MODELS["ours"][1]()
    shapes = [p.shape for p in ours.parameters()]
    assert ours.layer_grids[0] != ours.layer_grids[1]  # the default has a first-layer grid
    for backend in ("reference", "dense"):
        model = bench.MODELS[backend][1]()
        assert model.layers[0].backend == backend
        assert model.layer_grids == ours.layer_grids
        assert [p.shape for p in model.parameters()] == shapes


def test_bench_kernels_smoke(run_script) -> None:
    out = run_script("bench_kernels", ["--threads", "1", "--runs", "1", "--sizes", "3x3,5x20"])
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["3x3", "5x20"]
    assert [r[3] for r in rows] == ["4/4", "32/32"]  # the backward's width / output block
    assert all(float(v) > 0 for r in rows for v in r[1:3] + r[4:])


@pytest.mark.slow
def test_bench_commits_smoke() -> None:
    """scripts/bench_commits.py times a commit in its own worktree and cleans up after itself
    (slow: the worktree's kernels compile from scratch)."""
    before = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    cmd = [
        sys.executable, str(ROOT / "scripts" / "bench_commits.py"), "HEAD", "--threads", "1",
        "--rounds", "1", "--steps", "2", "--runs", "1", "--json",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)["rows"]
    assert len(rows) == 1 and rows[0]["median_ms"] > 0 and rows[0]["ratio"] == 1.0
    after = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True,
                           text=True, check=True).stdout  # fmt: skip
    assert after == before


@pytest.mark.slow
def test_bench_commits_step_runs_on_the_work_tree() -> None:
    """The step it times in each commit's tree runs on this tree's layout too (the smoke test
    above times a commit, which may be of the layout before)."""
    ms = _script("bench_commits").step_ms(ROOT, 1, 1, 1)
    assert ms > 0


def test_bench_fixed_smoke(run_script, tmp_path) -> None:
    """The fixed point against the float32 arithmetic on the golden MLP file: both render,
    PSNRs against the crop the file was made from, computed here apart."""
    import numpy as np
    from PIL import Image

    from kancoin.metrics import psnr

    from .conftest import crop

    image = tmp_path / "crop.png"
    Image.fromarray(crop(64, 96)).save(image)
    kc = ROOT / "tests" / "golden" / "tiny_latent_mlp.kc"
    row = json.loads(run_script("bench_fixed", [str(kc), str(image), "--repeat", "1"]))
    assert row["fixed_s"] > 0 and row["float_s"] > 0 and 0 <= row["values_differing"] < 0.01
    from kancoin.codec.decode import decode_bytes

    ours = decode_bytes(kc.read_bytes()).pixels  # the file's own arithmetic: fixed point
    assert row["psnr_fixed"] == round(psnr(ours, np.asarray(crop(64, 96))), 4)
    assert abs(row["psnr_float"] - row["psnr_fixed"]) < 0.05


def test_bench_arm_smoke(run_script) -> None:
    """Both orders of the golden network-coded file read back its integers; their payloads
    differ (another order) by a few bytes at most."""
    kc = ROOT / "tests" / "golden" / "tiny_latent_arm.kc"
    row = json.loads(run_script("bench_arm", [str(kc), "--repeat", "1"]))
    assert row["same_integers"] is True
    assert row["grid_after_grid_s"] > 0 and row["line_by_line_s"] > 0
    assert abs(row["bytes"][0] - row["bytes"][1]) <= 4 and row["bytes"][1] == kc.stat().st_size
