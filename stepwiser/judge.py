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

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .engines import Engine, Request, SamplingParams

JUDGE_META = "stepwiser_judge.json"   # written into trained judge folders: {"kind": ..., "cot": ...}

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


@dataclass
class JudgeItem:
    problem: str
    history: list[str]
    chunk: str


def format_history(history: list[str]) -> str:
    if not history:
        return "(none: the new chunk is the first step)"
    return "\n".join(f"Step {i}: {h.strip()}" for i, h in enumerate(history, 1))


def judge_messages(item: JudgeItem, cot: bool = True) -> list[dict]:
    """The chat messages of the judge prompt (one user turn; the chat template adds the rest)."""
    body = (f"{_ROLE}\n\n{_COT_TASK if cot else _NOCOT_TASK}\n\n"
            f"### Problem\n{item.problem.strip()}\n\n"
            f"### Previous reasoning\n{format_history(item.history)}\n\n"
            f"### New chunk\n{item.chunk.strip()}\n\n### End of input")
    return [{"role": "user", "content": body}]


_BOXED = re.compile(r"\\boxed\s*\{")
_WRAPPERS = re.compile(r"\\(?:text|textbf|mathrm|mathbf|textit|operatorname)\s*\{([^{}]*)\}")


def _last_boxed_content(text: str) -> str | None:
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    i, depth = starts[-1], 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None  # unclosed


def parse_verdict(text: str) -> int | None:
    """1 for Positive, 0 for Negative, None when unparsed.

    The LAST ``\\boxed{...}`` of the text decides (case and whitespace tolerant, ``\\text{}`` and
    similar wrappers removed); if it is anything but Positive/Negative the output is unparsed.
    """
    content = _last_boxed_content(text)
    if content is None:
        return None
    prev = None
    while prev != content:
        prev, content = content, _WRAPPERS.sub(r"\1", content)
    word = re.sub(r"[\s.!*$]", "", content).lower()
    return {"positive": 1, "negative": 0}.get(word)


def majority(verdicts: list[int | None]) -> int | None:
    """Majority of parsed verdicts; a tie is Negative (0); all unparsed -> None (contract C4)."""
    parsed = [v for v in verdicts if v is not None]
    if not parsed:
        return None
    pos = sum(parsed)
    return 1 if pos > len(parsed) - pos else 0


@dataclass
class Judgment:
    verdicts: list            # per sample: 1, 0 or None (unparsed)
    texts: list = field(default_factory=list)   # the judge's outputs (analyses)
    tokens: int = 0              # generated tokens, all samples together
    scores: list | None = None   # discriminative judges: P(positive) per sample
    prompt_tokens: int = 0       # tokens of the judge prompt (chat template applied)

    @property
    def verdict(self) -> int | None:
        return majority(self.verdicts)

    @property
    def score(self) -> float | None:
        """Chunk score: P(+) for a scoring judge, else the share of Positive among parsed samples."""
        if self.scores:
            return sum(self.scores) / len(self.scores)
        parsed = [v for v in self.verdicts if v is not None]
        return sum(parsed) / len(parsed) if parsed else None

    @property
    def unparsed(self) -> int:
        return sum(v is None for v in self.verdicts)


class StepJudge(Protocol):
    def judge(self, items: list[JudgeItem], k: int = 1) -> list[Judgment]: ...


class GenerativeJudge:
    """A chat model that writes an analysis (cot=True) or a bare verdict, on any engine.

    The engine applies the judge model's chat template; a tokenizer without one raises EngineError
    naming the model (no fallback: a raw prompt would not be the prompt the judge was trained on)."""

    def __init__(self, engine: Engine, cot: bool = True, max_tokens: int = 1024, seed: int = 0,
                 temperature: float | None = None):
        self.engine, self.cot, self.max_tokens, self.seed = engine, cot, max_tokens, seed
        self.temperature = temperature

    def judge(self, items: list[JudgeItem], k: int = 1) -> list[Judgment]:
        """k samples per item: greedy for k = 1, temperature 1.0 for k > 1 (unless set)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not items:
            return []
        temp = self.temperature if self.temperature is not None else (0.0 if k == 1 else 1.0)
        params = SamplingParams(n=k, temperature=temp, max_tokens=self.max_tokens if self.cot else 16,
                                seed=self.seed)
        from .sample import request_seed
        reqs = [Request(messages=judge_messages(it, self.cot),
                        seed=request_seed(self.seed, it.problem, it.history, it.chunk)) for it in items]
        out = []
        for comps in self.engine.generate(reqs, params):
            out.append(Judgment(verdicts=[parse_verdict(c.text) for c in comps], texts=[c.text for c in comps],
                                tokens=sum(c.completion_tokens for c in comps),
                                prompt_tokens=comps[0].prompt_tokens if comps else 0))
        return out


def judge_meta(model: str) -> dict:
    """The judge kind recorded in a trained judge's folder ({} for other models)."""
    p = Path(model) / JUDGE_META
    return json.loads(p.read_text()) if p.exists() else {}


def write_judge_meta(out_dir: str | Path, kind: str, **info) -> None:
    if kind not in ("generative", "discriminative"):
        raise ValueError(f"judge kind must be generative or discriminative, got {kind!r}")
    (Path(out_dir) / JUDGE_META).write_text(json.dumps({"kind": kind, **info}, indent=2) + "\n")


# --------------------------------------------------------------------------- discriminative format

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


def _final_dir(model: str) -> str:
    """`OUT` of a `train-judge` run (no config.json, but OUT/final/config.json) -> `OUT/final`."""
    p = Path(model)
    if p.is_dir() and not (p / "config.json").exists() and (p / "final" / "config.json").exists():
        return str(p / "final")
    return model


def load_judge(model: str, engine_opts: dict | None = None, kind: str = "auto", cot: bool | None = None,
               max_tokens: int = 1024, seed: int = 0, threshold: float = 0.5) -> StepJudge:
    """A judge for `model`: the kind recorded in its folder (`stepwiser_judge.json`), or `kind`.

    generative: any chat model on any engine (engine_opts as built by the CLI; default hf);
    discriminative: a disc-SFT model scored by P(+) on transformers (threshold for its verdict).
    A `train-judge` output folder stands for its `final/` model.
    """
    model = _final_dir(model)
    meta = judge_meta(model)
    kind = meta.get("kind", "generative") if kind == "auto" else kind
    if kind == "discriminative":
        from .disc import DiscriminativeJudge
        return DiscriminativeJudge(model, threshold=threshold, device=(engine_opts or {}).get("device"))
    if kind != "generative":
        raise ValueError(f"judge kind must be auto, generative or discriminative; got {kind!r}")
    from .cli.common import build_engine
    opts = engine_opts or {"engine": "hf"}
    use_cot = meta.get("cot", True) if cot is None else cot
    return GenerativeJudge(build_engine(model, opts), cot=use_cot, max_tokens=max_tokens, seed=seed)
