"""`kancoin eval` and `kancoin plot`: thin commands over kancoin.eval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from kancoin.cli.common import Json, Quiet, err, option_values, run, with_encoder_options
from kancoin.errors import KancoinError

# every encoder option that changes a result, each declared once (kancoin.codec.options);
# --bpp and --arch repeat (one setting per rate and family), --device resolves in each worker
EVAL_OPTIONS = (
    "bpp", "arch", "bits", "effort", "iters", "batch_size", "lr", "seed", "device", "width",
    "depth", "grid_size", "spline_order", "first_grid_size", "basis", "node_bias", "layernorm",
    "grid_extend", "optimizer", "bit_alloc", "qat", "qat_lr", "coding", "compile",
)  # fmt: skip


@with_encoder_options(
    EVAL_OPTIONS,
    multiple=("bpp", "arch"),
    helps={
        "bpp": "Target bpp (repeatable) \\[default: 0.3].",
        "arch": "Network family (repeatable) \\[default: kan unless only --codec].",
    },
)
def eval_(
    images_dir: Annotated[
        Path | None,
        typer.Argument(
            metavar="DIR",
            help="Folder of images \\[default: $KANCOIN_KODAK, ../shared/data/kodak, "
            "./data/kodak].",
        ),
    ] = None,
    *,
    codec: Annotated[
        str | None, typer.Option(help="Baselines, comma list: jpeg,webp,jpeg2000,avif.")
    ] = None,
    images: Annotated[
        str | None, typer.Option(help="Subset: names (kodim03,kodim23) or a count N.")
    ] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Images in parallel (processes).")] = 1,
    out: Annotated[Path, typer.Option(help="Results folder (resumable).")] = Path("results"),
    plots: Annotated[
        bool, typer.Option(help="Also draw the figures into OUT/plots (needs matplotlib).")
    ] = True,
    quiet: Quiet = False,
    json_out: Json = False,
    **options: Any,
) -> None:
    """Evaluate on a folder of images (Kodak by default): PSNR/bpp per image and means.

    Takes every option of `kancoin encode` that changes a result; rows key on all of them."""

    def body():
        from kancoin.codec.options import EncodeOptions
        from kancoin.eval.reports import format_table
        from kancoin.eval.runs import run_eval

        values = option_values(options)
        bpps = values.pop("bpp") or [0.3]
        archs = values.pop("arch")
        device = values.pop("device")
        codecs = [c.strip() for c in (codec or "").split(",") if c.strip()]
        archs = archs if archs else ([] if codecs else ["kan"])
        base = EncodeOptions(**values)
        report = run_eval(
            images_dir, out, bpps=bpps, archs=archs, codecs=codecs, options=base,
            images=images, jobs=jobs, device=device,
            progress=None if quiet or json_out else err,
        )  # fmt: skip
        figures = _figures(report.out_dir, bpps[0]) if plots else []
        if json_out:
            typer.echo(
                json.dumps({
                    "out": str(report.out_dir), "computed": report.computed,
                    "skipped": report.skipped, "rows": report.rows,
                    "summary": report.summary,
                })
            )  # fmt: skip
        elif not quiet:
            typer.echo(format_table(report.rows))
            typer.echo(
                f"{report.computed} computed, {report.skipped} reused; "
                f"results in {report.out_dir}/ (results.csv, summary.json"
                + (", plots/)" if figures else ")")
            )

    run(body)


def _figures(out_dir: Path, bpp: float) -> list[Path]:
    """RD, bars and crops of this folder; skipped with a note when matplotlib is missing."""
    from kancoin.eval.plots import make_all

    try:
        return make_all([out_dir], out_dir / "plots", bpp=bpp)
    except KancoinError as e:
        err(f"note: no plots ({e})")
        return []

def plot(
    dirs: Annotated[list[Path], typer.Argument(help="Result folders written by eval.")],
    out: Annotated[Path, typer.Option(help="Folder for the PNG/SVG figures.")] = Path("plots"),
    image: Annotated[
        str | None, typer.Option(help="Image for the crops \\[default: first decoded].")
    ] = None,
    live_baselines: Annotated[
        int,
        typer.Option(help="Also measure Pillow baseline curves on N images (0: no)."),
    ] = 0,
    bpp: Annotated[float, typer.Option(help="Rate of the bars and crops.")] = 0.3,
    quiet: Quiet = False,
) -> None:
    """RD curves, per-image bars at 0.3 bpp and visual crops from eval results."""
    from kancoin.eval.plots import make_all

    def body():
        written = make_all(dirs, out, image=image, live_baselines=live_baselines, bpp=bpp)
        if not quiet:
            for p in written:
                typer.echo(str(p))

    run(body)
