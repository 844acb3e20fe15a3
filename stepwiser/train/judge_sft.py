"""The judge's supervised methods on `stepwiser.train.sft` (TRL SFTTrainer), and `train_judge`, which runs
any `train-judge` method.

- **Format warm-up** (`warmup`, and `warmup_steps` before GRPO): label-agnostic SFT that teaches the
  output format, not the task. Each training example's prompt gets a templated completion whose verdict is
  drawn 50/50 from a seeded hash of (seed, problem, history, chunk): it never reads the label, and it is
  not derived from checking the chunk either (that would be task knowledge). The CoT template restates the
  chunk's goal (its first sentence), the results it states (`stepwiser.core.arith.chunk_values`, quoted, not
  recomputed) and its place in the solution, then gives the random verdict; the no-CoT one is the bare
  verdict. So after the warm-up the judge writes short well-formed judgments whose verdicts are at chance,
  which gives GRPO groups with reward variance from the first step. `--method warmup` with the same
  settings is the warm-up-only control (it equals OUT/warmup/final of the GRPO run).
- **RFT** (rejection-sampling fine-tuning, the paper's "no RL" ablation): sample k judgments per training
  example from the model on any engine (`GenerativeJudge`), keep the distinct ones whose verdict equals
  the label, optionally down-sample the majority label to 50/50 (`rft_balance`), and SFT on them.
- **Discriminative SFT** (`disc-sft`): multi-turn chats (`disc_messages`), one chunk per user turn, the
  assistant answers "+" or "-"; only the assistant turns are trained (`sft.tokenize_multiturn` builds the
  mask by rendering growing prefixes, since ChatML templates have no generation markers). The result is
  scored by `stepwiser.judges.discriminative.DiscriminativeJudge` (P(+)).
"""
from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

from stepwiser.core.arith import chunk_values
from stepwiser.errors import StepwiserError
from stepwiser.judges.generative import GenerativeJudge
from stepwiser.judges.base import JudgeItem, write_judge_meta
from stepwiser.judges.prompts import disc_messages, judge_messages
from stepwiser.core.verdict import parse_verdict
from stepwiser.io.records import JsonlWriter, content_hash, file_hash, iter_jsonl, write_jsonl
from stepwiser.train.grpo import (
    GRPO_METHODS,
    JudgeTrainConfig,
    data_file,
    judge_item,
    label_type_of,
    load_judge_examples,
    shuffled_labels,
    train_grpo,
)
from stepwiser.train.sft import SFTTrainConfig, load_conversations, train_sft

# --------------------------------------------------------------------------- SFT settings


def sft_config(cfg: JudgeTrainConfig, out: Path, data: Path, *, model: str | None = None, lr: float | None = None,
               max_steps: int | None = None) -> SFTTrainConfig:
    """The SFT run of a judge method (batches in sequences: `global_batch` per optimiser step)."""
    return SFTTrainConfig(
        model=model or cfg.model, out=str(out), data=str(data), lr=lr or cfg.learning_rate, epochs=cfg.epochs,
        max_steps=max_steps or cfg.max_steps, per_device_batch=min(cfg.per_device_batch, cfg.global_batch),
        grad_accum=None, global_batch=cfg.global_batch, packing=cfg.packing, max_length=cfg.max_length,
        lora=cfg.lora, lora_r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        lora_target_modules=cfg.lora_target_modules, bf16=cfg.bf16, seed=cfg.seed,
        warmup_ratio=cfg.lr_warmup_ratio, scheduler=cfg.lr_scheduler, weight_decay=cfg.weight_decay,
        gradient_checkpointing=cfg.gradient_checkpointing, logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit, resume=cfg.resume,
        num_threads=cfg.num_threads)


def _write_data(path: Path, rows: list[dict]) -> Path:
    """Write derived training data (hashed as the SFT run's input); untouched when the content is the same."""
    tmp = path.with_name(path.name + ".new")
    write_jsonl(tmp, rows)
    if path.exists() and file_hash(path) == file_hash(tmp):
        tmp.unlink()
    else:
        tmp.replace(path)
    return path


def _run_sft(cfg: SFTTrainConfig, stage: str) -> Path:
    return train_sft(cfg, load_conversations(cfg.data), stage=stage)


def _run_judge_sft(cfg: SFTTrainConfig, stage: str, kind: str, **meta) -> Path:
    """SFT a judge: its metadata goes into the run folder first (for `export-judge` of any checkpoint), then
    into the final model."""
    write_judge_meta(cfg.out, kind, **meta)
    final = _run_sft(cfg, stage)
    write_judge_meta(final, kind, **meta)
    return final


