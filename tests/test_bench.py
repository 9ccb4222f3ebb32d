"""scripts/bench_fit.py runs end to end (tiny settings) and reports what the README quotes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_bench_fit_smoke() -> None:
    cmd = [
        sys.executable, str(ROOT / "scripts" / "bench_fit.py"), "--models", "ours,siren",
        "--runs", "2", "--steps", "1", "--warmup", "1", "--threads", "1", "--no-peak", "--json",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
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


def test_bench_kernels_smoke() -> None:
    cmd = [
        sys.executable, str(ROOT / "scripts" / "bench_kernels.py"), "--threads", "1",
        "--runs", "1", "--sizes", "3x3,5x20",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip()[:1].isdigit()]
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
