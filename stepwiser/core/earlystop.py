"""Early stopping of Monte Carlo rollouts (docs/METHOD.md 4.1). Pure maths, no model calls.

State. A response with chunks 1..H has Q indices j = 0..H. Index j holds k_j successes after m_j of
at most M_j rollouts (a `Tally`). Q_H is the response's own correctness, known exactly (a tally with
k = 0 or 1, m = M = 1, costing no rollouts). Q_0 belongs to the problem: its tally may be shared by
all samples of the problem (pass the same `Tally` to each sample's `EarlyStopper`), or be exact from
elsewhere (``--q0 samples``: a tally with m == M). The value a full run would compute is K_j / M_j,
where K_j is the success count after all M_j rollouts; with k successes after m of M it lies in the
interval [k/M, (k + M - m)/M], exact when m == M.

Rollouts are issued in rounds: `EarlyStopper.needs()` says how many more rollouts each index needs
in the next round (at most ``round_size`` each), the caller runs them and `record`s the outcomes.

Modes (``StopConfig.mode``):

- ``off``: every index gets all M rollouts.
- ``exact``: labels identical to ``off`` on the same draws. Every label is monotone (increasing in
  Q_i, decreasing in Q_{i-1}), so label i is *decided* when it is the same at the corners
  (lo_i, hi_{i-1}) and (hi_i, lo_{i-1}) (`decided`). As written in docs/METHOD.md 4.1, index j may pause
  only when BOTH label j (pair j-1, j) and label j+1 (pair j, j+1) are decided for every requested
  label type (Q_0 only enters label 1; ``StopConfig(refined=False)``). The default refines this:
  index j may pause when neither neighbouring label can change through j's remaining draws (a
  decided label cannot change at all; see `exact_needs`), which is still exact and saves e.g. the
  Abs-Q rollouts of Q_0 and of the chunk before an unresolved one. Needs are recomputed from the
  current state every round; that is what "a pause is reopened" means here: a paused index needs
  rollouts again in any later round where its condition no longer holds. In ``exact`` mode the
  ranges only shrink, so the condition, once true, stays true and nothing actually reopens; in
  ``confident`` mode a posterior can move, and an index can reopen.
- ``confident``: a Bayesian sequential test (below). Index j may pause when the ``exact`` rule lets
  it, or when both neighbouring labels have a full-M value of posterior probability >= 1 - delta
  for every requested type and j has at least ``min_rollouts`` rollouts.
- ``naive``: index j pauses when its OWN label j is decided (Q_0 when label 1 is). Wrong: kept only
  to demonstrate the counter-example of docs/METHOD.md 4.1 in tests. An undecided label falls
  back to the point estimates k/m.

Design of ``confident`` (why it is a valid sequential test, and what it assumes). The target is the
full-M value K_j = k_j + Binomial(M_j - m_j, p_j), not the true p_j: agreement with ``off`` is what
is measured. Each p_j is modelled as an independent draw from a prior G on [0, 1] (`GridPrior`, a
discrete grid). Given the data, the posterior predictive of K_j is a mixture of binomials, and the
indices are independent a posteriori (independent priors, independent draws), so the posterior
probability that label i is positive is the exact double sum
    P_i = sum_{a,b} P(K_{i-1} = a | data) P(K_i = b | data) [label(a / M_{i-1}, b / M_i) = 1],
with no interval slack and no union bound. The label is decided when P_i >= 1 - delta (positive) or
P_i <= delta (negative). The stopping rule looks only at observed draws, so by the likelihood
principle the posterior at the (random) stopping time is still the correct posterior: under the
model, each returned label is wrong with probability <= delta, however many rounds were looked at.
There is no frequentist guarantee for a particular p_j, and the model's prior can be wrong: the
benchmark measures agreement with ``off`` (benchmarks/earlystop.py).
The prior matters most for chunks after an error, whose Q is 0: with a flat prior, m failures leave
P(some success in the R remaining draws) about R / (m + R + 1), so proving "K = 0" costs almost all M
rollouts. `GridPrior.fit` (empirical Bayes: the nonparametric maximum-likelihood prior, by EM, from
(k, m) counts of a pilot set of the same policy and problems) learns that Q = 0 is common and that
small positive Q is rare, which is where the savings for relative labels come from.
``min_rollouts`` guards against deciding on a prior alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from stepwiser.core.labels import LABEL_TYPES, LabelParams, check_method, label_from_pair

MODES = ("off", "exact", "confident", "naive")


@dataclass(frozen=True)
class StopConfig:
    """How rollouts are issued and when an index may pause."""

    mode: str = "exact"
    round_size: int = 2
    delta: float = 0.05
    min_rollouts: int = 2
    refined: bool = True  # exact pause rule: see `exact_needs` (False: both labels decided, as written)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown early-stop mode {self.mode!r}; allowed: {', '.join(MODES)}")
        if not isinstance(self.round_size, int) or self.round_size < 1:
            raise ValueError(f"round_size must be an integer >= 1, got {self.round_size!r}")
        if not 0.0 < self.delta < 0.5:
            raise ValueError(f"delta must be in (0, 0.5), got {self.delta!r}")
        if not isinstance(self.min_rollouts, int) or self.min_rollouts < 0:
            raise ValueError(f"min_rollouts must be an integer >= 0, got {self.min_rollouts!r}")


DEFAULT_PARAMS = LabelParams()
DEFAULT_STOP = StopConfig()


class Tally:
    """Successes k after m of at most M rollouts of one Q index (mutable; may be shared)."""

    def __init__(self, max_rollouts: int, successes: int = 0, rollouts: int = 0) -> None:
        if not isinstance(max_rollouts, int) or max_rollouts < 1:
            raise ValueError(f"max rollouts must be an integer >= 1, got {max_rollouts!r}")
        self.M, self.k, self.m = max_rollouts, 0, 0
        self.add(successes, rollouts)

    def add(self, successes: int, count: int) -> None:
        if not (isinstance(successes, int) and isinstance(count, int) and 0 <= successes <= count
                and self.m + count <= self.M):
            raise ValueError(f"cannot add {successes} successes in {count} rollouts to {self.k}/{self.m} "
                             f"(max {self.M})")
        self.k += successes
        self.m += count

    def interval(self) -> tuple[float, float]:
        return interval(self.k, self.m, self.M)

    def __repr__(self) -> str:
        return f"Tally(k={self.k}, m={self.m}, M={self.M})"


def interval(k: int, m: int, M: int) -> tuple[float, float]:
    """Where the full-M value K/M can still land after k successes in m of M rollouts."""
    return k / M, (k + M - m) / M


def decided(lo_prev: float, hi_prev: float, lo_cur: float, hi_cur: float, method: str,
            params: LabelParams = DEFAULT_PARAMS) -> int | None:
    """The label if it is the same for every Q_{i-1} in [lo_prev, hi_prev] and Q_i in [lo_cur, hi_cur],
    else None (corner rule: labels are monotone, so the two extreme corners suffice)."""
    low = label_from_pair(hi_prev, lo_cur, method, params.gamma, params.alpha, params.n)
    high = label_from_pair(lo_prev, hi_cur, method, params.gamma, params.alpha, params.n)
    return low if low == high else None


def _as_list(M: int | list[int], k: list[int], m: list[int]) -> list[int]:
    """M as a list over indices 0..H, after checking that (k, m, M) is a valid state."""
    M = [M] * len(k) if isinstance(M, int) else list(M)
    if not len(k) == len(m) == len(M) >= 2:
        raise ValueError(f"k, m and M need one entry per Q index 0..H (>= 2), got {len(k)}, {len(m)}, {len(M)}")
    for j, (kj, mj, Mj) in enumerate(zip(k, m, M)):
        if not 0 <= kj <= mj <= Mj or Mj < 1:
            raise ValueError(f"Q index {j}: need 0 <= successes <= rollouts <= max >= 1, got {kj}, {mj}, {Mj}")
    return M


def _check_labels(labels) -> tuple[str, ...]:
    labels = (labels,) if isinstance(labels, str) else tuple(labels)
    if not labels:
        raise ValueError(f"request at least one label type; allowed: {', '.join(LABEL_TYPES)}")
    for t in labels:
        check_method(t)
    return labels


def _pausable(dec: list[bool], own_only: bool = False) -> list[bool]:
    """For j = 0..H: may Q_j pause, given dec[i] = 'label i decided for every type' (dec[0] unused)?
    Both neighbouring labels must be decided (only label 1 for Q_0, only label H for Q_H); with
    `own_only` (the naive rule) just label j (label 1 for Q_0)."""
    H = len(dec) - 1
    ok = []
    for j in range(H + 1):
        left = dec[j] if j >= 1 else True
        right = dec[j + 1] if j < H else True
        ok.append((left if j >= 1 else right) if own_only else (left and right))
    return ok


def _exact_decided(k, m, M, labels, params) -> list[bool]:
    iv = [interval(*t) for t in zip(k, m, M)]
    return [False] + [all(decided(*iv[i - 1], *iv[i], t, params) is not None for t in labels)
                      for i in range(1, len(k))]


def _free(k, m, M, labels, params) -> tuple[list[bool], list[bool]]:
    """free_prev[i] / free_cur[i]: label i (every type) cannot change through the remaining draws of
    Q_{i-1} / of Q_i, whatever the other index's remaining draws are (index 0 unused)."""
    free_prev, free_cur = [True], [True]
    for i in range(1, len(k)):
        free_p = free_c = True
        for t in labels:
            # Full-M labels over every completion: rows = Q_{i-1}'s final count, columns = Q_i's.
            box = label_table(M[i - 1], M[i], t, params)[k[i - 1]:k[i - 1] + M[i - 1] - m[i - 1] + 1,
                                                         k[i]:k[i] + M[i] - m[i] + 1]
            free_p = free_p and bool((box == box[:1, :]).all())
            free_c = free_c and bool((box == box[:, :1]).all())
        free_prev.append(free_p)
        free_cur.append(free_c)
    return free_prev, free_cur


