"""What every command shares: one-line errors, the progress bar, common options, and the encoder's
options generated from their one declaration (``kancoin.codec.options.EncodeOptions``)."""

from __future__ import annotations

import builtins
import enum
import errno
import inspect
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from kancoin.errors import KancoinError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (kill, timeout, systemd)
EXIT_BROKEN_PIPE = 141  # stdout closed early (`kancoin info x | head`), as if killed by SIGPIPE

INTERRUPTED = "interrupted (no output written)"
TERMINATED = "terminated (no output written)"


def err(msg: str) -> None:
    """One line on stderr; never raises (stderr may be a closed pipe too)."""
    try:
        typer.echo(msg, err=True)
    except (OSError, ValueError):
        pass


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so that the same
    cleanup runs (no temp file is left); the command line exits 143 instead of 130."""


_handling = threading.local()


def _stop_children(signum: int) -> None:
    """Pass a stop signal on to this process's worker processes (--jobs), so that the pool's
    shutdown does not wait for their running encodes."""
    if "multiprocessing" not in sys.modules:
        return
    try:
        import multiprocessing

        for child in multiprocessing.active_children():
            child.terminate()
    except Exception:  # noqa: BLE001 - best effort, in a signal handler
        pass


# After a stop signal the command has this long to clean up and exit (about a second here)
# before the process ends itself: an exit must not wait on a library's import, a worker
# thread or an exit handler that does not return. Output files are never half written
# (they are published by a rename), and a temp file left behind is removed by the next
# write of the same file.
STOP_GRACE_S = 20.0
# this command's stop: the deadline's timer, whether the stop's line is printed
_stop: dict[str, Any] = {"timer": None, "said": False}


def _arm_stop_deadline(signum: int) -> None:
    """End the process (``_stop_now``) if the command is still running ``STOP_GRACE_S`` after
    the first stop signal (a daemon timer, cancelled when ``signals_handled`` ends)."""
    if _stop["timer"] is not None:
        return
    timer = threading.Timer(STOP_GRACE_S, _stop_now, (signum,))
    timer.daemon = True
    _stop["timer"] = timer
    timer.start()


def stopped() -> bool:
    """Whether a stop signal (Ctrl-C, SIGTERM) has ended the command."""
    return _stop["said"]


def _stop_line(signum: int) -> str | None:
    """The one line a stopped command prints, the first time it is asked for; then None."""
    if _stop["said"]:
        return None
    _stop["said"] = True
    return TERMINATED if signum == signal.SIGTERM else INTERRUPTED


def say_stopped(signum: int) -> None:
    """Print the stop's line, once, whoever prints it first (``_stop_now`` too)."""
    line = _stop_line(signum)
    if line is not None:
        err(line)


def _raise_interrupted(signum: int, frame: Any) -> None:
    _stop_children(signum)
    _arm_stop_deadline(signum)
    raise KeyboardInterrupt


def _raise_terminated(signum: int, frame: Any) -> None:
    _stop_children(signum)
    _arm_stop_deadline(signum)
    raise Terminated


def _stop_now(signum: int) -> None:
    """A second signal while the first one is held, or a command still running
    ``STOP_GRACE_S`` after the first: end the process at once."""
    _stop_children(signum)
    line = _stop_line(signum)
    if line is not None:
        try:  # not err(): this may run in a signal handler or the deadline's thread
            os.write(2, (line + "\n").encode())
        except OSError:
            pass
    os._exit(EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED)


@contextmanager
def _held_signals():
    """Hold SIGINT/SIGTERM (those with a Python handler) for the duration; raise the exception
    of the first one held right after. A second one ends the process at once."""
    pending: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        if pending:
            _stop_now(signum)
        pending.append(signum)
        _arm_stop_deadline(signum)

    saved = {}
    for s in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(s)
        if callable(current):
            saved[s] = current
            signal.signal(s, hold)
    _handling.holding = True
    try:
        yield
    finally:
        _handling.holding = False
        for s, h in saved.items():
            signal.signal(s, h)
        if pending:
            _stop_children(pending[0])
            raise (Terminated if pending[0] == signal.SIGTERM else KeyboardInterrupt)() from None


