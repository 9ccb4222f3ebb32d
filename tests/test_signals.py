"""Signals and the machine's errors as one line: Ctrl-C (130) and SIGTERM (143) leave no output
and no temp file, a signal during a library's import is not lost, a closed stdout is a quiet
exit, out of memory and OS errors are one line. In-process through ``run`` where that shows it;
real processes for real signals and pipes."""

from __future__ import annotations

import builtins
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image

from kancoin.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Terminated,
    out_of_memory,
    run,
    signals_handled,
)
from kancoin.errors import KancoinError

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "tiny.kc"


def _run(body, capsys) -> tuple[int, list[str]]:
    """``run(body)``: its exit status and its stderr lines."""
    with pytest.raises(typer.Exit) as e:
        run(body)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return e.value.exit_code, lines


def _raise(exc: BaseException):
    def body():
        raise exc

    return body


# --- run: each kind of stop is one line and its exit status ---------------------------------


@pytest.mark.parametrize(
    "exc, code, line",
    [
        (KancoinError("x.kc: bad"), 1, "error: x.kc: bad"),
        (KeyboardInterrupt(), EXIT_INTERRUPTED, "interrupted (no output written)"),
        (Terminated(), EXIT_TERMINATED, "terminated (no output written)"),
        (MemoryError(), 1, "error: out of memory"),
        (
            RuntimeError(
                "[enforce fail at alloc_cpu.cpp:118] data. DefaultCPUAllocator: not enough "
                "memory: you tried to allocate 1099511627776 bytes."
            ),
            1,
            "error: out of memory (could not allocate 1 TiB)",
        ),
        (
            RuntimeError(
                "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity "
                "of 139.8 GiB of which 1.2 GiB is free.\nIf reserved but unallocated memory is "
                "large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True"
            ),
            1,
            "error: out of memory (CUDA, could not allocate 20.00 GiB)",
        ),
        (
            OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/cache.bin"),
            1,
            "error: /data/cache.bin: No space left on device",
        ),
        (OSError(errno.EMFILE, os.strerror(errno.EMFILE)), 1, "error: Too many open files"),
        (ValueError("a bug"), 1, "internal error: ValueError: a bug"),
    ],
)
def test_run_maps_each_stop_to_one_line(capsys, monkeypatch, exc, code, line) -> None:
    monkeypatch.delenv("KANCOIN_DEBUG", raising=False)
    got, lines = _run(_raise(exc), capsys)
    assert got == code
    assert len(lines) == 1 and lines[0].startswith(line), lines


def test_numpy_out_of_memory_is_named() -> None:
    with pytest.raises(MemoryError) as e:
        np.empty(2**61, dtype=np.uint8)
    assert out_of_memory(e.value).startswith("out of memory (could not allocate")


def test_sigterm_in_the_body_raises_and_exits_143(capsys) -> None:
    def body():
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("SIGTERM was not acted on")

    t0 = time.perf_counter()
    code, lines = _run(body, capsys)
    assert code == EXIT_TERMINATED and lines == ["terminated (no output written)"]
    assert time.perf_counter() - t0 < 2


def test_the_stop_deadline_ends_with_the_command(capsys) -> None:
    """A handled stop arms the deadline that would end a stuck process; a command that ends in
    time cancels it (else an in-process caller would be ended later)."""
    from kancoin.cli import common

    def body():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    code, _ = _run(body, capsys)
    timer = common._stop["timer"]
    assert code == EXIT_TERMINATED and timer is not None
    timer.join(2)
    assert timer.finished.is_set() and not timer.is_alive()


def test_handlers_and_import_are_restored_after_a_command() -> None:
    before = (
        signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), builtins.__import__
    )  # fmt: skip
    with signals_handled():
        assert builtins.__import__ is not before[2]
        with signals_handled():  # nested: no change
            pass
        assert signal.getsignal(signal.SIGTERM) is not before[1]
    after = (
        signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), builtins.__import__
    )  # fmt: skip
    assert after == before