def exact_needs(k: list[int], m: list[int], M: int | list[int], labels=LABEL_TYPES,
                params: LabelParams = DEFAULT_PARAMS, refined: bool = True) -> list[bool]:
    """For j = 0..H: does Q_j still need rollouts in ``exact`` mode?

    ``refined=False``: the rule of docs/METHOD.md 4.1 as written: Q_j may pause only when labels
    j and j+1 are both decided (corner rule). ``refined=True`` (used by `EarlyStopper`): Q_j may
    pause when neither label j nor label j+1 can change through Q_j's remaining draws, whatever the
    other indices' draws are. A decided label cannot change at all, so this pauses at least as early;
    it is still exact: a label that is not decided depends on some neighbour, which keeps running
    until the label is decided (e.g. Abs-Q label i+1 never depends on Q_i, so Q_i stops at its first
    success even while Q_{i+1} is unresolved)."""
    labels, M = _check_labels(labels), _as_list(M, k, m)
    H = len(k) - 1
    if refined:
        free_prev, free_cur = _free(k, m, M, labels, params)
        ok = [(j == 0 or free_cur[j]) and (j == H or free_prev[j + 1]) for j in range(H + 1)]
    else:
        ok = _pausable(_exact_decided(k, m, M, labels, params))
    return [mj < Mj and not okj for mj, Mj, okj in zip(m, M, ok)]


