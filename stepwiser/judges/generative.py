"""The generative judge: prompt, verdict parsing, and the judging API used by every later stage.

A judge sees (problem, history = all previous chunks, new chunk) and never the reference answer,
Q-values or labels. With chain of thought (the StepWiser judge) it writes an analysis and ends with
``\\boxed{Positive}`` or ``\\boxed{Negative}``; without (the no-CoT ablation) it gives the verdict only.

Judging API: `GenerativeJudge(engine).judge(items, k)` judges many items at once on any engine,
k samples per item (Maj@k), and returns per item the verdicts, the majority verdict, the chunk score
(share of Positive among parsed samples), the analyses and token counts. Every judge kind
(generative, discriminative) implements the same `judge` method (`StepJudge`), so evaluation,
search and data selection work with any of them; `load_judge` picks the kind from the model folder.
"""
from __future__ import annotations

from stepwiser.core.verdict import parse_verdict
from stepwiser.engines import Engine, Request, SamplingParams
from stepwiser.io.records import request_seed
from stepwiser.judges.base import JudgeItem, Judgment
from stepwiser.judges.prompts import judge_messages


def default_max_tokens(cot: bool) -> int:
    """Most tokens per judgment when none is given: 1024 with an analysis, 32 for the bare verdict."""
    return 1024 if cot else 32


class GenerativeJudge:
    """A chat model that writes an analysis (cot=True) or a bare verdict, on any engine.

    The engine applies the judge model's chat template; a tokenizer without one raises EngineError
    naming the model (no fallback: a raw prompt would not be the prompt the judge was trained on)."""

    def __init__(self, engine: Engine, cot: bool = True, max_tokens: int | None = None, seed: int = 0,
                 temperature: float | None = None, prompt: str = "full"):
        """`max_tokens`: most tokens per judgment; default 1024 with CoT, 32 for the bare verdict (the
        lengths `train-judge` uses)."""
        if max_tokens is None:
            max_tokens = default_max_tokens(cot)
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self.engine, self.cot, self.max_tokens, self.seed = engine, cot, max_tokens, seed
        self.temperature = temperature
        self.prompt = prompt   # the judge prompt it was trained on (stepwiser_judge.json "prompt")

    def judge(self, items: list[JudgeItem], k: int = 1) -> list[Judgment]:
        """k samples per item: greedy for k = 1, temperature 1.0 for k > 1 (unless set)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not items:
            return []
        temp = self.temperature if self.temperature is not None else (0.0 if k == 1 else 1.0)
        params = SamplingParams(n=k, temperature=temp, max_tokens=self.max_tokens, seed=self.seed)
        reqs = [Request(messages=judge_messages(it, self.cot, self.prompt),
                        seed=request_seed(self.seed, it.problem, it.history, it.chunk)) for it in items]
        out = []
        for comps in self.engine.generate(reqs, params):
            out.append(Judgment(verdicts=[parse_verdict(c.text) for c in comps], texts=[c.text for c in comps],
                                tokens=sum(c.completion_tokens for c in comps),
                                prompt_tokens=comps[0].prompt_tokens if comps else 0))
        return out
