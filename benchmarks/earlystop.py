"""Early stopping in Monte Carlo annotation: rollouts saved and agreement with full M (simulation).

Simulated policy (docs/METHOD.md 4.1): a problem has H chunks (uniform in --chunks) and a
per-step success rate s (uniform in --step-success). A response gets each step right with
probability s; its first wrong step e (if any) makes it incorrect. Rollouts continuing after chunk i
succeed with probability Q_i = s^(H-i) before the error and --recovery-max * U(0, 1) from the error on
(0 by default: Q drops to 0 after an error). Q_0 = s^H is shared by the --samples responses of a
problem; Q_H is the response's correctness. Draws are Bernoulli(Q_j), M per index, recorded once and
replayed through every mode, so "agreement" compares labels on the very same draws.

Rollout ratio = rollouts spent (chunks 1..H-1 plus Q_0 once per problem) / the same under ``off``.
Label agreement = share of chunk labels equal to the full-M labels (for "all": a chunk agrees when all
three types do); response agreement = share of responses whose labels all agree.

The ``confident`` prior is either flat (``uniform``) or fitted by empirical Bayes (``fitted``,
`GridPrior.fit`) on the full-M counts of --pilot separate problems (another seed): the pilot's
rollouts are a one-time cost, printed but not in the ratio. ``exact`` uses the refined pause rule
(`exact_needs`); "exact, both decided" is the rule as written in docs/METHOD.md 4.1. The oracle
row gives ``confident`` the true Q of every index as its prior: a reference for what a better prior
could reach, not a usable mode.

    .venv/bin/python benchmarks/earlystop.py     # defaults: 300 problems x 4 samples, M = 16; ~1 min
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from stepwiser.core.earlystop import GridPrior, StopConfig, label_table, simulate, simulate_problem
from stepwiser.core.labels import LABEL_TYPES, LabelParams

LABEL_SETS = {"abs_q": ("abs_q",), "rel_ratio": ("rel_ratio",), "rel_effective": ("rel_effective",),
              "all three": LABEL_TYPES}


def make_problems(rng: np.random.Generator, args) -> tuple[list, list[list[float]]]:
    """([(Q_0 draws, [per sample: draws for indices 1..H])], true [Q_0..Q_H] per sample); the first
    wrong chunk of every sample is kept in `args.first_errors` (per problem: H and the list of e)."""
    problems, true_q = [], []
    args.first_errors = []
    for _ in range(args.problems):
        H = int(rng.integers(args.chunks[0], args.chunks[1] + 1))
        s = rng.uniform(*args.step_success)
        q0 = (rng.random(args.M) < s ** H).astype(int).tolist()
        samples, errs = [], []
        args.first_errors.append((H, errs))
        for _ in range(args.samples):
            wrong = np.nonzero(rng.random(H) >= s)[0]
            e = int(wrong[0]) + 1 if len(wrong) else H + 1  # first wrong chunk (1-based), H+1: none
            errs.append(e)
            q = [s ** (H - i) if i < e else args.recovery_max * rng.random() for i in range(1, H)]
            rows = [(rng.random(args.M) < qi).astype(int).tolist() for qi in q]
            rows.append([int(e > H)] * args.M)
            samples.append(rows)
            true_q.append([s ** H, *q, float(e > H)])
        problems.append((q0, samples))
    return problems, true_q


def sharing_saving(first_errors) -> float:
    """Share of Q slots (chunks 1..H-1 of every response) that prefix sharing does not roll out when every
    right chunk of a problem is the same text and every wrong one is unique: at index j the responses
    still right after chunk j share one prefix, each one already wrong has its own."""
    slots = distinct = 0
    for H, errs in first_errors:
        for j in range(1, H):
            slots += len(errs)
            distinct += any(e > j for e in errs) + sum(e <= j for e in errs)
    return 1 - distinct / slots if slots else 0.0


def flip_prone(true_q: list[list[float]], M: int, method: str, params: LabelParams) -> float:
    """Share of labels whose full-M value differs from its likeliest value with probability > 5% even
    when the true Q-values are known: these cannot be predicted at delta = 0.05 without the draws."""
    def pmf(p: float, n: int) -> np.ndarray:
        return np.array([math.comb(n, r) * p ** r * (1 - p) ** (n - r) for r in range(n + 1)])
    noisy = total = 0
    for q in true_q:
        sizes = [M] * (len(q) - 1) + [1]
        for i in range(1, len(q)):
            p = pmf(q[i - 1], sizes[i - 1]) @ label_table(sizes[i - 1], sizes[i], method, params) @ pmf(q[i], sizes[i])
            noisy, total = noisy + (min(p, 1 - p) > 0.05), total + 1
    return noisy / total


def run(problems, M: int, labels, params: LabelParams, config: StopConfig, prior=None):
    out = []
    spent = 0
    for q0, samples in problems:
        labs, q0_spent, sp = simulate_problem(q0, samples, M, labels, params, config, prior=prior)
        out.append(labs)
        spent += q0_spent + sum(sum(s) for s in sp)
    return out, spent


def run_oracle(problems, true_q, M: int, labels, params: LabelParams, config: StopConfig):
    """Confident mode told the true Q of every index (a point-mass prior): how far a better prior could
    go. Per response, Q_0 given for free; returns (labels, chunk rollouts spent, chunk rollouts off)."""
    out, spent, full, r = [], 0, 0, 0
    for q0, samples in problems:
        labs = []
        for rows in samples:
            prior = [GridPrior([q, q], [1, 1]) for q in true_q[r]]
            r += 1
            got, sp = simulate([q0, *rows], M, labels, params, config.mode, config.round_size,
                               delta=config.delta, min_rollouts=config.min_rollouts, prior=prior, q0_exact=True)
            labs.append(got)
            spent, full = spent + sum(sp), full + M * (len(rows) - 1)
        out.append(labs)
    return out, spent, full


def agreement(ref, got, labels) -> tuple[float, float]:
    chunks = agree = resp = resp_agree = 0
    for ref_p, got_p in zip(ref, got):
        for r, g in zip(ref_p, got_p):
            ok = [all(r[t][i] == g[t][i] for t in labels) for i in range(len(r[labels[0]]))]
            chunks, agree = chunks + len(ok), agree + sum(ok)
            resp, resp_agree = resp + 1, resp_agree + all(ok)
    return agree / chunks, resp_agree / resp


def pilot_prior(args, params) -> tuple[GridPrior, int]:
    rng = np.random.default_rng(args.seed + 1)
    pilot_args = argparse.Namespace(**{**vars(args), "problems": args.pilot})
    counts = []
    for q0, samples in make_problems(rng, pilot_args)[0]:
        counts.append((sum(q0), args.M))
        counts += [(sum(row), args.M) for s in samples for row in s[:-1]]
    return GridPrior.fit(counts), args.M * len(counts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", type=int, default=300)
    ap.add_argument("--samples", type=int, default=4, help="responses per problem (share Q_0)")
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--chunks", type=int, nargs=2, default=(3, 10))
    ap.add_argument("--step-success", type=float, nargs=2, default=(0.80, 0.93))
    ap.add_argument("--recovery-max", type=float, default=0.0)
    ap.add_argument("--round-size", type=int, default=2)
    ap.add_argument("--min-rollouts", type=int, default=2)
    ap.add_argument("--extra-deltas", type=float, nargs="*", default=(0.1, 0.2),
                    help="also run confident/fitted at these deltas (the trade-off)")
    ap.add_argument("--delta", type=float, default=0.05)
    ap.add_argument("--pilot", type=int, default=50, help="pilot problems for the fitted prior")
    ap.add_argument("--gamma", type=float, default=0.8)
    ap.add_argument("--alpha", type=float, default=0.4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    params = LabelParams(args.gamma, args.alpha, 4)
    problems, true_q = make_problems(np.random.default_rng(args.seed), args)
    n_resp = sum(len(s) for _, s in problems)
    n_chunks = sum(len(x) for _, s in problems for x in s)
    n_correct = sum(x[-1][0] for _, s in problems for x in s)
    fitted, pilot_cost = pilot_prior(args, params)
    print(f"{args.problems} problems, {n_resp} responses ({n_correct / n_resp:.0%} correct), {n_chunks} "
          f"chunks, M={args.M}, round size {args.round_size}, gamma {params.gamma}, alpha {params.alpha}, "
          f"recovery-max {args.recovery_max}, seed {args.seed}")
    off_cost = args.M * (args.problems + sum(len(x) - 1 for _, s in problems for x in s))
    print(f"off: {off_cost} rollouts; confident: delta {args.delta}, min rollouts {args.min_rollouts}; fitted prior from "
          f"{args.pilot} pilot problems ({pilot_cost} rollouts, once)")
    modes = [("exact", StopConfig("exact", args.round_size), None),
             ("exact, both decided", StopConfig("exact", args.round_size, refined=False), None),
             ("confident/uniform", StopConfig("confident", args.round_size, args.delta, args.min_rollouts),
              GridPrior.uniform()),
             ("confident/fitted", StopConfig("confident", args.round_size, args.delta, args.min_rollouts),
              fitted)]
    modes += [(f"confident/fitted d={d:g}", StopConfig("confident", args.round_size, d, args.min_rollouts),
               fitted) for d in args.extra_deltas]
    share = sharing_saving(args.first_errors)
    print(f"prefix sharing (right chunks identical text, wrong ones unique): {share:.1%} of the chunk Q slots "
          f"are not rolled out; on top of a mode's ratio r the total is about r x {1 - share:.3f}")
    noise = {t: flip_prone(true_q, args.M, t, params) for t in LABEL_TYPES}
    print("labels whose full-M value is a coin flip (>5% either way) even given the true Q: "
          + ", ".join(f"{t} {v:.0%}" for t, v in noise.items()))
    print("* the oracle row is a reference, not a usable mode: confident (delta as above) with each index's\n"
          "  true Q as its prior, Q_0 given free; its ratio counts chunk rollouts only")
    print(f"{'labels':<14}{'mode':<27}{'rollout ratio':>14}{'label agree':>13}{'resp agree':>12}{'sec':>6}")
    for name, labels in LABEL_SETS.items():
        ref, full = run(problems, args.M, labels, params, StopConfig("off"))
        for mode, config, prior in modes:
            t0 = time.perf_counter()
            got, spent = run(problems, args.M, labels, params, config, prior)
            chunk_agree, resp_agree = agreement(ref, got, labels)
            print(f"{name:<14}{mode:<27}{spent / full:>14.3f}{chunk_agree:>13.2%}{resp_agree:>12.2%}"
                  f"{time.perf_counter() - t0:>6.1f}")
        t0 = time.perf_counter()
        got, spent, full = run_oracle(problems, true_q, args.M, labels, params, modes[2][1])
        chunk_agree, resp_agree = agreement(ref, got, labels)
        print(f"{name:<14}{'(oracle: true Q known)*':<27}{spent / full:>14.3f}{chunk_agree:>13.2%}"
              f"{resp_agree:>12.2%}{time.perf_counter() - t0:>6.1f}")


if __name__ == "__main__":
    main()
