"""`kancoin eval`, `kancoin bdrate` and `kancoin plot`: thin commands over kancoin.eval."""

from __future__ import annotations

import enum
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
    "grid_extend", "optimizer", "bit_alloc", "qat", "qat_lr", "coding", "compile", "lmbda",
    "levels", "synthesis",
)  # fmt: skip


class Executor(enum.StrEnum):
    local = "local"
    ray = "ray"


@with_encoder_options(
    EVAL_OPTIONS,
    multiple=("bpp", "arch"),
    helps={
        "bpp": "Target bpp (repeatable) \\[default: 0.3].",
        "arch": "Network family (repeatable) \\[default: latent unless only --codec].",
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
    jobs: Annotated[
        int, typer.Option(min=1, help="(image, setting) pairs in parallel (local processes).")
    ] = 1,
    out: Annotated[Path, typer.Option(help="Results folder (resumable).")] = Path("results"),
    shard: Annotated[
        str | None,
        typer.Option(
            metavar="K/N",
            help="Run part K of N of the (image, setting) pairs (N processes or a job array "
            "into one --out; then --report-only).",
        ),
    ] = None,
    report_only: Annotated[
        Path | None,
        typer.Option(
            metavar="OUT",
            help="Encode nothing: write the report (results.csv, summaries, plots) of the "
            "rows in OUT.",
        ),
    ] = None,
    anchor: Annotated[
        str | None,
        typer.Option(
            metavar="NAME|PATH",
            help="Also BD-rate / BD-PSNR of every setting against NAME (a setting of the "
            "folder or a published curve) or another result set (a folder or summary JSON).",
        ),
    ] = None,
    anchor_setting: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="The curve of an --anchor PATH that holds several."),
    ] = None,
    keep_decoded: Annotated[
        str | None,
        typer.Option(
            metavar="all|none|NAMES",
            help="Keep decoded PNGs of these images \\[default: kodim03,kodim23; every image "
            "of a run of 1-2].",
        ),
    ] = None,
    executor: Annotated[
        Executor, typer.Option(help="Where rows are computed: local processes or Ray tasks.")
    ] = Executor.local,
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray: auto or ray://HOST:PORT \\[default: start Ray on this machine only]."
        ),
    ] = None,
    gpus_per_job: Annotated[
        float, typer.Option(min=0.0, help="Ray: GPUs per task (fractions share a GPU).")
    ] = 0.0,
    retries: Annotated[
        int, typer.Option(min=0, help="Ray: retries of a task whose worker crashed.")
    ] = 2,
    plots: Annotated[
        bool, typer.Option(help="Also draw the figures into OUT/plots (needs matplotlib).")
    ] = True,
    quiet: Quiet = False,
    json_out: Json = False,
    **options: Any,
) -> None:
    """Evaluate on a folder of images (Kodak by default): PSNR, MS-SSIM and bpp per image, and
    means.

    Takes every option of `kancoin encode` that changes a result; rows key on all of them."""

    def body():
        if report_only is not None:
            _check_report_only(images_dir, codec, images, shard, executor, options)
            return _report(report_only, anchor, anchor_setting, plots, quiet, json_out)
        if executor is Executor.local and (address is not None or gpus_per_job or retries != 2):
            raise KancoinError("--address, --gpus-per-job and --retries need --executor ray")
        from kancoin.codec.options import EncodeOptions
        from kancoin.eval.runs import run_eval

        values = option_values(options)
        bpps = values.pop("bpp") or [0.3]
        archs = values.pop("arch")
        device = values.pop("device")
        codecs = [c.strip() for c in (codec or "").split(",") if c.strip()]
        archs = archs if archs else ([] if codecs else ["latent"])
        # the first family's options: each setting then takes its own family (make_settings)
        base = EncodeOptions(**values, **({"arch": archs[0]} if archs else {}))
        report = run_eval(
            images_dir, out, bpps=bpps, archs=archs, codecs=codecs, options=base,
            images=images, jobs=jobs, device=device,
            progress=None if quiet or json_out else err, keep_decoded=keep_decoded,
            shard=shard, executor=executor.value, address=address, gpus_per_job=gpus_per_job,
            retries=retries, anchor=anchor, anchor_setting=anchor_setting,
        )  # fmt: skip
        # a shard's folder holds part of the rows: the figures come with --report-only
        figures = _figures(report.out_dir, bpps[0]) if plots and report.shard is None else []
        part = "" if report.shard is None else "{}/{}".format(*report.shard)
        if json_out:
            typer.echo(
                json.dumps({
                    "out": str(report.out_dir), "computed": report.computed,
                    "skipped": report.skipped, "rows": report.rows,
                    "summary": report.summary, "shard": part or None,
                    "total": report.total, "bdrate": report.bdrate,
                })
            )  # fmt: skip
        elif not quiet:
            _print_tables(report)
            typer.echo(
                f"{report.computed} computed, {report.skipped} reused; "
                f"results in {report.out_dir}/ (results.csv, summary.json"
                + (", plots/)" if figures else ")")
            )
            if part:
                typer.echo(
                    f"shard {part}: {len(report.rows)} of {report.total} rows; when every shard "
                    f"is done, `kancoin eval --report-only {report.out_dir}` writes the report"
                )
        if report.failed:  # after the table: the good rows are written, the run still failed
            names = list(dict.fromkeys(r["image"] for r in report.failed))
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            raise KancoinError(
                f"{len(report.failed)} of {len(report.rows)} rows failed ({shown}); "
                "their rows in rows/ hold the error and are redone on a rerun"
            )

    run(body)


