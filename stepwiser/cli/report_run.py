"""`stepwiser report-run`: the outputs of a run's stages -> OUT/report.md and PNG plots."""
from __future__ import annotations

import click

from stepwiser.cli.options import config_options
from stepwiser.stages.run_report import RunReportConfig


@click.command("report-run")
@config_options(RunReportConfig, section="report_run")
def command(cfg):
    """Write a run's report: tables of the judges, ProcessBench, paired differences, training curves,
    annotation cost, search and data selection, each with the config that produced it.

    \b
      stepwiser report-run -o runs/micro/report --data runs/micro/test-data/val.jsonl \\
        --labels "warm-up=runs/micro/test/warmup-labels" --labels "no-CoT=runs/micro/test/nocot-labels" \\
        --pair "no-CoT:warm-up" --verdict "no-CoT>warm-up,50" --train "no-CoT=runs/micro/nocot-lr3e-4"

    Inputs are NAME=PATH (NAME labels the row; a comma separates several values, so names have none).
    An input that is not there is left out and listed at the end of the report.
    """
    from stepwiser.stages.run_report import run_report

    result = run_report(cfg)
    click.echo(result["text"], nl=False)
    for missing in result["missing"]:
        click.echo(f"warning: left out {missing}", err=True)
    click.echo(f"\nwrote report: {result['report']}")
    if result["plots"]:
        click.echo(f"wrote plots: {', '.join(result['plots'])}")
