"""`kancoin quant-study` (registered on the main Typer app by cli.py)."""

import json
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    from kancoin.cli import Effort, Iters, Json, Quiet, _err, _progress_bar, _run

    @app.command("quant-study")
    def quant_study_cmd(
        images: Annotated[list[Path], typer.Argument(metavar="IMG...", help="Input images.")],
        bpp: Annotated[
            float, typer.Option(help="Target bpp that sizes each network (fixed coding).")
        ] = 0.3,
        effort: Effort = "fast",
        iters: Iters = None,
        arch: Annotated[
            list[str] | None, typer.Option(help="kan or siren (repeatable); default both.")
        ] = None,
        bits: Annotated[
            str, typer.Option(help="Bit depths: a range 4-16, one depth, or a list 4,9,16.")
        ] = "4-16",
        out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results/quant-study"),
        seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
        threads: Annotated[
            int | None, typer.Option(help="CPU threads [default: all usable cores].")
        ] = None,
        device: Annotated[str, typer.Option(help="Training device: auto, cpu or cuda.")] = "auto",
        plot: Annotated[
            bool, typer.Option(help="Draw quant_loss.png/.svg (needs matplotlib).")
        ] = True,
        force: Annotated[
            bool, typer.Option("--force", "-f", help="Overwrite a folder that holds a study.")
        ] = False,
        quiet: Quiet = False,
        json_out: Json = False,
    ) -> None:
        """PSNR lost to weight quantization at each bit depth, KAN vs SIREN (KAN-COIN paper).

        One float fit per image and architecture, sized for --bpp as the fixed-coding encoder
        would; the same weights quantized at each of --bits, written, decoded and measured.
        """
        from kancoin.encode import iters_for
        from kancoin.errors import KancoinError
        from kancoin.quantstudy import (
            StudyConfig,
            check_archs,
            format_table,
            parse_bits,
            run_study,
        )
        from kancoin.spec import ARCHS

        def body():
            if threads is not None and not 1 <= threads <= 1024:
                raise KancoinError(f"--threads must be between 1 and 1024, got {threads}")
            cfg = StudyConfig(
                bpp=bpp, iters=iters_for(effort, iters), archs=check_archs(arch or ARCHS),
                bits=parse_bits(bits), seed=seed, threads=threads, device=device,
            )  # fmt: skip
            talk = not (quiet or json_out)
            report = run_study(
                images, out, cfg, force=force,
                progress=lambda label: _progress_bar(talk, f"fitting {label}"),
                log=_err if talk else None, plot=plot,
            )  # fmt: skip
            if json_out:
                typer.echo(
                    json.dumps({
                        "out": str(report.out_dir), "seconds": round(report.seconds, 2),
                        "written": [str(p) for p in report.written], "rows": report.rows,
                        "summary": report.summary,
                    })
                )  # fmt: skip
            elif not quiet:
                typer.echo(format_table(report.rows, report.summary))
                names = ", ".join(p.name for p in report.written)
                typer.echo(
                    f"results in {report.out_dir}/ ({names}, files/) in {report.seconds:.0f} s"
                )

        _run(body)
