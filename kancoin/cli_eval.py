"""`kancoin eval` and `kancoin plot` (registered on the main Typer app by cli.py)."""

import json
from pathlib import Path
from typing import Annotated

import typer

from kancoin.errors import KancoinError


def register(app: typer.Typer) -> None:
    from kancoin.cli import Coding, Effort, Iters, Json, Qat, Quiet, _err, _run

    @app.command("eval")
    def eval_cmd(
        images_dir: Annotated[
            Path | None,
            typer.Argument(
                metavar="DIR",
                help="Folder of images \\[default: $KANCOIN_KODAK, ../shared/data/kodak, "
                "./data/kodak].",
            ),
        ] = None,
        bpp: Annotated[
            list[float] | None, typer.Option(help="Target bpp (repeatable) \\[default: 0.3].")
        ] = None,
        arch: Annotated[
            list[str] | None,
            typer.Option(help="kan or siren (repeatable) \\[default: kan unless only --codec]."),
        ] = None,
        codec: Annotated[
            str | None, typer.Option(help="Baselines, comma list: jpeg,webp,jpeg2000,avif.")
        ] = None,
        bits: Annotated[
            int | None, typer.Option(help="Weight bits \\[default: 9 KAN, 16 SIREN].")
        ] = None,
        effort: Effort = "default",
        iters: Iters = None,
        coding: Coding = "range",
        lr: Annotated[
            float | None, typer.Option(help="Adam learning rate \\[default: per architecture].")
        ] = None,
        qat: Qat = 0.1,
        images: Annotated[
            str | None, typer.Option(help="Subset: names (kodim03,kodim23) or a count N.")
        ] = None,
        jobs: Annotated[int, typer.Option(help="Images in parallel (processes).")] = 1,
        device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
        seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
        out: Annotated[Path, typer.Option(help="Results folder (resumable).")] = Path("results"),
        plots: Annotated[
            bool, typer.Option(help="Also draw the figures into OUT/plots (needs matplotlib).")
        ] = True,
        quiet: Quiet = False,
        json_out: Json = False,
    ) -> None:
        """Evaluate on a folder of images (Kodak by default): PSNR/bpp per image and means."""
        from kancoin.encode import iters_for
        from kancoin.evaluate import format_table, run_eval

        def body():
            codecs = [c.strip() for c in (codec or "").split(",") if c.strip()]
            archs = arch if arch else ([] if codecs else ["kan"])
            report = run_eval(
                images_dir, out, bpps=bpp or [0.3], archs=archs, codecs=codecs, bits=bits,
                iters=iters_for(effort, iters), images=images, jobs=jobs, device=device, seed=seed,
                progress=None if quiet or json_out else _err, coding=coding, qat=qat, lr=lr,
            )  # fmt: skip
            figures = _figures(report.out_dir, (bpp or [0.3])[0]) if plots else []
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

        _run(body)

    def _figures(out_dir: Path, bpp: float) -> list[Path]:
        """RD, bars and crops of this folder; skipped with a note when matplotlib is missing."""
        from kancoin.plots import make_all

        try:
            return make_all([out_dir], out_dir / "plots", bpp=bpp)
        except KancoinError as e:
            _err(f"note: no plots ({e})")
            return []

    @app.command("plot")
    def plot_cmd(
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
        from kancoin.plots import make_all

        def body():
            written = make_all(dirs, out, image=image, live_baselines=live_baselines, bpp=bpp)
            if not quiet:
                for p in written:
                    typer.echo(str(p))

        _run(body)
