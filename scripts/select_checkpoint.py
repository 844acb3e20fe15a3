"""Checkpoint selection on dev: the (run, step) with the highest validation balanced accuracy (the greedy
dev judgments `train-judge --eval-steps` records in metrics.jsonl; ties: the earlier step, then the run given
first), exported as a judge folder (export-judge) to OUT. Step 0 (the warm-up, before any GRPO step) is a
candidate only with --allow-step0.

    python scripts/select_checkpoint.py runs/r14/nocot-lr3e-4 runs/r14/nocot-lr1e-3 -o runs/r14/sel/nocot
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from stepwiser.stages.export_judge import export_checkpoint


def candidates(run: Path, allow_step0: bool) -> list[tuple[float, int, Path]]:
    out = []
    for line in open(run / "metrics.jsonl", encoding="utf-8"):
        d = json.loads(line)
        if "val_balanced_accuracy" in d and (d["step"] > 0 or allow_step0):
            out.append((d["val_balanced_accuracy"], d["step"], run))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("-o", "--out", required=True, type=Path)
    ap.add_argument("--allow-step0", action="store_true")
    args = ap.parse_args()
    found = [c for r in args.runs for c in candidates(r, args.allow_step0)]
    if not found:
        raise SystemExit("no validation record in the runs' metrics.jsonl (train with --eval-steps)")
    order = {r: i for i, r in enumerate(args.runs)}
    bacc, step, run = max(found, key=lambda c: (c[0], -c[1], -order[c[2]]))
    ckpt = run / "checkpoints" / f"checkpoint-{step}"
    if not ckpt.is_dir():
        raise SystemExit(f"{ckpt}: the selected checkpoint was not kept (raise --save-total-limit)")
    if args.out.exists():
        shutil.rmtree(args.out)
    export_checkpoint(ckpt, args.out)
    (args.out / "selection.json").write_text(json.dumps(
        {"run": str(run), "step": step, "dev_balanced_accuracy": bacc,
         "candidates": [{"run": str(r), "step": s, "dev_balanced_accuracy": b} for b, s, r in found]}, indent=1))
    print(f"selected {run} step {step} (dev balanced accuracy {bacc:.3f}) -> {args.out}")


if __name__ == "__main__":
    main()
