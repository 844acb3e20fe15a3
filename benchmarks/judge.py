"""Judge throughput: judged chunks per second on each available engine, at k = 1 and k = 8.

    python benchmarks/judge.py                          # bundled SmolLM2, hf engine (+ vllm if importable)
    python benchmarks/judge.py --max-tokens 128 --ks 1,8 --items 16
    python benchmarks/judge.py --model Qwen/Qwen2.5-1.5B-Instruct --engines hf,vllm
    python benchmarks/judge.py --engines openai --base-url http://localhost:8000/v1

The items are `--items` chunks of micro-domain problems (`stepwiser.data.synth.generate_problems`): for
problem i the chunk at index i mod H of its chunk-tagged reference solution, with all chunks before
it as history. Each engine judges all items in one call of the judging API
(`GenerativeJudge.judge`, CoT prompt, greedy for k = 1, temperature 1.0 for k > 1, at most
`--max-tokens` per judgment) after a short warm-up call. Reported per engine and k: seconds,
judged chunks per second, judge samples per second, generated tokens per second, mean tokens per
sample and the share of samples with a parsable verdict. Prints a markdown table.

Then (unless `--no-grpo`) the GRPO step time on CPU, split into generation and optimisation: a cold
`stepwiser.train.grpo.train_grpo` run on the same model for `--grpo-steps` optimiser steps (default 2),
each generating its own batch (4 prompts x 4 generations, at most `--max-tokens` new tokens) and taking
one optimiser step on those 16 completions as 4 micro-batches of 4 (lr 1e-6; `--bf16` for bf16
autocast). The data are micro-domain reference chunks with seeded random labels (the reward is at
chance), written to a temporary folder with the run. Per step it prints, from the run's metrics.jsonl:
completions generated, generation_s, optimisation_s (step time minus generation), step_s and the mean
completion length, plus a mean row. As in docs/TRAIN_JUDGE.md "Measured on CPU":

    python benchmarks/judge.py --engines hf --ks 1 --max-tokens 96 --threads 2 --grpo-steps 2 [--bf16]
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import pick_engines, set_threads
from stepwiser.core.chunks import parse_chunks
from stepwiser.engines import make_engine
from stepwiser.judges.generative import GenerativeJudge
from stepwiser.judges.base import JudgeItem
from stepwiser.models.loading import DEFAULT_MODEL, resolve_model
from stepwiser.io.records import JudgeExample, write_jsonl
from stepwiser.data.synth import generate_problems

GRPO_BATCH = {"per_device_batch": 4, "grad_accum": 4, "num_generations": 4, "optimizer_steps_per_generation": 1}


def micro_items(count: int, seed: int = 0) -> list[JudgeItem]:
    """`count` judge items from micro-domain reference solutions (varied chunk positions)."""
    items = []
    for i, p in enumerate(generate_problems(count, seed)):
        chunks = parse_chunks(p.solution, "tags")
        at = i % len(chunks)
        items.append(JudgeItem(problem=p.problem, history=chunks[:at], chunk=chunks[at]))
    return items


def engine_options(name: str, args) -> dict:
    if name == "hf":
        return {"device": args.device, "dtype": args.dtype, "batch_size": args.batch_size}
    if name == "openai":
        return {"base_url": args.base_url}
    return {}


def judge_throughput(args, items: list[JudgeItem]) -> list[dict]:
    """One row per (engine, k): timings of judging all `items` with k samples each."""
    rows = []
    for name in args.engines:
        model = args.model if name == "openai" else resolve_model(args.model)
        engine = make_engine(name, model, **engine_options(name, args))
        GenerativeJudge(engine, max_tokens=2).judge(items[:1], k=1)   # warm-up (load, first kernels)
        judge = GenerativeJudge(engine, max_tokens=args.max_tokens, seed=args.seed)
        for k in args.ks:
            start = time.perf_counter()
            out = judge.judge(items, k=k)
            seconds = time.perf_counter() - start
            samples = len(items) * k
            tokens = sum(j.tokens for j in out)
            parsed = sum(len(j.verdicts) - j.unparsed for j in out)
            rows.append({"engine": name, "k": k, "items": len(items), "samples": samples, "seconds": seconds,
                         "chunks_per_s": len(items) / seconds, "samples_per_s": samples / seconds,
                         "tokens": tokens, "tokens_per_s": tokens / seconds, "tokens_per_sample": tokens / samples,
                         "prompt_tokens": sum(j.prompt_tokens for j in out) / len(out),
                         "parsed_pct": 100 * parsed / samples})
            print(f"  {name} k={k}: {len(items)} chunks, {tokens} tokens in {seconds:.1f}s", file=sys.stderr)
        engine.close()
    return rows


def print_table(rows: list[dict]) -> None:
    print("| engine | k | chunks | samples | seconds | chunks/s | samples/s | gen tokens/s | tokens/sample "
          "| mean prompt tokens | parsed % |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['engine']} | {r['k']} | {r['items']} | {r['samples']} | {r['seconds']:.1f} | "
              f"{r['chunks_per_s']:.3f} | {r['samples_per_s']:.2f} | {r['tokens_per_s']:.1f} | "
              f"{r['tokens_per_sample']:.1f} | {r['prompt_tokens']:.0f} | {r['parsed_pct']:.1f} |")


def micro_examples(count: int, seed: int = 0) -> list[JudgeExample]:
    """`count` judge examples: micro-domain reference chunks (as `micro_items`) with seeded random labels."""
    rng, out = random.Random(seed), []
    for i, p in enumerate(generate_problems(count, seed)):
        chunks = parse_chunks(p.solution, "tags")
        at = i % len(chunks)
        out.append(JudgeExample(key=f"{p.id}/0/{at}", problem_id=p.id, sample_id=0, chunk_index=at,
                                problem=p.problem, history=chunks[:at], chunk=chunks[at],
                                label=rng.randint(0, 1), label_type="rel_effective"))
    return out


def grpo_steps(args) -> list[dict]:
    """Run `args.grpo_steps` cold GRPO steps in a temporary folder; return their metrics.jsonl lines."""
    from stepwiser.data.judge_examples import load_judge_examples
    from stepwiser.train.grpo import train_grpo
    from stepwiser.train.judge_config import JudgeTrainConfig
    from stepwiser.train.judge_metrics import read_metrics

    prompts = GRPO_BATCH["per_device_batch"] * GRPO_BATCH["grad_accum"] // GRPO_BATCH["num_generations"]
    with tempfile.TemporaryDirectory(prefix="stepwiser-grpo-bench-") as tmp:
        data = Path(tmp) / "data" / "train.jsonl"
        write_jsonl(data, micro_examples(prompts * args.grpo_steps, args.seed))
        cfg = JudgeTrainConfig(model=args.model, out=str(Path(tmp) / "run"), data=str(data), method="grpo",
                               lr=1e-6, max_steps=args.grpo_steps, max_completion_length=args.max_tokens,
                               bf16=args.bf16, seed=args.seed, num_threads=args.threads,
                               save_steps=args.grpo_steps, save_total_limit=1, **GRPO_BATCH)
        start = time.perf_counter()
        train_grpo(cfg, load_judge_examples(data), overwrite=True, show=False)
        print(f"  grpo: {args.grpo_steps} steps in {time.perf_counter() - start:.1f}s (with loading and saving)",
              file=sys.stderr)
        rows = [r for r in read_metrics(cfg.out) if "step_s" in r]
    if len(rows) != args.grpo_steps:
        raise RuntimeError(f"expected {args.grpo_steps} timed steps in metrics.jsonl, got {len(rows)}")
    per_generation = GRPO_BATCH["per_device_batch"] * GRPO_BATCH["grad_accum"]  # x optimiser steps (1)
    for r in rows:
        r["completions"] = per_generation if "generation_s" in r else 0
    return rows


def print_grpo_table(rows: list[dict]) -> None:
    """One line per GRPO step and a mean row (a value missing on a step is left out of its mean)."""
    cols = (("completions", "{:.0f}"), ("generation_s", "{:.1f}"), ("optimisation_s", "{:.1f}"),
            ("step_s", "{:.1f}"), ("completion_length", "{:.1f}"))

    def cells(r: dict) -> str:
        return " | ".join(fmt.format(r[k]) if k in r else "-" for k, fmt in cols)

    print("| step | completions | generation_s | optimisation_s | step_s | completion tokens (mean) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['step']} | {cells(r)} |")
    mean = {k: sum(r[k] for r in rows if k in r) / n
            for k, _ in cols if (n := sum(k in r for r in rows))}
    print(f"| mean | {cells(mean)} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--engines", default=None, help="comma-separated; default: hf, plus vllm if "
                        "importable and openai if --base-url is given")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--batch-size", type=int, default=128, help="hf engine: sequences decoded together")
    parser.add_argument("--items", type=int, default=16, help="judged chunks")
    parser.add_argument("--ks", default="1,8", help="samples per chunk (comma-separated)")
    parser.add_argument("--max-tokens", type=int, default=256, help="most tokens per judgment")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (torch.set_num_threads)")
    parser.add_argument("--grpo", action=argparse.BooleanOptionalAction, default=True,
                        help="also time GRPO steps (generation vs optimisation); --no-grpo skips it")
    parser.add_argument("--grpo-steps", type=int, default=2, help="GRPO optimiser steps (each generates)")
    parser.add_argument("--bf16", action="store_true", help="GRPO: bf16 autocast")
    args = parser.parse_args(argv)
    if args.grpo_steps < 1:
        parser.error(f"--grpo-steps must be at least 1, got {args.grpo_steps}")
    args.ks = [int(k) for k in args.ks.split(",")]
    args.engines = pick_engines(args.engines, args.base_url)
    set_threads(args.threads)
    print(f"model: {args.model}; engines: {', '.join(args.engines)}; {args.items} chunks; max_tokens "
          f"{args.max_tokens}; load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    rows = judge_throughput(args, micro_items(args.items, args.seed))
    print("Judge throughput (CoT prompt; k = 1 greedy, k > 1 temperature 1.0; one judging call per row)\n")
    print_table(rows)
    if args.grpo:
        print(f"\nGRPO step on CPU ({args.grpo_steps} steps, each: generation of 4 prompts x 4 completions, at "
              f"most {args.max_tokens} tokens, then one optimiser step as 4 micro-batches of 4; "
              f"{'bf16 autocast' if args.bf16 else 'float32'}; load average before: {os.getloadavg()[0]:.1f})\n")
        print_grpo_table(grpo_steps(args))


if __name__ == "__main__":
    main()
