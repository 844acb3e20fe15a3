"""Stage `init-model`: a randomly initialised micro model folder (docs/METHOD.md section 5).

The folder holds config.json, generation_config.json and model.safetensors (a `LlamaForCausalLM` of
`stepwiser.models.micro.SIZES`, tied embeddings), the micro tokenizer (tokenizer.json,
tokenizer_config.json, chat_template.jinja) and manifest.json (C7: config and summary). It loads with
`AutoModelForCausalLM` / `AutoTokenizer` and with every engine.

The vocabulary comes from a fixed corpus (`micro_corpus`): `vocab_problems` problems for each of the
`CORPUS_SETTINGS` of `stepwiser.data.synth` (seeds and difficulties) and a synthetic bench for each,
written out as every text the pipeline produces for the micro domain (`domain_texts`: the policy
prompt and solution, judge prompts with and without CoT, with and without history, the format
warm-up completions (templated and policy-written, a solution's chunks standing in for the policy's
steps), verdicts, the discriminative chat, the ProcessBench critic prompt). The corpus
does not depend on `--seed`, which sets the weights only: models of any size and seed built with
the same `vocab_problems` share one vocabulary. `--tokenizer DIR` reuses the micro tokenizer of a
folder instead, after checking that its vocabulary covers the domain's texts (an error names the
missing pieces). The same seed gives byte-identical weights.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from stepwiser.core.chunks import parse_chunks, render_chunks
from stepwiser.data.prompts import policy_messages
from stepwiser.data.synth import generate_bench, generate_problems
from stepwiser.errors import StepwiserError
from stepwiser.io.config import check_choices, option
from stepwiser.io.records import Problem, RunManifest
from stepwiser.judges.base import JudgeItem
from stepwiser.judges.critic import critic_messages
from stepwiser.judges.prompts import disc_messages, judge_messages
from stepwiser.models.micro import (
    DEFAULT_POSITIONS,
    SIZES,
    build_tokenizer,
    check_coverage,
    init_model,
    load_micro_tokenizer,
    parameter_count,
)

# (seed, min_steps, max_steps, max_operand, max_value) of the vocabulary corpus
CORPUS_SETTINGS = ((1001, 3, 4, 10, 100), (1002, 3, 6, 15, None), (1003, 1, 8, 30, None),
                   (1004, 2, 5, 20, 400))
VERDICTS = ("\\boxed{Positive}", "\\boxed{Negative}")
CHECK_PROBLEMS = 300  # problems per setting the coverage check of a reused tokenizer renders


@dataclass
class InitModelConfig:
    out: str = option(help="Output model folder (must be empty or absent; --overwrite replaces it).", short="-o")
    size: str = option("micro-1m", "Model size: micro-1m (hidden 128, 4 layers) or micro-6m (hidden 256, "
                                   "6 layers).", choices=tuple(SIZES))
    seed: int = option(0, "Seed of the random initial weights (same seed -> identical weights).")
    tokenizer: str | None = option(None, "Reuse the micro tokenizer of this folder (checked against the "
                                         "domain's texts) instead of building one.", path="dir")
    vocab_problems: int = option(2000, f"Problems per corpus setting ({len(CORPUS_SETTINGS)} settings) the "
                                       "vocabulary is built from.")
    max_positions: int = option(DEFAULT_POSITIONS, "Context length (position embeddings) of the model.")

    def __post_init__(self):
        check_choices(self)
        if self.vocab_problems < 1:
            raise ValueError(f"vocab_problems must be >= 1, got {self.vocab_problems}")
        if self.max_positions < 16:
            raise ValueError(f"max_positions must be >= 16, got {self.max_positions}")


# --------------------------------------------------------------------------- the domain's texts

def problem_texts(p: Problem, k: int) -> list[str]:
    """The texts the pipeline writes for problem `p`; `k` (its index) picks which chunk is judged,
    with or without CoT, and the discriminative chat's labels, so a corpus covers every variant."""
    from stepwiser.train.warmup import warmup_completion
    from stepwiser.train.warmup_policy import policy_step

    chunks = parse_chunks(p.solution)
    i = k % len(chunks)
    item = JudgeItem(p.problem, chunks[:i], chunks[i])
    cot = (k // len(chunks)) % 2 == 0
    labels = [(k >> j) & 1 for j in range(len(chunks))]
    texts = [m["content"] for m in policy_messages(p.problem)] + [p.solution]
    texts += [m["content"] for m in judge_messages(item, cot)] + [warmup_completion(item, cot, seed=k)]
    own = [policy_step(f"<chunk>{c}") for c in (chunks[i], chunks[k % len(chunks) - 1])][:k % 3]
    texts.append(warmup_completion(item, True, seed=k, steps=own))   # the policy-written warm-up
    texts += [m["content"] for m in disc_messages(p.problem, chunks, labels)]
    return texts


def bench_texts(item: dict, k: int) -> list[str]:
    """The texts written for a synthetic bench item: the critic prompt, the solution as chunks and
    the judge prompt of its labelled (or a clean) chunk."""
    steps = item["steps"]
    i = item["label"] if item["label"] >= 0 else k % len(steps)
    judged = JudgeItem(item["problem"], steps[:i], steps[i])
    texts = [m["content"] for m in critic_messages(item["problem"], steps)] + [render_chunks(steps)]
    return texts + [m["content"] for m in judge_messages(judged, k % 2 == 0)]


def domain_texts(problems: list[Problem], bench: list[dict] = ()) -> list[str]:
    """Every kind of text the pipeline writes for these problems and bench items, plus the verdicts."""
    texts = list(VERDICTS)
    for k, p in enumerate(problems):
        texts += problem_texts(p, k)
    for k, item in enumerate(bench):
        texts += bench_texts(item, k)
    return texts


def micro_corpus(n: int, settings=CORPUS_SETTINGS) -> tuple[list[Problem], list[dict]]:
    """(problems, bench items): `n` problems and a bench of max(n // 10, 4) items per setting."""
    problems, bench = [], []
    for seed, lo, hi, max_operand, max_value in settings:
        kw = {"min_steps": lo, "max_steps": hi, "max_operand": max_operand, "max_value": max_value}
        ps = generate_problems(n, seed, **kw)
        test, dev = generate_bench(max(n // 10, 4), seed, exclude_texts={p.problem for p in ps}, **kw)
        problems += ps
        bench += test + dev
    return problems, bench


# --------------------------------------------------------------------------- measuring

def judge_prompt_tokens(tokenizer, problems: list[Problem]) -> int:
    """Tokens of the longest CoT judge prompt (chat template applied) of these problems: the one for
    each solution's last chunk, which carries the whole history."""
    texts = []
    for p in problems:
        chunks = parse_chunks(p.solution)
        item = JudgeItem(p.problem, chunks[:-1], chunks[-1])
        texts.append(tokenizer.apply_chat_template(judge_messages(item, True), tokenize=False,
                                                   add_generation_prompt=True))
    return max((len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]), default=0)


def tokens_per_solution(tokenizer, problems: list[Problem]) -> float:
    ids = tokenizer([p.solution for p in problems], add_special_tokens=False)["input_ids"]
    return round(sum(map(len, ids)) / max(len(ids), 1), 1)


# --------------------------------------------------------------------------- the stage

def prepare_out(out: str, overwrite: bool) -> Path:
    """The output folder, empty: a non-empty one is refused without `overwrite` (then removed)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise StepwiserError(f"{path} is a file; give a folder for the model")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise StepwiserError(f"{path} is not empty; use a new folder, or --overwrite to replace it")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def micro_tokenizer(cfg: InitModelConfig, problems: list[Problem], bench: list[dict]):
    """The tokenizer of the run: built from the corpus, or the reused one after the coverage check."""
    if cfg.tokenizer is None:
        return build_tokenizer(domain_texts(problems, bench), max_length=cfg.max_positions)
    tokenizer = load_micro_tokenizer(cfg.tokenizer)
    check_coverage(tokenizer, domain_texts(problems, bench), what=f"the micro domain's texts (tokenizer "
                                                                   f"{cfg.tokenizer})")
    tokenizer.model_max_length = cfg.max_positions
    return tokenizer


def run_init_model(cfg: InitModelConfig, overwrite: bool = False) -> dict:
    """Write the model folder; returns the summary (also stored in the manifest)."""
    t0 = time.time()
    n = cfg.vocab_problems if cfg.tokenizer is None else min(cfg.vocab_problems, CHECK_PROBLEMS)
    problems, bench = micro_corpus(n)
    tokenizer = micro_tokenizer(cfg, problems, bench)  # a reused tokenizer is checked before writing
    longest = judge_prompt_tokens(tokenizer, problems)
    if longest >= cfg.max_positions:
        raise StepwiserError(f"the longest judge prompt of the micro domain is {longest} tokens, more than "
                             f"--max-positions {cfg.max_positions}; raise it")
    out = prepare_out(cfg.out, overwrite)
    manifest = RunManifest.open(out, "init-model", dataclasses.asdict(cfg))
    model = init_model(cfg.size, tokenizer, cfg.seed, cfg.max_positions)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    summary = {"size": cfg.size, "seed": cfg.seed, "parameters": parameter_count(model),
               "vocab_size": len(tokenizer), "max_positions": cfg.max_positions,
               "corpus_problems": len(problems), "corpus_bench_items": len(bench),
               "tokens_per_solution": tokens_per_solution(tokenizer, problems),
               "longest_judge_prompt_tokens": longest, "seconds": round(time.time() - t0, 1)}
    manifest.finish(summary)
    return summary
