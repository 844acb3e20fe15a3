"""From per-chunk verdicts to one process reward per response (pure; used by `ProcessReward` and `serve`).

Verdicts are 1 (Positive), 0 (Negative) or None (unparsed: the judge's output had no verdict).

Aggregates (contract C9):

- ``min``: 1.0 if every chunk is Positive, else 0.0;
- ``mean``: the share of Positive chunks;
- ``first-negative``: the share of chunks before the first Negative (1.0 if there is none).

Unparsed verdicts follow one rule, `unparsed`: ``negative`` (the default: a chunk the judge could not
vouch for earns nothing, so a policy cannot gain by making the judge fail), ``positive``, or ``skip``
(the chunk is left out, as if it were not there). A response with no chunks left (none parsed from
its text, or all skipped) gets `empty` (default 0.0; None means "no reward", which TRL's GRPOTrainer
accepts and leaves out of that sample's sum).

`combine(process, outcome, how)` mixes in an outcome reward: ``none`` (the process reward alone),
``times`` (process x outcome: credit only for correct answers reached by sound steps) or ``plus``
(process + outcome). None on either side gives None (``none`` ignores the outcome).
"""
from __future__ import annotations

AGGREGATES = ("min", "mean", "first-negative")
UNPARSED_RULES = ("negative", "positive", "skip")
COMBINE = ("none", "times", "plus")


def check_aggregate(method: str, unparsed: str = "negative", combine_how: str = "none") -> None:
    """ValueError naming the allowed values for an unknown aggregate, unparsed rule or combination."""
    for name, value, allowed in (("aggregate", method, AGGREGATES), ("unparsed", unparsed, UNPARSED_RULES),
                                 ("combine", combine_how, COMBINE)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def resolve_unparsed(verdicts: list[int | None], unparsed: str = "negative") -> list[int]:
    """The verdicts with None replaced by 0 (negative), 1 (positive) or dropped (skip)."""
    check_aggregate("min", unparsed)
    if unparsed == "skip":
        return [int(v) for v in verdicts if v is not None]
    fill = 1 if unparsed == "positive" else 0
    return [fill if v is None else int(v) for v in verdicts]


def aggregate(verdicts: list[int | None], method: str = "min", unparsed: str = "negative",
              empty: float | None = 0.0) -> float | None:
    """One response's process reward from its chunk verdicts (see the module docstring)."""
    check_aggregate(method, unparsed)
    vs = resolve_unparsed(verdicts, unparsed)
    if not vs:
        return empty
    if method == "min":
        return float(all(vs))
    if method == "mean":
        return sum(vs) / len(vs)
    first = vs.index(0) if 0 in vs else len(vs)
    return first / len(vs)


def combine(process: float | None, outcome: float | None, how: str = "none") -> float | None:
    """`process` alone (``none``), times `outcome` (``times``) or plus it (``plus``)."""
    check_aggregate("min", "negative", how)
    if how == "none":
        return process
    if process is None or outcome is None:
        return None
    return process * outcome if how == "times" else process + outcome
