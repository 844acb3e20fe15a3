"""Judge examples (C2) as the trainers and evaluators read them: a judge-data folder's split or a
JSONL file, validated (0/1 labels of one label type), and the shuffled-label control's copies."""
from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path

from stepwiser.errors import StepwiserError
from stepwiser.io.records import JudgeExample, read_records


def data_file(path: str | os.PathLike, split: str = "train") -> Path:
    """A judge-data folder (-> its `<split>.jsonl`) or a JSONL file itself."""
    p = Path(path)
    if p.is_dir():
        p = p / f"{split}.jsonl"
    if not p.is_file():
        raise StepwiserError(f"{p}: not found; give a judge-data output folder or a JSONL file")
    return p


def load_judge_examples(path: str | os.PathLike) -> list[JudgeExample]:
    """The C2 judge examples of a judge-data folder or file; labels must be 0/1 of one label type."""
    f = data_file(path)
    examples = read_records(f, JudgeExample)
    if not examples:
        raise StepwiserError(f"{f}: no judge examples")
    bad = [e.key for e in examples if e.label not in (0, 1) or isinstance(e.label, bool)]
    if bad:
        raise StepwiserError(f"{f}: label must be 0 or 1 (example {bad[0]!r})")
    types = sorted({e.label_type for e in examples if e.label_type})
    if len(types) > 1:
        raise StepwiserError(f"{f}: mixes label types {', '.join(types)}; train on one")
    return examples


def shuffled_labels(examples: list, seed: int) -> list:
    """Copies of `examples` with their labels permuted (seeded): the shuffled-label control keeps the
    class balance and the inputs, and breaks every link between input and label."""
    labels = [e.label for e in examples]
    random.Random(f"shuffle-labels:{seed}").shuffle(labels)
    return [dataclasses.replace(e, label=y) for e, y in zip(examples, labels)]


def label_type_of(examples) -> str | None:
    types = {getattr(e, "label_type", None) for e in examples} - {None, ""}
    return types.pop() if len(types) == 1 else None
