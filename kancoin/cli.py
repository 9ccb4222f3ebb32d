"""The `kancoin` command line (Typer). Errors become one line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from kancoin.errors import KancoinError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Image compression with Kolmogorov–Arnold Networks (KAN COIN).",
)

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def _err(msg: str) -> None:
    typer.echo(msg, err=True)


@contextmanager
def _progress_bar(enabled: bool, label: str):
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


def _run(fn):
    """Run a command body: KancoinError -> one line, exit 1; Ctrl-C -> exit 130."""
    try:
        return fn()
    except KancoinError as e:
        _err(f"error: {e}")
        raise typer.Exit(EXIT_ERROR) from None
    except KeyboardInterrupt:
        _err("interrupted (no output written)")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except MemoryError:
        _err("error: out of memory")
        raise typer.Exit(EXIT_ERROR) from None
    except Exception as e:  # a bug: still one line, unless asked for the traceback
        if os.environ.get("KANCOIN_DEBUG"):
            raise
        _err(f"internal error: {type(e).__name__}: {e} (set KANCOIN_DEBUG=1 for a traceback)")
        raise typer.Exit(EXIT_ERROR) from None


Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object with the result.")]
Force = Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output file.")]
# shared by encode and eval
Effort = Annotated[str, typer.Option(help="Preset: fast (3k steps), default (10k) or best (30k).")]
Iters = Annotated[int | None, typer.Option(help="Training steps \\[default: from --effort].")]
Qat = Annotated[
    float, typer.Option(help="Fraction of --iters spent on quantization-aware fine-tuning.")
]
Coding = Annotated[
    str, typer.Option(help="Weights coding: range (entropy-coded) or fixed (bits each).")
]


@app.command()
def encode(
    image: Annotated[Path, typer.Argument(help="Input image (any format Pillow reads).")],
    out: Annotated[Path, typer.Argument(help="Output .kc file.")],
    bpp: Annotated[float, typer.Option(help="Target bits per pixel for the whole file.")] = 0.3,
    bits: Annotated[
        int | None,
        typer.Option(help="Quantization bits \\[default: KAN 9, SIREN 16]."),
    ] = None,
    arch: Annotated[str, typer.Option(help="Network: kan or siren.")] = "kan",
    effort: Effort = "default",
    iters: Iters = None,
    batch_size: Annotated[int, typer.Option(help="Pixels per minibatch.")] = 10_000,
    lr: Annotated[
        float | None, typer.Option(help="Adam learning rate \\[default: 2e-2 KAN, 2e-4 SIREN].")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (reproducible on CPU).")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    threads: Annotated[
        int | None, typer.Option(help="CPU threads \\[default: all usable cores].")
    ] = None,
    width: Annotated[int | None, typer.Option(help="Hidden layer width (override).")] = None,
    depth: Annotated[int | None, typer.Option(help="Number of hidden layers (override).")] = None,
    grid_size: Annotated[int | None, typer.Option(help="KAN grid intervals G (override).")] = None,
    spline_order: Annotated[int | None, typer.Option(help="B-spline order k (override).")] = None,
    first_grid_size: Annotated[
        int | None,
        typer.Option(help="B-spline KAN: the first layer's grid G1 (override; 0: the same as G)."),
    ] = None,
    basis: Annotated[
        str, typer.Option(help="KAN edge functions: bspline, rbf, rsf, chebyshev, fourier, tanh.")
    ] = "bspline",
    node_bias: Annotated[bool, typer.Option(help="KAN: a learnable bias per node.")] = False,
    layernorm: Annotated[
        bool, typer.Option(help="KAN: LayerNorm on the input of each hidden layer (FastKAN).")
    ] = False,
    grid_extend: Annotated[
        int, typer.Option(help="B-spline KAN: train N coarser grids first (each half the next).")
    ] = 0,
    optimizer: Annotated[str, typer.Option(help="adam or lbfgs (the float fit).")] = "adam",
    bit_alloc: Annotated[
        str, typer.Option(help="Range coding: one common step factor, or per-tensor (tensor).")
    ] = "common",
    qat: Qat = 0.1,
    coding: Coding = "range",
    force: Force = False,
    quiet: Quiet = False,
    json_out: Json = False,
) -> None:
    """Fit a network to IMAGE at a target bit rate and write it to OUT."""
    from kancoin.encode import EncodeOptions, encode_file, iters_for
    from kancoin.ratecontrol import Overrides

    def body():
        for name, v, lo, hi in (
            ("--width", width, 1, 4095),
            ("--depth", depth, 1, 30),
            ("--grid-size", grid_size, 1, 4095),
            ("--spline-order", spline_order, 1, 7),
            ("--first-grid-size", first_grid_size, 0, 4095),
            ("--threads", threads, 1, 1024),
        ):
            if v is not None and not lo <= v <= hi:
                raise KancoinError(f"{name} must be between {lo} and {hi}, got {v}")
        ov = Overrides(
            width=width, depth=depth, grid_size=grid_size, spline_order=spline_order,
            basis=basis, node_bias=node_bias, layernorm=layernorm, first_grid_size=first_grid_size,
        )  # fmt: skip
        opts = EncodeOptions(
            bpp=bpp, bits=bits, arch=arch, iters=iters_for(effort, iters),
            batch_size=batch_size, lr=lr, seed=seed, device=device, threads=threads,
            overrides=ov, qat=qat, coding=coding, optimizer=optimizer, grid_extend=grid_extend,
            bit_alloc=bit_alloc,
        )  # fmt: skip
        notice = None if quiet or json_out else (lambda m: _err(m))
        with _progress_bar(not quiet, f"encoding {image.name}") as progress:
            res = encode_file(image, out, opts, force=force, progress=progress, on_notice=notice)
        if json_out:
            typer.echo(json.dumps({"input": str(image), "output": str(out), **res.as_dict()}))
        elif not quiet:
            where = f"{res.device}" + (f", {res.threads} threads" if res.threads else "")
            typer.echo(
                f"{image} -> {out}: {res.file_bytes} bytes, {res.bpp:.4f} bpp, "
                f"PSNR {res.psnr:.2f} dB (float {res.float_psnr:.2f} dB)\n"
                f"  {res.spec.describe()}, {res.spec.n_params} weights × {res.bits} bits "
                f"({res.coding}, {res.payload_bpw:.2f} bits/weight coded); "
                f"{res.steps} steps in {res.fit_seconds:.1f} s "
                f"({1000 * res.fit_seconds / res.steps:.1f} ms/step) on {where}; "
                f"total {res.encode_seconds:.1f} s"
            )

    _run(body)


@app.command()
def decode(
    src: Annotated[Path, typer.Argument(help="Input .kc file.")],
    out: Annotated[Path, typer.Argument(help="Output PNG.")],
    force: Force = False,
    quiet: Quiet = False,
    json_out: Json = False,
) -> None:
    """Rebuild the network from SRC and write the decoded image to OUT (PNG)."""
    from kancoin.decode import decode_file

    def body():
        if out.suffix.lower() != ".png":
            raise KancoinError(f"{out}: decode writes PNG; name the output *.png")
        d = decode_file(src, out, force=force)
        h = d.header
        if json_out:
            typer.echo(
                json.dumps({
                    "input": str(src), "output": str(out), "height": h.height,
                    "width": h.width, "channels": h.channels, "file_bytes": d.file_bytes,
                    "bpp": d.bpp, "decode_seconds": round(d.seconds, 4),
                })
            )  # fmt: skip
        elif not quiet:
            typer.echo(
                f"{src} -> {out}: {h.width}x{h.height}, {d.bpp:.4f} bpp, "
                f"decoded in {d.seconds:.2f} s"
            )

    _run(body)


@app.command()
def info(
    src: Annotated[Path, typer.Argument(help="A .kc file.")],
    json_out: Json = False,
) -> None:
    """Show what is inside a .kc file: header fields, architecture, parameters, bits, bpp."""
    from kancoin.bitstream import CODINGS, overhead_bytes, read_bytes
    from kancoin.entropy import MODEL_KINDS
    from kancoin.fileio import read_input
    from kancoin.metrics import bpp

    def body():
        data = read_input(src, "kancoin file")
        header, _ = read_bytes(data)
        spec = header.spec
        overhead = overhead_bytes(spec, header.coding, header.version)
        tensors = []
        for i, ((n, s), qp) in enumerate(zip(spec.tensor_shapes(), header.qparams)):
            t = {"name": n, "shape": list(s), "bits": qp.bits, "q_lo": qp.lo, "q_step": qp.step}
            if header.coding == 1:
                m = header.emodels[i]
                t["model"] = {"kind": MODEL_KINDS[m.kind], "mean": m.mean, "scale": m.scale}
            tensors.append(t)
        d = {
            "file": str(src),
            "format_version": header.version,
            "coding": CODINGS[header.coding],
            "header_bytes": overhead,
            "payload_bits_per_weight": 8 * (len(data) - overhead) / spec.n_params,
            "file_bytes": len(data),
            "height": header.height,
            "width": header.width,
            "channels": header.channels,
            "bits": header.bits,
            "params": spec.n_params,
            "bpp": bpp(len(data), header.height, header.width),
            "architecture": spec.describe(),
            **spec.as_dict(),
            "tensors": tensors,
        }
        if json_out:
            typer.echo(json.dumps(d))
            return
        typer.echo(f"{src}: kancoin file (format {header.version}), {len(data)} bytes")
        typer.echo(f"  image        {header.width}x{header.height}, {header.channels} channel(s)")
        typer.echo(f"  network      {spec.describe()}")
        typer.echo(
            f"  weights      {spec.n_params} × up to {header.bits} bits, {d['coding']} coding: "
            f"{d['payload_bits_per_weight']:.3f} bits/weight"
        )
        typer.echo(f"  header       {overhead} bytes (with CRC)")
        typer.echo(f"  bpp          {d['bpp']:.4f} (whole file)")
        for t in d["tensors"]:
            shape = "×".join(str(x) for x in t["shape"])
            line = (
                f"  {t['name']:<24} {shape:<10} {t['bits']:>2} bits  "
                f"lo {t['q_lo']:+.5g} step {t['q_step']:.4g}"
            )
            if "model" in t:
                m = t["model"]
                line += f"  {m['kind']}(mean {m['mean']:.4g}, scale {m['scale']:.4g})"
            typer.echo(line)

    _run(body)


from kancoin import cli_eval as _cli_eval  # noqa: E402
from kancoin import cli_research as _cli_research  # noqa: E402

_cli_eval.register(app)
_cli_research.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
