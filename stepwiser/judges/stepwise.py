"""The stepwise protocol (docs/METHOD.md 2.4, C4): judge an item's steps in order, history = previous steps.

The prediction is the index of the first step judged Negative, or -1 when every step is Positive. A
step whose K verdicts are all unparsed makes the prediction null (wrong, counted as unparsed): the
walk cannot go on past a step it knows nothing about. Judging stops at the first step that decides
the prediction (Negative or unparsed) unless `all_steps` is set, in which case every step is judged
(to measure what early stopping saves) and the prediction is still decided by the first such step.

Throughput: items are judged as a rolling window of at most `window` items. Every round, each item
in the window submits its next step, all in ONE judging call (the engine sees a full batch); items
that are decided leave the window and are yielded at once, and waiting items take their places.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from stepwiser.errors import StepwiserError
from stepwiser.judges.base import JudgeItem, Judgment, StepJudge
from stepwiser.data.bench import BenchItem


def stepwise_prediction(step_verdicts: Iterable[int | None]) -> int | None:
    """Index of the first Negative (0) step, None if an unparsed step (None) comes first, else -1."""
    for i, v in enumerate(step_verdicts):
        if v is None:
            return None
        if v == 0:
            return i
        if v != 1:
            raise ValueError(f"a step verdict is 1, 0 or None, got {v!r}")
    return -1


@dataclass
class _Walk:
    """One item on its way through the protocol."""
    item: BenchItem
    judgments: list[Judgment] = field(default_factory=list)

    @property
    def next_step(self) -> int:
        return len(self.judgments)

    def request(self) -> JudgeItem:
        i = self.next_step
        return JudgeItem(problem=self.item.problem, history=list(self.item.steps[:i]), chunk=self.item.steps[i])

    def done(self, all_steps: bool) -> bool:
        if self.next_step == len(self.item.steps):
            return True
        return not all_steps and bool(self.judgments) and self.judgments[-1].verdict != 1

    def fields(self) -> dict:
        """The per-item record fields (besides id and label)."""
        verdicts = [j.verdict for j in self.judgments]
        prediction = stepwise_prediction(verdicts)
        return {"prediction": prediction, "unparsed": prediction is None,
                "steps_judged": len(self.judgments), "step_verdicts": verdicts,
                "verdicts": [j.verdicts for j in self.judgments],
                "scores": [j.score for j in self.judgments],
                "analyses": [j.texts for j in self.judgments],
                "tokens": sum(j.tokens for j in self.judgments),
                "prompt_tokens": sum(j.prompt_tokens for j in self.judgments)}


def run_stepwise(judge: StepJudge, items: Iterable[BenchItem], k: int = 1, all_steps: bool = False,
                 window: int = 256) -> Iterator[tuple[BenchItem, dict]]:
    """Yield (item, record fields) for each item as soon as its prediction is decided (see module doc)."""
    if k < 1 or window < 1:
        raise ValueError(f"k and window must be >= 1, got k={k}, window={window}")
    queue: deque[BenchItem] = deque(items)
    active: list[_Walk] = []
    while queue or active:
        while queue and len(active) < window:
            active.append(_Walk(queue.popleft()))
        outs = judge.judge([w.request() for w in active], k)
        if len(outs) != len(active):   # a judge of the user's (or its engine) broke the StepJudge contract
            raise StepwiserError(f"the judge {type(judge).__name__} returned {len(outs)} judgments for "
                                 f"{len(active)} items (one per item is required)")
        still = []
        for w, j in zip(active, outs):
            w.judgments.append(j)
            if w.done(all_steps):
                yield w.item, w.fields()
            else:
                still.append(w)
        active = still
