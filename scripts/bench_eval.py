"""Wall time of `kancoin eval` on one machine: in one process (``--jobs 1``), in a local pool
(``--jobs 2``), as two shards run one after the other (``--shard 1/2``, ``2/2``, then
``--report-only``), and as Ray tasks (``--executor ray``, a Ray of this machine alone); then the
same with no-op-sized work (``--codec webp``: milliseconds a pair), and Ray's own cost per task.
It checks that every way computes the same rows (PSNR, MS-SSIM, bpp and the file's bytes).

    python scripts/bench_eval.py                       # 4 Kodak crops x 2 rates, 100 iters
    python scripts/bench_eval.py --iters 200 --crop 256
    python scripts/bench_eval.py --no-ray              # without Ray installed
    python scripts/bench_eval.py --json                # one JSON object on stdout

Every eval is its own ``python -m kancoin eval`` process into a fresh folder, timed from start
to exit as a user sees it (interpreter and library start-up, and for Ray the cluster's start,
included), after an untimed warm-up encode (numba compiles its kernels once per checkout and
caches them). Images: the centre ``--crop`` x ``--crop`` pixels of the first ``--n`` images of
``--images`` (default: $KANCOIN_KODAK, else ../shared/data/kodak next to the repository);
161 pixels a side or more, so that MS-SSIM is computed too. Prints a Markdown table, the machine
and the load average before and after (the timings are only as quiet as the machine).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW_FIELDS = ("psnr", "ms_ssim", "bpp", "file_bytes")


def _crops(src: Path, dst: Path, n: int, size: int) -> list[str]:
    from PIL import Image

    dst.mkdir(parents=True, exist_ok=True)
    paths = sorted(p for p in src.iterdir() if p.suffix.lower() == ".png")[:n]
    if len(paths) < n:
        sys.exit(f"{src}: {len(paths)} PNG images, {n} wanted")
    for p in paths:
        im = Image.open(p).convert("RGB")
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        im.crop((left, top, left + size, top + size)).save(dst / p.name)
    return [p.stem for p in paths]


def _eval(args: list[str]) -> float:
    """Run `python -m kancoin eval ARGS`; its wall time in seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "kancoin", "eval", *args], env=env,
                       capture_output=True, text=True)  # fmt: skip
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"kancoin eval {' '.join(args)} failed:\n{r.stderr}")
    return dt


def _rows(out: Path) -> dict[tuple, dict]:
    rows = {}
    for p in sorted((out / "rows").glob("*.json")):
        r = json.loads(p.read_text())
        blob = (out / r["file"]).read_bytes()
        r["file_sha1"] = hashlib.sha1(blob).hexdigest()
        rows[(r["image"], r["setting"], r["target_bpp"])] = r
    return rows


def _same(a: dict[tuple, dict], b: dict[tuple, dict]) -> str:
    """'' when the rows agree on every field and the file's bytes, else the first difference."""
    if set(a) != set(b):
        return f"different pairs: {sorted(set(a) ^ set(b))[:2]}"
    for k in sorted(a):
        for f in (*ROW_FIELDS, "file_sha1"):
            if a[k][f] != b[k][f]:
                return f"{k}: {f} {a[k][f]} vs {b[k][f]}"
    return ""


RAY_PROBE = r"""
import json, os, sys, time
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
t0 = time.perf_counter()
import ray
t_import = time.perf_counter() - t0
t0 = time.perf_counter()
ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
         logging_level="ERROR", log_to_driver=False)
t_init = time.perf_counter() - t0

@ray.remote(num_cpus=1, max_calls=0)
def noop(data):
    return len(data)

n = int(sys.argv[1])
blob = ray.put(b"x" * 20000)
ray.get([noop.remote(blob) for _ in range(4)])  # start and warm both workers
t0 = time.perf_counter()
ray.get([noop.remote(blob) for _ in range(n)])
t_batch = (time.perf_counter() - t0) / n
t0 = time.perf_counter()
for _ in range(n // 4):
    ray.get(noop.remote(blob))
t_one = (time.perf_counter() - t0) / (n // 4)
t0 = time.perf_counter()
ray.shutdown()
print(json.dumps({"import_s": t_import, "init_s": t_init, "per_task_batch_ms": 1e3 * t_batch,
                  "per_task_roundtrip_ms": 1e3 * t_one, "shutdown_s": time.perf_counter() - t0}))
"""


