"""Rejection-sampling fine-tuning (`--method rft`, the paper's "no RL" ablation): sample k judgments per
training example from the model on any engine (`GenerativeJudge`), keep the distinct ones whose verdict
equals the label, optionally down-sample the majority label to 50/50 (`rft_balance`), and SFT on them."""
from __future__ import annotations

import random
from pathlib import Path

from stepwiser.core.verdict import parse_verdict
from stepwiser.data.judge_examples import label_type_of
from stepwiser.errors import StepwiserError
from stepwiser.io.records import JsonlWriter, content_hash, iter_jsonl
from stepwiser.judges.coverage import guard_judge
from stepwiser.judges.generative import GenerativeJudge
from stepwiser.judges.prompts import judge_messages
from stepwiser.train.grpo import judge_item
from stepwiser.train.judge_config import JudgeTrainConfig
from stepwiser.train.judge_sft import run_judge_sft, sft_config, write_data


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


def rft_conversations(examples, samples: list[dict], balance: bool = True, seed: int = 0, prompt: str = "full") -> tuple[list[dict], dict]:
    """SFT conversations from the sampled judgments whose verdict equals the label (distinct texts per
    example); with `balance`, the label with more kept judgments is down-sampled to the other's count
    (when one label kept none, nothing is dropped: `stats` shows the imbalance)."""
    if len(samples) != len(examples):
        raise StepwiserError(f"{len(samples)} sample records for {len(examples)} examples; sample them with rft_sample")
    kept = {0: [], 1: []}
    n_samples = 0
    for ex, s in zip(examples, samples):
        if s.get("key") != ex.key:
            raise StepwiserError(f"sample record {s.get('key')!r} is not that of example {ex.key!r}: samples must "
                                 "be in the order of the examples (as rft_sample returns them)")
        n_samples += len(s["texts"])
        for text in dict.fromkeys(t for t in s["texts"] if parse_verdict(t) == ex.label):
            kept[ex.label].append({"prompt": judge_messages(judge_item(ex), True, prompt),
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
    # on a micro model, an example its vocabulary cannot encode is left unjudged (counted), as in evaluation
    judge = guard_judge(GenerativeJudge(engine, cot=True, max_tokens=cfg.rft_max_tokens, seed=cfg.seed,
                                        temperature=cfg.rft_temperature, prompt=cfg.judge_prompt))
    tag = content_hash({"model": cfg.model, "k": cfg.rft_k, "max_tokens": cfg.rft_max_tokens,
                        "temperature": cfg.rft_temperature, "seed": cfg.seed})
    samples = rft_sample(examples, judge, cfg.rft_k, out / f"rft_samples-{tag}.jsonl", show=show)
    rows, stats = rft_conversations(examples, samples, cfg.rft_balance, cfg.seed, cfg.judge_prompt)
    stats["unjudged"] = sum(1 for o in samples if not o["texts"])
    if not rows:
        raise StepwiserError(f"RFT kept no judgment: none of the {stats['sampled']} sampled verdicts matched its "
                             "label (warm the judge up first, or raise --rft-k / --rft-max-tokens)")
    data = write_data(out / "rft_data.jsonl", rows)
    final = run_judge_sft(sft_config(cfg, out, data), "train-judge", "generative", cot=True, method="rft",
                          label_type=label_type_of(examples), base_model=cfg.model, rft=stats,
                          shuffled_labels=cfg.shuffle_labels, prompt=cfg.judge_prompt)
    return final, stats
