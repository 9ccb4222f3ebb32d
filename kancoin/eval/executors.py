"""Where `kancoin eval` computes its rows: in this process, in a pool of local processes
(``--jobs``), or as Ray tasks (``--executor ray``, the optional extra ``kancoin[ray]``).

Each takes the pairs still to compute, ``[(index, Job)]``, and calls ``done(index, row, files)``
in this process for each one as it finishes; the caller writes them. A worker computes the row
with ``runs.compute``, which resolves the device where it runs.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from kancoin.errors import KancoinError

Done = Callable[[int, dict, dict], None]

RAY_EXTRA = 'pip install "kancoin[ray]"'


def run_serial(todo: list, done: Done) -> None:
    """One pair after the other in this process (all usable cores for each encode)."""
    from kancoin.eval import runs

    for i, job in todo:
        done(i, *runs.compute(job))


# this process's GPU slot in a local pool: worker k of the pool takes GPU k mod the GPU count
_SLOT = 0


def _init_worker(counter) -> None:
    global _SLOT
    with counter.get_lock():
        _SLOT = counter.value
        counter.value += 1


def _pool_task(job):
    from kancoin.eval import runs

    return runs.compute(job, slot=_SLOT)


def run_pool(todo: list, done: Done, jobs: int) -> None:
    """``jobs`` local processes, one pair at a time each (one CPU thread each); with several
    GPUs, worker k runs on ``cuda:k mod count`` (``--device cuda`` or an ``auto`` that is CUDA)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # torch/numba thread pools are not fork-safe
    counter = ctx.Value("i", 0)
    with ProcessPoolExecutor(
        max_workers=min(jobs, len(todo)), mp_context=ctx, initializer=_init_worker,
        initargs=(counter,),
    ) as ex:  # fmt: skip
        futs = {ex.submit(_pool_task, job): i for i, job in todo}
        for f in as_completed(futs):
            done(futs[f], *f.result())


def _ray(local: bool = False):
    """Ray, imported; ``local``: for a cluster of this machine alone, which Ray then runs in its
    single-machine mode, every server on 127.0.0.1 and none on the network (read when Ray is
    first imported). Ray's usage reports are off."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if local and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise KancoinError(f"--executor ray needs Ray: {RAY_EXTRA}") from None
    return ray


def check_ray(
    device: str, jobs: int, gpus_per_job: float, retries: int, address: str | None = None
) -> str:
    """Check the Ray options before any work; returns the device type the workers will resolve
    (CUDA only where a task is given a GPU)."""
    if jobs != 1:
        raise KancoinError("--jobs is for --executor local (Ray runs as many tasks as fit)")
    if not gpus_per_job >= 0:
        raise KancoinError(f"--gpus-per-job must be at least 0, got {gpus_per_job}")
    if retries < 0:
        raise KancoinError(f"--retries must be at least 0, got {retries}")
    if device.startswith("cuda") and gpus_per_job == 0:
        raise KancoinError(f"--device {device} with --executor ray needs --gpus-per-job > 0")
    _ray(local=not address)
    if device == "cpu":
        return "cpu"
    return "cuda" if gpus_per_job > 0 else "cpu"


def ray_task(job, data):
    """A Ray task: the row of one pair, computed on the worker from the image's bytes (no shared
    file system needed). ``auto`` is the CPU on a worker given no GPU."""
    import dataclasses

    import ray

    from kancoin.eval import runs

    s = job.setting
    if s.is_net and s.options.device == "auto" and not ray.get_gpu_ids():
        job = dataclasses.replace(job, setting=s.resolved("cpu", "cpu"))
    return runs.compute(job, data=data)


def _init_ray(ray, address: str | None) -> bool:
    """Connect to the cluster at ``address`` (``auto``: the one this machine is part of;
    ``ray://HOST:PORT``: Ray Client), or start one on this machine only (bound to 127.0.0.1, no
    dashboard) when there is none. Returns whether this call started it."""
    if ray.is_initialized():
        return False
    kw: dict = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
    if address:
        kw["address"] = address
    else:
        kw["_node_ip_address"] = "127.0.0.1"
    try:
        ray.init(**kw)
    except Exception as e:  # noqa: BLE001 - whatever Ray raises, one line
        where = f"reach the Ray cluster at {address}" if address else "start Ray here"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise KancoinError(f"--executor ray: cannot {where} ({first})") from None
    return True


def check_fits(ray: Any, gpus_per_job: float) -> None:
    """A task of 1 CPU and ``gpus_per_job`` GPUs must fit on some live node of the cluster:
    Ray would otherwise keep it pending for ever (a cluster that adds nodes on demand must
    have one such node up before the run)."""
    need = {"CPU": 1.0, "GPU": float(gpus_per_job)}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive", True)]
    if any(all(r.get(k, 0.0) >= v for k, v in need.items() if v > 0) for r in nodes):
        return
    most = max((r.get("GPU", 0.0) for r in nodes), default=0.0)
    raise KancoinError(
        f"--gpus-per-job {gpus_per_job:g}: no node of the Ray cluster has 1 CPU and "
        f"{gpus_per_job:g} GPU(s) (the most GPUs on a node: {most:g}); the tasks would wait "
        "for ever"
    )


def run_ray(
    todo: list,
    done: Done,
    address: str | None = None,
    gpus_per_job: float = 0.0,
    retries: int = 2,
    task: Callable | None = None,
) -> None:
    """One Ray task per pair (1 CPU and ``gpus_per_job`` GPUs each); worker processes are reused
    (``max_calls=0``). The image's bytes go into the object store once per image. A task whose
    worker crashed or raised is retried ``retries`` times, then becomes an error row, and the
    run goes on. ``task``: the function each task runs (``ray_task``)."""
    from kancoin.eval import runs

    ray = _ray(local=not address)
    if not todo:
        return
    started = _init_ray(ray, address)
    try:
        check_fits(ray, gpus_per_job)
    except KancoinError:
        if started:
            ray.shutdown()
        raise
    remote = ray.remote(
        num_cpus=1, num_gpus=gpus_per_job, max_retries=retries, retry_exceptions=True,
        max_calls=0,
    )(task or ray_task)  # fmt: skip
    pending: dict = {}
    try:
        images: dict[str, object] = {}
        for i, job in todo:
            if job.path not in images:
                try:
                    with open(job.path, "rb") as f:
                        images[job.path] = ray.put(f.read())
                except OSError as e:
                    done(i, runs.error_row(job, f"{job.path}: cannot read ({e.strerror or e})"), {})
                    continue
            pending[remote.remote(job, images[job.path])] = (i, job)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i, job = pending.pop(ref)
                try:
                    row, files = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - a task that failed every try
                    tries = retries + 1
                    why = (str(e).strip().splitlines() or [type(e).__name__])[-1]
                    row = runs.error_row(
                        job, f"the task failed {tries} time(s) ({type(e).__name__}: {why})"
                    )
                    files = {}
                done(i, row, files)
    finally:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        if started:
            ray.shutdown()
