"""Discriminative SFT (`--method disc-sft`, the paper's discriminative baseline): multi-turn chats
(`disc_messages`), one chunk per user turn, the assistant answers "+" or "-"; only the assistant turns are
trained (`stepwiser.train.sft.tokenize_multiturn` builds the mask by rendering growing prefixes, since ChatML
templates have no generation markers). The result is scored by
`stepwiser.judges.discriminative.DiscriminativeJudge` (P(+))."""
from __future__ import annotations

import random
from pathlib import Path

from stepwiser.data.judge_examples import data_file
from stepwiser.errors import StepwiserError
from stepwiser.io.records import iter_jsonl
from stepwiser.judges.prompts import disc_messages
from stepwiser.train.judge_config import JudgeTrainConfig
from stepwiser.train.judge_sft import run_judge_sft, sft_config, write_data


def load_disc_records(path) -> list[dict]:
    """`judge-data --format disc` records: `problem`, `chunks` and their 0/1 `labels` (one per chunk)."""
    f = data_file(path)
    out = []
    for lineno, obj in iter_jsonl(f):
        where = f"{f}:{lineno}"
        missing = [k for k in ("problem", "chunks", "labels") if k not in obj]
        if missing:
            raise StepwiserError(f"{where}: a disc record needs problem, chunks and labels (missing "
                                 f"{', '.join(missing)}); write it with `judge-data --format disc`")
        chunks, labels = obj["chunks"], obj["labels"]
        if not isinstance(chunks, list) or not isinstance(labels, list) or len(chunks) != len(labels) or not chunks:
            raise StepwiserError(f"{where}: chunks and labels must be non-empty lists of the same length")
        if any(y not in (0, 1) or isinstance(y, bool) for y in labels):
            raise StepwiserError(f"{where}: labels must be 0 or 1")
        out.append(obj)
    if not out:
        raise StepwiserError(f"{f}: no disc records")
    return out


def shuffled_disc_labels(records: list[dict], seed: int) -> list[dict]:
    """Copies of disc records with all their chunk labels permuted across records (the shuffled control)."""
    flat = [y for r in records for y in r["labels"]]
    random.Random(f"shuffle-labels:{seed}").shuffle(flat)
    out, i = [], 0
    for r in records:
        out.append({**r, "labels": flat[i:i + len(r["labels"])]})
        i += len(r["labels"])
    return out


def disc_conversations(records: list[dict]) -> list[dict]:
    """Multi-turn training chats: one chunk per user turn, the assistant answers + (label 1) or - (label 0)."""
    return [{"messages": disc_messages(r["problem"], r["chunks"], r["labels"])} for r in records]


def train_disc_sft(cfg: JudgeTrainConfig, records: list[dict]) -> Path:
    """SFT of the discriminative judge into cfg.out (assistant turns only in the loss)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data = write_data(out / "disc_data.jsonl", disc_conversations(records))
    types = {r.get("label_type") for r in records} - {None}
    return run_judge_sft(sft_config(cfg, out, data), "train-judge", "discriminative", method="disc-sft",
                         label_type=types.pop() if len(types) == 1 else None, base_model=cfg.model, threshold=0.5,
                         shuffled_labels=cfg.shuffle_labels)
