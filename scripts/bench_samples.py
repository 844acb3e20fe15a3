"""The policy samples behind one split of a micro ProcessBench built with `data synth-bench --from-samples`
(its items carry problem_id and sample_id), so that they can be annotated like the training samples and
give held-out chunks with Monte Carlo labels.

    python scripts/bench_samples.py --bench runs/micro/policy-bench/test.json \
        --samples runs/micro/heldout-samples.jsonl --out runs/r14/bench-test-samples.jsonl
"""
from __future__ import annotations

import argparse
import json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", required=True, help="a split file of the bench (JSON list of items)")
    ap.add_argument("--samples", required=True, help="the samples JSONL the bench was built from")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with open(args.bench, encoding="utf-8") as f:
        keys = {(d["problem_id"], d["sample_id"]) for d in json.load(f)}
    kept = []
    with open(args.samples, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                if (r["problem_id"], r["sample_id"]) in keys:
                    kept.append(line if line.endswith("\n") else line + "\n")
    if len(kept) != len(keys):
        raise SystemExit(f"{args.samples}: found {len(kept)} of the {len(keys)} samples of {args.bench}")
    with open(args.out, "w", encoding="utf-8") as f:
        f.writelines(kept)
    print(f"{len(kept)} samples -> {args.out}")


if __name__ == "__main__":
    main()