def _holding_import(real: Callable) -> Callable:
    """``builtins.__import__`` that loads a module not loaded yet with signals held: an exception
    raised by a signal inside a library's import code can be swallowed there (the interrupt is
    lost and the run goes on: torch does this) or leave the library half initialised."""

    def __import__(name, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002
        if (
            level == 0 and name not in sys.modules and not getattr(_handling, "holding", False)
            and threading.current_thread() is threading.main_thread()
        ):  # fmt: skip
            with _held_signals():
                return real(name, globals, locals, fromlist, level)
        return real(name, globals, locals, fromlist, level)

    return __import__


@contextmanager
def signals_handled():
    """Signals handled predictably while a command runs (main thread; nested uses are no-ops):
    Ctrl-C raises KeyboardInterrupt and SIGTERM raises ``Terminated`` (an inherited SIG_IGN is
    kept), and an import that loads a module (torch, numba: seconds) holds both until it is
    done, a second signal ending the process at once; a command still running
    ``STOP_GRACE_S`` after a stop signal is ended too. Restored afterwards."""
    if threading.current_thread() is not threading.main_thread() or getattr(
        _handling, "active", False
    ):
        yield
        return
    saved = {}
    for s, h in ((signal.SIGINT, _raise_interrupted), (signal.SIGTERM, _raise_terminated)):
        current = signal.getsignal(s)
        if current is not signal.SIG_IGN:
            saved[s] = current
            signal.signal(s, h)
    real_import = builtins.__import__
    ours = _holding_import(real_import)
    builtins.__import__ = ours
    _handling.active = True
    _stop.update(timer=None, said=False)
    try:
        yield
    finally:
        if _stop["timer"] is not None:
            _stop["timer"].cancel()
        _handling.active = False
        if builtins.__import__ is ours:
            builtins.__import__ = real_import
        for s, h in saved.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


_OOM = re.compile(
    r"out of memory|can't allocate memory|cannot allocate memory|DefaultCPUAllocator|"
    r"not enough memory|CUBLAS_STATUS_ALLOC_FAILED|std::bad_alloc",
    re.IGNORECASE,
)
_VERB = r"(?:tried to|unable to|failed to) allocate"
_ALLOCATE = re.compile(_VERB + r" (\d+) bytes", re.I)
_ALLOCATE_UNIT = re.compile(_VERB + r" ([\d.]+ ?[KMGTPE]i?B)", re.I)


def out_of_memory(e: BaseException) -> str | None:
    """The one-line text of an out-of-memory error (MemoryError, torch's CPU or CUDA allocator
    messages, ENOMEM), or None if ``e`` is not one."""
    msg = str(e)
    if not (
        isinstance(e, MemoryError)
        or (isinstance(e, RuntimeError) and _OOM.search(msg))
        or (isinstance(e, OSError) and e.errno == errno.ENOMEM)
    ):
        return None
    parts = ["CUDA"] if "cuda" in msg.lower() else []
    if m := _ALLOCATE.search(msg):
        parts.append(f"could not allocate {_size(int(m.group(1)))}")
    elif m := _ALLOCATE_UNIT.search(msg):
        parts.append(f"could not allocate {m.group(1)}")
    elif not parts and msg.strip():
        first = msg.strip().splitlines()[0]
        parts.append(first if len(first) <= 120 else first[:117] + "...")
    return f"out of memory ({', '.join(parts)})" if parts else "out of memory"


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.4g} {unit}"
        n /= 1024
    raise AssertionError


# OS errors of the machine, not of kancoin: a full disk, permissions, too many open files
_ENVIRONMENT = {
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
    errno.EMFILE, errno.ENFILE,
}  # fmt: skip


