"""Judge throughput: judged chunks per second on each available engine, at k = 1 and k = 8.

    python benchmarks/judge.py                          # bundled SmolLM2, hf engine (+ vllm if importable)
    python benchmarks/judge.py --max-tokens 128 --ks 1,8 --items 16
    python benchmarks/judge.py --model Qwen/Qwen2.5-1.5B-Instruct --engines hf,vllm
    python benchmarks/judge.py --engines openai --base-url http://localhost:8000/v1

The items are `--items` chunks of micro-domain problems (`stepwiser.synth.generate_problems`): for
problem i the chunk at index i mod H of its chunk-tagged reference solution, with all chunks before
it as history. Each engine judges all items in one call of the judging API
(`GenerativeJudge.judge`, CoT prompt, greedy for k = 1, temperature 1.0 for k > 1, at most
`--max-tokens` per judgment) after a short warm-up call. Reported per engine and k: seconds,
judged chunks per second, judge samples per second, generated tokens per second, mean tokens per
sample and the share of samples with a parsable verdict. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import pick_engines, set_threads
from stepwiser.chunks import parse_chunks
from stepwiser.engines import make_engine
from stepwiser.judge import GenerativeJudge, JudgeItem
from stepwiser.models import DEFAULT_MODEL, resolve_model
from stepwiser.synth import generate_problems


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
    args = parser.parse_args(argv)
    args.ks = [int(k) for k in args.ks.split(",")]
    args.engines = pick_engines(args.engines, args.base_url)
    set_threads(args.threads)
    print(f"model: {args.model}; engines: {', '.join(args.engines)}; {args.items} chunks; max_tokens "
          f"{args.max_tokens}; load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    rows = judge_throughput(args, micro_items(args.items, args.seed))
    print("Judge throughput (CoT prompt; k = 1 greedy, k > 1 temperature 1.0; one judging call per row)\n")
    print_table(rows)


if __name__ == "__main__":
    main()
