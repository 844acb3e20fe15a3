"""The ProcessBench critic protocol for any chat model (`stepwiser eval processbench --critic MODEL`).

The model sees the problem and the whole solution, each step as a ``<paragraph_i>`` block numbered
from 0, and is asked for the index of the earliest paragraph with an error in ``\\boxed{}``, or -1 when
every paragraph is correct. This is the content of the official ProcessBench critic template, in our own
wording. Greedy for K = 1, temperature 1.0 for K > 1 (maj@K).

Parsing: the last ``\\boxed{}`` of the output; wrappers such as ``\\text{}`` and a ``paragraph_``
prefix are dropped; anything but an integer in [-1, number of steps) is unparsed (an index outside
that range names no paragraph). **(our convention)** maj@K: the most frequent parsed index; a tie goes
to the earliest error among the tied indices (the smallest index >= 0; -1 only if -1 is the only
tied value), which mirrors the stepwise rule that a tied verdict counts as Negative. All K unparsed:
the prediction is null (wrong, counted as unparsed).
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator

from stepwiser.engines import Engine, Request, SamplingParams
from stepwiser.core.boxed import last_boxed, unwrap
from stepwiser.data.bench import BenchItem

_TASK = ("Below is a math problem and a proposed solution. The solution is split into paragraphs; each "
         "paragraph is enclosed in tags and numbered from 0.")
_ASK = ("Review the solution one paragraph at a time. As soon as you find a paragraph that contains an error, "
        "stop: your answer is the index of that paragraph (the earliest error). If no paragraph contains an "
        "error, your answer is -1 (no error found).\n\n"
        "Put your final answer, the index only, in \\boxed{}.")


def tagged_steps(steps: Iterable[str]) -> str:
    return "\n\n".join(f"<paragraph_{i}>\n{s.strip()}\n</paragraph_{i}>" for i, s in enumerate(steps))


def critic_messages(problem: str, steps: Iterable[str]) -> list[dict]:
    body = f"{_TASK}\n\n### Problem\n{problem.strip()}\n\n### Solution\n{tagged_steps(steps)}\n\n{_ASK}"
    return [{"role": "user", "content": body}]


def parse_index(text: str, n_steps: int) -> int | None:
    """The paragraph index in the last ``\\boxed{}`` of `text` (-1 = no error), or None (see module doc)."""
    content = last_boxed(text)
    if content is None:
        return None
    content = unwrap(content).replace("$", "").replace("\\_", "_")
    content = re.sub(r"(?i)^\s*(?:paragraph|step)[\s_]*", "", content).strip().rstrip(".")
    if not re.fullmatch(r"[-+]?\d+", content):
        return None
    value = int(content)
    return value if -1 <= value < n_steps else None


def critic_vote(indices: Iterable[int | None]) -> int | None:
    """Majority of the parsed indices; a tie goes to the earliest error; all unparsed -> None."""
    counts = Counter(i for i in indices if i is not None)
    if not counts:
        return None
    top = max(counts.values())
    tied = [i for i, c in counts.items() if c == top]
    errors = [i for i in tied if i >= 0]
    return min(errors) if errors else -1


class Critic:
    """A chat model used as a ProcessBench critic on any engine."""

    def __init__(self, engine: Engine, max_tokens: int = 1024, seed: int = 0, temperature: float | None = None):
        self.engine, self.max_tokens, self.seed, self.temperature = engine, max_tokens, seed, temperature

    def predict(self, items: Iterable[BenchItem], k: int = 1, window: int = 256
                ) -> Iterator[tuple[BenchItem, dict]]:
        """Yield (item, record fields) per item, `window` items per engine call."""
        from stepwiser.io.records import request_seed

        if k < 1 or window < 1:
            raise ValueError(f"k and window must be >= 1, got k={k}, window={window}")
        temp = self.temperature if self.temperature is not None else (0.0 if k == 1 else 1.0)
        params = SamplingParams(n=k, temperature=temp, max_tokens=self.max_tokens, seed=self.seed)
        items = list(items)
        for b in range(0, len(items), window):
            batch = items[b:b + window]
            reqs = [Request(messages=critic_messages(it.problem, it.steps),
                            seed=request_seed(self.seed, it.problem, list(it.steps))) for it in batch]
            for it, comps in zip(batch, self.engine.generate(reqs, params)):
                indices = [parse_index(c.text, len(it.steps)) for c in comps]
                prediction = critic_vote(indices)
                yield it, {"prediction": prediction, "unparsed": prediction is None, "indices": indices,
                           "analyses": [c.text for c in comps],
                           "tokens": sum(c.completion_tokens for c in comps)}
