#!/usr/bin/env bash
# RESULTS 9: data selection at micro scale (pre-registered); one single-thread chain
set -u
cd /work/main; source .venv/bin/activate
R=${R:-runs/r15}; T=$R/times-select.log
t() { local s=$(date +%s); "$@" > $R/logs/$(echo "$*" | md5sum | cut -c1-8).log 2>&1; echo "$(( $(date +%s) - s )) s rc $?: $*" >> $T; }
mkdir -p $R/logs
S="--policy runs/micro/policy/final --problems $R/select-problems.jsonl --k 8 --temperature 1.0 --max-tokens 160 --batch-problems 64 --policy-threads 1 --judge runs/r14/sel/nocot --maj 4 --judge-threads 1"
t stepwiser select $S --strategy outcome -o $R/select-outcome
t stepwiser select $S --strategy judge -o $R/select-judge
for s in outcome judge; do
  t stepwiser train-policy --config recipes/micro-policy.yaml --model runs/micro/policy/final --data $R/select-$s/train.jsonl \
      --lr 3e-4 --max-steps 50 --warmup-ratio 0 --seed 0 --save-steps 50 --out $R/sft-$s
  t stepwiser eval accuracy --policy $R/sft-$s/final --problems runs/micro/heldout.jsonl --max-tokens 160 --batch-problems 64 --threads 1 -o $R/acc-sft-$s
done
echo done >> $T
