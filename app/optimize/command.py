"""`python -m app.cli optimize SRC --out DST.tflite` (also `flask --app wsgi models optimize`)."""
from __future__ import annotations

from pathlib import Path

import click

QUANTIZE_HELP = ("none: float32; dynamic: int8 weights, float activations; float16: float16 weights; "
                 "int8: integers throughout, calibrated on --calibration (clients still send floats)")


@click.command("optimize")
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "dst", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The .tflite file to write (its report goes to DST.report.json).")
@click.option("--quantize", type=click.Choice(["none", "dynamic", "float16", "int8"]), default="none",
              show_default=True, help=QUANTIZE_HELP)
@click.option("--calibration", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help=".npz of representative inputs keyed by input name; required for int8.")
@click.option("--prune", "sparsity", type=click.FloatRange(0, 1, max_open=True),
              help="Zero this fraction of the Dense and Conv kernel weights (smallest magnitude first).")
@click.option("--prune-scope", type=click.Choice(["layer", "global"]), default="layer", show_default=True,
              help="layer: each kernel reaches the sparsity; global: all kernels together do.")
@click.option("--eval", "eval_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help=".npz of inputs (and optional `labels`) to measure on; default: the calibration data, "
                   "else a seeded sample.")
def optimize(src: Path, dst: Path, quantize: str, calibration: Path | None, sparsity: float | None,
             prune_scope: str, eval_path: Path | None) -> None:
    """Convert SRC (a Keras file) to a TFLite file DST, optionally pruned and quantised, and report the cost."""
    from app.optimize.pipeline import OptimizeError, run

    if dst.suffix != ".tflite":
        raise click.ClickException(f"--out must name a .tflite file, not {dst.name}")
    try:
        report = run(src, dst, quantize, calibration, sparsity, prune_scope, eval_path)
    except OptimizeError as exc:
        raise click.ClickException(str(exc)) from None
    from app.optimize.report import report_path, table

    for line in table(report):
        click.echo(line)
    click.echo(f"wrote {dst} and {report_path(dst)}")

