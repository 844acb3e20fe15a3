"""The position rule: a floor for chunk labels that reads nothing but the chunk's position.

A judge can score well on chunk labels without reading a chunk: early chunks are mostly right and late
ones mostly wrong (in the micro domain, chunk 0 has an exact label of Positive ~90% of the time, and a
chunk after the first error has no exact label at all). The position rule makes that visible beside
every judge: its score for a chunk is the share of Positive labels among the dev examples at the same
chunk index (`position_rates`; an index beyond the dev examples' last takes the last one's share), and
its verdict is Positive where that share is at least a threshold chosen on the same dev examples
(`best_threshold`, as the judges' thresholds are). It is fitted on dev labels, never on the evaluated
ones, and needs no model: `load_judge(DEV, kind="position")` with DEV a judge-data folder (its val.jsonl)
or a JSONL file of judge examples.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from stepwiser.core.metrics import best_threshold
from stepwiser.judges.base import JudgeItem, Judgment
from stepwiser.judges.discriminative import scored_judgments

VERDICTS = ("Positive (position rule)", "Negative (position rule)")


def position_rates(indices: Sequence[int], labels: Sequence[int]) -> dict[int, float]:
    """{chunk index: share of label 1 among the examples at that index} (pure; indices >= 0)."""
    if len(indices) != len(labels):
        raise ValueError(f"{len(indices)} indices for {len(labels)} labels")
    if not indices:
        raise ValueError("the position rule needs at least one dev example")
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for i, y in zip(indices, labels):
        if i < 0:
            raise ValueError(f"a chunk index must be >= 0, got {i}")
        counts[int(i)][0] += int(y)
        counts[int(i)][1] += 1
    return {i: pos / n for i, (pos, n) in sorted(counts.items())}


def rate_at(rates: dict[int, float], index: int) -> float:
    """The share for `index`: its own, else that of the largest dev index below it (else the smallest)."""
    if index in rates:
        return rates[index]
    below = [i for i in rates if i < index]
    return rates[max(below)] if below else rates[min(rates)]


class PositionJudge:
    """The position rule as a StepJudge (`judge(items, k)`); `fit` builds it from dev examples."""

    cot = False

    def __init__(self, rates: dict[int, float], threshold: float):
        if not rates:
            raise ValueError("the position rule needs the Positive share of at least one chunk index")
        self.rates, self.threshold = dict(rates), threshold

    @classmethod
    def fit(cls, indices: Sequence[int], labels: Sequence[int]) -> PositionJudge:
        """Shares per index from dev labels, and the threshold with the best dev balanced accuracy."""
        rates = position_rates(indices, labels)
        threshold, _ = best_threshold(list(labels), [rate_at(rates, i) for i in indices])
        return cls(rates, threshold)

    @classmethod
    def from_data(cls, data: str, split: str = "val") -> PositionJudge:
        """Fitted on a judge-data folder's `<split>.jsonl` or a JSONL file of judge examples."""
        from stepwiser.data.judge_examples import data_file, load_judge_examples

        examples = load_judge_examples(data_file(data, split))
        return cls.fit([len(e.history) for e in examples], [e.label for e in examples])

    def reading(self) -> dict:
        return {"kind": "position", "threshold": self.threshold,
                "rates": {str(i): round(r, 4) for i, r in self.rates.items()}}

    def scores(self, items: list[JudgeItem]) -> list[float]:
        return [rate_at(self.rates, len(it.history)) for it in items]

    def judge(self, items: list[JudgeItem], k: int = 1) -> list[Judgment]:
        return scored_judgments(self, items, k, VERDICTS)
