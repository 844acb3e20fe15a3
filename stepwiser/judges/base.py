"""What every judge shares: the item it judges, the judgment it returns, the judging protocol
(`StepJudge.judge(items, k)`) and the metadata file of trained judge folders."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from stepwiser.core.verdict import majority

JUDGE_META = "stepwiser_judge.json"   # written into trained judge folders: {"kind": ..., "cot": ...}


@dataclass
class JudgeItem:
    problem: str
    history: list[str]
    chunk: str


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


def judge_meta(model: str) -> dict:
    """The judge kind recorded in a trained judge's folder ({} for other models)."""
    p = Path(model) / JUDGE_META
    return json.loads(p.read_text()) if p.exists() else {}


def write_judge_meta(out_dir: str | Path, kind: str, **info) -> None:
    if kind not in ("generative", "discriminative"):
        raise ValueError(f"judge kind must be generative or discriminative, got {kind!r}")
    (Path(out_dir) / JUDGE_META).write_text(json.dumps({"kind": kind, **info}, indent=2) + "\n")


def final_dir(model: str) -> str:
    """`OUT` of a `train-judge` run (no config.json, but OUT/final/config.json) -> `OUT/final`."""
    p = Path(model)
    if p.is_dir() and not (p / "config.json").exists() and (p / "final" / "config.json").exists():
        return str(p / "final")
    return model


def resolve_lazy(obj, mode: str):
    """A predictor object, or the result of calling a zero-argument factory (loaded only when needed)."""
    if obj is None:
        raise ValueError(f"mode {mode!r} needs a judge, engine or PRM (or a factory of one)")
    if callable(obj) and not any(hasattr(obj, a) for a in ("judge", "generate", "predict")):
        return obj()
    return obj
