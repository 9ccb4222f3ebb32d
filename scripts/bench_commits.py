"""Training-step time of several commits, each checked out on its own, timed in turn.

    python scripts/bench_commits.py 0dac931 HEAD               # 1 and 2 threads, 5 rounds
    python scripts/bench_commits.py v1 v2 v3 --threads 1 --rounds 3 --json

Each commit is checked out (``git worktree``, detached, in a temporary folder) and imported in
a fresh process of this interpreter with ``PYTHONPATH`` set to it, so every commit runs its own
kancoin (its numba kernels compile on the first round and are cached in the worktree). A round
times every commit once per thread count, in turn, so a slow spell of the host hits all of
them alike; the table gives each commit's median over the rounds, its min, and the ratio of
the medians to the first commit. The step is ``kancoin.codec.fit``'s: the encoder's default KAN
for 768x512 at 0.3 bpp (``codec.encode.plan``), batch 10,000 random pixels through the family's
``predictor``, MSE, fused Adam, thread policy ``codec.runtime.configure(spec, n)``. Commits of
the flat layout before the subpackages (``kancoin.encode.plan``, ``fit.pixel_predictor``,
``threads.configure("kan", n)``: 0.4 to 0.4.2) run the same step through those names; older
commits cannot be timed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

STEP = r"""
import json, sys, time, statistics
import torch
n, steps, runs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
try:  # the subpackage layout
    from kancoin.codec import runtime
    from kancoin.codec.encode import plan
    from kancoin.codec.options import EncodeOptions
    from kancoin.nets import build, family_of
except ImportError:  # the flat layout (0.4 to 0.4.2)
    from kancoin import threads
    from kancoin.encode import EncodeOptions, plan
    from kancoin.fit import pixel_predictor
    from kancoin.models import build_model
    threads.configure("kan", n)
    torch.manual_seed(0)
    model = build_model(plan((512, 768, 3), EncodeOptions(arch="kan", bpp=0.3))).train()
    predict = pixel_predictor(model, 512, 768, torch.device("cpu"))
else:
    spec = plan((512, 768, 3), EncodeOptions(arch="kan", bpp=0.3))
    runtime.configure(spec, n)
    torch.manual_seed(0)
    model = build(spec).train()
    predict = family_of(spec).predictor(model, 512, 768, torch.device("cpu"))
opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
gen = torch.Generator().manual_seed(0)
data = [(torch.randint(0, 512 * 768, (10000,), generator=gen), torch.rand(10000, 3, generator=gen))
        for _ in range(4)]
def step(i):
    idx, target = data[i % 4]
    loss = torch.mean((predict(idx) - target) ** 2)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
for i in range(15):
    step(i)
times = []
for _ in range(runs):
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    times.append(1000 * (time.perf_counter() - t0) / steps)
print(json.dumps({"ms": statistics.median(times)}))
"""


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def step_ms(tree: Path, n_threads: int, steps: int, runs: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # its kancoin, not the installed one
    proc = subprocess.run(
        [sys.executable, "-c", STEP, str(n_threads), str(steps), str(runs)],
        capture_output=True, text=True, env=env, cwd=tree, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise SystemExit(f"bench_commits: the step failed in {tree.name}: {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["ms"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("commits", nargs="+", help="commits or tags, the first is the baseline")
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20, help="steps per timed run")
    ap.add_argument("--runs", type=int, default=9, help="timed runs per process (median)")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args()
    try:
        thread_counts = [int(v) for v in args.threads.split(",")]
        shas = [git("rev-parse", "--short", c) for c in args.commits]
    except (ValueError, subprocess.CalledProcessError) as exc:
        ap.error(f"bad --threads or commit: {exc}")
    root = Path(tempfile.mkdtemp(prefix="kancoin-commits-"))
    trees = {}
    try:
        for sha in dict.fromkeys(shas):
            trees[sha] = root / sha
            git("worktree", "add", "--detach", str(trees[sha]), sha)
        times: dict[tuple[str, int], list[float]] = {}
        for r in range(args.rounds):
            for n in thread_counts:
                for sha in trees:
                    ms = step_ms(trees[sha], n, args.steps, args.runs)
                    times.setdefault((sha, n), []).append(ms)
                    if not args.json:
                        print(f"round {r + 1}  {n} thr  {sha}  {ms:7.2f} ms", file=sys.stderr)
    finally:
        for tree in trees.values():
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                           capture_output=True, check=False)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
        git("worktree", "prune")
    rows = []
    for n in thread_counts:
        base = statistics.median(times[(shas[0], n)])
        for sha in trees:
            med = statistics.median(times[(sha, n)])
            rows.append({"commit": sha, "subject": git("log", "-1", "--format=%s", sha)[:60],
                         "threads": n, "median_ms": med, "min_ms": min(times[(sha, n)]),
                         "ratio": med / base})  # fmt: skip
    if args.json:
        print(json.dumps({"rounds": args.rounds, "rows": rows}))
        return
    print(f"ms per step, median over {args.rounds} rounds (commits timed in turn)")
    print(f"{'thr':>3} {'commit':>9} {'median':>8} {'min':>8} {'ratio':>6}  subject")
    for row in rows:
        print(f"{row['threads']:>3} {row['commit']:>9} {row['median_ms']:8.2f} "
              f"{row['min_ms']:8.2f} {row['ratio']:6.2f}  {row['subject']}")  # fmt: skip


if __name__ == "__main__":
    main()
