"""Annotation throughput and early-stopping savings, measured side by side in one run.

1. Engine saturation: generated tokens/s of `stepwiser annotate` (early stop off) divided by the same
   engine's raw batched `generate` tokens/s on the same prefixes at the same batch size (target >= 0.8).
2. Early stopping on the run's own recorded draws: the annotation records keep every rollout outcome
   in order (`draws`), which are replayed through `exact` and `confident` (delta 0.05) per label type
   and for all three together: rollouts relative to `off`, and label agreement with `off`.

Samples are the micro domain's chunk-tagged reference solutions (no trained policy needed); use
`--policy runs/micro-policy/final` for the micro chunk policy, whose Q-values are not degenerate.

    .venv/bin/python benchmarks/annotate.py --policy smollm2-135m-instruct --problems 8 --rollouts 8
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from stepwiser.stages.annotate import SEPARATOR, AnnotateConfig, run_annotate
from stepwiser.core.chunks import parse_chunks, render_chunks
from stepwiser.core.earlystop import GridPrior, StopConfig, simulate_problem
from stepwiser.engines import Request, SamplingParams, make_engine
from stepwiser.core.labels import LABEL_TYPES, LabelParams
from stepwiser.data.prompts import policy_messages
from stepwiser.io.records import Sample, content_hash, write_jsonl
from stepwiser.data.synth import generate_problems


def make_inputs(tmp: Path, n: int, seed: int):
    problems = generate_problems(n, seed, min_steps=3, max_steps=4, max_operand=10)
    samples = [Sample(problem_id=p.id, sample_id=0, response=p.solution, chunks=parse_chunks(p.solution),
                      correct=True, sampling={}) for p in problems]
    write_jsonl(tmp / "problems.jsonl", problems)
    write_jsonl(tmp / "samples.jsonl", samples)
    return problems, samples


def raw_throughput(engine, problems, samples, M: int, max_tokens: int) -> float:
    """Raw batched generate on exactly the prefixes annotate rolls out (one call)."""
    reqs = []
    for p, s in zip(problems, samples):
        reqs.append(Request(messages=policy_messages(p.problem), seed=1))
        for i in range(1, len(s.chunks)):
            reqs.append(Request(messages=policy_messages(p.problem),
                                prefix=render_chunks(s.chunks[:i]) + SEPARATOR["tags"], seed=i))
    params = SamplingParams(n=M, temperature=1.0, max_tokens=max_tokens, seed=0)
    t0 = time.time()
    outs = engine.generate(reqs, params)
    return sum(c.completion_tokens for cs in outs for c in cs) / (time.time() - t0)


def fit_prior(rows) -> GridPrior:
    counts = [(k, m) for r in rows for k, m in zip(r["successes"][:-1], r["rollouts"][:-1])]
    return GridPrior.fit(counts + [(r["q0"]["successes"], r["q0"]["rollouts"]) for r in rows])


def replay(rows, M: int) -> list[tuple]:
    """Replay recorded draws through exact / confident per label type; rollouts vs off, agreement.

    The confident prior is cross-fitted: problems are split in two halves by id, and each half is
    replayed with the prior fitted on the other half (never on its own draws)."""
    halves = [[r for r in rows if hash_half(r["problem_id"]) == h] for h in (0, 1)]
    priors = [fit_prior(halves[1 - h]) if halves[1 - h] else GridPrior.uniform() for h in (0, 1)]
    out = []
    for labels in [(t,) for t in LABEL_TYPES] + [LABEL_TYPES]:
        for mode in ("exact", "confident"):
            spent = full = agree = total = 0
            for r in rows:
                d = r["draws"]
                rows_d = d["chunks"] + [[int(r["correct"])] * M]
                cfg = StopConfig(mode, 2, 0.05, 2)
                prior = priors[hash_half(r["problem_id"])] if mode == "confident" else None
                labs, q0_spent, sp = simulate_problem(d["q0"], [rows_d], M, labels, LabelParams(), cfg, prior=prior)
                spent += q0_spent + sum(sp[0])
                full += M * len(d["chunks"]) + M
                for t in labels:
                    agree += sum(a == b for a, b in zip(labs[0][t], r["labels"][t]))
                    total += len(r["labels"][t])
            out.append(("+".join(labels) if len(labels) < 3 else "all three", mode, spent / full, agree / total))
    return out


def hash_half(problem_id: str) -> int:
    return int(content_hash(problem_id, 8), 16) % 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="smollm2-135m-instruct")
    ap.add_argument("--engine", default="hf")
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--rollouts", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target-sequences", type=int, default=256)
    args = ap.parse_args()
    opts = {"batch_size": args.batch_size} if args.engine == "hf" else {}
    engine = make_engine(args.engine, args.policy, **opts)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        problems, samples = make_inputs(tmp, args.problems, args.seed)
        raw_throughput(engine, problems[:1], samples[:1], 2, 8)  # warm-up
        raw = raw_throughput(engine, problems, samples, args.rollouts, args.max_tokens)
        cfg = AnnotateConfig(policy=args.policy, samples=str(tmp / "samples.jsonl"),
                             problems=str(tmp / "problems.jsonl"), out=str(tmp / "ann.jsonl"),
                             rollouts=args.rollouts, max_tokens=args.max_tokens, engine=args.engine,
                             target_sequences=args.target_sequences)
        summary = run_annotate(cfg, engine, progress=False)
        rows = [json.loads(x) for x in open(tmp / "ann.jsonl")]
    print(f"policy {args.policy}, engine {args.engine}, batch {args.batch_size}, {args.problems} problems, "
          f"M={args.rollouts}, max_tokens {args.max_tokens}")
    print(f"{'measure':<40}{'value':>12}")
    print(f"{'raw generate tokens/s':<40}{raw:>12.1f}")
    print(f"{'annotate tokens/s':<40}{summary['tokens_per_s']:>12.1f}")
    print(f"{'saturation (annotate / raw)':<40}{summary['tokens_per_s'] / raw:>12.2f}")
    print(f"\n{'labels':<16}{'mode':<12}{'rollout ratio':>14}{'agreement':>12}")
    for labels, mode, ratio, agree in replay(rows, args.rollouts):
        print(f"{labels:<16}{mode:<12}{ratio:>14.3f}{100 * agree:>11.2f}%")


if __name__ == "__main__":
    main()
