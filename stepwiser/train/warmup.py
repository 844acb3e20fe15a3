"""The label-agnostic format warm-up (`--method warmup`, and `format_warmup_steps` before GRPO): SFT that
teaches the output format, not the task. It is not a learning-rate warm-up (that is `lr_warmup_ratio`).

Each training example's prompt gets a templated completion whose verdict is drawn 50/50 from a seeded hash
of (seed, problem, history, chunk): it never reads the label, and it is not derived from checking the chunk
either (that would be task knowledge). The CoT template restates the chunk's goal (its first sentence), the
results it states (`stepwiser.core.arith.chunk_values`, quoted, not recomputed) and its place in the
solution, then gives the random verdict; the no-CoT one is the bare verdict. So after the warm-up the judge
writes short well-formed judgments whose verdicts are at chance, which gives GRPO groups with reward
variance from the first step. `--method warmup` with the same settings is the warm-up-only control (it
equals OUT/warmup/final of the GRPO run).

With `warmup_analysis: policy` the CoT analysis is written by the model, never by an oracle: the chunk
policy's own next step(s) from the same history (`stepwiser.train.warmup_policy`), then the results the
new chunk states (quoted), then the same random verdict. It holds no value computed here, no step count,
no reference answer, label or Q-value. Only `format_warmup_steps x global_batch` examples (seeded; all
of them when fewer, or with packing) are written, since that is what the SFT steps read.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

from stepwiser.core.arith import chunk_values
from stepwiser.io.records import content_hash
from stepwiser.judges.base import JudgeItem
from stepwiser.judges.prompts import judge_messages
from stepwiser.train.dist import is_main
from stepwiser.train.grpo import judge_item
from stepwiser.train.judge_config import JudgeTrainConfig
from stepwiser.train.judge_sft import run_judge_sft, sft_config, write_data
from stepwiser.train.warmup_policy import policy_steps

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


# in words of the micro vocabulary (its corpus has no chunk without a value; tests/train/test_warmup_policy.py)
NO_RESULT = "It states no calculation; a chunk with no calculation can still be correct."


def policy_analysis(item: JudgeItem, steps: list[str]) -> str:
    """The analysis of the policy-written warm-up: the policy's own steps from the same point, then the
    results the new chunk states (quoted), then the lead-in of the verdict."""
    lines = [("With the same previous reasoning, my next step is: " if not i else "In another way, my next step is: ")
             + s for i, s in enumerate(steps)] or ["With the same previous reasoning, my next step is: (none)"]
    values = chunk_values(item.chunk)
    lines.append("The new chunk states: " + ", ".join(str(v) for v in values) + "." if values else NO_RESULT)
    lines.append("Checking the new chunk against my next step, the problem and the previous steps, my judgment is:")
    return "\n".join(lines)


def warmup_completion(item: JudgeItem, cot: bool = True, seed: int = 0, steps: list[str] | None = None) -> str:
    """A label-agnostic judgment of `item` (see the module docstring): templated, or with `steps` (the
    policy's own steps from the same point) the policy-written analysis."""
    verdict = warmup_verdict(item, seed)
    boxed = "\\boxed{Positive}" if verdict else "\\boxed{Negative}"
    if not cot:
        return boxed
    if steps is not None:
        return policy_analysis(item, steps) + f"\n{boxed}"
    rng = random.Random(content_hash([seed, "phrasing", item.chunk], 8))
    values = chunk_values(item.chunk)
    lines = [rng.choice(["Goal of the new chunk: ", "The new chunk aims to continue with: ",
                         "What the new chunk does: "]) + _goal(item.chunk),
             (f"It follows {len(item.history)} previous step{'s' if len(item.history) > 1 else ''}."
              if item.history else "It is the first step of the solution.")]
    if values:
        lines.append("Results it states: " + ", ".join(str(v) for v in values) + ".")
    else:
        lines.append(NO_RESULT)
    lines.append(rng.choice([("Checking its logic, method and calculations against the problem and the "
                              "previous steps, my judgment is:"),
                             "After checking it against the problem and the previous steps, my judgment is:"]))
    return "\n".join(lines) + f"\n{boxed}"


def warmup_conversations(examples, cot: bool = True, seed: int = 0, steps: list | None = None,
                         prompt: str = "full") -> list[dict]:
    """Prompt-completion conversations of the format warm-up (labels are not read); `steps`: the policy's
    steps of each example (the policy-written analyses)."""
    rows = []
    for k, ex in enumerate(examples):
        item = judge_item(ex)
        text = warmup_completion(item, cot, seed, None if steps is None else steps[k])
        rows.append({"prompt": judge_messages(item, cot, prompt), "completion": [{"role": "assistant", "content": text}]})
    return rows


def warmup_subset(examples, n: int | None, seed: int) -> list:
    """`n` of the examples (seeded, in file order), or all of them when n is None or not smaller."""
    if n is None or n >= len(examples):
        return list(examples)
    keep = sorted(random.Random(f"warmup-subset:{seed}").sample(range(len(examples)), n))
    return [examples[i] for i in keep]


def policy_rows(cfg: JudgeTrainConfig, examples, out: Path, cot: bool, engine=None) -> list[dict]:
    """The policy-written warm-up conversations (drawn on the main process; [] elsewhere)."""
    if not is_main():
        return []
    if not cot:   # a bare verdict has no analysis: no policy needed
        return warmup_conversations(examples, cot, cfg.seed, prompt=cfg.judge_prompt)
    items = [judge_item(ex) for ex in examples]
    styles = [ex.extra.get("chunk_style", "tags") for ex in examples]
    return warmup_conversations(examples, cot, cfg.seed, policy_steps(cfg, items, styles, out, engine),
                                prompt=cfg.judge_prompt)


def train_warmup(cfg: JudgeTrainConfig, examples, out: Path, cot: bool, policy_engine=None) -> Path:
    """Label-agnostic format warm-up SFT into `out` (final model in out/final, with judge metadata):
    `format_warmup_steps` steps (else `max_steps`) at `format_warmup_lr`. With `warmup_analysis` policy
    the analyses come from `policy_engine` (an Engine or a factory; default: hf on `warmup_policy`)."""
    steps = cfg.format_warmup_steps or cfg.max_steps
    out.mkdir(parents=True, exist_ok=True)
    if cfg.warmup_analysis == "policy":
        used = warmup_subset(examples, None if cfg.packing or not steps else steps * cfg.global_batch, cfg.seed)
        rows = policy_rows(cfg, used, out, cot, policy_engine)
    else:
        rows = warmup_conversations(examples, cot, cfg.seed, prompt=cfg.judge_prompt)
    data = write_data(out / "warmup_data.jsonl", rows)
    scfg = sft_config(cfg, out, data, lr=cfg.format_warmup_lr, max_steps=steps)
    return run_judge_sft(scfg, "train-judge-warmup", "generative", cot=cot, method="warmup", label_type=None,
                         base_model=cfg.model, label_agnostic=True, prompt=cfg.judge_prompt)
