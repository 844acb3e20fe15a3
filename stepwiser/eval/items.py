"""ProcessBench items as the evaluators see them, loaded and validated by `stepwiser.datasets`."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class BenchItem:
    subset: str
    id: str
    problem: str
    steps: tuple
    label: int
    raw: dict = field(default_factory=dict, compare=False, repr=False)  # the item as read (e.g. `reference`)


def load_bench(data: str, subsets=None, limit: int | None = None) -> dict[str, list[BenchItem]]:
    """{subset: items} of a ProcessBench folder, file or "hf" (see `stepwiser.datasets.load_processbench`:
    a missing field, a label outside [-1, len(steps)), a duplicate id or an empty subset raise an error
    naming the file)."""
    from ..datasets import load_processbench

    bench = load_processbench(data, subsets, limit)
    return {name: [BenchItem(name, str(it["id"]), it["problem"], tuple(it["steps"]), int(it["label"]), it)
                   for it in items] for name, items in bench.items()}


def bench_files(data: str, names) -> list[Path]:
    """The local files behind the evaluated subsets (hashed into the run manifest); none for the Hub."""
    if str(data) == "hf":
        return []
    p = Path(data)
    return [p] if p.is_file() else [p / f"{n}.json" for n in names]