def naive_needs(k: list[int], m: list[int], M: int | list[int], labels=LABEL_TYPES,
                params: LabelParams = DEFAULT_PARAMS) -> list[bool]:
    """The WRONG own-label-only rule (for tests and demonstration)."""
    labels, M = _check_labels(labels), _as_list(M, k, m)
    ok = _pausable(_exact_decided(k, m, M, labels, params), own_only=True)
    return [mj < Mj and not okj for mj, Mj, okj in zip(m, M, ok)]


class GridPrior:
    """A prior on a success rate p: weights on grid points in [0, 1] (both ends included)."""

    def __init__(self, grid, weights) -> None:
        self.grid = np.asarray(grid, dtype=float)
        w = np.asarray(weights, dtype=float)
        if self.grid.ndim != 1 or w.shape != self.grid.shape or len(w) < 2:
            raise ValueError("grid and weights must be 1-d of the same length >= 2")
        if (self.grid < 0).any() or (self.grid > 1).any() or (w < 0).any() or not w.sum() > 0:
            raise ValueError("grid points must lie in [0, 1] and weights be >= 0 with a positive sum")
        self.weights = w / w.sum()
        self._binom: dict[int, np.ndarray] = {}

    @classmethod
    def uniform(cls, points: int = 101) -> GridPrior:
        return cls(np.linspace(0.0, 1.0, points), np.ones(points))

    @classmethod
    def fit(cls, counts, points: int = 101, iters: int = 500, floor: float = 1e-3) -> GridPrior:
        """Empirical Bayes: the grid prior maximising the marginal likelihood of (k, m) counts (EM),
        mixed with `floor` of the uniform prior so that no rate is ruled out."""
        pairs: dict[tuple[int, int], int] = {}
        for k, m in counts:
            if not 0 <= k <= m:
                raise ValueError(f"bad count: {k} successes in {m} rollouts")
            if m:
                pairs[(k, m)] = pairs.get((k, m), 0) + 1
        if not pairs:
            raise ValueError("fit needs at least one count with rollouts > 0")
        grid = np.linspace(0.0, 1.0, points)
        ks, ms = (np.array(v, dtype=float)[:, None] for v in zip(*pairs))
        mult = np.array(list(pairs.values()), dtype=float)
        lik = grid[None, :] ** ks * (1.0 - grid[None, :]) ** (ms - ks)  # (pairs, points)
        w = np.full(points, 1.0 / points)
        for _ in range(iters):
            post = lik * w
            post /= np.maximum(post.sum(axis=1, keepdims=True), 1e-300)
            w = (mult[:, None] * post).sum(axis=0) / mult.sum()
        return cls(grid, (1.0 - floor) * w + floor / points)

    def _binomials(self, R: int) -> np.ndarray:
        if R not in self._binom:
            r = np.arange(R + 1)
            coef = np.array([math.comb(R, i) for i in r], dtype=float)
            g = self.grid[:, None]
            self._binom[R] = coef * g ** r * (1.0 - g) ** (R - r)
        return self._binom[R]

    def predictive(self, k: int, m: int, M: int) -> np.ndarray:
        """P(K = x | k successes in m rollouts), x = 0..M: the full-M count's posterior predictive."""
        out = np.zeros(M + 1)
        if m >= M:
            out[k] = 1.0
            return out
        post = self.weights * self.grid ** k * (1.0 - self.grid) ** (m - k)
        if not post.sum() > 0:
            raise ValueError(f"the prior gives probability 0 to {k} successes in {m} rollouts")
        out[k:k + M - m + 1] = (post / post.sum()) @ self._binomials(M - m)
        return out


