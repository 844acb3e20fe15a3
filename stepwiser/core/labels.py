"""Monte Carlo labels from Q-values (contract C3, docs/METHOD.md 2.2). Pure functions.

``q = [Q_0, Q_1, ..., Q_H]``: Q_0 is the problem's success rate before any chunk, Q_i the success
rate of rollouts continuing after chunk i (Q_H = the response's own correctness). Chunk i (1..H)
gets a label from the pair (Q_{i-1}, Q_i); 1 = positive, 0 = negative:

- ``abs_q``: positive iff Q_i > 0.
- ``rel_ratio`` (gamma): positive iff Q_i > gamma * Q_{i-1} (defined when Q_{i-1} = 0: then iff Q_i > 0).
- ``rel_effective`` (alpha, n): with Qmu(Q) = 1 - (1 - Q)^n (the best-of-n value),
  score_i = Q_i + alpha * (Qmu(Q_i) - Qmu(Q_{i-1})); positive iff score_i > 0.

Ties. Each rule is "margin > 0" with margin Q_i, Q_i - gamma * Q_{i-1} or score_i. A margin of exactly
zero is negative (strict inequality). Q-values are ratios k/M computed in floating point, so a tie in
exact arithmetic (e.g. 7/16 vs 0.7 * 10/16) can come out as +-1e-17; margins within ``TIE_TOL``
(1e-12) of zero are therefore treated as ties (negative). Q-values k/M with any realistic M are far
more than 1e-12 apart, so this changes no label except float-rounded ties. Every label is monotone
non-decreasing in Q_i and non-increasing in Q_{i-1} (for gamma, alpha >= 0), which early stopping
(`stepwiser.core.earlystop`) relies on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

LABEL_TYPES = ("abs_q", "rel_ratio", "rel_effective")
TIE_TOL = 1e-12


@dataclass(frozen=True)
class LabelParams:
    """Label hyperparameters (paper defaults for the 1.5B model: gamma 0.8, alpha 0.4, n 4)."""

    gamma: float = 0.8
    alpha: float = 0.4
    n: int = 4

    def __post_init__(self) -> None:
        _check_params(self.gamma, self.alpha, self.n)


def _check_params(gamma: float, alpha: float, n: int) -> None:
    for name, v in (("gamma", gamma), ("alpha", alpha)):
        if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")


def check_method(method: str) -> None:
    """ValueError unless `method` is one of LABEL_TYPES."""
    if method not in LABEL_TYPES:
        raise ValueError(f"unknown label method {method!r}; allowed: {', '.join(LABEL_TYPES)}")


def _check_q(value: float, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= value <= 1.0:
        # NaN fails the range test too.
        raise ValueError(f"{where} must be a number in [0, 1], got {value!r}")
    return float(value)


def qmu(q: float, n: int = 4) -> float:
    """Best-of-n value of a success rate: 1 - (1 - q)^n."""
    _check_params(0.0, 0.0, n)
    q = _check_q(q, "Q")
    return 1.0 - (1.0 - q) ** n


def _margin(q_prev: float, q_cur: float, method: str, gamma: float, alpha: float, n: int) -> float:
    if method == "abs_q":
        return q_cur
    if method == "rel_ratio":
        return q_cur - gamma * q_prev
    return q_cur + alpha * ((1.0 - q_prev) ** n - (1.0 - q_cur) ** n)  # = alpha*(Qmu(cur)-Qmu(prev))


def label_from_pair(q_prev: float, q_cur: float, method: str, gamma: float = 0.8, alpha: float = 0.4,
                    n: int = 4) -> int:
    """Label (0/1) of one chunk from Q_{i-1} = `q_prev` and Q_i = `q_cur` (the single-chunk rule)."""
    check_method(method)
    _check_params(gamma, alpha, n)
    q_prev, q_cur = _check_q(q_prev, "Q_{i-1}"), _check_q(q_cur, "Q_i")
    return int(_margin(q_prev, q_cur, method, gamma, alpha, n) > TIE_TOL)


def _check_vector(q: list[float]) -> list[float]:
    if len(q) < 2:
        raise ValueError(f"need at least 2 Q-values (Q_0 and Q_1), got {len(q)}")
    return [_check_q(v, f"Q_{i}") for i, v in enumerate(q)]


def rel_effective_scores(q: list[float], alpha: float = 0.4, n: int = 4) -> list[float]:
    """The H Rel-Effective scores Q_i + alpha * (Qmu(Q_i) - Qmu(Q_{i-1})), i = 1..H."""
    _check_params(0.0, alpha, n)
    q = _check_vector(q)
    return [q[i] + alpha * ((1.0 - q[i - 1]) ** n - (1.0 - q[i]) ** n) for i in range(1, len(q))]


def label_chunks(q: list[float], method: str, gamma: float = 0.8, alpha: float = 0.4, n: int = 4) -> list[int]:
    """The H labels (0/1) of chunks 1..H from q = [Q_0, ..., Q_H] (contract C3)."""
    check_method(method)
    _check_params(gamma, alpha, n)
    q = _check_vector(q)
    return [int(_margin(q[i - 1], q[i], method, gamma, alpha, n) > TIE_TOL) for i in range(1, len(q))]