def _print_tables(report) -> None:
    """The per-image table, then the BD-rates when an anchor was given."""
    from kancoin.eval.reports import format_table

    typer.echo(format_table(report.rows))
    if report.bdrate is not None:
        from kancoin.eval.bdrate import format_bdrate

        typer.echo(format_bdrate(report.bdrate), nl=False)


def _check_report_only(images_dir, codec, images, shard, executor, options) -> None:
    """--report-only reads rows: an option that would choose what to encode is a mistake."""
    given = [
        name for name, v in (
            ("DIR", images_dir), ("--codec", codec), ("--images", images), ("--shard", shard),
            ("--bpp", options.get("bpp")), ("--arch", options.get("arch")),
        ) if v
    ]  # fmt: skip
    if executor is not Executor.local:
        given.append("--executor")
    if given:
        raise KancoinError(
            f"--report-only writes the report of the rows in OUT and encodes nothing: "
            f"drop {', '.join(given)}"
        )


def _report(
    out: Path, anchor: str | None, anchor_setting: str | None, plots: bool, quiet: bool,
    json_out: bool,
) -> None:  # fmt: skip
    from kancoin.eval.runs import report_only

    report = report_only(out, anchor, anchor_setting)
    bpps = sorted({r["target_bpp"] for r in report.rows if not r.get("error")})
    bpp = 0.3 if 0.3 in bpps or not bpps else bpps[0]
    figures = _figures(report.out_dir, bpp) if plots else []
    if json_out:
        typer.echo(
            json.dumps({
                "out": str(report.out_dir), "rows": report.rows, "summary": report.summary,
                "bdrate": report.bdrate,
            })
        )  # fmt: skip
    elif not quiet:
        _print_tables(report)
        typer.echo(
            f"{len(report.rows)} rows; report in {report.out_dir}/ (results.csv, summary.json"
            + (", bdrate.md" if report.bdrate is not None else "")
            + (", plots/)" if figures else ")")
        )
    if report.failed:
        err(
            f"note: {len(report.failed)} error rows left out of the report (a rerun of their "
            "shard redoes them)"
        )


def _figures(out_dir: Path, bpp: float) -> list[Path]:
    """RD, bars and crops of this folder; skipped with a note when matplotlib is missing."""
    from kancoin.eval.plots import make_all

    try:
        return make_all([out_dir], out_dir / "plots", bpp=bpp)
    except KancoinError as e:
        err(f"note: no plots ({e})")
        return []


class Metric(enum.StrEnum):
    psnr = "psnr"
    ms_ssim = "ms-ssim"


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
    metric: Annotated[
        Metric,
        typer.Option(
            help="Quality axis: PSNR, or MS-SSIM in dB (-10·log10(1 - MS-SSIM), as CompressAI "
            "plots it; figures rd_ms-ssim.png, ...)."
        ),
    ] = Metric.psnr,
    quiet: Quiet = False,
) -> None:
    """RD curves, per-image bars at 0.3 bpp and visual crops from eval results."""
    from kancoin.eval.plots import make_all

    def body():
        written = make_all(
            dirs, out, image=image, live_baselines=live_baselines, bpp=bpp, metric=metric.value
        )
        if not quiet:
            for p in written:
                typer.echo(str(p))

    run(body)


def bdrate(
    results: Annotated[
        list[Path],
        typer.Argument(
            metavar="RESULTS",
            help="Result sets: folders of `kancoin eval` or summary JSON files (ours or "
            "CompressAI's).",
        ),
    ],
    anchor: Annotated[
        str,
        typer.Option(
            metavar="NAME|PATH",
            help="The anchor: a curve of RESULTS, a published curve (C3, 'COIN (SIREN fp16)', "
            "a unique prefix), or another result set (a folder or summary JSON).",
        ),
    ],
    anchor_setting: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="The curve of an --anchor PATH that holds several."),
    ] = None,
    json_out: Json = False,
) -> None:
    """BD-rate (%) and BD-PSNR (dB) of every curve of RESULTS against an anchor (PCHIP, as in
    the JCT-VC common test conditions), and on MS-SSIM in dB where both curves have it."""
    from kancoin.eval import bdrate as bd

    def body():
        curves: dict = {}
        for source in results:
            for name, c in bd.load_curves(source).items():
                if name in curves:  # the same setting in two result sets: say which is which
                    name = f"{name} ({source})"
                curves[name] = c
        name, ref, where = bd.resolve_anchor(anchor, curves, anchor_setting)
        doc = bd.compare(curves, name, ref, where)
        if json_out:
            typer.echo(json.dumps(doc))
        else:
            typer.echo(bd.format_bdrate(doc), nl=False)

    run(body)
