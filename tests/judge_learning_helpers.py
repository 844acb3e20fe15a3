"""A synthetic judge task whose label is learnable from the input, a label-agnostic format warm-up and a
short GRPO run of a micro judge (tests/train/test_judge_learning.py)."""
from __future__ import annotations

import os
import random
import re
import shutil

from stepwiser.data.judge_examples import shuffled_labels
from stepwiser.data.synth import generate_problems
from stepwiser.io.records import JudgeExample

VERDICTS = ("\\boxed{Negative}", "\\boxed{Positive}")


def corrupt(chunk: str, rng: random.Random, mode: str) -> str:
    """The chunk with the result of its `a op b = c` replaced by a wrong value."""
    m = re.search(r"= (\d+)", chunk)
    c = int(m.group(1))
    if mode == "zeros":       # c then twelve 0 digits: no right example has a 0 anywhere (see task_examples)
        wrong = int(str(c) + "0" * 12)
    elif mode == "zero":      # x 100
        wrong = c * 100
    elif mode == "digits":      # a three-digit result: impossible with these operands (values <= 81)
        wrong = rng.randint(100, 999)
    else:                     # off by 1..5
        wrong = max(0, c + rng.choice([-1, 1]) * rng.randint(1, 5))
        wrong = wrong if wrong != c else c + 1
    return chunk[:m.start(1)] + str(wrong) + chunk[m.end(1):]


def task_examples(mode: str, n_train: int, n_val: int, seed: int = 0) -> tuple[list, list]:
    """First chunks of 2-step synth problems (no history); every other one with a wrong result (label 0,
    `corrupt`). Modes zero/zeros keep only problems without a 0 digit, so the corruption is a bag-of-tokens
    feature."""
    problems = generate_problems(3 * (n_train + n_val), seed, min_steps=2, max_steps=2, max_operand=9,
                                 max_value=81)
    first = [(p, re.findall(r"<chunk>(.*?)</chunk>", p.solution, re.DOTALL)[0]) for p in problems]
    if mode in ("zero", "zeros"):
        first = [(p, c) for p, c in first if "0" not in p.problem + c]
    rng = random.Random(f"judge-learning:{seed}")
    out = []
    for i, (p, chunk) in enumerate(first[:n_train + n_val]):
        label = i % 2
        if not label:
            chunk = corrupt(chunk, rng, mode)
        out.append(JudgeExample(key=f"{p.id}/0/0", problem_id=p.id, sample_id=0, chunk_index=0, problem=p.problem,
                                history=[], chunk=chunk, label=label, label_type="exact"))
    return out[:n_train], out[n_train:]


def warm_up(model_dir: str, out: str, examples: list, steps: int = 40, lr: float = 3e-3, batch: int = 16,
            seed: int = 0) -> str:
    """Label-agnostic format SFT: each prompt (no-CoT) gets a random verdict, then EOS. Returns `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from stepwiser.judges.base import JudgeItem
    from stepwiser.judges.prompts import judge_messages

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    rng = random.Random(f"warm-up:{seed}")
    seqs = []
    for e in examples:
        prompt = tok.apply_chat_template(judge_messages(JudgeItem(e.problem, [], e.chunk), cot=False),
                                         add_generation_prompt=True, tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        t_ids = tok(rng.choice(VERDICTS), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        seqs.append((p_ids, t_ids))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for step in range(steps):
        chosen = [seqs[rng.randrange(len(seqs))] for _ in range(batch)]
        width = max(len(p) + len(t) for p, t in chosen)
        ids = torch.full((batch, width), tok.pad_token_id)
        labels = torch.full((batch, width), -100)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for i, (p, t) in enumerate(chosen):
            ids[i, :len(p) + len(t)] = torch.tensor(p + t)
            labels[i, len(p):len(p) + len(t)] = torch.tensor(t)
            mask[i, :len(p) + len(t)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def run_grpo(model_dir: str, out: str, examples: list, lr: float, steps: int, shuffle: bool = False,
             gens: int = 8, prompts: int = 8, reward=None, **kw) -> str:
    """grpo-nocot from `model_dir`; returns the final model folder."""
    from stepwiser.train.grpo import train_grpo
    from stepwiser.train.judge_config import JudgeTrainConfig

    cfg = JudgeTrainConfig(method="grpo-nocot", model=model_dir, out=out, lr=lr, max_steps=steps,
                           per_device_batch=gens * prompts, num_generations=gens, optimizer_steps_per_generation=1,
                           max_completion_length=6, save_steps=10_000, seed=0, num_threads=1,
                           shuffle_labels=shuffle, **kw)
    data = shuffled_labels(examples, cfg.seed) if shuffle else examples
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    return str(train_grpo(cfg, data, reward=reward, show=False))


def evaluate(model_dir: str, examples: list) -> dict:
    """Greedy no-CoT judgments of `examples`: balanced accuracy, recalls, unparsed share."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from stepwiser.train.judge_metrics import validate

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    res = validate(model, tok, examples, cot=False, max_tokens=6)
    return {k: round(v, 3) for k, v in res.items()}