# --------------------------------------------------------------------------- format warm-up

_SENTENCE = re.compile(r"(.+?[.!?:])(\s|$)", re.DOTALL)


def _goal(chunk: str, max_words: int = 25) -> str:
    text = re.sub(r"\s+", " ", chunk).strip()
    m = _SENTENCE.match(text)
    words = (m.group(1) if m else text).split()
    return " ".join(words[:max_words]) + (" ..." if len(words) > max_words else "")


def warmup_verdict(item: JudgeItem, seed: int) -> int:
    """The warm-up verdict of an item: 1 or 0 with probability 1/2 each, from a hash of the item's text
    (never its label), so it is reproducible and label-agnostic."""
    return int(content_hash([seed, "warmup", item.problem, list(item.history), item.chunk], 8), 16) % 2


def warmup_completion(item: JudgeItem, cot: bool = True, seed: int = 0) -> str:
    """A templated, label-agnostic judgment of `item` (see the module docstring)."""
    verdict = warmup_verdict(item, seed)
    boxed = "\\boxed{Positive}" if verdict else "\\boxed{Negative}"
    if not cot:
        return boxed
    rng = random.Random(content_hash([seed, "phrasing", item.chunk], 8))
    values = chunk_values(item.chunk)
    lines = [rng.choice(["Goal of the new chunk: ", "The new chunk aims to continue with: ",
                         "What the new chunk does: "]) + _goal(item.chunk),
             (f"It follows {len(item.history)} previous step{'s' if len(item.history) > 1 else ''}."
              if item.history else "It is the first step of the solution.")]
    if values:
        lines.append("Results it states: " + ", ".join(str(v) for v in values) + ".")
    else:
        lines.append("It states no numerical result; a chunk without calculation can still be correct.")
    lines.append(rng.choice([("Checking its logic, method and calculations against the problem and the "
                              "previous steps, my judgment is:"),
                             "After checking it against the problem and the previous steps, my judgment is:"]))
    return "\n".join(lines) + f"\n{boxed}"


def warmup_conversations(examples, cot: bool = True, seed: int = 0) -> list[dict]:
    """Prompt-completion conversations of the format warm-up (labels are not read)."""
    rows = []
    for ex in examples:
        item = judge_item(ex)
        rows.append({"prompt": judge_messages(item, cot),
                     "completion": [{"role": "assistant", "content": warmup_completion(item, cot, seed)}]})
    return rows


def train_warmup(cfg: JudgeTrainConfig, examples, out: Path, cot: bool) -> Path:
    """Label-agnostic format warm-up SFT into `out` (final model in out/final, with judge metadata)."""
    steps = cfg.warmup_steps or cfg.max_steps
    out.mkdir(parents=True, exist_ok=True)
    data = _write_data(out / "warmup_data.jsonl", warmup_conversations(examples, cot, cfg.seed))
    scfg = sft_config(cfg, out, data, lr=cfg.warmup_lr, max_steps=steps)
    return _run_judge_sft(scfg, "train-judge-warmup", "generative", cot=cot, method="warmup", label_type=None,
                          base_model=cfg.model, label_agnostic=True)


# --------------------------------------------------------------------------- rejection-sampling fine-tuning

def rft_sample(examples, judge: GenerativeJudge, k: int, path: Path, batch: int = 64, show: bool = True) -> list[dict]:
    """Sample k judgments per example (resumable: one record per example key in `path`)."""
    from stepwiser.io.progress import StageProgress

    keys = [e.key for e in examples]
    if len(set(keys)) != len(keys):
        raise StepwiserError("judge examples have duplicate keys; regenerate them with judge-data")
    with JsonlWriter(path, key_fn=lambda o: o["key"]) as w:
        todo = [e for e in examples if e.key not in w]
        with StageProgress("rft sample", len(todo), "examples", enabled=None if show else False) as p:
            for i in range(0, len(todo), batch):
                part = todo[i:i + batch]
                for ex, j in zip(part, judge.judge([judge_item(e) for e in part], k=k)):
                    w.write({"key": ex.key, "label": ex.label, "texts": j.texts, "verdicts": j.verdicts,
                             "tokens": j.tokens})
                p.advance(len(part))
    got = {o["key"]: o for _, o in iter_jsonl(path)}
    return [got[e.key] for e in examples]


