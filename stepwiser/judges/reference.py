"""Reference judges that bracket every result on the synthetic bench (`--reference NAME`).

Floors (no model):
- ``always-correct``: predicts -1 (no error) for every item: correct_acc 100, error_acc 0, F1 0.
- ``first-step``: predicts 0 (the first step is wrong) for every item.
- ``position-prior``: a seeded random draw from the label distribution of a dev split (`prior`
  items, never the evaluated ones): the labels of dev items with the same number of steps, or if
  there are none, all dev labels that are valid for the item. Unlike always predicting the most
  common label (which is right on one side only and scores F1 = 0 on any mixed bench), the draw is
  sometimes right on both sides, so it scores above 0: it is what guessing from the position
  statistics alone achieves. The draw for an item depends only on (seed, item id).
Ceiling (possible only in the micro domain):
- ``oracle``: recomputes every step's arithmetic from the problem, using the item's clean
  reference trace (`reference`, written by `stepwiser data synth-bench`, never shown to judges):
  the prediction is the first chunk with a wrong calculation, a stated result that follows neither
  from the problem's numbers nor from the previous results, or a wrong boxed answer
  (`stepwiser.data.synth.first_divergent_chunk`), else -1.
"""
from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Iterator

from stepwiser.errors import StepwiserError
from stepwiser.io.records import content_hash
from stepwiser.data.bench import BenchItem

REFERENCES = ("always-correct", "first-step", "position-prior", "oracle")


class LabelPrior:
    """Seeded draws from the label distribution of dev items (see the module doc)."""

    def __init__(self, dev: Iterable[BenchItem], seed: int = 0):
        self.by_length: dict[int, list[int]] = defaultdict(list)
        self.all: list[int] = []
        for it in dev:
            self.by_length[len(it.steps)].append(it.label)
            self.all.append(it.label)
        if not self.all:
            raise ValueError("the position prior needs at least one dev item")
        self.seed = seed

    def draw(self, item: BenchItem) -> int:
        pool = self.by_length.get(len(item.steps)) or [y for y in self.all if y < len(item.steps)] or [-1]
        rng = random.Random(content_hash([self.seed, item.subset, item.id]))
        return rng.choice(sorted(pool))


def oracle_prediction(item: BenchItem) -> int:
    from stepwiser.data.synth import first_divergent_chunk

    ref = item.raw.get("reference")
    if not isinstance(ref, dict) or not ref.get("steps"):
        raise StepwiserError(f"subset {item.subset!r} item {item.id!r}: the oracle needs the synthetic bench's "
                             "'reference' field (the clean trace); real ProcessBench items have none")
    index, _ = first_divergent_chunk(list(item.steps), ref)
    return -1 if index is None else index


def run_reference(name: str, items: Iterable[BenchItem], prior: LabelPrior | None = None
                  ) -> Iterator[tuple[BenchItem, dict]]:
    """Yield (item, record fields) for reference judge `name`."""
    if name not in REFERENCES:
        raise ValueError(f"unknown reference judge {name!r}; allowed: {', '.join(REFERENCES)}")
    if name == "position-prior" and prior is None:
        raise ValueError("the position-prior reference needs a LabelPrior (dev labels)")
    for it in items:
        if name == "always-correct":
            p = -1
        elif name == "first-step":
            p = 0
        elif name == "position-prior":
            p = prior.draw(it)
        else:
            p = oracle_prediction(it)
        yield it, {"prediction": p, "unparsed": False}
