"""Safe output: check paths before work starts, write atomically (temp file, then a link or
rename that never replaces a file that appeared meanwhile unless asked to)."""

from __future__ import annotations

import errno
import os
import re
import tempfile
import time
from pathlib import Path

from kancoin.errors import KancoinError

# a dead writer's temp file is removed once it is this old: a live writer in another PID
# namespace (a container sharing the folder) keeps writing to its file and links it at once
STALE_AFTER_S = 60.0

# errors of os.link that mean "this file system has no hard links": fall back to O_EXCL
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


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


def check_study_folder(out: Path, outputs: tuple[str, ...], force: bool) -> None:
    """A study's results folder: refuse a path that is a file, or a folder holding one of a
    finished study's ``outputs`` (unless ``force``)."""
    if out.exists() and not out.is_dir():
        raise KancoinError(f"{out}: exists and is not a folder")
    if any((out / name).exists() for name in outputs) and not force:
        raise KancoinError(f"{out}: already holds a study (use --force to overwrite)")


def write_atomic(path: str | Path, data: bytes, force: bool = False) -> None:
    """Write all of data or nothing: a temp file ``.NAME.<pid>.XXXXXXXX.tmp`` in the same folder,
    fsync, then publish it under ``path``. Without force an existing ``path`` is never replaced,
    even one that appeared after ``check_output`` (the temp file is hard-linked to ``path``, which
    fails if it exists); with force it is replaced and keeps its mode. A new file's mode follows
    the umask (0o666 & ~umask). An OS error (no space, permission, read-only file system) is a
    one-line ``KancoinError`` naming ``path``; no temp file is left behind, on an error or an
    interrupt. Temp files of ``path`` left by dead writers (a killed run) are removed first."""
    path = Path(path)
    parent = path.parent
    remove_stale_temps(parent, path.name)
    mode = _mode_for(path, force)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise _cannot_write(path, e) from None
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                if hasattr(os, "fchmod"):  # POSIX
                    os.fchmod(f.fileno(), mode)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise _cannot_write(path, e) from None
        _publish(tmp, path, force)
    except BaseException:  # includes KeyboardInterrupt: never leave the temp file behind
        _unlink(tmp)
        raise
    _unlink(tmp)  # after a link: the temp name of the new file
    _sync_folder(parent)


def temp_name_pattern(name: str) -> re.Pattern:
    """The names ``write_atomic`` gives its temp files for a file called ``name``."""
    return re.compile(rf"\.{re.escape(name)}\.(\d+)\.[A-Za-z0-9_]+\.tmp")


def remove_stale_temps(folder: str | Path, name: str) -> list[Path]:
    """Remove the temp files of ``name`` in ``folder`` whose writer is no longer running (and
    that are older than a minute and ours); returns what was removed. Quiet: nothing to report."""
    if os.name != "posix":  # os.kill(pid, 0) is only a liveness test on POSIX
        return []
    pattern, removed = temp_name_pattern(name), []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    now = time.time()
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if st.st_uid != os.geteuid() or now - st.st_mtime < STALE_AFTER_S:
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OverflowError, ValueError, OSError):
        return False
    return True


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path, force: bool) -> int:
    if force:
        try:
            return path.stat().st_mode & 0o777
        except OSError:
            pass
    return 0o666 & ~_umask()


def _publish(tmp: str, path: Path, force: bool) -> None:
    """Put the written temp file at ``path``: replace (force), or create only if absent."""
    try:
        if force:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)  # atomic, and fails if path exists
            return
        except FileExistsError:
            raise _exists(path) from None
        except OSError as e:
            if e.errno not in _NO_LINKS:
                raise
        # no hard links here: claim the name with O_EXCL, then rename the temp file over it
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise _exists(path) from None
        claimed = os.fstat(fd)
        os.close(fd)
        try:
            os.replace(tmp, path)
        except BaseException:
            try:  # remove our empty placeholder, only if it still is ours
                st = os.stat(path, follow_symlinks=False)
                if (st.st_dev, st.st_ino) == (claimed.st_dev, claimed.st_ino):
                    os.unlink(path)
            except OSError:
                pass
            raise
    except OSError as e:
        raise _cannot_write(path, e) from None


def _exists(path: Path) -> KancoinError:
    return KancoinError(f"{path}: already exists (use --force to overwrite)")


def _cannot_write(path: Path, e: OSError) -> KancoinError:
    return KancoinError(f"{path}: cannot write ({e.strerror or e})")


def _unlink(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def _sync_folder(folder: Path) -> None:
    """Make the new name durable too (best effort: not every system can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
