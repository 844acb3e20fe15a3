"""The tables of the micro replication (docs/RESULTS.md section 7): a thin wrapper of `stepwiser report-run`
(stepwiser/stages/run_report.py), which now holds the tables and the paired differences and also writes
report.md with plots. This script keeps the old command line and writes the Markdown to one file.

    python scripts/micro_tables.py --data runs/r14/test-rel_effective/val.jsonl \
        --labels "StepWiser no-CoT=runs/r14/test/nocot-labels" --bench "StepWiser no-CoT=runs/r14/test/nocot-pb" \
        --bench "position prior=runs/micro/pb/ref-position-prior" --pair "StepWiser no-CoT:warm-up" -o table.md
"""
from __future__ import annotations

import argparse
from pathlib import Path

from stepwiser.stages.run_report import RunReportConfig, build_report, load_inputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the test examples (with exact_label), for the paired tests")
    ap.add_argument("--labels", action="extend", nargs="+", default=[], help="NAME=eval-labels output folder (test)")
    ap.add_argument("--bench", action="extend", nargs="+", default=[],
                    help="NAME=eval-processbench output folder (test), reference floors included")
    ap.add_argument("--pair", action="extend", nargs="+", default=[],
                    help="A:B, two --labels names compared on the same chunks")
    ap.add_argument("--bootstrap", type=int, default=2000, help="resamples of the paired differences")
    ap.add_argument("-o", "--out", required=True, help="the Markdown file to write")
    args = ap.parse_args()
    out = Path(args.out)
    cfg = RunReportConfig(out=str(out.parent), title="Micro replication tables (test)", data=args.data,
                          labels=args.labels, bench=args.bench, pair=args.pair, bootstrap=args.bootstrap)
    text, _ = build_report(cfg, load_inputs(cfg))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(text, end="")


if __name__ == "__main__":
    main()
