"""`stepwiser report`: several ProcessBench summaries -> one Markdown table and a bar chart."""
from __future__ import annotations

import click


@click.command("report")
@click.argument("summaries", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--names", default=None, help="Comma-separated row names, one per summary (default: the judge names).")
@click.option("-o", "--out", "table_out", type=click.Path(dir_okay=False), default=None,
              help="Write the Markdown table here (it is printed either way).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write a PNG bar chart with the intervals.")
def command(summaries, names, table_out, plot):
    """Compare judges: rows = judges, columns = subsets + average F1 with bootstrap 95% intervals.

    \b
      stepwiser report runs/eval-*/summary.json --names untrained,disc,stepwiser -o table.md --plot chart.png
    """
    from ..report import make_report

    name_list = [n.strip() for n in names.split(",")] if names else None
    click.echo(make_report(list(summaries), name_list, table_out, plot), nl=False)
    for label, path in (("table", table_out), ("plot", plot)):
        if path:
            click.echo(f"wrote {label}: {path}", err=True)
