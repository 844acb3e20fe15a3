"""The micro model family against SmolLM2-135M, side by side in one run (one torch thread, CPU).

    .venv/bin/python benchmarks/micro.py                       # a fresh micro-1m (init-model) vs SmolLM2
    .venv/bin/python benchmarks/micro.py --micro runs/micro/policy/final --skip-smollm2

1. Generation: new tokens/s of micro-1m and of the bundled SmolLM2-135M-Instruct at the same batch
   (policy prompts of micro problems, temperature 1.0, hf engine), and their ratio.
2. SFT step: forward + backward + AdamW step of micro-1m on a batch of chunk-tagged solutions (the
   model's compute of one `train-policy` step; TRL's per-step overhead is not in it).
3. GRPO step, split: generation (prompts x generations completions of a judge prompt) and optimisation
   (forward + backward over those prompt + completion sequences), micro-1m (model compute, no TRL).
4. Annotation: `annotate` (M rollouts, early stopping off) on samples that share their first chunks
   (gold solutions with a corrupted copy per problem), with and without prefix sharing: rollouts, wall
   time, rollouts/s and Q slots estimated per second.
Prints markdown tables; every figure is measured in this run.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import set_threads
from stepwiser.data.prompts import policy_messages
from stepwiser.data.synth import generate_problems
from stepwiser.engines import Request, SamplingParams, make_engine


def fresh_micro(out: Path) -> str:
    from stepwiser.stages.init_model import InitModelConfig, run_init_model

    run_init_model(InitModelConfig(out=str(out), size="micro-1m", seed=0, vocab_problems=300))
    return str(out)


def tokens_per_s(model: str, problems, batch: int, max_tokens: int) -> float:
    engine = make_engine("hf", model, batch_size=batch, device="cpu")
    reqs = [Request(messages=policy_messages(p.problem), seed=i) for i, p in enumerate(problems[:batch])]
    engine.generate(reqs[:1], SamplingParams(max_tokens=2))   # warm-up
    t0 = time.perf_counter()
    outs = engine.generate(reqs, SamplingParams(n=1, temperature=1.0, max_tokens=max_tokens, seed=0))
    seconds = time.perf_counter() - t0
    return sum(c.completion_tokens for cs in outs for c in cs) / seconds


def train_step_seconds(model_dir: str, texts: list[str], steps: int = 3) -> float:
    """Seconds of one forward + backward + AdamW step on `texts` (padded batch), median of `steps`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def chat_texts(model_dir: str, pairs) -> list[str]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return [tok.apply_chat_template(p + [{"role": "assistant", "content": c}], tokenize=False) for p, c in pairs]


def grpo_split(model_dir: str, problems, prompts: int, generations: int, max_tokens: int) -> tuple[float, float]:
    from stepwiser.judges.base import JudgeItem
    from stepwiser.judges.prompts import judge_messages

    chunks = [p.solution.split("</chunk>")[0].replace("<chunk>", "") for p in problems[:prompts]]
    msgs = [judge_messages(JudgeItem(p.problem, [], c)) for p, c in zip(problems, chunks)]
    engine = make_engine("hf", model_dir, batch_size=prompts * generations, device="cpu")
    t0 = time.perf_counter()
    outs = engine.generate([Request(messages=m, seed=i) for i, m in enumerate(msgs)],
                           SamplingParams(n=generations, temperature=1.0, max_tokens=max_tokens, seed=0))
    gen = time.perf_counter() - t0
    texts = chat_texts(model_dir, [(m, c.text) for m, cs in zip(msgs, outs) for c in cs])
    return gen, train_step_seconds(model_dir, texts, steps=1)


def annotation(model_dir: str, problems, rollouts: int, max_tokens: int) -> list[tuple]:
    from stepwiser.core.chunks import parse_chunks
    from stepwiser.io.records import Sample, write_jsonl
    from stepwiser.stages.annotate import AnnotateConfig, run_annotate

    tmp = Path(tempfile.mkdtemp(prefix="micro-bench-"))
    samples = []
    for p in problems:
        gold = parse_chunks(p.solution, "tags")
        bad = gold[:1] + [gold[1].replace("=", "= 1 +", 1)] + gold[2:]   # shares the first chunk with gold
        samples += [Sample(problem_id=p.id, sample_id=i, response=p.solution, chunks=c, correct=i == 0)
                    for i, c in enumerate((gold, bad))]
    write_jsonl(tmp / "problems.jsonl", problems)
    write_jsonl(tmp / "samples.jsonl", samples)
    engine = make_engine("hf", model_dir, batch_size=64, device="cpu")
    rows = []
    for share in (False, True):
        cfg = AnnotateConfig(policy=model_dir, samples=str(tmp / "samples.jsonl"), problems=str(tmp / "problems.jsonl"),
                             out=str(tmp / f"ann-{share}.jsonl"), rollouts=rollouts, max_tokens=max_tokens,
                             share_prefixes=share, labels=("rel_effective",))
        t0 = time.perf_counter()
        s = run_annotate(cfg, engine, progress=False)
        sec = time.perf_counter() - t0
        rows.append((share, s["rollouts_this_run"], sec, s["q_slots"], s["saved_by_sharing"]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--micro", help="a micro model folder (default: a fresh init-model micro-1m)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--skip-smollm2", action="store_true")
    ap.add_argument("--annotate-problems", type=int, default=24)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    set_threads(args.threads)
    problems = generate_problems(max(args.batch, args.annotate_problems, 32), 11, 3, 4, 10, max_value=100)
    micro = args.micro or fresh_micro(Path(tempfile.mkdtemp(prefix="micro-1m-")) / "m")
    print(f"micro model: {micro}; batch {args.batch}, {args.max_tokens} new tokens, {args.threads} thread(s)\n")
    tps = tokens_per_s(micro, problems, args.batch, args.max_tokens)
    print("| generation (hf, T=1.0) | new tokens/s |\n|---|---|")
    print(f"| micro-1m | {tps:.0f} |")
    if not args.skip_smollm2:
        ref = tokens_per_s("smollm2-135m-instruct", problems, args.batch, args.max_tokens)
        print(f"| SmolLM2-135M | {ref:.0f} |\n| ratio micro / SmolLM2 | {tps / ref:.1f}x |")
    sft = train_step_seconds(micro, chat_texts(micro, [(policy_messages(p.problem), p.solution)
                                                      for p in problems[:32]]))
    gen, opt = grpo_split(micro, problems, 16, 8, 48)
    print(f"\n| step (micro-1m, model compute) | seconds |\n|---|---|\n| SFT, 32 solutions | {sft:.2f} |")
    print(f"| GRPO generation, 16 prompts x 8 | {gen:.2f} |\n| GRPO optimisation, 128 sequences | {opt:.2f} |")
    print("\n| annotation (M=16, off) | rollouts | seconds | rollouts/s | Q slots/s | slots saved |\n|---|---|---|---|---|---|")
    for share, n, sec, slots, saved in annotation(micro, problems[:args.annotate_problems], 16, 48):
        print(f"| sharing {'on' if share else 'off'} | {n} | {sec:.1f} | {n / sec:.0f} | {slots / sec:.1f} | "
              f"{100 * saved:.0f}% |")


if __name__ == "__main__":
    main()
