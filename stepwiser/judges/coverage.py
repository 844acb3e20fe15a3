"""A generative judge on a micro model, made safe for sampled text.

A micro policy sampling at temperature 1 can write text that its own word-level vocabulary cannot encode
again (a word that only ever appeared mid-sentence, now at a chunk's start, e.g. " sets"); the hf engine
refuses a prompt with such a piece, which would stop a whole evaluation, search or reward call. The guard
judges every other chunk as usual and gives those an unparsed verdict (each stage then counts it under its
own unparsed rule), and says so on stderr with a running count. `load_judge` applies it to generative judges
on micro tokenizers; other judges are returned unchanged.
"""
from __future__ import annotations

import sys

from stepwiser.judges.base import JudgeItem, Judgment


class CoverageGuard:
    """Wraps a `GenerativeJudge` (attributes pass through); `last_share` is the share of the last call's
    chunks left unjudged, `uncovered` / `seen` the running counts."""

    def __init__(self, inner, stream=None):
        self.inner, self.last_share, self.uncovered, self.seen = inner, 0.0, 0, 0
        self.stream = stream if stream is not None else sys.stderr

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def prompt_texts(self, items: list[JudgeItem]) -> list[str]:
        from stepwiser.engines import Request
        from stepwiser.judges.prompts import judge_messages

        engine = self.inner.engine
        return [engine.prompt_text(Request(messages=judge_messages(it, self.inner.cot, self.inner.prompt)))
                for it in items]

    def judge(self, items: list[JudgeItem], k: int = 1) -> list[Judgment]:
        from stepwiser.models.micro import unknown_pieces

        pieces, where = unknown_pieces(self.inner.engine.tokenizer, self.prompt_texts(items)) if items else ({}, [])
        bad = set(where)
        self.last_share = len(bad) / len(items) if items else 0.0
        self.seen += len(items)
        self.uncovered += len(bad)
        if bad:
            example = next(iter(pieces))
            print(f"judge: {len(bad)} of {len(items)} chunk(s) hold words the micro vocabulary cannot encode "
                  f"(e.g. {example!r}): unparsed verdicts ({self.uncovered} of {self.seen} so far)",
                  file=self.stream, flush=True)
        kept = [it for i, it in enumerate(items) if i not in bad]
        judged = iter(self.inner.judge(kept, k) if kept else [])
        return [Judgment(verdicts=[None] * k) if i in bad else next(judged) for i in range(len(items))]


def guard_judge(judge):
    """`judge` wrapped in a `CoverageGuard` when it is a generative judge on a micro tokenizer, else itself."""
    from stepwiser.models.micro import is_micro

    if isinstance(judge, CoverageGuard):
        return judge
    engine = getattr(judge, "engine", None)
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is None or not hasattr(judge, "prompt") or not is_micro(tokenizer):
        return judge
    return CoverageGuard(judge)
