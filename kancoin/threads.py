"""Thread policy, chosen by measurement (README, "Speed").

On small CPUs torch's default intra-op threading costs more than it gains on the tiny tensors
of a KAN step (Adam on a few thousand numbers, the loss); the heavy work runs in our numba
kernels, which split the batch into one chunk per thread. So for a KAN: torch 1 thread, numba
all usable cores. A SIREN's work is torch GEMMs, so it gets torch threads = cores; so do KANs of
the other bases (``--basis``), which run on torch ops.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def configure(arch: str, threads: int | None = None, basis: str = "bspline") -> int:
    """Set torch / numba thread counts for CPU work; returns the thread count used."""
    n = threads or usable_cores()
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:  # pragma: no cover
        pass
    torch.set_num_threads(1 if arch == "kan" and basis == "bspline" else n)
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
