"""Network families behind a registry (CompressAI's ``registry`` is the model).

Each family is one module holding everything about it (``family.NetFamily``); adding one is that
module plus one ``register`` line below. The codec and the file format look families up here by
``--arch`` name or by the header's ``arch`` number, and never test for a family by name. The
registry itself is light: a family's module (and torch) loads when the family is first asked
for, so the command line and ``kancoin info --format`` start fast.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kancoin.errors import KancoinError
from kancoin.nets.spec import NetSpec, Overrides

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from kancoin.nets.base import NetFamily


@dataclass(frozen=True)
class Entry:
    """One family in the registry: its ``--arch`` name, the header's ``arch`` number, a label
    for people, and where its ``NetFamily`` class lives (``module:Class``)."""

    name: str
    arch_id: int
    label: str
    target: str
    weights_only: bool = True  # the file stores only the network (the studies' families)


_ENTRIES: dict[str, Entry] = {}
_LOADED: dict[str, NetFamily] = {}


def register(entry: Entry) -> Entry:
    if entry.name in _ENTRIES or any(e.arch_id == entry.arch_id for e in _ENTRIES.values()):
        raise ValueError(f"network family {entry.name!r} (arch {entry.arch_id}) is taken")
    _ENTRIES[entry.name] = entry
    return entry


register(Entry("kan", 0, "KAN", "kancoin.nets.kan.family:KanFamily"))
register(Entry("siren", 1, "SIREN", "kancoin.nets.siren:SirenFamily"))
register(Entry("latent", 2, "latent", "kancoin.nets.latent:LatentFamily", weights_only=False))

ARCHS: tuple[str, ...] = tuple(_ENTRIES)
# the families a weights-only study (sweep, quantization study) runs on
WEIGHT_ARCHS: tuple[str, ...] = tuple(e.name for e in _ENTRIES.values() if e.weights_only)


def entries() -> tuple[Entry, ...]:
    return tuple(_ENTRIES.values())


def family(arch: str) -> NetFamily:
    """The family of ``--arch`` name ``arch``; KancoinError if there is none."""
    if arch not in _LOADED:
        entry = _ENTRIES.get(arch)
        if entry is None:
            raise KancoinError(f"unknown --arch {arch!r} ({' or '.join(_ENTRIES)})")
        module, cls = entry.target.split(":")
        fam = getattr(importlib.import_module(module), cls)()
        if (fam.name, fam.arch_id, fam.label) != (entry.name, entry.arch_id, entry.label):
            raise RuntimeError(f"{entry.target} does not match its registry entry")
        _LOADED[arch] = fam
    return _LOADED[arch]


def family_by_id(arch_id: int) -> NetFamily:
    """The family a file's ``arch`` field names; KancoinError if there is none."""
    for e in _ENTRIES.values():
        if e.arch_id == arch_id:
            return family(e.name)
    raise KancoinError(f"field 'arch' out of range: {arch_id!r}")


def family_of(spec: NetSpec) -> NetFamily:
    return family(spec.arch)


def families() -> tuple[NetFamily, ...]:
    """Every registered family (loads them all)."""
    return tuple(family(name) for name in _ENTRIES)


def build(spec: NetSpec) -> nn.Module:
    """A fresh module for ``spec`` (its family's initialisation)."""
    return family_of(spec).build(spec)


def export_arrays(model: nn.Module, spec: NetSpec) -> list[np.ndarray]:
    """The stored tensors of ``model``, float32, in file order."""
    return family_of(spec).export_arrays(model, spec)


def load_arrays(model: nn.Module, spec: NetSpec, arrays: list[np.ndarray]) -> None:
    """Load stored tensors (file order) into ``model``."""
    family_of(spec).load_arrays(model, arrays)


def render(model: nn.Module, spec: NetSpec, height: int, width: int, device: Any = "cpu"):
    """The decoder's image of ``model``: uint8 (H, W, C) on ``device``."""
    return family_of(spec).render(model, height, width, device)


__all__ = [
    "ARCHS", "WEIGHT_ARCHS", "Entry", "NetSpec", "Overrides", "build", "entries",
    "export_arrays", "families", "family", "family_by_id", "family_of", "load_arrays",
    "register", "render",
]  # fmt: skip
