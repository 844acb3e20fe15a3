"""End-of-stage summaries printed as a small table."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_summary(stage: str, summary: dict, console: Console | None = None) -> None:
    console = console or Console()
    t = Table(title=f"{stage}: summary", show_header=False, title_justify="left")
    for k, v in summary.items():
        t.add_row(str(k), _fmt(v))
    console.print(t)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    return str(v)
