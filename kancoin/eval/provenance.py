"""Where a row was computed: the versions of Python and of the libraries that shape a result,
the CPU model, and the GPU's name when CUDA ran it (``environment``, stored in every row)."""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata

# the libraries whose version can change a result (or its timing)
PACKAGES = ("torch", "numba", "constriction", "numpy", "Pillow")


@lru_cache(maxsize=1)
def versions() -> dict[str, str | None]:
    """{"python": ..., "kancoin": ..., "torch": ..., ...}; None for a library not installed."""
    from kancoin import __version__

    out: dict[str, str | None] = {"python": platform.python_version(), "kancoin": __version__}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                    if value.strip():
                        return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def gpu_name(device: str | None) -> str | None:
    """The CUDA device's name, for a row computed on CUDA (None otherwise)."""
    if not device or not device.startswith("cuda"):
        return None
    try:
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    except Exception:  # noqa: BLE001 - provenance is best effort, never a failed row
        return None


def environment(device: str | None = None) -> dict[str, str | None]:
    """What a row records about where it ran (``device``: the one it ran on, e.g. "cuda:1")."""
    return {**versions(), "cpu": cpu_model(), "gpu": gpu_name(device)}
