"""Where the work runs: the device, and the thread policy (chosen by measurement, docs/speed.md).

On small CPUs torch's default intra-op threading costs more than it gains on tiny tensors; each
network family says how many torch threads its training wants (``NetFamily.torch_threads``),
and numba kernels take every usable core.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from kancoin.codec.options import check_device
from kancoin.errors import KancoinError
from kancoin.nets import NetSpec, family_of


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def configure(spec: NetSpec, threads: int | None = None) -> int:
    """Set torch / numba thread counts for CPU training of ``spec``; returns the count used."""
    n = threads or usable_cores()
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:  # pragma: no cover - a family that needs numba says so itself
        pass
    torch.set_num_threads(family_of(spec).torch_threads(spec, n))
    return n


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch on ``n`` intra-op threads inside the block (restored after). The decoder renders
    on one: a GEMM's summation order, hence its last bit, can depend on the thread count, and
    a file must decode to the same pixels whatever the encoder's ``--threads`` was."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(name: str) -> torch.device:
    """The device to run on, in this process: ``auto`` is CUDA when there is one."""
    check_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise KancoinError(f"--device {name}: no CUDA device is available")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise KancoinError(
                f"--device {name}: there are {torch.cuda.device_count()} CUDA device(s)"
            )
        return dev
    return torch.device(name)
