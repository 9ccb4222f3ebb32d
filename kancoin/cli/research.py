"""`kancoin quant-study`, `kancoin sweep` and `kancoin ae-study`: thin commands over
kancoin.research."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kancoin.cli.common import Effort, Json, Quiet, err, progress_bar, run
from kancoin.errors import KancoinError

Threads = Annotated[
    int | None, typer.Option(min=1, max=1024, help="CPU threads \\[default: all usable cores].")
]
StudyForce = Annotated[
    bool, typer.Option("--force", "-f", help="Overwrite a folder that holds a study.")
]


def quant_study(
    images: Annotated[list[Path], typer.Argument(metavar="IMG...", help="Input images.")],
    bpp: Annotated[
        float, typer.Option(help="Target bpp that sizes each network (fixed coding).")
    ] = 0.3,
    effort: Annotated[
        Effort, typer.Option(help="Preset: fast (3k steps), default (10k) or best (30k).")
    ] = Effort.fast,
    iters: Annotated[
        int | None, typer.Option(min=1, help="Training steps \\[default: from --effort].")
    ] = None,
    arch: Annotated[
        list[str] | None, typer.Option(help="kan or siren (repeatable); default both.")
    ] = None,
    bits: Annotated[
        str, typer.Option(help="Bit depths: a range 4-16, one depth, or a list 4,9,16.")
    ] = "4-16",
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results/quant-study"),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    threads: Threads = None,
    device: Annotated[str, typer.Option(help="Training device: auto, cpu or cuda.")] = "auto",
    plot: Annotated[
        bool, typer.Option(help="Draw quant_loss.png/.svg (needs matplotlib).")
    ] = True,
    force: StudyForce = False,
    quiet: Quiet = False,
    json_out: Json = False,
) -> None:
    """PSNR lost to weight quantization at each bit depth, KAN vs SIREN (KAN-COIN paper).

    One float fit per image and architecture, sized for --bpp as the fixed-coding encoder
    would; the same weights quantized at each of --bits, written, decoded and measured.
    """
    from kancoin.codec.options import EFFORT_ITERS
    from kancoin.nets import WEIGHT_ARCHS
    from kancoin.research.quantstudy import (
        StudyConfig,
        check_archs,
        format_table,
        parse_bits,
        run_study,
    )

    def body():
        cfg = StudyConfig(
            bpp=bpp, iters=iters or EFFORT_ITERS[effort.value],
            archs=check_archs(arch or WEIGHT_ARCHS), bits=parse_bits(bits), seed=seed,
            threads=threads, device=device,
        )  # fmt: skip
        talk = not (quiet or json_out)
        report = run_study(
            images, out, cfg, force=force,
            progress=lambda label: progress_bar(talk, f"fitting {label}"),
            log=err if talk else None, plot=plot,
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

    run(body)

def sweep(
    image: Annotated[Path, typer.Argument(metavar="IMG", help="Input image.")],
    bpp: Annotated[float, typer.Option(help="Target bits per pixel of every trial.")] = 0.3,
    trials: Annotated[int, typer.Option(min=1, help="Number of trials (resumable).")] = 20,
    iters: Annotated[int, typer.Option(min=1, help="Training steps per trial.")] = 1000,
    basis: Annotated[
        str, typer.Option(help="Bases to draw from, comma list (default: all six).")
    ] = "bspline,rbf,rsf,chebyshev,fourier,tanh",
    jobs: Annotated[int, typer.Option(min=1, help="Trials in parallel (processes).")] = 1,
    seed: Annotated[int, typer.Option(help="Sweep seed (trial i is drawn from it).")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "cpu",
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results/sweep"),
    plot: Annotated[bool, typer.Option(help="Draw sweep.png/.svg (matplotlib).")] = True,
    quiet: Quiet = False,
    json_out: Json = False,
) -> None:
    """Random hyperparameter search (KAN-COIN paper §3.2): optimizer, log-uniform lr, width,
    depth, basis; the grid fills the budget. Each trial is a real file; rerun to resume."""
    from kancoin.research.sweep import plot as sweep_plot
    from kancoin.research.sweep import run_sweep

    def body():
        bases = tuple(b.strip() for b in basis.split(",") if b.strip())
        talk = not (quiet or json_out)
        report = run_sweep(
            image, out, bpp=bpp, trials=trials, iters=iters, seed=seed, jobs=jobs,
            device=device, bases=bases, progress=err if talk else None,
        )  # fmt: skip
        figures = []
        if plot:
            try:
                title = f"{image.stem}, {bpp:g} bpp, {iters} steps, {trials} trials"
                figures = sweep_plot(report.rows, report.out_dir / "sweep", title)
            except KancoinError as e:
                err(f"note: no plot ({e})")
        if json_out:
            typer.echo(
                json.dumps({
                    "out": str(report.out_dir), "computed": report.computed,
                    "reused": report.reused, "rows": report.rows, "summary": report.summary,
                })
            )  # fmt: skip
        elif not quiet:
            typer.echo((report.out_dir / "summary.md").read_text("utf-8"))
            typer.echo(
                f"{report.computed} trials run, {report.reused} reused; results in "
                f"{report.out_dir}/ (trials.csv, summary.md"
                + (", sweep.png)" if figures else ")")
            )

    run(body)


def ae_study(
    data: Annotated[
        str,
        typer.Option(
            help="digits (scikit-learn's 8×8 digits), kodak-patches (32×32 patches of the "
            "Kodak images), a folder of images or an .npz (x_train, x_test, y_train, y_test).",
        ),
    ] = "digits",
    bottleneck: Annotated[
        str, typer.Option(help="Bottleneck sizes, comma list.")
    ] = "2,4,8,16,32",
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs (the paper: 10).")] = 10,
    seeds: Annotated[int, typer.Option(min=1, max=100, help="Seeds per network.")] = 3,
    hidden: Annotated[
        int, typer.Option(min=1, max=4096, help="KAN and MLP hidden width (as published).")
    ] = 128,
    channels: Annotated[
        str, typer.Option(help="The CNN's two channel counts (as published), c1,c2.")
    ] = "16,32",
    grid_size: Annotated[int, typer.Option(min=1, max=64, help="KAN grid intervals G.")] = 5,
    spline_order: Annotated[int, typer.Option(min=1, max=7, help="B-spline order k.")] = 3,
    batch_size: Annotated[int, typer.Option(min=1, help="Samples per step.")] = 32,
    knn_k: Annotated[int, typer.Option(min=1, help="k of the kNN on the latents.")] = 5,
    compare: Annotated[
        str, typer.Option(help="Comparisons, comma list: paper, params (equal parameters), "
                          "time (equal training time).")  # fmt: skip
    ] = "paper,params,time",
    kan_backend: Annotated[
        str, typer.Option(help="KAN layer evaluation: fused (numba), dense (BLAS) or auto "
                          "(the faster, measured).")  # fmt: skip
    ] = "auto",
    kodak: Annotated[
        Path | None,
        typer.Option(help="Kodak folder for kodak-patches \\[default: as kancoin eval]."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("results/ae-study"),
    threads: Threads = None,
    plot: Annotated[bool, typer.Option(help="Draw the figures (needs matplotlib).")] = True,
    force: StudyForce = False,
    quiet: Quiet = False,
    json_out: Json = False,
) -> None:
    """KAN autoencoders against CNN and MLP autoencoders (arXiv 2410.02077), three ways: as
    published, at equal parameters and at equal training time.

    Reports on the held-out split: reconstruction MSE and PSNR, kNN accuracy on the latents
    (labelled data), parameters, seconds per epoch and inference time; mean ± std over seeds.
    """

    def body():
        import torch

        from kancoin.research.ae import data as ae_data
        from kancoin.research.ae.study import AEConfig, parse_sizes, run_study

        try:
            c1, c2 = (int(t) for t in channels.split(","))
        except ValueError:
            raise KancoinError(f"--channels {channels!r}: give two counts, e.g. 16,32") from None
        if min(c1, c2) < 1:
            raise KancoinError("--channels: counts must be ≥ 1")
        cfg = AEConfig(
            bottlenecks=parse_sizes(bottleneck), epochs=epochs, seeds=seeds, hidden=hidden,
            channels=(c1, c2), grid_size=grid_size, spline_order=spline_order,
            batch_size=batch_size, knn_k=knn_k, kan_backend=kan_backend,
            comparisons=tuple(c.strip() for c in compare.split(",") if c.strip()),
        )  # fmt: skip
        cfg.check()
        if threads:
            torch.set_num_threads(threads)
        kodak_dir = kodak
        if data == "kodak-patches" and kodak_dir is None:
            from kancoin.eval.settings import default_images_dir

            kodak_dir = default_images_dir()
        talk = not (quiet or json_out)
        dataset = ae_data.load(data, kodak_dir)
        if talk:
            err(f"{dataset.name}: {dataset.notes}")
        report = run_study(
            dataset, out, cfg, force=force, progress=lambda label: progress_bar(talk, label),
            log=None, plot=plot,
        )  # fmt: skip
        if json_out:
            typer.echo(json.dumps({
                "out": str(report.out_dir), "seconds": round(report.seconds, 2),
                "config": report.config, "summary": report.summary,
            }))  # fmt: skip
        elif not quiet:
            typer.echo((report.out_dir / "tables.md").read_text("utf-8"))
            names = ", ".join(p.name for p in report.written)
            typer.echo(f"results in {report.out_dir}/ ({names}) in {report.seconds:.0f} s")

    run(body)
