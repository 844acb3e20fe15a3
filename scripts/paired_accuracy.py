"""Paired accuracy differences between policies (or search runs) on the same problems: A minus B in points
with a 95% percentile bootstrap over problems (`stepwiser.stages.run_report_tables.paired_accuracy`) and the
discordant counts (problems only A / only B got right), from samples.jsonl files of `eval accuracy`, `sample`
or search.jsonl / baseline.jsonl of `search` (any JSONL with problem_id and correct).

    python scripts/paired_accuracy.py --run base=runs/micro/eval-greedy/samples.jsonl \
        --run outcome=runs/r15/acc-sft-outcome/samples.jsonl --pair outcome:base
"""
from __future__ import annotations

import argparse

from stepwiser.stages.run_report_tables import correct_by_problem, paired_accuracy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="append", required=True, help="NAME=JSONL")
    ap.add_argument("--pair", action="append", required=True, help="A:B")
    ap.add_argument("--resamples", type=int, default=2000)
    args = ap.parse_args()
    runs = {}
    for v in args.run:
        name, _, path = v.partition("=")
        runs[name] = correct_by_problem(path)
    for name, r in runs.items():
        acc = 100 * sum(sum(v) / len(v) for v in r.values()) / len(r)
        print(f"{name}: accuracy {acc:.1f} on {len(r)} problems")
    print("| A vs B | A - B (points) [95% CI] | discordant (A only / B only) | problems | real? |")
    print("|---|---|---|---|---|")
    for p in args.pair:
        a, _, b = p.partition(":")
        d = paired_accuracy(runs[a], runs[b], args.resamples, 0)
        if d is None:
            raise SystemExit(f"{a} and {b} share no problem")
        keys = [k for k in runs[a] if k in runs[b]]
        only_a = sum(runs[a][k][0] and not runs[b][k][0] for k in keys)
        only_b = sum(runs[b][k][0] and not runs[a][k][0] for k in keys)
        real = "yes" if d["ci"][0] > 0 or d["ci"][1] < 0 else "no"
        print(f"| {a} vs {b} | {d['diff']:+.1f} [{d['ci'][0]:+.1f}, {d['ci'][1]:+.1f}] | {only_a} / {only_b} | {d['n']} | {real} |")


if __name__ == "__main__":
    main()
