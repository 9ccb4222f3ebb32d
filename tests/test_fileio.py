"""Safe outputs (kancoin.fileio.write_atomic): never replace a file that appeared during the work
unless forced, modes that follow the umask, no temp file left after an error or an interrupt,
stale temp files of killed runs removed, OS errors as one line naming the file."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import time
import types
from pathlib import Path

import pytest

from kancoin import fileio
from kancoin.cli.common import Terminated
from kancoin.errors import KancoinError
from kancoin.fileio import remove_stale_temps, temp_name_pattern, write_atomic

from .test_cli import assert_clean_error, run


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """Set the umask for one test; the old one is restored."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.fixture
def appears_before_publish(monkeypatch):
    """Make a file appear at ``path`` while write_atomic runs: after its existence check and the
    temp file's write, just before the temp file is published (the fsync before the link)."""

    def arm(path: Path, content: bytes = b"theirs") -> None:
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            real_fsync(fd)
            if not path.exists():
                path.write_bytes(content)

        monkeypatch.setattr(os, "fsync", fsync)

    return arm


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


# --- no clobber at the moment of publishing -------------------------------------------------


def test_writes_the_data_and_leaves_no_temp(tmp_path) -> None:
    out = tmp_path / "out.kc"
    write_atomic(out, b"ours")
    assert out.read_bytes() == b"ours"
    assert _temps(tmp_path) == []


def test_an_existing_file_is_not_replaced_without_force(tmp_path) -> None:
    out = tmp_path / "out.kc"
    out.write_bytes(b"theirs")
    with pytest.raises(KancoinError, match="already exists .use --force to overwrite."):
        write_atomic(out, b"ours")
    assert out.read_bytes() == b"theirs"
    assert _temps(tmp_path) == []


def test_a_file_appearing_during_the_write_is_not_replaced(tmp_path, appears_before_publish):
    out = tmp_path / "out.kc"
    appears_before_publish(out)
    with pytest.raises(KancoinError) as e:
        write_atomic(out, b"ours")
    assert str(e.value) == f"{out}: already exists (use --force to overwrite)"
    assert out.read_bytes() == b"theirs"
    assert _temps(tmp_path) == []


def test_with_force_it_is_replaced_and_keeps_its_mode(tmp_path, umask) -> None:
    umask(0o022)
    out = tmp_path / "out.kc"
    out.write_bytes(b"theirs")
    out.chmod(0o640)
    write_atomic(out, b"ours", force=True)
    assert out.read_bytes() == b"ours"
    assert _mode(out) == 0o640
    assert _temps(tmp_path) == []


def test_with_force_a_file_appearing_during_the_write_is_replaced(
    tmp_path, appears_before_publish
) -> None:
    out = tmp_path / "out.kc"
    appears_before_publish(out)
    write_atomic(out, b"ours", force=True)
    assert out.read_bytes() == b"ours"
    assert _temps(tmp_path) == []


def test_without_hard_links_the_name_is_claimed_exclusively(tmp_path, monkeypatch) -> None:
    def no_link(src, dst, *a, **k):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    out = tmp_path / "out.kc"
    write_atomic(out, b"ours")
    assert out.read_bytes() == b"ours"
    with pytest.raises(KancoinError, match="already exists"):
        write_atomic(out, b"again")
    assert out.read_bytes() == b"ours"
    assert _temps(tmp_path) == []


# --- modes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_a_new_file_mode_follows_the_umask(tmp_path, umask, mask, mode) -> None:
    umask(mask)
    out = tmp_path / "out.kc"
    write_atomic(out, b"ours")
    assert _mode(out) == mode


# --- temp files: named by their writer, stale ones removed ----------------------------------


def test_the_temp_file_is_named_by_the_writer_pid(tmp_path, monkeypatch) -> None:
    seen = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        seen.extend(_temps(tmp_path))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_atomic(tmp_path / "out.kc", b"ours")
    assert len(seen) == 1
    m = temp_name_pattern("out.kc").fullmatch(seen[0])
    assert m is not None and int(m.group(1)) == os.getpid(), seen


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path) -> None:
    dead, old = _dead_pid(), time.time() - 3600
    stale = tmp_path / f".out.kc.{dead}.abcd1234.tmp"
    fresh = tmp_path / f".out.kc.{dead}.fresh123.tmp"  # just written: maybe a live writer
    live = tmp_path / f".out.kc.{os.getppid()}.live1234.tmp"  # its writer still runs
    other = tmp_path / f".other.kc.{dead}.abcd1234.tmp"  # another file's
    longer = tmp_path / f".out.kc.5.{dead}.abcd1234.tmp"  # the temp of "out.kc.5"
    for p in (stale, fresh, live, other, longer):
        p.write_bytes(b"partial")
        if p is not fresh:
            os.utime(p, (old, old))
    assert remove_stale_temps(tmp_path, "out.kc") == [stale]
    write_atomic(tmp_path / "out.kc", b"ours")  # does the same, quietly
    assert not stale.exists()
    assert _temps(tmp_path) == sorted(p.name for p in (fresh, live, other, longer))
    assert (tmp_path / "out.kc").read_bytes() == b"ours"


