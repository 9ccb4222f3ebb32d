"""What every command shares: one-line errors, the progress bar, common options, and the encoder's
options generated from their one declaration (``kancoin.codec.options.EncodeOptions``)."""

from __future__ import annotations

import enum
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from kancoin.errors import KancoinError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def err(msg: str) -> None:
    typer.echo(msg, err=True)


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
    """Run a command body: KancoinError -> one line, exit 1; Ctrl-C -> exit 130."""
    try:
        return fn()
    except KancoinError as e:
        err(f"error: {e}")
        raise typer.Exit(EXIT_ERROR) from None
    except KeyboardInterrupt:
        err("interrupted (no output written)")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except MemoryError:
        err("error: out of memory")
        raise typer.Exit(EXIT_ERROR) from None
    except Exception as e:  # a bug: still one line, unless asked for the traceback
        if os.environ.get("KANCOIN_DEBUG"):
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
