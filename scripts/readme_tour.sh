#!/usr/bin/env bash
# The README's tour of the subcommands, as written there, on the bundled micro policy (`micro-policy`),
# smoke-sized (a few minutes on 2 CPU cores, one thread per command):
#
#   bash scripts/readme_tour.sh [OUT]        # OUT defaults to /tmp/stepwiser-tour; OUT/times.log: seconds per command
#
# --temperature 0.7 where the judge reads what the policy wrote: at 1.0 about 1% of the micro policy's chunks hold a
# word its word-level tokenizer cannot encode again, and eval/search/select/serve stop on such a chunk.
# The sizes are small on purpose: the tour checks that the stages fit together, not the numbers. The real
# settings are in recipes/quickstart.yaml (`bash run.sh quickstart`) and recipes/micro.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-/tmp/stepwiser-tour}
PORT=${STEPWISER_TOUR_PORT:-8765}
mkdir -p "$T"
PATH="$PWD/.venv/bin:$PATH"
: > "$T/times.log"
t() {  # run one command and log its wall time
  local s e
  s=$(date +%s.%N)
  "$@"
  e=$(date +%s.%N)
  printf '%6.1f s  %s\n' "$(echo "$e - $s" | bc)" "$*" | tee -a "$T/times.log"
}
P=micro-policy
S="--min-steps 3 --max-steps 4 --max-operand 10 --max-value 100"

# problems: the policy's own training set (only to keep the new problems disjoint), annotation and held-out sets
t stepwiser data synth --n 20000 --seed 1 $S -o $T/policy-train.jsonl
t stepwiser data synth --n 40 --seed 3 $S --exclude $T/policy-train.jsonl -o $T/problems.jsonl
t stepwiser data synth --n 40 --seed 2 $S --exclude $T/policy-train.jsonl --exclude $T/problems.jsonl -o $T/heldout.jsonl
# 4 solutions per problem, split into <chunk>s and verified
t stepwiser sample --policy $P --problems $T/problems.jsonl --n 4 --temperature 0.7 --max-tokens 160 --threads 1 \
    -o $T/samples.jsonl
# Monte Carlo Q-values of every chunk (M = 4 rollouts) and the Rel-Effective label
t stepwiser annotate --policy $P --samples $T/samples.jsonl --problems $T/problems.jsonl -M 4 --max-tokens 128 \
    --labels rel_effective --alpha 0.8 --early-stop exact --threads 1 -o $T/annotations.jsonl
# judge examples, split by problem, training split balanced by class and chunk position
t stepwiser judge-data --annotations $T/annotations.jsonl --problems $T/problems.jsonl --label rel_effective \
    --balance-by class_position --tokenizer $P --val-frac 0.2 -o $T/judge-data
# a StepWiser judge without CoT: format warm-up, then GRPO (a smoke run of 10 steps; real settings: quickstart.yaml)
t stepwiser train-judge --method grpo-nocot --judge-prompt compact --model $P --data $T/judge-data -o $T/judge \
    --lr 3e-4 --max-steps 10 --per-device-batch 32 --num-generations 8 --format-warmup-steps 40 \
    --format-warmup-lr 1e-3 --save-steps 10 --num-threads 1
# the judge against the held-out Monte Carlo labels (and exact ones where the oracle decides)
t stepwiser eval labels --judge $T/judge/final --data $T/judge-data --split val --threads 1 -o $T/eval-labels
# a micro ProcessBench from the policy's own held-out solutions; the judge and a floor on it
t stepwiser sample --policy $P --problems $T/heldout.jsonl --n 2 --temperature 0.7 --max-tokens 160 \
    --threads 1 -o $T/heldout-samples.jsonl
t stepwiser data synth-bench --n 20 --from-samples $T/heldout-samples.jsonl --problems $T/heldout.jsonl -o $T/bench
t stepwiser eval processbench --judge $T/judge/final --data $T/bench --subsets test --threads 1 -o $T/pb-judge
t stepwiser eval processbench --reference position-prior --data $T/bench --subsets test -o $T/pb-prior
t stepwiser report $T/pb-judge/summary.json $T/pb-prior/summary.json
# chunk-reset search with the judge, beside the policy sampling freely (--baseline)
t stepwiser search --policy $P --judge $T/judge/final --problems $T/heldout.jsonl --limit 10 --max-resets 3 \
    --temperature 0.7 --baseline --policy-threads 1 --judge-threads 1 -o $T/search
# data selection: 4 responses per problem, keep the correct one the judge scores best; fine-tune on it
t stepwiser select --policy $P --judge $T/judge/final --problems $T/problems.jsonl --limit 20 --k 4 --max-tokens 160 \
    --temperature 0.7 --policy-threads 1 --judge-threads 1 -o $T/select
t stepwiser train-policy --model $P --data $T/select/train.jsonl --max-steps 3 --lr 1e-4 --num-threads 1 -o $T/sft
# GRPO of the policy with outcome + the judge's process reward (2 steps)
t stepwiser train-policy-grpo --model $P --problems $T/problems.jsonl --reward outcome+process \
    --judge $T/judge/final --max-steps 2 --num-threads 1 -o $T/pg
# the judge as a process reward over HTTP: one POST /score, then stop the server
stepwiser serve --judge $T/judge/final --port $PORT --threads 1 --log-level warning & SERVE=$!
trap 'kill $SERVE 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf localhost:$PORT/health >/dev/null && break; sleep 1; done
t curl -s localhost:$PORT/score -H 'content-type: application/json' -d '{"items": [{"problem": "Noah drives at 6 km per hour for 9 hours. A detour adds 9 km to the trip. The van uses 1 liter of fuel for every 9 km. How many liters of fuel does Noah have to buy?", "response": "<chunk>He drives 6 * 9 = 54 km.</chunk>\n<chunk>The detour makes it 54 + 9 = 63 km.</chunk>\n<chunk>The van uses 63 / 9 = 7 liters. The answer is \\boxed{7}.</chunk>"}]}'
echo
kill $SERVE; wait $SERVE 2>/dev/null || true
# one report of everything above, and one HTML page to browse the chunks
t stepwiser report-run -o $T/report --data $T/judge-data/val.jsonl --labels "judge=$T/eval-labels" \
    --bench "judge=$T/pb-judge,position prior=$T/pb-prior" --train "judge=$T/judge" \
    --annotations "chunks=$T/annotations.jsonl" --search "judge=$T/search" --select "judge=$T/select"
t stepwiser view $T/annotations.jsonl $T/eval-labels $T/search -o $T/view.html
echo "total $(awk '{s += $1} END {printf "%.0f", s}' "$T/times.log") s of commands; outputs in $T"
