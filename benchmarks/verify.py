"""Answer checking throughput: checks/second on real answer pairs, sequential `check` vs `check_batch`.

    .venv/bin/python benchmarks/verify.py --data DIR --n 1000 --workers 1,2,4

DIR holds gsm8k/test.jsonl (GSM8K's own format: `question`, `answer` ending in ``#### N``) and
math500/test.jsonl (MATH-500's: `problem`, `solution`, `answer`), as downloaded from the Hub.

Pairs: --n in all, a quarter each of
- GSM8K correct: a test problem's reference solution (text ending ``#### N``) against its answer N;
- GSM8K wrong: the same solution against N + 1;
- MATH-500 correct: a problem's reference solution (ending in ``\\boxed{...}``) against its answer;
- MATH-500 wrong: the same solution against the answer of the next problem whose answer differs as a
  string (it can still be equivalent, e.g. ``0.5`` and ``\\frac12``: "agree" then says so).
Rows: sequential `check` (one pair at a time) and `check_batch` at several worker counts, each with the
in-process fast path on and off (``fast=False`` sends every pair to the math-verify processes).
"agree" is the share of pairs judged as expected (correct pairs correct, wrong pairs not correct).
Every row starts on a fresh, ready pool and runs twice: "cold", then "warm" (the same pairs again on
the same workers, whose sympy and parsed-reference caches are now filled). Also printed: the
time from a cold start to the first answer (process start, math-verify import and warm-up).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

from stepwiser.core import verify


def read_jsonl(path: Path, n: int) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
            if len(rows) >= n:
                break
    return rows


def make_pairs(data: Path, n: int) -> list[tuple[str, str, str, bool]]:
    """(response, reference, subset, expected correct) for n pairs."""
    q = n // 4
    pairs = []
    for row in read_jsonl(data / "gsm8k" / "test.jsonl", q):
        answer = row["answer"].rpartition("####")[2].strip().replace(",", "")
        pairs.append((row["answer"], answer, "gsm8k", True))
        pairs.append((row["answer"], str(int(answer) + 1), "gsm8k", False))
    rows = read_jsonl(data / "math500" / "test.jsonl", 500)
    for i, row in enumerate(rows[:n // 2 - q]):
        other = next(r["answer"] for r in rows[i + 1:] + rows[:i] if r["answer"] != row["answer"])
        pairs.append((row["solution"], row["answer"], "math500", True))
        pairs.append((row["solution"], other, "math500", False))
    return pairs


def run(pairs, mode: str, workers: int, fast: bool, timeout: float) -> dict:
    """One row, on a fresh pool (started and ready before the clock starts: no cache carried over)."""
    todo = [(resp, ref) for resp, ref, _, _ in pairs]
    verify.shutdown()
    verify.start(workers)
    seconds = []
    for _ in range(2):  # cold caches, then the same pairs again on the same workers
        t0 = time.perf_counter()
        if mode == "check":
            results = [verify.check(resp, ref, timeout, fast=fast) for resp, ref in todo]
        else:
            results = verify.check_batch(todo, timeout, workers=workers, fast=fast)
        seconds.append(time.perf_counter() - t0)
    agree = sum(r.correct == expected for r, (_, _, _, expected) in zip(results, pairs))
    return {"mode": mode, "workers": workers, "fast": fast, "seconds": seconds[0],
            "rate": len(pairs) / seconds[0], "warm": len(pairs) / seconds[1], "agree": agree / len(pairs),
            "statuses": Counter(r.status for r in results), "results": results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder with gsm8k/test.jsonl and math500/test.jsonl")
    ap.add_argument("--n", type=int, default=1000, help="number of pairs (a multiple of 4)")
    ap.add_argument("--workers", default="1,2,4", help="check_batch worker counts, comma-separated")
    ap.add_argument("--timeout", type=float, default=5.0)
    args = ap.parse_args()
    pairs = make_pairs(args.data, args.n)
    counts = Counter((s, e) for _, _, s, e in pairs)
    print(f"{len(pairs)} pairs: " + ", ".join(f"{s} {'correct' if e else 'wrong'} {c}"
                                               for (s, e), c in sorted(counts.items())))
    verify.shutdown()
    t0 = time.perf_counter()
    verify.check("\\boxed{x^2}", "x^2", fast=False)
    print(f"pool start ({verify.default_workers()} workers) + first check: {time.perf_counter() - t0:.2f}s; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")

    rows = []
    for fast in (True, False):
        rows.append(run(pairs, "check", 1, fast, args.timeout))
        for w in (int(x) for x in args.workers.split(",")):
            rows.append(run(pairs, "check_batch", w, fast, args.timeout))
    print("| mode | workers | fast path | seconds (cold) | checks/s (cold) | checks/s (warm) | agree | statuses |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items()))
        print(f"| {r['mode']} | {r['workers']} | {'on' if r['fast'] else 'off'} | {r['seconds']:.2f} | "
              f"{r['rate']:.0f} | {r['warm']:.0f} | {100 * r['agree']:.1f}% | {statuses} |")
    base = rows[0]["results"]
    print("\ndisagreements with the expected verdict (first row):")
    for (resp, ref, subset, expected), r in zip(pairs, base):
        if r.correct != expected:
            print(f"  {subset} expected {'correct' if expected else 'wrong'}: answer {r.answer!r:.60} "
                  f"vs reference {ref!r:.60} -> {r.status} {r.detail}")
    decided = [(resp, ref) for (resp, ref, _, _), r in zip(pairs, base) if r.detail == "fast path"]
    t0 = time.perf_counter()
    for resp, ref in decided:
        verify.check(resp, ref, args.timeout)
    rate = len(decided) / (time.perf_counter() - t0)
    print(f"\nfast path: {len(decided)} of {len(pairs)} pairs decided in-process, at {rate:.0f} checks/s")


if __name__ == "__main__":
    main()