@lru_cache(maxsize=256)
def label_table(M_prev: int, M_cur: int, method: str, params: LabelParams) -> np.ndarray:
    """T[a, b] = label(a / M_prev, b / M_cur): the label for every pair of full-M counts."""
    table = np.array([[label_from_pair(a / M_prev, b / M_cur, method, params.gamma, params.alpha, params.n)
                       for b in range(M_cur + 1)] for a in range(M_prev + 1)], dtype=float)
    table.flags.writeable = False  # cached: shared by every caller
    return table


def label_posteriors(k: list[int], m: list[int], M: int | list[int], labels=LABEL_TYPES,
                     params: LabelParams = DEFAULT_PARAMS, prior: GridPrior | list | None = None
                     ) -> dict[str, list[float]]:
    """Posterior probability that the full-M label of chunk i (1..H) is positive, per label type.
    `prior`: one GridPrior for every index (default: uniform), or a list with one per index 0..H."""
    labels, M = _check_labels(labels), _as_list(M, k, m)
    priors = list(prior) if isinstance(prior, (list, tuple)) else [prior or GridPrior.uniform()] * len(k)
    if len(priors) != len(k):
        raise ValueError(f"got {len(priors)} priors for {len(k)} Q indices")
    pred = [p.predictive(*t) for p, t in zip(priors, zip(k, m, M))]
    return {t: [float(pred[i - 1] @ label_table(M[i - 1], M[i], t, params) @ pred[i])
                for i in range(1, len(k))] for t in labels}


def confident_needs(k: list[int], m: list[int], M: int | list[int], labels=LABEL_TYPES,
                    params: LabelParams = DEFAULT_PARAMS, delta: float = 0.05, min_rollouts: int = 2,
                    prior: GridPrior | list | None = None, refined: bool = True) -> list[bool]:
    """For j = 0..H: does Q_j need rollouts under the confident rule (see the module docstring)?"""
    labels, M = _check_labels(labels), _as_list(M, k, m)
    post = label_posteriors(k, m, M, labels, params, prior)
    sure = [not need for need in exact_needs(k, m, M, labels, params, refined)]
    dec = [False] + [all(min(p[i], 1.0 - p[i]) <= delta for p in post.values()) for i in range(len(k) - 1)]
    conf = _pausable(dec)
    # An index whose neighbouring labels are already certain (corner rule) pauses like in `exact`;
    # one that relies on the posterior first gets `min_rollouts`.
    return [mj < Mj and not s_ and (not c_ or mj < min_rollouts)
            for mj, Mj, s_, c_ in zip(m, M, sure, conf)]