def rft_conversations(examples, samples: list[dict], balance: bool = True, seed: int = 0) -> tuple[list[dict], dict]:
    """SFT conversations from the sampled judgments whose verdict equals the label (distinct texts per
    example); with `balance`, the label with more kept judgments is down-sampled to the other's count
    (when one label kept none, nothing is dropped: `stats` shows the imbalance)."""
    kept = {0: [], 1: []}
    n_samples = 0
    for ex, s in zip(examples, samples):
        assert s["key"] == ex.key
        n_samples += len(s["texts"])
        for text in dict.fromkeys(t for t in s["texts"] if parse_verdict(t) == ex.label):
            kept[ex.label].append({"prompt": judge_messages(judge_item(ex), True),
                                   "completion": [{"role": "assistant", "content": text}]})
    stats = {"sampled": n_samples, "kept_positive": len(kept[1]), "kept_negative": len(kept[0])}
    if balance and kept[0] and kept[1]:
        n = min(len(kept[0]), len(kept[1]))
        rng = random.Random(seed)
        kept = {c: rng.sample(v, n) if len(v) > n else v for c, v in kept.items()}
    rows = kept[1] + kept[0]
    random.Random(seed).shuffle(rows)
    stats["trained"] = len(rows)
    return rows, stats


def train_rft(cfg: JudgeTrainConfig, examples, engine, show: bool = True) -> tuple[Path, dict]:
    """RFT: sample with `engine` (the current model), keep verdicts matching labels, SFT into cfg.out."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    judge = GenerativeJudge(engine, cot=True, max_tokens=cfg.rft_max_tokens, seed=cfg.seed,
                            temperature=cfg.rft_temperature)
    tag = content_hash({"model": cfg.model, "k": cfg.rft_k, "max_tokens": cfg.rft_max_tokens,
                        "temperature": cfg.rft_temperature, "seed": cfg.seed})
    samples = rft_sample(examples, judge, cfg.rft_k, out / f"rft_samples-{tag}.jsonl", show=show)
    rows, stats = rft_conversations(examples, samples, cfg.rft_balance, cfg.seed)
    if not rows:
        raise StepwiserError(f"RFT kept no judgment: none of the {stats['sampled']} sampled verdicts matched its "
                             "label (warm the judge up first, or raise --rft-k / --rft-max-tokens)")
    data = _write_data(out / "rft_data.jsonl", rows)
    final = _run_judge_sft(sft_config(cfg, out, data), "train-judge", "generative", cot=True, method="rft",
                           label_type=label_type_of(examples), base_model=cfg.model, rft=stats,
                           shuffled_labels=cfg.shuffle_labels)
    return final, stats


# --------------------------------------------------------------------------- discriminative SFT

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
    data = _write_data(out / "disc_data.jsonl", disc_conversations(records))
    types = {r.get("label_type") for r in records} - {None}
    return _run_judge_sft(sft_config(cfg, out, data), "train-judge", "discriminative", method="disc-sft",
                          label_type=types.pop() if len(types) == 1 else None, base_model=cfg.model, threshold=0.5,
                          shuffled_labels=cfg.shuffle_labels)


# --------------------------------------------------------------------------- any method

def train_judge(cfg: JudgeTrainConfig, engine=None, overwrite: bool = False, show: bool = True) -> Path:
    """Run `cfg.method` on `cfg.data`; return the judge model folder (cfg.out/final).

    grpo / grpo-nocot: format warm-up first when `warmup_steps` > 0 (into out/warmup), then GRPO from it.
    rft needs `engine` (a generation engine on cfg.model; the CLI builds it from --engine options)."""
    if not cfg.data:
        raise StepwiserError("no training data: give --data (a judge-data folder or JSONL file)")
    out = Path(cfg.out)
    if overwrite and out.exists():
        shutil.rmtree(out)
    if cfg.method == "disc-sft":
        records = load_disc_records(cfg.data)
        return train_disc_sft(cfg, shuffled_disc_labels(records, cfg.seed) if cfg.shuffle_labels else records)
    examples = load_judge_examples(cfg.data)
    if cfg.shuffle_labels and cfg.method != "warmup":
        examples = shuffled_labels(examples, cfg.seed)
    if cfg.method == "warmup":
        return train_warmup(cfg, examples, out, cfg.cot)
    if cfg.method == "rft":
        if engine is None:
            raise StepwiserError("rft needs a generation engine to sample judgments")
        return train_rft(cfg, examples, engine, show)[0]
    assert cfg.method in GRPO_METHODS
    init = None
    if cfg.warmup_steps:
        init = str(train_warmup(cfg, examples, out / "warmup", cfg.cot))
    return train_grpo(cfg, examples, init_model=init, show=show)