def test_a_signal_during_an_import_is_held_until_it_is_done(tmp_path, monkeypatch) -> None:
    """The interrupt of a module's import code comes right after the import, not inside it
    (where a library can swallow it or be left half loaded)."""
    name = f"_kancoin_slow_import_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text(
        "import os, signal, time\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(0.2)\n"
        "except BaseException:\n"  # a library that swallows what is raised here: lost interrupt
        "    pass\n"
        "LOADED = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    # a suite started in the background inherits SIGINT ignored, which signals_handled keeps
    # (as a command does): this test is about a handled Ctrl-C, so it installs Python's own
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with signals_handled():
            with pytest.raises(KeyboardInterrupt):
                __import__(name)
        assert sys.modules[name].LOADED is True
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.modules.pop(name, None)


# --- real processes -------------------------------------------------------------------------


def _kancoin(*args: str | Path, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kancoin", *map(str, args)], cwd=kw.pop("cwd", ROOT),
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, **kw,
    )  # fmt: skip


def test_a_closed_stdout_is_a_quiet_exit() -> None:
    """`kancoin info x.kc --json | head -c 10`: the reader is gone before the output is."""
    proc = _kancoin("info", GOLDEN, "--json", stdout=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == EXIT_BROKEN_PIPE
    assert "Traceback" not in err and "Exception ignored" not in err and "Error" not in err, err


_STUCK = """
import os, signal, sys, time
from kancoin.cli import common
common.STOP_GRACE_S = 1.0
def body():
    try:
        if sys.argv[1] == "import":
            import {module}  # an import that does not end: the signal is held
        print("ready", flush=True)
        time.sleep(60)
    finally:
        if sys.argv[1] == "cleanup":
            time.sleep(60)  # a cleanup that does not end
common.run(body)
"""


@pytest.mark.parametrize("where", ["cleanup", "import"])
def test_a_stopped_command_that_does_not_end_is_ended(tmp_path, where) -> None:
    """After a stop signal a command has ``STOP_GRACE_S`` to end; then the process ends itself,
    with the stop's one line and exit status, whatever it was stuck in."""
    module = f"_kancoin_stuck_{os.getpid()}"
    stuck = "import time\nprint('ready', flush=True)\ntime.sleep(60)\n"
    (tmp_path / f"{module}.py").write_text(stuck)
    script = tmp_path / "stuck.py"
    script.write_text(_STUCK.format(module=module))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    proc = subprocess.Popen(
        [sys.executable, str(script), where], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,  # an inherited SIG_IGN is not wanted
    )  # fmt: skip
    try:
        assert proc.stdout.readline() == b"ready\n"
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=30)[1].decode()
        waited = time.perf_counter() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EXIT_TERMINATED, err
    assert [x for x in err.splitlines() if x.strip()] == ["terminated (no output written)"]
    assert 0.9 < waited < 20, waited  # the grace (1 s), not the 60 s the body would take


def _slow_encode(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    img = tmp_path / "img.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "out.kc"
    args = ("encode", img, out, "--bpp", "2", "--iters", "100000", "--device", "cpu", "--quiet")
    return _kancoin(*args, stdout=subprocess.DEVNULL), out


@pytest.mark.parametrize(
    "sig, delay, code, line",
    [
        (signal.SIGTERM, 3.0, EXIT_TERMINATED, "terminated (no output written)"),
        pytest.param(  # early: most likely while torch loads, where an interrupt could be lost
            signal.SIGINT,
            1.0,
            EXIT_INTERRUPTED,
            "interrupted (no output written)",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_a_signal_stops_an_encode_cleanly(tmp_path, sig, delay, code, line) -> None:
    proc, out = _slow_encode(tmp_path)
    time.sleep(delay)
    assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(sig)
    try:
        err = proc.communicate(timeout=60)[1].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert lines == [line], err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png"]
