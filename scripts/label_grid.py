"""Choose gamma (Rel-Ratio) and alpha (Rel-Effective) on the VALIDATION problems by relabelling the stored
rollouts (early stopping off, so every Q is the full-M estimate, C2) and comparing each label rule with the
exact oracle labels of the micro domain (balanced agreement over chunks that have an exact label).

    python scripts/label_grid.py --annotations runs/micro/annotations.jsonl \
        --problems runs/micro/annotate-250.jsonl --val runs/r14/jd/val.jsonl -o runs/r14/label-grid.json

The paper's grid: gamma in {0.6, 0.7, 0.8, 1.0, 1.2}, alpha in {0.2, 0.4, 0.6, 0.8, 1.0}, n = 4. Only the
validation split's problems decide; the train split's agreement is printed beside it for reference.
"""
from __future__ import annotations

import argparse
import json

from stepwiser.core.labels import label_chunks
from stepwiser.io.records import Annotation, Problem, read_records
from stepwiser.stages.judge_data import exact_labels

GAMMAS = (0.6, 0.7, 0.8, 1.0, 1.2)
ALPHAS = (0.2, 0.4, 0.6, 0.8, 1.0)


def balanced_agreement(pairs: list[tuple[int, int]]) -> dict:
    pos = [y for y, x in pairs if x == 1]
    neg = [y for y, x in pairs if x == 0]
    r_pos = sum(pos) / len(pos) if pos else 0.0
    r_neg = sum(1 - y for y in neg) / len(neg) if neg else 0.0
    return {"balanced": round((r_pos + r_neg) / 2, 4), "recall_on_exact_positive": round(r_pos, 4),
            "recall_on_exact_negative": round(r_neg, 4), "n": len(pairs),
            "mc_positive_share": round(sum(y for y, _ in pairs) / max(1, len(pairs)), 4)}


def agreement(annotations, problems, keep, method, **params) -> dict:
    pairs = []
    for a in annotations:
        if a.problem_id not in keep:
            continue
        exact = exact_labels(a.chunks, problems[a.problem_id])
        mc = label_chunks(list(a.q), method, **params)
        pairs += [(y, x) for y, x in zip(mc, exact) if x is not None]
    return balanced_agreement(pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--annotations", required=True)
    ap.add_argument("--problems", required=True)
    ap.add_argument("--val", required=True, help="judge-data val.jsonl: its problem ids are the validation split")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    annotations = read_records(args.annotations, Annotation)
    if any((a.early_stop or {}).get("mode", "off") != "off" for a in annotations):
        raise SystemExit(f"{args.annotations}: early-stopped annotations cannot be relabelled (C2)")
    problems = {p.id: p for p in read_records(args.problems, Problem)}
    val = {json.loads(line)["problem_id"] for line in open(args.val, encoding="utf-8") if line.strip()}
    train = {a.problem_id for a in annotations} - val
    grid = [("abs_q", {})] + [("rel_ratio", {"gamma": g}) for g in GAMMAS] + \
           [("rel_effective", {"alpha": al, "n": 4}) for al in ALPHAS]
    rows = []
    for method, params in grid:
        rows.append({"label": method, **params, "val": agreement(annotations, problems, val, method, **params),
                     "train": agreement(annotations, problems, train, method, **params)})
        r = rows[-1]
        print(f"{method:14s} {json.dumps(params):24s} val {r['val']['balanced']:.3f} "
              f"(rec+ {r['val']['recall_on_exact_positive']:.3f} rec- {r['val']['recall_on_exact_negative']:.3f}, "
              f"n {r['val']['n']})  train {r['train']['balanced']:.3f}")
    best = {m: max((r for r in rows if r["label"] == m), key=lambda r: r["val"]["balanced"])
            for m in ("rel_ratio", "rel_effective")}
    for m, r in best.items():
        print(f"chosen on val: {m} {'gamma' if m == 'rel_ratio' else 'alpha'} = "
              f"{r.get('gamma', r.get('alpha'))} (val balanced agreement {r['val']['balanced']:.3f})")
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"rows": rows, "chosen": {m: {k: v for k, v in r.items() if k in ('gamma', 'alpha', 'n')}
                                            for m, r in best.items()},
                   "val_problems": len(val), "train_problems": len(train)}, f, indent=1)


if __name__ == "__main__":
    main()
