"""GRPO step time with each distinct prompt computed once (`--shared-prompt`, the default) vs TRL's
full-sequence computation, side by side in one run (stepwiser.train.grpo_shared_prompt).

    python benchmarks/grpo_shared_prompt.py                              # micro judge, no-CoT, 8 x 8, 2 threads
    python benchmarks/grpo_shared_prompt.py --prompts 32 --generations 8 --steps 6
    python benchmarks/grpo_shared_prompt.py --model HuggingFaceTB/SmolLM2-135M-Instruct --method grpo

Each arm is a cold `train_grpo` run of `--steps` optimiser steps (each generating its own batch of
`--prompts` x `--generations` completions, one optimiser step) on seeded random-label micro judge examples
(`benchmarks/judge.py`'s `micro_examples`, the compact prompt); arms run in the order shared, full, shared,
full, ... (`--rounds`), so that a drift of the machine's load hits both. Printed per arm: mean step, generation
and optimisation seconds over the steps after the first (the first pays one-off costs), and the ratio
full / shared of the step time. The two arms compute the same loss (tests/train/test_grpo_shared_prompt.py).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from judge import micro_examples  # noqa: E402  (benchmarks/judge.py)

from stepwiser.io.records import write_jsonl  # noqa: E402


def run_arm(args, shared: bool, tmp: Path) -> dict:
    """Mean timings (steps after the first) of one cold GRPO run."""
    from stepwiser.data.judge_examples import load_judge_examples
    from stepwiser.train.grpo import train_grpo
    from stepwiser.train.judge_config import JudgeTrainConfig
    from stepwiser.train.judge_metrics import read_metrics

    data = tmp / "data" / "train.jsonl"
    if not data.exists():
        write_jsonl(data, micro_examples(args.prompts * args.steps, args.seed))
    out = tmp / f"run-{'shared' if shared else 'full'}"
    cfg = JudgeTrainConfig(model=args.model, out=str(out), data=str(data), method=args.method,
                           judge_prompt="compact", lr=1e-5, max_steps=args.steps,
                           per_device_batch=args.prompts * args.generations, num_generations=args.generations,
                           optimizer_steps_per_generation=1, max_completion_length=args.max_tokens,
                           seed=args.seed, num_threads=args.threads, save_steps=args.steps, save_total_limit=1,
                           shared_prompt=shared)
    train_grpo(cfg, load_judge_examples(data), overwrite=True, show=False)
    rows = [r for r in read_metrics(out) if "step_s" in r][1:]
    if not rows:
        raise RuntimeError(f"no timed steps after the first in {out}/metrics.jsonl (use --steps >= 2)")

    def mean(key):
        return sum(r[key] for r in rows) / len(rows)

    return {"step_s": mean("step_s"), "generation_s": mean("generation_s"), "optimisation_s": mean("optimisation_s"),
            "completion_length": mean("completion_length")}


def main(argv=None) -> None:
    from stepwiser.models.loading import MICRO_POLICY, resolve_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=MICRO_POLICY)
    parser.add_argument("--method", default="grpo-nocot", choices=["grpo", "grpo-nocot"])
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step")
    parser.add_argument("--generations", type=int, default=8, help="completions per prompt")
    parser.add_argument("--steps", type=int, default=4, help="optimiser steps per arm (the first is not counted)")
    parser.add_argument("--rounds", type=int, default=2, help="shared/full pairs")
    parser.add_argument("--max-tokens", type=int, default=16, help="most completion tokens")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.model = resolve_model(args.model)
    print(f"model {args.model}; {args.method}; {args.prompts} prompts x {args.generations} completions per step; "
          f"{args.steps} steps per arm, {args.rounds} rounds; {args.threads} threads; load average before "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    arms = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="stepwiser-shared-bench-") as tmp:
        for _ in range(args.rounds):
            for shared in (True, False):
                arms[shared].append(run_arm(args, shared, Path(tmp)))
                print(f"  {'shared' if shared else 'full'}: {arms[shared][-1]}", file=sys.stderr)
    print("| arm | step s | generation s | optimisation s | completion tokens |")
    print("|---|---:|---:|---:|---:|")
    means = {}
    for shared, rows in arms.items():
        means[shared] = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
        m = means[shared]
        print(f"| {'shared prompt' if shared else 'full sequences (TRL)'} | {m['step_s']:.2f} | "
              f"{m['generation_s']:.2f} | {m['optimisation_s']:.2f} | {m['completion_length']:.1f} |")
    print(f"\nfull / shared step time: {means[False]['step_s'] / means[True]['step_s']:.2f}x "
          f"(generation {means[False]['generation_s'] / means[True]['generation_s']:.2f}x, optimisation "
          f"{means[False]['optimisation_s'] / means[True]['optimisation_s']:.2f}x)")


if __name__ == "__main__":
    main()
