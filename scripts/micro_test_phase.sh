#!/usr/bin/env bash
# the test phase of RESULTS 7: selection on dev, then every judge once on test (two chains in parallel)
set -u
cd "$(dirname "$0")/.."; source .venv/bin/activate
R=${R:-runs/r14}; T=$R/test; mkdir -p $T
t() { local s=$(date +%s); "$@" > $T/$(echo "$*" | md5sum | cut -c1-8).log 2>&1; echo "$(( $(date +%s) - s )) s rc $?: $*" >> $T/times.log; }
python scripts/select_checkpoint.py $R/nocot-lr3e-4 $R/nocot-lr1e-3 -o $R/sel/nocot >> $T/times.log 2>&1
python scripts/select_checkpoint.py $R/nocot-shuffled -o $R/sel/shuffled >> $T/times.log 2>&1
python scripts/select_checkpoint.py $R/cot2 -o $R/sel/cot >> $T/times.log 2>&1
L="--data $R/test-rel_effective --split val --threads 1"
P="--data runs/micro/policy-bench --subsets test --threads 1"
(
t stepwiser eval labels --judge $R/sel/nocot $L -o $T/nocot-labels
t stepwiser eval labels --judge $R/nocot-lr3e-4/warmup/final $L -o $T/warmup-labels
t stepwiser eval labels --judge $R/sel/shuffled $L -o $T/shuffled-labels
t stepwiser eval labels --judge $R/disc-lr3e-3 $L -o $T/disc-labels
t stepwiser eval processbench --judge $R/sel/nocot $P -o $T/nocot-pb
t stepwiser eval processbench --judge $R/nocot-lr3e-4/warmup/final $P -o $T/warmup-pb
t stepwiser eval processbench --judge $R/disc-lr3e-3 $P -o $T/disc-pb
t stepwiser eval processbench --judge $R/sel/shuffled $P -o $T/shuffled-pb
t stepwiser eval labels --judge $R/sel/nocot $L --maj 8 -o $T/nocot-labels-maj8
t stepwiser eval processbench --judge $R/sel/nocot $P --maj 8 -o $T/nocot-pb-maj8
) &
(
t stepwiser eval labels --judge $R/sel/cot $L --max-tokens 128 -o $T/cot-labels
t stepwiser eval labels --judge $R/cot2/warmup/final $L --max-tokens 128 -o $T/cot-warmup-labels
t stepwiser eval processbench --judge $R/sel/cot $P --max-tokens 128 -o $T/cot-pb
) &
wait
echo done >> $T/times.log
