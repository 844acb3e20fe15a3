"""A no-CoT generative judge read by its verdict probability instead of its sampled verdict.

A judge trained without analysis (`train-judge --method grpo-nocot`) answers ``\\boxed{Positive}`` or
``\\boxed{Negative}`` and nothing else. Its chunk score here is P(Positive): the judge's next-token
distribution after the prompt and the verdict's shared opening (``\\boxed{`` as its tokenizer splits it),
renormalised over the first tokens of the two verdicts (one forward pass per batch, no sampling). The
verdict is Positive when the score is at least `threshold`. With the default 0.5 this is the greedy verdict
whenever the two verdict tokens are the likeliest; a threshold chosen on dev (`best_threshold`,
`scripts/select_checkpoint.py --by calibrated`, which records it in the exported folder's
`stepwiser_judge.json`) removes a lean towards one verdict that greedy decoding turns into "everything
Positive". The judge sees exactly the prompt the engine would render for sampling (`HFEngine.encode`).
"""
from __future__ import annotations

from stepwiser.engines import Request
from stepwiser.errors import StepwiserError
from stepwiser.judges.base import JudgeItem, Judgment
from stepwiser.judges.discriminative import pair_probabilities, scored_judgments
from stepwiser.judges.prompts import judge_messages

VERDICTS = ("\\boxed{Positive}", "\\boxed{Negative}")


def verdict_tokens(engine, prompt: str = "full") -> tuple[list[int], int, int]:
    """(shared opening ids, first Positive id, first Negative id) of the two verdicts as the engine's
    tokenizer writes them after a judge prompt (a probe item; the prompt ends at the generation prompt)."""
    probe = JudgeItem(problem="1 + 1", history=[], chunk="2")
    base = engine.prompt_text(Request(messages=judge_messages(probe, False, prompt)))
    tok = engine.tokenizer
    head = tok(base, add_special_tokens=False)["input_ids"]
    pos, neg = (tok(base + v, add_special_tokens=False)["input_ids"] for v in VERDICTS)
    if pos[:len(head)] != head or neg[:len(head)] != head:
        raise StepwiserError(f"{engine.model}: the tokenizer merges the judge prompt's end with the verdict; "
                             "the verdict probability cannot be read (use the sampled verdict)")
    k = len(head)
    while k < min(len(pos), len(neg)) and pos[k] == neg[k]:
        k += 1
    if k == min(len(pos), len(neg)):
        raise StepwiserError(f"{engine.model}: the two verdicts tokenize to one sequence being a prefix of the other")
    return pos[len(head):k], pos[k], neg[k]


class VerdictProbabilityJudge:
    """`VerdictProbabilityJudge(engine).judge(items, k)`: the StepJudge API, scored by P(Positive) on an
    `HFEngine` (a loaded judge folder, or an in-memory model during training).

    Every item gets k identical samples (the score is deterministic): verdicts = [score >= threshold] * k,
    scores = [P(Positive)] * k, texts = the verdict written out, tokens = 0."""

    cot = False

    def __init__(self, engine, prompt: str = "full", threshold: float = 0.5, batch_size: int = 64):
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not hasattr(engine, "hf_model"):
            raise StepwiserError("the verdict probability needs the hf engine (it reads the judge's logits)")
        self.engine, self.prompt, self.threshold, self.batch_size = engine, prompt, threshold, batch_size
        self.opening, self.pos_id, self.neg_id = verdict_tokens(engine, prompt)

    def scores(self, items: list[JudgeItem]) -> list[float]:
        """P(Positive) of each item's new chunk."""
        reqs = [Request(messages=judge_messages(it, False, self.prompt)) for it in items]
        ids = [p + self.opening for p in self.engine.encode(reqs)]
        pad = self.engine.tokenizer.pad_token_id
        pad = pad if pad is not None else self.neg_id   # left padding is masked: any id works
        return pair_probabilities(self.engine.hf_model, ids, pad, self.pos_id, self.neg_id, self.batch_size)

    def judge(self, items: list[JudgeItem], k: int = 1) -> list[Judgment]:
        return scored_judgments(self, items, k, VERDICTS)
