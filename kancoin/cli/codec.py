"""`kancoin encode`, `kancoin decode`, `kancoin info`: thin commands over the codec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from kancoin.cli.common import (
    Force,
    Json,
    Quiet,
    err,
    option_values,
    progress_bar,
    run,
    with_encoder_options,
)
from kancoin.errors import KancoinError

# every encoder option, each declared once (kancoin.codec.options), in this order
ENCODE_OPTIONS = (
    "bpp", "bits", "arch", "effort", "iters", "batch_size", "lr", "seed", "device", "threads",
    "width", "depth", "grid_size", "spline_order", "first_grid_size", "basis", "node_bias",
    "layernorm", "grid_extend", "optimizer", "bit_alloc", "qat", "qat_lr", "coding", "compile",
    "lmbda", "levels", "synthesis",
)  # fmt: skip


@with_encoder_options(ENCODE_OPTIONS)
def encode(
    image: Annotated[Path, typer.Argument(help="Input image (any format Pillow reads).")],
    out: Annotated[Path, typer.Argument(help="Output .kc file.")],
    *,
    force: Force = False,
    quiet: Quiet = False,
    json_out: Json = False,
    first_frame: Annotated[
        bool,
        typer.Option("--first-frame", help="Encode frame 0 of an animated or multi-page image."),
    ] = False,
    **options: Any,
) -> None:
    """Fit a network to IMAGE at a target bit rate and write it to OUT."""

    def body():
        from kancoin.codec.encode import encode_file
        from kancoin.codec.options import EncodeOptions

        opts = EncodeOptions(**option_values(options))
        notice = None if quiet or json_out else err
        with progress_bar(not quiet, f"encoding {image.name}") as progress:
            res = encode_file(
                image, out, opts, force=force, progress=progress, on_notice=notice,
                first_frame=first_frame,
            )  # fmt: skip
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

    run(body)


def decode(
    src: Annotated[Path, typer.Argument(help="Input .kc file.")],
    out: Annotated[Path, typer.Argument(help="Output PNG.")],
    force: Force = False,
    quiet: Quiet = False,
    json_out: Json = False,
) -> None:
    """Rebuild the network from SRC and write the decoded image to OUT (PNG)."""
    from kancoin.codec.decode import decode_file

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

    run(body)


def info(
    src: Annotated[Path | None, typer.Argument(help="A .kc file.")] = None,
    json_out: Json = False,
    format_table: Annotated[
        bool, typer.Option("--format", help="Print the file format's field table instead.")
    ] = False,
) -> None:
    """Show what is inside a .kc file: header fields, architecture, parameters, bits, bpp."""
    if format_table:
        from kancoin.format.layout import field_table_markdown

        typer.echo(field_table_markdown())
        return
    if src is None:
        err("error: give a .kc file (or --format)")
        raise typer.Exit(2)
    from kancoin.fileio import read_input
    from kancoin.format.container import CODINGS, check_file, overhead_bytes
    from kancoin.format.entropy import KINDS
    from kancoin.metrics import bpp

    def body():
        data = read_input(src, "kancoin file")
        checked = check_file(data)  # header, size, CRC, limits: the payload is not decoded
        header = checked.header
        spec = header.spec
        overhead = overhead_bytes(spec, header.coding, header.version)
        tensors = []
        for i, ((n, s), qp) in enumerate(zip(spec.tensor_shapes(), header.qparams)):
            t = {"name": n, "shape": list(s), "bits": qp.bits, "q_lo": qp.lo, "q_step": qp.step}
            if header.coding == 1:
                m = header.emodels[i]
                t["model"] = {"kind": KINDS[m.kind].name, "mean": m.mean, "scale": m.scale}
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
            "decode_work": checked.cost.work,
            "decode_peak_bytes": checked.cost.peak_bytes,
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
        typer.echo(
            f"  decode       {checked.cost.work:.3g} multiply-adds, "
            f"≤ {checked.cost.peak_bytes / 2**20:.0f} MiB of working memory"
        )
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

    run(body)
