#!/usr/bin/env bash
# Smoke-sized run of the micro pipeline: init-model -> train-policy (60 steps) -> sample -> annotate ->
# synth-bench --from-samples, in runs/smoke/ (170 s on 2 shared cores; docs/MICRO_POLICY.md). The 60-step
# policy is far from trained: this checks that the stages fit together, not the numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
sw=.venv/bin/stepwiser; R=runs/smoke; rm -rf $R; mkdir -p $R
S="--min-steps 3 --max-steps 4 --max-operand 10 --max-value 100"
s0=$(date +%s)
$sw init-model --size micro-1m --seed 0 --vocab-problems 500 -o $R/init
$sw data synth --n 2000 --seed 1 $S -o $R/train.jsonl
$sw data synth --n 40 --seed 2 $S --exclude $R/train.jsonl -o $R/heldout.jsonl
$sw data synth --n 40 --seed 3 $S --exclude $R/train.jsonl --exclude $R/heldout.jsonl -o $R/problems.jsonl
$sw train-policy --config recipes/micro-policy.yaml --model $R/init --data $R/train.jsonl -o $R/policy --max-steps 60 --save-steps 60
$sw sample --policy $R/policy/final --problems $R/problems.jsonl --n 2 --max-tokens 160 --batch-problems 64 --threads 1 -o $R/samples.jsonl
$sw annotate --policy $R/policy/final --samples $R/samples.jsonl --problems $R/problems.jsonl -M 4 --max-tokens 128 --threads 1 -o $R/annotations.jsonl
$sw sample --policy $R/policy/final --problems $R/heldout.jsonl --n 2 --max-tokens 160 --batch-problems 64 --threads 1 -o $R/heldout-samples.jsonl
$sw data synth-bench --n 8 --from-samples $R/heldout-samples.jsonl --problems $R/heldout.jsonl -o $R/policy-bench
echo "total $(( $(date +%s) - s0 )) s"
