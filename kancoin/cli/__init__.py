"""The `kancoin` command line (Typer). Errors become one line on stderr and a non-zero exit.

Each command is a plain function in its module (``codec``, ``eval``, ``research``), registered
here; the modules import ``common`` and the library, never each other or this package.
"""

from __future__ import annotations

import sys

import typer
from typer import _click
from typer.core import TyperGroup

from kancoin.cli import codec, research
from kancoin.cli import eval as eval_cmds
from kancoin.cli.common import EXIT_INTERRUPTED


class _OneLineErrors(TyperGroup):
    """A usage error (unknown option, a value out of its range or choices) as one line on
    stderr and exit 2, like every other error of kancoin, instead of a usage box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _click.exceptions.UsageError as e:
            if not standalone_mode:
                raise
            cmd = f" {e.ctx.command.name}" if e.ctx and e.ctx.command.name else ""
            _click.echo(f"error: {e.format_message()} (see kancoin{cmd} --help)", file=sys.stderr)
            sys.exit(e.exit_code)
        except typer.Abort:
            if not standalone_mode:
                raise
            _click.echo("interrupted (no output written)", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


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
app.command("quant-study")(research.quant_study)
app.command("sweep")(research.sweep)


def main() -> None:
    app()
