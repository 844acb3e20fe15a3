"""The `annotate` stage's summary: label balance, rollouts and tokens, and what prefix sharing and early
stopping saved against the full-M budget (computed from the written annotations, so a resumed run
reports the whole file)."""
from __future__ import annotations

from collections import Counter

from stepwiser.io.records import iter_jsonl


def summarize(cfg, stats: Counter, skipped: Counter, seconds: float) -> dict:
    """Chunks, label balance, rollouts and tokens spent versus the full-M budget, skips (whole file)."""
    rows = [o for _, o in iter_jsonl(cfg.out)]
    chunks = sum(len(o["chunks"]) for o in rows)
    cost = rollout_accounting(rows, cfg.rollouts)
    budget, total = cost["full_M_budget"], cost["rollouts_spent"]
    balance = {}
    for t in cfg.labels:
        labs = [x for o in rows for x in (o["labels"].get(t) or [])]
        balance[t] = round(100 * sum(labs) / max(len(labs), 1), 1)
    return {
        "annotations": len(rows), "problems": len({o["problem_id"] for o in rows}), "chunks": chunks,
        "mean_chunks_per_sample": round(chunks / max(len(rows), 1), 2),
        "positive_pct": balance,
        **cost, "rollout_ratio": round(total / max(budget, 1), 3),
        "rollouts_this_run": stats["rollouts"], "tokens_this_run": stats["tokens"],
        "rollouts_per_s": round(stats["rollouts"] / max(seconds, 1e-9), 2),
        "tokens_per_s": round(stats["tokens"] / max(seconds, 1e-9), 1),
        "verify_timeouts": stats["verify_timeouts"], "verify_errors_this_run": stats["verify_errors"],
        "skipped": dict(skipped), "seconds": round(seconds, 1),
    }


def rollout_accounting(rows: list[dict], M: int) -> dict:
    """Rollouts spent versus the full-M budget (M per chunk 1..H-1 of every sample, and per problem for
    Q_0), with the two savings apart: prefix sharing (the share of Q slots not rolled out because an
    identical prefix of the same problem was) and early stopping (the share of M per rolled-out slot not
    drawn). 1 - rollout_ratio = 1 - (1 - sharing)(1 - early stopping), up to Q_0."""
    q0 = {o["problem_id"]: o["q0"]["rollouts"] for o in rows if o["q0"]["source"] == "rollouts"}
    slots, distinct = 0, {}
    for i, o in enumerate(rows):
        shared = o.get("prefix_sharing")
        for j in range(1, len(o["chunks"])):
            slots += 1
            key = (o["problem_id"], tuple(o["chunks"][:j])) if shared else (i, j)
            distinct[key] = o["rollouts"][j - 1]
    spent = sum(distinct.values())
    return {"rollouts_spent": spent + sum(q0.values()), "full_M_budget": M * (slots + len(q0)),
            "q_slots": slots, "distinct_q_slots": len(distinct),
            "saved_by_sharing": round(1 - len(distinct) / slots, 3) if slots else 0.0,
            "saved_by_early_stop": round(1 - spent / (M * len(distinct)), 3) if distinct else 0.0}
