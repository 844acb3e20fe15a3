"""Progress display shared by long stages: counts, rates and custom stats on one rich line."""
from __future__ import annotations

import os
import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


class StageProgress:
    """`with StageProgress("sample", total) as p: p.advance(k, tokens=..., acc=...)`.

    Stats passed to `advance` are summed (numbers named in `rates` are also shown per second);
    `set` replaces a shown value. `enabled=None` (the default): a live bar when stderr is a terminal, else
    (a background run, a log file) one plain line every `every` seconds (default: the environment's
    STEPWISER_PROGRESS_EVERY, else 60) and one at the end; `enabled=True` forces the bar, False is silent.
    """

    def __init__(self, desc: str, total: int, unit: str = "items", rates: tuple[str, ...] = (),
                 enabled: bool | None = None, every: float | None = None):
        self.desc, self.total, self.unit, self.rates = desc, total, unit, rates
        self.sums: dict[str, float] = {}
        self.shown: dict[str, str] = {}
        self.t0 = self._last = time.time()
        self.done = 0
        tty = sys.stderr.isatty()
        self._plain = enabled is None and not tty
        self.every = _every() if every is None else every
        enabled = tty if enabled is None else enabled
        self._p = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn(unit), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                           TextColumn("{task.fields[info]}"), console=console, disable=not enabled,
                           transient=False)
        self._task = None

    def __enter__(self):
        self._p.__enter__()
        self._task = self._p.add_task(self.desc, total=self.total, info="")
        return self

    def __exit__(self, *exc):
        self._p.__exit__(*exc)
        if self._plain:
            self._line()

    @property
    def elapsed(self) -> float:
        return max(time.time() - self.t0, 1e-9)

    def rate(self, name: str) -> float:
        return self.sums.get(name, 0.0) / self.elapsed

    def set(self, **shown) -> None:
        self.shown.update({k: str(v) for k, v in shown.items()})
        self._refresh(0)

    def advance(self, n: int = 1, **stats: float) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self._refresh(n)

    def _info(self) -> str:
        parts = [f"{k}/s {self.rate(k):.1f}" for k in self.rates]
        return "  ".join(parts + [f"{k} {v}" for k, v in self.shown.items()])

    def _refresh(self, n: int) -> None:
        self.done += n
        if self._task is not None:
            self._p.update(self._task, advance=n, info=self._info())
        if self._plain and time.time() - self._last >= self.every:
            self._line()

    def _line(self) -> None:
        self._last = time.time()
        print(f"{self.desc}: {self.done}/{self.total} {self.unit}, {self.elapsed:.0f} s  {self._info()}".rstrip(),
              file=sys.stderr, flush=True)


def _every() -> float:
    raw = os.environ.get("STEPWISER_PROGRESS_EVERY", "60")
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"STEPWISER_PROGRESS_EVERY must be a number of seconds, got {raw!r}") from None
