"""The judges' prompts: the generative judge's (with or without chain of thought) and the
discriminative baseline's multi-turn chat. A judge sees (problem, history = all previous chunks, new
chunk) and never the reference answer, Q-values or labels."""
from __future__ import annotations

from stepwiser.judges.base import JudgeItem

_ROLE = ("You are a validator of mathematical reasoning. You check ONE new reasoning chunk of a "
         "step-by-step solution to a math problem, given the problem and the reasoning that came before it.")

_COT_TASK = """First analyse the new chunk step by step, then give your judgment.
Your analysis should: state the goal of the new chunk; check its logic, method and every calculation
against the problem statement and the previous reasoning; and, if you find an error, explain exactly
what is wrong. A chunk that does no calculation (for example one that restates the problem, sets up
notation or plans the next step) can still be correct.

Judge the new chunk only (assume the previous reasoning as given):
- Positive: the new chunk contains no mistake.
- Negative: the new chunk contains one or more mistakes.

End your answer with the final judgment in exactly this form: \\boxed{Positive} or \\boxed{Negative}."""

_NOCOT_TASK = """Judge the new chunk only (assume the previous reasoning as given). A chunk that does no
calculation can still be correct.
- Positive: the new chunk contains no mistake.
- Negative: the new chunk contains one or more mistakes.

Answer with the judgment only, in exactly this form: \\boxed{Positive} or \\boxed{Negative}."""


def format_history(history: list[str]) -> str:
    if not history:
        return "(none: the new chunk is the first step)"
    return "\n".join(f"Step {i}: {h.strip()}" for i, h in enumerate(history, 1))


JUDGE_PROMPTS = ("full", "compact")
_COMPACT_TASK = {True: "First analyse the new chunk step by step, then give your judgment.",
                 False: "Judge the new chunk only (assume the previous reasoning as given)."}


def judge_messages(item: JudgeItem, cot: bool = True, prompt: str = "full") -> list[dict]:
    """The chat messages of the judge prompt (one user turn; the chat template adds the rest).

    `prompt`: full (the role and the task instructions, the paper's kind of prompt) or compact (one line of
    task, then the same problem / previous reasoning / new chunk sections): for micro models, which
    cannot read instructions, it halves the prompt and so the cost of every judge step."""
    if prompt not in JUDGE_PROMPTS:
        raise ValueError(f"judge prompt must be one of {', '.join(JUDGE_PROMPTS)}; got {prompt!r}")
    head = f"{_ROLE}\n\n{_COT_TASK if cot else _NOCOT_TASK}" if prompt == "full" else _COMPACT_TASK[bool(cot)]
    body = (f"{head}\n\n"
            f"### Problem\n{item.problem.strip()}\n\n"
            f"### Previous reasoning\n{format_history(item.history)}\n\n"
            f"### New chunk\n{item.chunk.strip()}\n\n### End of input")
    return [{"role": "user", "content": body}]


DISC_POS, DISC_NEG = "+", "-"
DISC_SYSTEM = ("You check a step-by-step solution to a math problem one step at a time. After each step, "
               "answer + if the step is correct and - if it contains a mistake.")


def disc_messages(problem: str, chunks: list[str], labels: list[int] | None = None) -> list[dict]:
    """The discriminative baseline's multi-turn chat: one chunk per user turn (the problem goes with the
    first), the assistant answers + or -. With `labels` every assistant turn is filled in (training);
    without, the messages stop after the last user turn (scoring the last chunk)."""
    msgs = [{"role": "system", "content": DISC_SYSTEM}]
    for i, c in enumerate(chunks):
        head = f"Problem:\n{problem.strip()}\n\nStep 1:\n" if i == 0 else f"Step {i + 1}:\n"
        msgs.append({"role": "user", "content": head + c.strip()})
        if labels is not None:
            msgs.append({"role": "assistant", "content": DISC_POS if labels[i] else DISC_NEG})
    return msgs