def _stdout_closed() -> bool:
    """Whether stdout is a pipe (or socket) whose reader has gone."""
    try:
        import select

        poller = select.poll()
        poller.register(sys.__stdout__.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return True  # cannot tell: the usual cause of a broken pipe in a command is stdout


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the shutdown flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass


@contextmanager
def progress_bar(enabled: bool, label: str):
    """A rich progress bar on stderr (step, PSNR, ETA) when it is a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[psnr]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None, psnr="")

        def update(step: int, total: int, best_psnr: float) -> None:
            shown = f"best {best_psnr:.2f} dB" if best_psnr > -1e9 else ""
            bar.update(task, completed=step, total=total, psnr=shown)

        yield update


def run(fn):
    """Run a command body: KancoinError -> one line, exit 1; Ctrl-C -> exit 130; SIGTERM -> exit
    143; out of memory and the machine's OS errors (a full disk) -> one line, exit 1; stdout
    closed early (a pipe into ``head``) -> quiet exit 141. Any other exception is a bug: one
    line, exit 1 (``KANCOIN_DEBUG=1``: the traceback)."""
    with signals_handled():
        try:
            return fn()
        except KancoinError as e:
            err(f"error: {e}")
            raise typer.Exit(EXIT_ERROR) from None
        except Terminated:
            say_stopped(signal.SIGTERM)
            raise typer.Exit(EXIT_TERMINATED) from None
        except KeyboardInterrupt:
            say_stopped(signal.SIGINT)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as e:  # MemoryError included
            if isinstance(e, BrokenPipeError) and _stdout_closed():
                _silence_stdout()
                raise typer.Exit(EXIT_BROKEN_PIPE) from None
            oom = out_of_memory(e)
            if oom is not None:
                err(f"error: {oom}")
                raise typer.Exit(EXIT_ERROR) from None
            if isinstance(e, OSError) and e.errno in _ENVIRONMENT:
                where = f"{e.filename}: " if e.filename else ""
                err(f"error: {where}{e.strerror or e}")
                raise typer.Exit(EXIT_ERROR) from None
            if os.environ.get("KANCOIN_DEBUG"):  # a bug: still one line, unless asked
                raise
            err(f"internal error: {type(e).__name__}: {e} (set KANCOIN_DEBUG=1 for a traceback)")
            raise typer.Exit(EXIT_ERROR) from None


Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object with the result.")]
Force = Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output file.")]


def _choice_enum(name: str, choices: tuple[str, ...]) -> type[enum.Enum]:
    return enum.Enum(name, [(c, c) for c in choices], type=str)


def _open_range_check(name: str, info: Any) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        for v in value if isinstance(value, list) else [value]:
            try:
                info.check(name, v)
            except KancoinError:
                raise typer.BadParameter(f"must be {info.range_text()}, got {v!r}") from None
        return value

    return check


_TYPES = {"float": float, "int": int, "str": str, "bool": bool}


def encoder_param(
    name: str, *, multiple: bool = False, help: str | None = None
) -> inspect.Parameter:
    """A Typer option for one encoder option, from its declaration: type, default, help, and
    its valid values (an enum of the choices; min/max for a closed range, a check for an open
    end). ``multiple``: a repeatable option (a list, default None)."""
    from kancoin.codec.options import EncodeOptions

    default, info, annotation = EncodeOptions.info(name)
    base = str(annotation).replace(" | None", "").strip()
    typ: Any = _TYPES[base]
    if info.choices:
        typ = _choice_enum("".join(p.title() for p in name.split("_")), info.choices)
        default = None if default is None else typ(default)
    kw: dict[str, Any] = {"help": help or info.help}
    if info.choices is None and typ in (int, float):
        if info.lo is not None and not info.lo_open:
            kw["min"] = info.lo
        if info.hi is not None and not info.hi_open:
            kw["max"] = info.hi
        if info.lo_open or info.hi_open:  # Typer's min/max are inclusive
            kw["callback"] = _open_range_check(name, info)
    if multiple:
        annotation = list[typ] | None
        default = None
    elif default is None or "None" in str(annotation):
        annotation = typ | None
    else:
        annotation = typ
    flag = "--" + name.replace("_", "-")
    decls = [flag] if typ is not bool else [f"{flag}/--no-{flag[2:]}"]
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default,
        annotation=Annotated[annotation, typer.Option(*decls, **kw)],
    )  # fmt: skip


def with_encoder_options(
    names: Iterable[str], multiple: Iterable[str] = (), helps: dict[str, str] | None = None
) -> Callable:
    """Add the encoder options ``names`` to a command's signature (after its own parameters);
    the command receives them in ``**options`` (``option_values`` turns enums into values)."""
    multiple, helps = set(multiple), helps or {}

    def wrap(fn: Callable) -> Callable:
        sig = inspect.signature(fn, eval_str=True)  # Typer reads __signature__ as it is
        own = [p for p in sig.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
        extra = [encoder_param(n, multiple=n in multiple, help=helps.get(n)) for n in names]
        own_kw = [p for p in own if p.kind == inspect.Parameter.KEYWORD_ONLY]
        positional = [p for p in own if p.kind != inspect.Parameter.KEYWORD_ONLY]
        fn.__signature__ = sig.replace(parameters=positional + extra + own_kw)
        return fn

    return wrap


def option_values(options: dict[str, Any]) -> dict[str, Any]:
    """Typer's values of generated options as plain values (enum members -> their strings)."""
    out = {}
    for k, v in options.items():
        if isinstance(v, list):
            v = [x.value if isinstance(x, enum.Enum) else x for x in v]
        elif isinstance(v, enum.Enum):
            v = v.value
        out[k] = v
    return out


def _effort_enum() -> type[enum.Enum]:
    from kancoin.codec.options import EFFORT_ITERS

    return _choice_enum("Effort", tuple(EFFORT_ITERS))


Effort = _effort_enum()