class EarlyStopper:
    """Round-by-round rollout bookkeeping for one response (shared by `annotate` and `simulate`).

    Indices 0..H; index H (the response's correctness) is known and never needs rollouts. `q0` is
    the problem's Q_0 tally: pass one `Tally(M)` to every sample of a problem to share Q_0 (run
    ``max`` over the samples' ``needs().get(0, 0)`` rollouts for it per round and record them once,
    with `Tally.add` or through any one stopper), or a full tally (m == M) when Q_0 is known.
    With a shared Q_0 in ``confident`` mode, a stopper that was done can need rollouts again after
    Q_0 moves: read labels when every stopper of the problem is done in the same round.
    `prior` (``confident`` only): one `GridPrior` for every index (default uniform) or one per index 0..H.
    `shared`: for Q indices 1..H-1, a `Tally` shared with other stoppers (or None for a private one): responses
    of one problem whose first j chunks are identical have the same Q_j (the same rollout distribution), so
    one tally serves all of them, fed as Q_0 is (the max of their needs per round, recorded once).
    """

    def __init__(self, num_chunks: int, M: int, correct: bool, labels=LABEL_TYPES,
                 params: LabelParams = DEFAULT_PARAMS, config: StopConfig = DEFAULT_STOP, *,
                 q0: Tally | None = None, prior: GridPrior | list | None = None,
                 shared: list[Tally | None] | None = None) -> None:
        if not isinstance(num_chunks, int) or num_chunks < 1:
            raise ValueError(f"a response needs at least one chunk, got {num_chunks!r}")
        self.label_types = _check_labels(labels)
        self.params, self.config = params, config
        self.prior = prior if prior is not None else GridPrior.uniform()
        shared = list(shared) if shared is not None else [None] * (num_chunks - 1)
        if len(shared) != num_chunks - 1 or any(s is not None and s.M != M for s in shared):
            raise ValueError(f"shared: one Tally(M={M}) or None per Q index 1..{num_chunks - 1}")
        self.tallies = ([q0 if q0 is not None else Tally(M)] + [s if s is not None else Tally(M) for s in shared]
                        + [Tally(1, int(bool(correct)), 1)])
        self._cache: tuple = (None, None)

    @property
    def H(self) -> int:
        return len(self.tallies) - 1

    def _state(self) -> tuple[list[int], list[int], list[int]]:
        return ([t.k for t in self.tallies], [t.m for t in self.tallies], [t.M for t in self.tallies])

    def _needs_list(self) -> list[bool]:
        key = tuple((t.k, t.m) for t in self.tallies)
        if self._cache[0] != key:
            k, m, M = self._state()
            mode, c = self.config.mode, self.config
            if mode == "off":
                needs = [mj < Mj for mj, Mj in zip(m, M)]
            elif mode == "exact":
                needs = exact_needs(k, m, M, self.label_types, self.params, c.refined)
            elif mode == "naive":
                needs = naive_needs(k, m, M, self.label_types, self.params)
            else:
                needs = confident_needs(k, m, M, self.label_types, self.params, c.delta, c.min_rollouts,
                                        self.prior, c.refined)
            self._cache = (key, needs)
        return self._cache[1]

    def needs(self) -> dict[int, int]:
        """{index: rollouts to run in the next round} for the indices that need more."""
        return {j: min(t.M - t.m, self.config.round_size)
                for j, (t, need) in enumerate(zip(self.tallies, self._needs_list())) if need}

    def record(self, index: int, successes: int, count: int) -> None:
        """Add `successes` out of `count` new rollouts of Q index `index` (0..H-1)."""
        if not 0 <= index < self.H:
            raise ValueError(f"Q index must be in 0..{self.H - 1} (Q_{self.H} is known), got {index}")
        self.tallies[index].add(successes, count)

    def done(self) -> bool:
        return not any(self._needs_list())

    def rollouts_spent(self) -> list[int]:
        """Rollouts recorded per index 0..H (index H: 0; index 0: the whole, possibly shared, tally)."""
        return [t.m for t in self.tallies[:-1]] + [0]

    def labels(self) -> dict[str, list[int]]:
        """The H labels per requested type; only valid once `done()`."""
        if not self.done():
            raise RuntimeError("labels() called before done(): some Q index still needs rollouts")
        k, m, M = self._state()
        iv = [interval(*t) for t in zip(k, m, M)]
        mode = self.config.mode
        post = label_posteriors(k, m, M, self.label_types, self.params, self.prior) if mode == "confident" else {}
        point = [kj / mj if mj else (lo + hi) / 2 for kj, mj, (lo, hi) in zip(k, m, iv)]
        out = {}
        for t in self.label_types:
            row = []
            for i in range(1, self.H + 1):
                lab = decided(*iv[i - 1], *iv[i], t, self.params)
                if lab is None and mode == "confident":
                    p = post[t][i - 1]
                    assert min(p, 1.0 - p) <= self.config.delta, "confident: undecided label when done"
                    lab = int(p >= 0.5)
                elif lab is None:
                    assert mode == "naive", f"{mode}: undecided label when done"
                    lab = label_from_pair(point[i - 1], point[i], t, self.params.gamma, self.params.alpha,
                                          self.params.n)
                row.append(lab)
            out[t] = row
        return out