def test_write_atomic_removes_a_killed_writers_temp(tmp_path) -> None:
    dead, old = _dead_pid(), time.time() - 3600
    stale = tmp_path / f".out.kc.{dead}.zz_99xyz.tmp"
    stale.write_bytes(b"partial")
    os.utime(stale, (old, old))
    write_atomic(tmp_path / "out.kc", b"ours")
    assert _temps(tmp_path) == []


# --- errors and interrupts leave nothing behind ---------------------------------------------


def _full_disk_file(monkeypatch) -> None:
    """os.fdopen returns a file whose writes fail with ENOSPC, as on a full disk."""
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, fd, *a, **k):
            self.f = real_fdopen(fd, *a, **k)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def flush(self):
            self.f.flush()

        def fileno(self):
            return self.f.fileno()

    monkeypatch.setattr(os, "fdopen", FullDisk)


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch) -> None:
    _full_disk_file(monkeypatch)
    out = tmp_path / "out.kc"
    with pytest.raises(KancoinError) as e:
        write_atomic(out, b"ours")
    assert str(e.value) == f"{out}: cannot write (No space left on device)"
    assert "\n" not in str(e.value)
    assert not out.exists() and _temps(tmp_path) == []


def test_a_failing_fsync_is_one_line_too(tmp_path, monkeypatch) -> None:
    def fsync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "out.kc"
    with pytest.raises(KancoinError, match=r"out.kc: cannot write \(Input/output error\)$"):
        write_atomic(out, b"ours")
    assert not out.exists() and _temps(tmp_path) == []


def test_a_read_only_file_system_is_one_line(tmp_path, monkeypatch) -> None:
    def mkstemp(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(fileio.tempfile, "mkstemp", mkstemp)
    out = tmp_path / "out.kc"
    with pytest.raises(KancoinError) as e:
        write_atomic(out, b"ours")
    assert str(e.value) == f"{out}: cannot write (Read-only file system)"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores modes")
def test_a_read_only_folder_is_one_line(tmp_path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(KancoinError) as e:
            write_atomic(folder / "out.kc", b"ours")
        assert str(e.value) == f"{folder / 'out.kc'}: cannot write (Permission denied)"
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("exc", [KeyboardInterrupt, Terminated])
def test_an_interrupt_leaves_no_temp_and_no_output(tmp_path, monkeypatch, exc) -> None:
    def fsync(fd):
        raise exc

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "out.kc"
    with pytest.raises(exc):
        write_atomic(out, b"ours")
    assert not out.exists() and _temps(tmp_path) == []


# --- the commands pass the user's --force ---------------------------------------------------

GOLDEN = Path(__file__).resolve().parent / "golden" / "tiny.kc"


def test_decode_does_not_replace_an_output_that_appeared(tmp_path, appears_before_publish):
    out = tmp_path / "out.png"
    appears_before_publish(out)
    proc = run("decode", GOLDEN, out)
    assert_clean_error(proc, "already exists (use --force", code=1)
    assert out.read_bytes() == b"theirs"
    assert _temps(tmp_path) == []


def test_decode_force_replaces_it(tmp_path, appears_before_publish) -> None:
    out = tmp_path / "out.png"
    appears_before_publish(out)
    proc = run("decode", GOLDEN, out, "--force", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("force", [False, True])
def test_encode_file_passes_force(tmp_path, monkeypatch, small_png, force) -> None:
    """encode_file: a file appearing during the (here faked) fit is kept, unless force."""
    from kancoin.codec import encode
    from kancoin.codec.options import EncodeOptions

    out = tmp_path / "out.kc"

    def fake_fit(pixels, opts, progress=None):
        out.write_bytes(b"theirs")
        return types.SimpleNamespace(data=b"ours")

    monkeypatch.setattr(encode, "encode_pixels", fake_fit)
    if force:
        encode.encode_file(small_png, out, EncodeOptions(bpp=4), force=True)
        assert out.read_bytes() == b"ours"
    else:
        with pytest.raises(KancoinError, match="already exists"):
            encode.encode_file(small_png, out, EncodeOptions(bpp=4))
        assert out.read_bytes() == b"theirs"
    assert _temps(tmp_path) == []
