"""Safe output: check paths before work starts, write atomically (temp file + rename)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kancoin.errors import KancoinError


def check_output(out: str | Path, inputs: list[str | Path] = (), force: bool = False) -> Path:
    """Refuse outputs that would overwrite an input, an existing file (without force), or that
    cannot be created. Called before any long work so errors come first."""
    out = Path(out)
    for src in inputs:
        src = Path(src)
        if src.exists() and out.exists() and os.path.samefile(src, out):
            raise KancoinError(f"{out}: output would overwrite the input")
        if src.resolve() == out.resolve():
            raise KancoinError(f"{out}: output would overwrite the input")
    if out.is_dir():
        raise KancoinError(f"{out}: is a directory")
    if out.exists() and not force:
        raise KancoinError(f"{out}: already exists (use --force to overwrite)")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise KancoinError(f"{out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise KancoinError(f"{out}: folder {parent} is not writable")
    return out


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write all of data or nothing: a temp file in the same folder, fsync, rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # includes KeyboardInterrupt: never leave the temp file behind
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_input(path: str | Path, what: str = "file") -> bytes:
    path = Path(path)
    if not path.exists():
        raise KancoinError(f"{path}: no such file")
    if path.is_dir():
        raise KancoinError(f"{path}: is a directory, not a {what}")
    try:
        return path.read_bytes()
    except OSError as e:
        raise KancoinError(f"{path}: cannot read ({e.strerror or e})") from None