def _check_draws(draws, M: int, what: str) -> list[list[int]]:
    rows = [list(d) for d in draws]
    for j, d in enumerate(rows):
        if len(d) != M or any(x not in (0, 1) for x in d):
            raise ValueError(f"{what} {j}: need exactly M={M} outcomes, each 0 or 1")
    return rows


def simulate_problem(q0_draws, samples, M: int, labels=LABEL_TYPES, params: LabelParams = DEFAULT_PARAMS,
                     config: StopConfig = DEFAULT_STOP, *, prior: GridPrior | list | None = None,
                     q0_exact: bool = False) -> tuple[list[dict[str, list[int]]], int, list[list[int]]]:
    """Replay one problem: Q_0 draws (shared by its samples) and, per sample, draws for indices 1..H
    (the last row, Q_H, constant: the sample's correctness). Returns (labels per sample, Q_0 rollouts
    spent, rollouts spent per sample and index 0..H with index 0 reported as 0)."""
    q0_draws = _check_draws([q0_draws], M, "Q_0 draws")[0]
    samples = [_check_draws(s, M, "Q index") for s in samples]
    for s in samples:
        if not s or len(set(s[-1])) != 1:
            raise ValueError("each sample needs >= 1 chunk, and its last row (Q_H, the correctness) constant")
    q0 = Tally(M, sum(q0_draws), M) if q0_exact else Tally(M)
    stoppers = [EarlyStopper(len(s), M, bool(s[-1][0]), labels, params, config, q0=q0, prior=prior)
                for s in samples]
    while True:
        needs = [st.needs() for st in stoppers]
        if not any(needs):
            break
        q0_more = max(n.get(0, 0) for n in needs)
        for st, n, rows in zip(stoppers, needs, samples):
            for j, count in n.items():
                if j:
                    got = st.tallies[j].m
                    st.record(j, sum(rows[j - 1][got:got + count]), count)
        if q0_more:
            q0.add(sum(q0_draws[q0.m:q0.m + q0_more]), q0_more)
    spent = [[0] + st.rollouts_spent()[1:] for st in stoppers]
    return [st.labels() for st in stoppers], (0 if q0_exact else q0.m), spent


def simulate(draws, M: int, labels=LABEL_TYPES, params: LabelParams = DEFAULT_PARAMS, mode: str = "exact",
             round_size: int = 2, *, delta: float = 0.05, min_rollouts: int = 2,
             prior: GridPrior | list | None = None, q0_exact: bool = False, refined: bool = True
             ) -> tuple[dict[str, list[int]], list[int]]:
    """Replay recorded full-M draws (rows for Q indices 0..H, M outcomes each, in order; row H constant)
    through a mode. Returns (labels per type, rollouts spent per index 0..H)."""
    draws = list(draws)
    if len(draws) < 2:
        raise ValueError("need draws for at least Q_0 and Q_1")
    config = StopConfig(mode, round_size, delta, min_rollouts, refined)
    out, q0_spent, spent = simulate_problem(draws[0], [draws[1:]], M, labels, params, config, prior=prior,
                                            q0_exact=q0_exact)
    return out[0], [q0_spent] + spent[0][1:]
