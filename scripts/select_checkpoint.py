"""Checkpoint selection on dev: the (run, step) with the highest validation balanced accuracy (the dev
judgments `train-judge --eval-steps` records in metrics.jsonl; ties: the earlier step, then the run given
first), exported as a judge folder (export-judge) to OUT. Step 0 (the warm-up, before any GRPO step, exported
from RUN/warmup/final) is a candidate only with --allow-step0; --step N keeps only step N (--step 0: the
warm-up itself, e.g. a floor scored the same way as the selected judge).

--by greedy (default): the greedy verdicts' balanced accuracy, the paper's judge. --by calibrated (no-CoT
runs): the balanced accuracy of P(Positive) at the threshold chosen on the same dev examples; the export
records that threshold (`"score": "verdict_probability"` in stepwiser_judge.json), so every later stage reads
the judge by its verdict probability and that threshold.

    python scripts/select_checkpoint.py runs/r14/nocot-lr3e-4 runs/r14/nocot-lr1e-3 -o runs/r14/sel/nocot
    python scripts/select_checkpoint.py runs/qs/judge-train --by calibrated -o runs/qs/judge
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from stepwiser.judges.base import JUDGE_META
from stepwiser.stages.export_judge import export_checkpoint
from stepwiser.train.judge_metrics import read_metrics

KEYS = {"greedy": "val_balanced_accuracy", "calibrated": "val_calibrated_balanced_accuracy"}


def candidates(run: Path, key: str, allow_step0: bool, only: int | None) -> list[tuple[float, int, Path, dict]]:
    out = []
    for d in read_metrics(run):
        if key in d and (d["step"] > 0 or allow_step0 or only == 0) and only in (None, d["step"]):
            out.append((d[key], d["step"], run, d))
    return out


def export(run: Path, step: int, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    if step == 0:
        shutil.copytree(run / "warmup" / "final", out)
        return
    ckpt = run / "checkpoints" / f"checkpoint-{step}"
    if not ckpt.is_dir():
        raise SystemExit(f"{ckpt}: the selected checkpoint was not kept (raise --save-total-limit)")
    export_checkpoint(ckpt, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("-o", "--out", required=True, type=Path)
    ap.add_argument("--by", choices=sorted(KEYS), default="greedy")
    ap.add_argument("--allow-step0", action="store_true")
    ap.add_argument("--step", type=int, default=None)
    args = ap.parse_args()
    key = KEYS[args.by]
    found = [c for r in args.runs for c in candidates(r, key, args.allow_step0, args.step)]
    if not found:
        raise SystemExit(f"no {key} record in the runs' metrics.jsonl (train with --eval-steps"
                         + (", without CoT" if args.by == "calibrated" else "") + ")")
    order = {r: i for i, r in enumerate(args.runs)}
    bacc, step, run, rec = max(found, key=lambda c: (c[0], -c[1], -order[c[2]]))
    export(run, step, args.out)
    if args.by == "calibrated":
        meta_path = args.out / JUDGE_META
        meta = json.loads(meta_path.read_text())
        meta.update(score="verdict_probability", threshold=rec["val_threshold"])
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    (args.out / "selection.json").write_text(json.dumps(
        {"run": str(run), "step": step, "by": args.by, "dev_balanced_accuracy": bacc,
         **({"threshold": rec["val_threshold"]} if args.by == "calibrated" else {}),
         "candidates": [{"run": str(r), "step": s, "dev_balanced_accuracy": b} for b, s, r, _ in found]}, indent=1))
    cut = f", threshold {rec['val_threshold']:.4f}" if args.by == "calibrated" else ""
    print(f"selected {run} step {step} (dev balanced accuracy {bacc:.3f}{cut}, by {args.by}) -> {args.out}")


if __name__ == "__main__":
    main()
