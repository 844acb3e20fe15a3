"""ProcessBench items as the evaluators see them, loaded and validated by `stepwiser.data.datasets`."""
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
    """{subset: items} of a ProcessBench folder, file or "hf" (see `stepwiser.data.datasets.load_processbench`:
    a missing field, a label outside [-1, len(steps)), a duplicate id or an empty subset raise an error
    naming the file)."""
    from stepwiser.data.datasets import load_processbench

    bench = load_processbench(data, subsets, limit)
    return {name: [BenchItem(name, str(it["id"]), it["problem"], tuple(it["steps"]), int(it["label"]), it)
                   for it in items] for name, items in bench.items()}


def bench_files(data: str, names) -> list[Path]:
    """The local files behind the evaluated subsets (hashed into the run manifest); none for the Hub."""
    if str(data) == "hf":
        return []
    p = Path(data)
    return [p] if p.is_file() else [p / f"{n}.json" for n in names]


def stratified_sample(items: list[BenchItem], n: int, seed: int = 0, name: str = "") -> list[BenchItem]:
    """`n` of `items` drawn with `seed` (and the subset `name`), clean (label -1) and erroneous items in the
    proportions of `items` (rounded, at least one of each class present when n >= 2), in file order.
    All items when n >= len(items). Unlike the first n (`--limit`), it keeps both classes, so F1 is defined."""
    import random

    if n < 1:
        raise ValueError(f"sample size must be >= 1, got {n}")
    if n >= len(items):
        return list(items)
    clean = [i for i, it in enumerate(items) if it.label == -1]
    error = [i for i, it in enumerate(items) if it.label != -1]
    n_clean = round(n * len(clean) / len(items))
    if n >= 2 and clean and error:
        n_clean = min(max(n_clean, 1), n - 1)
    n_clean = max(min(n_clean, len(clean)), n - len(error))
    rng = random.Random(f"{seed}:{name}")
    picked = rng.sample(clean, n_clean) + rng.sample(error, n - n_clean)
    return [items[i] for i in sorted(picked)]
