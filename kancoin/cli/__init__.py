"""The `kancoin` command line (Typer). Errors become one line on stderr and a non-zero exit.

Each command is a plain function in its module (``codec``, ``eval``, ``research``), registered
here; the modules import ``common`` and the library, never each other or this package.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path


def _started_as_command() -> bool:
    """Whether this process is the command line (``kancoin``, ``python -m kancoin``)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name == "kancoin.__main__":
        return True
    return bool(sys.argv) and Path(sys.argv[0]).stem in ("kancoin", "kancoin-script")


_finished = False  # the command has run: a signal now only cuts the interpreter's shutdown


def _stop_outside_the_command(signum, frame) -> None:
    """Ctrl-C or SIGTERM while the command line itself is still loading (nothing has started) or
    after the command has run: end at once, with the usual line if the command has not run,
    instead of a traceback from inside an import or the interpreter's shutdown."""
    term = signum == signal.SIGTERM
    if not _finished:
        try:
            os.write(2, f"{'terminated' if term else 'interrupted'} (no output written)\n".encode())
        except OSError:
            pass
    os._exit(143 if term else 130)


if _started_as_command():  # before the imports below, which take a while
    for _s in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(_s) is not signal.SIG_IGN:
            signal.signal(_s, _stop_outside_the_command)

import typer  # noqa: E402
from typer import _click  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from kancoin.cli import codec, research  # noqa: E402
from kancoin.cli import eval as eval_cmds  # noqa: E402
from kancoin.cli.common import (  # noqa: E402
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Terminated,
    say_stopped,
    signals_handled,
    stopped,
)


class _OneLineErrors(TyperGroup):
    """A usage error (unknown option, a value out of its range or choices) as one line on
    stderr and exit 2, like every other error of kancoin, instead of a usage box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        global _finished
        try:
            with signals_handled():  # SIGTERM like Ctrl-C; imports not cut by a signal
                try:
                    rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
                finally:
                    _finished = True
        except _click.exceptions.UsageError as e:
            if not standalone_mode:
                raise
            cmd = f" {e.ctx.command.name}" if e.ctx and e.ctx.command.name else ""
            _click.echo(f"error: {e.format_message()} (see kancoin{cmd} --help)", file=sys.stderr)
            sys.exit(e.exit_code)
        except typer.Abort:
            if not standalone_mode:
                raise
            say_stopped(signal.SIGINT)
            if _started_as_command():
                _exit_now(EXIT_INTERRUPTED)
            sys.exit(EXIT_INTERRUPTED)
        if not standalone_mode:
            return rv
        if stopped() and _started_as_command():  # skip the libraries' teardown: nothing is left
            _exit_now(rv if isinstance(rv, int) else EXIT_INTERRUPTED)
        sys.exit(rv if isinstance(rv, int) else 0)

    def make_context(self, *args, **kwargs):
        with _one_line_interrupts():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with _one_line_interrupts():
            return super().invoke(ctx)


def _exit_now(code: int) -> None:
    """Flush what was printed and end the process without the interpreter's shutdown: after a
    stop signal that teardown (torch's and numba's thread pools, exit handlers) is all that
    is left, and it must not keep a stopped command running."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


@contextmanager
def _one_line_interrupts():
    """Ctrl-C or SIGTERM outside a command's body (parsing its options, importing the codec):
    the same line and exit status as inside it."""
    try:
        yield
    except Terminated:
        say_stopped(signal.SIGTERM)
        raise typer.Exit(EXIT_TERMINATED) from None
    except KeyboardInterrupt:
        say_stopped(signal.SIGINT)
        raise typer.Exit(EXIT_INTERRUPTED) from None


app = typer.Typer(
    cls=_OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Image compression with Kolmogorov–Arnold Networks (KAN COIN).",
)
app.command("encode")(codec.encode)
app.command("decode")(codec.decode)
app.command("info")(codec.info)
app.command("eval")(eval_cmds.eval_)
app.command("plot")(eval_cmds.plot)
app.command("bdrate")(eval_cmds.bdrate)
app.command("quant-study")(research.quant_study)
app.command("sweep")(research.sweep)
app.command("ae-study")(research.ae_study)


def main() -> None:
    app()
