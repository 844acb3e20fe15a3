"""The tables of the micro replication (docs/RESULTS.md section 7) from `eval labels` and `eval processbench`
outputs on test: balanced accuracy against Monte Carlo and exact labels with 95% intervals (bootstrap over
problems), AUROC, ProcessBench F1 with intervals and the floors beside them, and paired differences.

    python scripts/micro_tables.py --data runs/r14/test-rel_effective/val.jsonl \
        --labels "StepWiser no-CoT=runs/r14/test/nocot-labels" --bench "StepWiser no-CoT=runs/r14/test/nocot-pb" \
        --bench-ref "position prior=runs/micro/pb/ref-position-prior" --pair "StepWiser no-CoT:warm-up" -o table.md
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from stepwiser.core.metrics import paired_difference


def named(values: list[str]) -> dict[str, Path]:
    out = {}
    for v in values or []:
        name, _, path = v.partition("=")
        if not path:
            raise SystemExit(f"expected NAME=PATH, got {v!r}")
        out[name] = Path(path)
    return out


def fmt(x, ci=None) -> str:
    if x is None:
        return "-"
    return f"{x:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else f"{x:.1f}"


def judgments(folder: Path) -> dict[str, dict]:
    return {r["key"]: r for r in (json.loads(line) for line in open(folder / "judgments.jsonl", encoding="utf-8"))}


def labels_table(runs: dict[str, Path]) -> list[str]:
    rows = ["| judge | bal. acc. vs MC labels | AUROC (MC) | bal. acc. vs exact labels | AUROC (exact) | "
            "recall + / - (exact) | unparsed |", "|---|---|---|---|---|---|---|"]
    for name, folder in runs.items():
        s = json.loads((folder / "summary.json").read_text())
        e = s.get("exact", {})
        rows.append(f"| {name} | {fmt(s['balanced_accuracy'], s.get('balanced_accuracy_ci'))} | "
                    f"{fmt(s.get('auroc'), s.get('auroc_ci'))} | "
                    f"{fmt(e.get('balanced_accuracy'), e.get('balanced_accuracy_ci'))} | "
                    f"{fmt(e.get('auroc'), e.get('auroc_ci'))} | {fmt(e.get('recall_positive'))} / "
                    f"{fmt(e.get('recall_negative'))} | {s.get('unparsed', 0):.1f} |")
    return rows


def bench_table(runs: dict[str, Path]) -> list[str]:
    rows = ["| judge | F1 [95% CI] | error acc. | correct acc. |", "|---|---|---|---|"]
    for name, folder in runs.items():
        s = json.loads((folder / "summary.json").read_text())
        sub = next(iter(s["subsets"].values()))
        rows.append(f"| {name} | {fmt(s['average_f1'], s.get('average_f1_ci'))} | {sub['error_acc']:.1f} | "
                    f"{sub['correct_acc']:.1f} |")
    return rows


def pairs_table(pairs: list[str], runs: dict[str, Path], exact: dict[str, int | None]) -> list[str]:
    rows = ["| A vs B | labels | A - B (points) [95% CI] | one-sided p | real? |", "|---|---|---|---|---|"]
    for pair in pairs or []:
        a, _, b = pair.partition(":")
        ja, jb = judgments(runs[a]), judgments(runs[b])
        keys = [k for k in ja if k in jb]
        for kind in ("MC", "exact"):
            ks = keys if kind == "MC" else [k for k in keys if exact.get(k) is not None]
            y = [ja[k]["label"] if kind == "MC" else exact[k] for k in ks]
            d = paired_difference([ja[k]["problem_id"] for k in ks], y, [ja[k]["verdict"] for k in ks],
                                  [jb[k]["verdict"] for k in ks], resamples=2000)
            real = "yes" if d["ci"][0] > 0 or d["ci"][1] < 0 else "no"
            rows.append(f"| {a} vs {b} | {kind} ({d['n']} chunks) | {d['diff']:+.1f} [{d['ci'][0]:+.1f}, "
                        f"{d['ci'][1]:+.1f}] | {d['p']:.3f} | {real} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the test examples (with exact_label), for the paired tests")
    ap.add_argument("--labels", action="extend", nargs="+", help="NAME=eval-labels output folder (test)")
    ap.add_argument("--bench", action="extend", nargs="+", help="NAME=eval-processbench output folder (test)")
    ap.add_argument("--pair", action="extend", nargs="+", help="A:B, two --labels names compared on the same chunks")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    exact = {}
    for line in open(args.data, encoding="utf-8"):
        r = json.loads(line)
        exact[r["key"]] = r.get("exact_label")
    labs, bench = named(args.labels), named(args.bench)
    text = ["### Judges against held-out chunk labels (test)", "", *labels_table(labs), "",
            "### Micro ProcessBench (test, 200 policy solutions, 100 with an error)", "", *bench_table(bench), "",
            "### Paired differences (same chunks; bootstrap over problems)", "", *pairs_table(args.pair, labs, exact)]
    Path(args.out).write_text("\n".join(text) + "\n", encoding="utf-8")
    print("\n".join(text))


if __name__ == "__main__":
    main()
