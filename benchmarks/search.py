"""Chunk-reset search: cost against free generation, the judge's share of the time, and batching.

Prints, side by side:
1. policy and judge tokens per solved problem for free generation (the run's baseline) and for
   chunk-reset (policy tokens = accepted + rejected; judge tokens = generated analyses, and prompts);
2. the share of the search's wall time spent in the judge (`judge_seconds_share`);
3. problems/s with 1 problem in flight and with `--active` problems in flight, and their ratio (what the
   active set buys: one batched policy call and one batched judge call per round).

Default (`--sim`): a simulated chunk policy and judge on the micro arithmetic problems. The policy writes
the reference solution chunk by chunk and spoils each chunk with probability `--p-error` (a spoiled chunk
makes the final answer wrong); the judge flags a spoiled chunk with probability `--recall` and a clean one
with `--false-alarm`, writing `--judge-tokens` tokens of analysis. Both have a batched-decoding cost model:
a call takes `--call-ms` plus `--step-ms` per decoding step of its longest sequence, whatever the batch
size (as a GPU engine below saturation). So the batching ratio shows what the scheduler achieves under
that model, not a hardware figure; give `--policy M --judge M` (hf engine) to measure real models.

    .venv/bin/python benchmarks/search.py                        # simulated, under a minute
    .venv/bin/python benchmarks/search.py --policy runs/micro-policy/final --judge runs/micro-judge \\
        --problems 16 --active 16
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from stepwiser.core.chunks import CLOSE, parse_chunks
from stepwiser.data.synth import generate_problems
from stepwiser.engines import Completion, Engine
from stepwiser.io.records import write_jsonl
from stepwiser.judges.base import Judgment
from stepwiser.stages.search import BASELINE, SearchConfig, run_baseline, run_search

SPOIL = " (a mistake: the numbers are off)"


def batched_cost(call_ms: float, step_ms: float, longest: int) -> None:
    time.sleep((call_ms + step_ms * longest) / 1000)


class SimPolicy(Engine):
    """The reference solution from the accepted prefix on, each chunk spoiled with probability p."""

    name = "sim"

    def __init__(self, problems, p: float, call_ms: float, step_ms: float):
        self.by_text = {pr.problem.strip(): pr for pr in problems}
        self.p, self.call_ms, self.step_ms, self.model = p, call_ms, step_ms, "sim-policy"

    def apply_chat_template(self, messages, add_generation_prompt=True):
        return "".join(f"<|{m['role']}|>{m['content']}\n" for m in messages) + "<|assistant|>"

    def _text(self, req, seed) -> str:
        pr = self.by_text[req.messages[-1]["content"]]
        ref = parse_chunks(pr.solution)
        done = req.prefix.count(CLOSE)
        bad = SPOIL in req.prefix
        rng = random.Random(f"{seed}-{req.prefix}")
        out = []
        for j in range(done, len(ref)):
            c = ref[j]
            if j == len(ref) - 1 and bad:
                c = c.replace(f"\\boxed{{{pr.answer}}}", f"\\boxed{{{int(pr.answer) + 1}}}")
            elif j < len(ref) - 1 and rng.random() < self.p:
                c, bad = c + SPOIL, True
            out.append(f"<chunk>{c}</chunk>")
        return "\n".join(out)

    def generate(self, requests, params):
        outs = []
        for r in requests:
            t = self._text(r, r.seed if r.seed is not None else params.seed)
            hits = [t.index(s) for s in params.stop if s in t]
            t = t[:min(hits)] if hits else t
            words = t.split()
            finish = "length" if len(words) > params.max_tokens else "stop"
            t = " ".join(words[:params.max_tokens]) if finish == "length" else t
            outs.append([Completion(t, len(self.prompt_text(r).split()), max(1, len(t.split())), finish)])
        batched_cost(self.call_ms, self.step_ms, max(c[0].completion_tokens for c in outs))
        return outs


class SimJudge:
    """Flags a spoiled chunk with probability `recall`, a clean one with `false_alarm`."""

    def __init__(self, recall: float, false_alarm: float, tokens: int, call_ms: float, step_ms: float):
        self.recall, self.false_alarm, self.tokens = recall, false_alarm, tokens
        self.call_ms, self.step_ms = call_ms, step_ms

    def judge(self, items, k=1):
        out = []
        for it in items:
            rng = random.Random(f"{it.problem}|{it.history}|{it.chunk}")
            neg = rng.random() < (self.recall if SPOIL in it.chunk else self.false_alarm)
            out.append(Judgment(verdicts=[0 if neg else 1] * k, tokens=self.tokens * k,
                                prompt_tokens=len(" ".join([it.problem, *it.history, it.chunk]).split())))
        batched_cost(self.call_ms, self.step_ms, self.tokens)
        return out


def models(args, problems):
    if args.policy:
        from stepwiser.engines import build_engine
        from stepwiser.judges.load import load_judge
        opts = {"engine": "hf", "device": "cpu"}
        return build_engine(args.policy, opts), load_judge(args.judge or args.policy, opts,
                                                           max_tokens=args.judge_tokens)
    return (SimPolicy(problems, args.p_error, args.call_ms, args.step_ms),
            SimJudge(args.recall, args.false_alarm, args.judge_tokens, args.call_ms, args.step_ms))


def config(args, tmp: Path, problems_path: Path, active: int) -> SearchConfig:
    return SearchConfig(policy=args.policy or "sim", judge=args.judge or "sim", problems=str(problems_path),
                       out=str(tmp / f"active-{active}"), active=active, baseline=False,
                       max_resets=args.max_resets, max_chunk_tokens=args.max_chunk_tokens,
                       max_tokens=args.max_tokens, verify_timeout=30.0)


def run(cfg: SearchConfig, policy, judge):
    """The search alone (no baseline), timed."""
    t0 = time.time()
    summary = run_search(cfg, policy, judge, progress=False)
    seconds = time.time() - t0
    recs = [json.loads(x) for x in (Path(cfg.out) / "search.jsonl").read_text().splitlines()]
    return summary, recs, seconds


def per_solved(total: float, solved: int) -> str:
    return f"{total / solved:.1f}" if solved else "n/a (none solved)"


def report(args, summary, recs, base_recs, seconds_one, seconds_many) -> None:
    n = len(recs)
    solved = sum(r["correct"] for r in recs)
    base_solved = sum(r["correct"] for r in base_recs)
    base_tokens = sum(r.get("completion_tokens", 0) for r in base_recs)
    policy_tokens = sum(r["accepted_tokens"] + r["rejected_tokens"] for r in recs)
    judge_gen = sum(r["judge_tokens"] for r in recs)
    judge_prompt = sum(r["judge_prompt_tokens"] for r in recs)
    print(f"{n} problems, max_resets {args.max_resets}" + ("" if args.policy else
          f", simulated: p_error {args.p_error}, judge recall {args.recall}, false alarm {args.false_alarm}"))
    print(f"{'':28}{'free generation':>20}{'chunk-reset':>20}")
    print(f"{'accuracy %':28}{100 * base_solved / n:>20.1f}{100 * solved / n:>20.1f}")
    print(f"{'policy tokens / solved':28}{per_solved(base_tokens, base_solved):>20}"
          f"{per_solved(policy_tokens, solved):>20}")
    print(f"{'  of which rejected':28}{'':>20}{per_solved(sum(r['rejected_tokens'] for r in recs), solved):>20}")
    print(f"{'policy tokens / problem':28}{base_tokens / n:>20.1f}{policy_tokens / n:>20.1f}")
    print(f"{'judge tokens / solved':28}{'0':>20}{per_solved(judge_gen, solved):>20}")
    print(f"{'judge prompt tokens / solved':28}{'0':>20}{per_solved(judge_prompt, solved):>20}")
    print(f"{'judge calls / problem':28}{'0':>20}{summary['mean_judge_calls']:>20}")
    print(f"judge share of the search's wall time: {summary['judge_seconds_share']}")
    one, many = n / seconds_one, n / seconds_many
    print(f"problems/s: 1 in flight {one:.2f}, {args.active} in flight {many:.2f}, ratio {many / one:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("--active", type=int, default=32)
    ap.add_argument("--max-resets", type=int, default=5)
    ap.add_argument("--max-chunk-tokens", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--p-error", type=float, default=0.15)
    ap.add_argument("--recall", type=float, default=0.8)
    ap.add_argument("--false-alarm", type=float, default=0.1)
    ap.add_argument("--judge-tokens", type=int, default=48)
    ap.add_argument("--call-ms", type=float, default=10.0)
    ap.add_argument("--step-ms", type=float, default=0.2)
    ap.add_argument("--policy", default=None, help="real policy model (hf engine, CPU) instead of the simulation")
    ap.add_argument("--judge", default=None, help="real judge model (default: the policy)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    problems = generate_problems(args.problems, args.seed, min_steps=3, max_steps=6, max_operand=10)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        path = tmp / "problems.jsonl"
        write_jsonl(path, problems)
        policy, judge = models(args, problems)
        cfg = config(args, tmp, path, args.active)
        summary, recs, many = run(cfg, policy, judge)
        _, _, one = run(config(args, tmp, path, 1), policy, judge)
        run_baseline(cfg, policy, progress=False)    # free generation, same sampling settings
        base = [json.loads(x) for x in (Path(cfg.out) / BASELINE).read_text().splitlines()]
        report(args, summary, recs, base, one, many)


if __name__ == "__main__":
    main()