def _ray_overhead(n: int) -> dict:
    r = subprocess.run([sys.executable, "-c", RAY_PROBE, str(n)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"the Ray probe failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _machine() -> dict:
    from kancoin.eval.provenance import cpu_model, versions

    try:
        import ray

        ray_version = ray.__version__
    except ImportError:
        ray_version = None
    return {
        "cpu": cpu_model(), "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "os": platform.platform(), **versions(), "ray": ray_version,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, default=None)
    ap.add_argument("--n", type=int, default=4, help="images (default 4)")
    ap.add_argument("--crop", type=int, default=168, help="centre crop side (default 168)")
    ap.add_argument("--bpp", type=float, nargs="+", default=[1.0, 2.0])
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--tasks", type=int, default=200, help="no-op tasks of the Ray probe")
    ap.add_argument("--out", type=Path, default=None, help="keep the folders here")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from kancoin.eval.settings import default_images_dir

    work = a.out or Path(tempfile.mkdtemp(prefix="bench-eval-"))
    imgs = work / "imgs"
    names = _crops(a.images or default_images_dir(), imgs, a.n, a.crop)
    rates = [x for b in a.bpp for x in ("--bpp", f"{b:g}")]
    common = [str(imgs), *rates, "--device", "cpu", "--no-plots", "--quiet",
              "--keep-decoded", "none"]  # fmt: skip
    net = [*common, "--arch", "kan", "--iters", str(a.iters), "--batch-size", str(a.batch_size)]
    noop = [*common, "--codec", "webp"]
    # warm-up, untimed: numba compiles the kernels once and caches them next to the source
    _eval([*net[:1], "--bpp", "2", "--device", "cpu", "--no-plots", "--quiet", "--images", "1",
           "--iters", "5", "--out", str(work / "warm-up")])  # fmt: skip
    load0 = os.getloadavg()
    times: dict[str, float] = {}
    folders: dict[str, Path] = {}

    def mode(name: str, base: list[str], *extra: str) -> None:
        out = work / name
        times[name] = _eval([*base, "--out", str(out), *extra])
        folders[name] = out

    for kind, base in (("kan", net), ("webp", noop)):
        mode(f"{kind} --jobs 1", base, "--jobs", "1")
        mode(f"{kind} --jobs 2", base, "--jobs", "2")
        out = work / f"{kind}-shards"
        t = sum(_eval([*base, "--out", str(out), "--shard", f"{k}/2"]) for k in (1, 2))
        t += _eval(["--report-only", str(out), "--no-plots", "--quiet"])
        times[f"{kind} --shard 1/2, 2/2 in turn, --report-only"] = t
        folders[f"{kind} --shard 1/2, 2/2 in turn, --report-only"] = out
        if not a.no_ray:
            mode(f"{kind} --executor ray", base, "--executor", "ray")
    probe = None if a.no_ray else _ray_overhead(a.tasks)
    load1 = os.getloadavg()

    rows = {k: _rows(v) for k, v in folders.items()}
    checks = {}
    for k in rows:
        ref = "kan --jobs 1" if k.startswith("kan") else "webp --jobs 1"
        if k != ref:
            checks[k] = _same(rows[ref], rows[k]) or "equal"
    pairs = len(names) * len(a.bpp)
    doc = {
        "machine": _machine(), "load_average_before": load0, "load_average_after": load1,
        "images": names, "crop": a.crop, "bpp": a.bpp, "iters": a.iters,
        "batch_size": a.batch_size, "pairs": pairs, "wall_s": times, "rows_vs_jobs_1": checks,
        "ray_probe": probe, "folder": str(work),
    }  # fmt: skip
    if a.json:
        print(json.dumps(doc))
        return
    m = doc["machine"]
    print(f"{m['cpu']}, {m['usable_cores']} usable cores, {m['memory_gib']} GiB; Python "
          f"{m['python']}, torch {m['torch']}, Ray {m['ray']}; load average "
          f"{load0[0]:.1f} before, {load1[0]:.1f} after")  # fmt: skip
    print(f"{len(names)} images ({a.crop}x{a.crop} centre crops of {', '.join(names)}) x "
          f"{len(a.bpp)} rates ({', '.join(f'{b:g}' for b in a.bpp)} bpp) = {pairs} pairs; KAN "
          f"--iters {a.iters} --batch-size {a.batch_size} --device cpu\n")  # fmt: skip
    print("| run | wall s | s per pair | rows vs --jobs 1 |")
    print("|---|---|---|---|")
    for k, t in times.items():
        print(f"| `{k}` | {t:.1f} | {t / pairs:.2f} | {checks.get(k, '(reference)')} |")
    if probe:
        print(f"\nRay alone: import {probe['import_s']:.1f} s, start of a local cluster "
              f"{probe['init_s']:.1f} s, shutdown {probe['shutdown_s']:.1f} s; a no-op task "
              f"(20 kB argument from the object store, 2 warm workers) "
              f"{probe['per_task_batch_ms']:.1f} ms each when {a.tasks} are submitted at once, "
              f"{probe['per_task_roundtrip_ms']:.1f} ms submitted one at a time and waited "
              "for")  # fmt: skip
    print(f"\nfolders: {work}")


if __name__ == "__main__":
    main()
