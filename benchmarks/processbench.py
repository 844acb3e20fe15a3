"""Throughput of the stepwise ProcessBench protocol: early stop vs judging every step, batch 1 vs 32.

    python benchmarks/processbench.py                      # bundled SmolLM2, hf engine, ~5 minutes on 2 cores
    python benchmarks/processbench.py --items 64 --max-tokens 64 --engine vllm --model Qwen/Qwen2.5-1.5B-Instruct

Items: a synthetic bench (`stepwiser.data.synth.generate_bench`, the items of `stepwiser data synth-bench`).
Each row runs `stepwiser.judges.stepwise.run_stepwise` (the code behind `eval processbench --judge`) with a
generative CoT judge, greedy, at most `--max-tokens` tokens per judgment, after a warm-up call:

- "early stop": judging stops at an item's first Negative (or unparsed) step; "all steps": every step is
  judged (`--all-steps`; the predictions are the same);
- verdicts "model": the judge model's own verdicts decide where early stopping stops. The untrained
  bundled model with a short token budget almost never writes a parsable verdict, so it stops at step 0
  and the early-stop saving it shows is the largest possible, not a typical one;
- verdicts "labels": the judge model generates exactly as usual (same prompts, same cost), but its
  verdicts are replaced by those of a judge that is always right (Positive before the labelled step,
  Negative at it): the stopping pattern of an accurate judge, with real generation cost;
- items in flight: the window of `run_stepwise` (1 = one item at a time; 32 = every round sends the next
  step of up to 32 items in one judging call).

Prints a Markdown table (items/s, steps judged per item, steps/s) and the ratios.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import set_threads
from stepwiser.engines import make_engine
from stepwiser.data.bench import BenchItem
from stepwiser.judges.stepwise import run_stepwise
from stepwiser.judges.generative import GenerativeJudge
from stepwiser.judges.base import JudgeItem, Judgment
from stepwiser.models.loading import DEFAULT_MODEL, resolve_model
from stepwiser.data.synth import generate_bench


class LabelVerdicts:
    """A StepJudge that runs `inner` (real cost) and then gives the verdicts of an always-right judge."""

    def __init__(self, inner, items: list[BenchItem]):
        self.inner = inner
        self.label = {it.problem: it.label for it in items}

    def judge(self, items, k=1):
        out = self.inner.judge(items, k)
        return [Judgment(verdicts=[int(len(it.history) != self.label[it.problem])] * k, texts=j.texts, tokens=j.tokens,
                         prompt_tokens=j.prompt_tokens) for it, j in zip(items, out)]


def bench_items(n: int, seed: int) -> list[BenchItem]:
    test, _ = generate_bench(n, seed)
    return [BenchItem("test", it["id"], it["problem"], tuple(it["steps"]), it["label"], it) for it in test]


def measure(judge, items, all_steps: bool, window: int) -> dict:
    start = time.perf_counter()
    fields = [f for _, f in run_stepwise(judge, items, k=1, all_steps=all_steps, window=window)]
    seconds = time.perf_counter() - start
    steps = sum(f["steps_judged"] for f in fields)
    return {"items": len(fields), "steps": steps, "tokens": sum(f["tokens"] for f in fields), "seconds": seconds,
            "prompt_tokens": sum(f["prompt_tokens"] for f in fields) / steps,
            "items_per_s": len(fields) / seconds, "steps_per_s": steps / seconds,
            "unparsed": sum(f["unparsed"] for f in fields)}


def engine_options(args) -> dict:
    if args.engine == "hf":
        return {"device": args.device, "dtype": args.dtype, "batch_size": args.batch_size}
    if args.engine == "openai":
        return {"base_url": args.base_url}
    return {}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--engine", default="hf", choices=("hf", "vllm", "openai"))
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--batch-size", type=int, default=64, help="hf engine: sequences decoded together")
    parser.add_argument("--items", type=int, default=32, help="bench items for the rows with 32 in flight")
    parser.add_argument("--items-batch1", type=int, default=8, help="bench items for the one-at-a-time row")
    parser.add_argument("--window", type=int, default=32, help="items in flight for the batched rows")
    parser.add_argument("--max-tokens", type=int, default=32, help="most tokens per judgment")
    parser.add_argument("--seed", type=int, default=1, help="synthetic bench seed")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (torch.set_num_threads)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    items = bench_items(args.items, args.seed)
    model = args.model if args.engine == "openai" else resolve_model(args.model)
    engine = make_engine(args.engine, model, **engine_options(args))
    print(f"model: {args.model}; engine: {args.engine}; {len(items)} items ({sum(len(i.steps) for i in items)} steps); "
          f"max_tokens {args.max_tokens}; load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    judge = GenerativeJudge(engine, cot=True, max_tokens=args.max_tokens)
    GenerativeJudge(engine, max_tokens=2).judge([JudgeItem(items[0].problem, [], items[0].steps[0])], 1)  # warm-up
    forced = LabelVerdicts(judge, items)
    plan = [("early stop", "model", judge, False, args.window, items),
            ("early stop", "labels", forced, False, args.window, items),
            ("all steps", "-", judge, True, args.window, items),
            ("early stop", "labels", forced, False, 1, items[:args.items_batch1])]
    rows = []
    for protocol, verdicts, j, all_steps, window, its in plan:
        r = measure(j, its, all_steps, window)
        window = min(window, len(its))   # items in flight at most
        rows.append({"protocol": protocol, "verdicts": verdicts, "window": window, **r})
        print(f"  {protocol}, verdicts {verdicts}, {window} in flight: {r['items']} items, {r['steps']} steps, "
              f"{r['seconds']:.1f}s", file=sys.stderr)
    engine.close()
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    print("| protocol | verdicts | items in flight | items | steps judged | steps/item | prompt tokens/step "
          "| gen tokens | seconds | items/s | steps/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['protocol']} | {r['verdicts']} | {r['window']} | {r['items']} | {r['steps']} | "
              f"{r['steps'] / r['items']:.2f} | {r['prompt_tokens']:.0f} | {r['tokens']} | {r['seconds']:.1f} | {r['items_per_s']:.3f} | "
              f"{r['steps_per_s']:.3f} |")
    model, labels, every, single = rows
    print(f"\nearly stop / all steps, items/s: verdicts of the model {model['items_per_s'] / every['items_per_s']:.2f}x, "
          f"verdicts of an always-right judge {labels['items_per_s'] / every['items_per_s']:.2f}x")
    print(f"{labels['window']} in flight / 1 in flight (early stop, label verdicts; the 1-in-flight row runs the first "
          f"{single['items']} items): steps/s {labels['steps_per_s'] / single['steps_per_s']:.2f}x, "
          f"items/s {labels['items_per_s'] / single['items_per_s']:.2f}x")


if __name__ == "__main__":
    main()
