"""Early stopping: exactness against full M (replay and brute force), the counter-example to the
naive rule, and measured agreement of the confident mode."""
import itertools
import random

import pytest

from stepwiser.core.earlystop import (
    EarlyStopper,
    GridPrior,
    StopConfig,
    Tally,
    confident_needs,
    decided,
    exact_needs,
    interval,
    label_posteriors,
    naive_needs,
    simulate,
    simulate_problem,
)
from stepwiser.core.labels import LABEL_TYPES, LabelParams, label_chunks

LABEL_SETS = [("abs_q",), ("rel_ratio",), ("rel_effective",), LABEL_TYPES]


def full_labels(draws, labels, params):
    """Labels from the complete draws, computed with label_chunks only (independent of earlystop)."""
    q = [sum(row) / len(row) for row in draws]
    return {t: label_chunks(q, t, params.gamma, params.alpha, params.n) for t in labels}


def random_draws(rng, H, M):
    """Rows for Q indices 0..H: a mix of rates 0, 1, small, middling; the last row constant."""
    rows = []
    for _ in range(H):
        p = rng.choice([0.0, 1.0, 0.05, rng.random(), rng.random(), 0.5])
        rows.append([int(rng.random() < p) for _ in range(M)])
    rows.append([rng.randint(0, 1)] * M)
    return rows


def random_params(rng):
    return LabelParams(rng.choice([0.0, 0.6, 0.8, 1.0, 1.2]), rng.choice([0.0, 0.2, 0.4, 0.8, 1.0]),
                       rng.choice([1, 2, 4]))


# ------------------------------------------------------------------ basic pieces

def test_interval_and_decided_values():
    assert interval(3, 4, 16) == (3 / 16, 15 / 16)
    assert interval(5, 16, 16) == (5 / 16, 5 / 16)
    p = LabelParams()
    assert decided(0.5, 0.5, 0.5, 1.0, "rel_ratio", p) == 1  # Q_1 >= 0.5 > 0.4
    assert decided(0.5, 1.0, 0.5, 1.0, "rel_ratio", p) is None  # (0.5, 1): 0.5 > 0.8? no; (1, 0.5): yes
    assert decided(0.0, 1.0, 0.25, 0.5, "abs_q", p) == 1
    assert decided(0.0, 1.0, 0.0, 0.0, "abs_q", p) == 0
    assert decided(0.0, 1.0, 0.0, 0.1, "abs_q", p) is None
    assert decided(0.0, 0.0, 0.0, 0.0, "rel_effective", p) == 0
    assert decided(0.5, 0.6, 0.8, 0.9, "rel_effective", p) == 1


def test_decided_agrees_with_a_dense_grid_of_the_box():
    rng = random.Random(3)
    for _ in range(300):
        a, b, c, d = (rng.randint(0, 8) / 8 for _ in range(4))
        lp, hp, lc, hc = min(a, b), max(a, b), min(c, d), max(c, d)
        p, t = random_params(rng), rng.choice(LABEL_TYPES)
        grid = {label_chunks([lp + (hp - lp) * x / 8, lc + (hc - lc) * y / 8], t, p.gamma, p.alpha, p.n)[0]
                for x in range(9) for y in range(9)}
        got = decided(lp, hp, lc, hc, t, p)
        assert (got is None) == (len(grid) == 2) and (got is None or {got} == grid)


def test_tally_and_config_validation():
    t = Tally(4)
    t.add(1, 2)
    assert (t.k, t.m, t.interval()) == (1, 2, (0.25, 0.75))
    for bad in [(3, 2), (-1, 1), (0, 3)]:
        with pytest.raises(ValueError):
            t.add(*bad)
    with pytest.raises(ValueError):
        Tally(0)
    with pytest.raises(ValueError, match="off, exact, confident, naive"):
        StopConfig("fast")
    for kwargs in ({"round_size": 0}, {"delta": 0.0}, {"delta": 0.5}, {"min_rollouts": -1}):
        with pytest.raises(ValueError):
            StopConfig(**kwargs)
    with pytest.raises(ValueError, match="successes <= rollouts"):
        exact_needs([3, 0], [2, 0], 4)
    with pytest.raises(ValueError, match="one entry per Q index"):
        exact_needs([0, 0], [0, 0], [4, 4, 4])
    with pytest.raises(ValueError, match="allowed"):
        exact_needs([0, 0], [0, 0], 4, ["abs"])


def test_stopper_api():
    st = EarlyStopper(3, 16, True, LABEL_TYPES, config=StopConfig("exact", round_size=3))
    assert st.needs() == {0: 3, 1: 3, 2: 3}
    with pytest.raises(ValueError, match="Q_3 is known"):
        st.record(3, 1, 1)
    with pytest.raises(ValueError):
        st.record(1, 0, 17)
    with pytest.raises(RuntimeError, match="before done"):
        st.labels()
    conf = EarlyStopper(2, 16, True, ["abs_q"], config=StopConfig("confident", round_size=1, min_rollouts=3),
                        prior=GridPrior([0.0, 1.0], [1.0, 1.0]))  # Q is 0 or 1: one rollout settles it
    conf.record(1, 0, 1)
    assert conf.needs() == {1: 1}  # decided under the prior, but min_rollouts not reached
    conf.record(1, 0, 2)
    assert conf.done() and conf.labels() == {"abs_q": [0, 1]} and conf.rollouts_spent() == [0, 3, 0]
    with pytest.raises(ValueError, match="at least one chunk"):
        EarlyStopper(0, 16, True)


def test_simulate_validates_draws():
    with pytest.raises(ValueError, match="constant"):
        simulate([[1, 0], [1, 1], [1, 0]], 2)
    with pytest.raises(ValueError, match="M=2"):
        simulate([[1, 0], [1, 1, 0], [1, 1]], 2)
    with pytest.raises(ValueError, match="0 or 1"):
        simulate([[1, 2], [1, 1]], 2)
    with pytest.raises(ValueError, match="at least"):
        simulate([[1, 1]], 2)


def test_off_spends_everything_but_q_h():
    draws = [[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    labels, spent = simulate(draws, 4, mode="off")
    assert spent == [4, 4, 4, 0]
    assert labels == full_labels(draws, LABEL_TYPES, LabelParams())


def test_abs_q_never_rolls_q0_and_stops_at_first_success():
    draws = [[1] * 8, [0, 0, 1, 1, 1, 1, 1, 1], [0] * 8, [0] * 8]
    labels, spent = simulate(draws, 8, ["abs_q"], round_size=1)
    assert labels == {"abs_q": [1, 0, 0]}
    assert spent == [0, 3, 8, 0]
    # the rule as written (both labels decided) runs Q_0 until label 1 is decided, and Q_1 while
    # label 2 is open, although Abs-Q never looks at Q_0 and label 2 never at Q_1
    _, literal = simulate(draws, 8, ["abs_q"], round_size=1, refined=False)
    assert literal == [3, 8, 8, 0]


# ------------------------------------------------------------------ (a) replay: exact == full M

@pytest.mark.parametrize("M", [16, 1, 2, 3, 4, 5, 6])
def test_exact_replay_identical_to_full_m(M):
    rng = random.Random(M)
    for _ in range(120 if M == 16 else 60):
        H, params, labels = rng.randint(1, 6), random_params(rng), rng.choice(LABEL_SETS)
        draws = random_draws(rng, H, M)
        want = full_labels(draws, labels, params)
        for refined in (True, False):
            got, spent = simulate(draws, M, labels, params, "exact", rng.randint(1, 5), refined=refined,
                                  q0_exact=rng.random() < 0.3)
            assert got == want
            assert spent[-1] == 0 and all(s <= M for s in spent)
        assert simulate(draws, M, labels, params, "off")[0] == want


def test_exact_replay_with_q0_shared_by_samples():
    rng = random.Random(11)
    for _ in range(60):
        M, params, labels = rng.choice([4, 16]), random_params(rng), rng.choice(LABEL_SETS)
        q0 = random_draws(rng, 1, M)[0]
        samples = [random_draws(rng, rng.randint(1, 5), M)[1:] for _ in range(rng.randint(1, 4))]
        for mode in ("exact", "off"):
            got, q0_spent, spent = simulate_problem(q0, samples, M, labels, params, StopConfig(mode, 2))
            assert got == [full_labels([q0, *s], labels, params) for s in samples]
            assert q0_spent <= M and all(sp[0] == 0 for sp in spent)


# ------------------------------------------------------------------ (b) brute force over completions

def completion_labels(st):
    """{final counts of indices 0..H: labels per type}, over every completion of the remaining draws.
    Labels depend on draws only through the final success counts, so enumerating the counts
    enumerates every completion up to order. Uses label_chunks, not the corner rule."""
    ranges = [range(t.k, t.k + t.M - t.m + 1) for t in st.tallies]
    out = {}
    for finals in itertools.product(*ranges):
        q = [K / t.M for K, t in zip(finals, st.tallies)]
        p = st.params
        out[finals] = {t: label_chunks(q, t, p.gamma, p.alpha, p.n) for t in st.label_types}
    return out


def pause_violations(st, strict):
    """Paused indices j whose neighbouring labels (j, j+1) can still change: through j's own
    remaining draws (any completion of the others), or, with `strict`, at all."""
    table, needs, bad = completion_labels(st), st.needs(), []
    for j, tally in enumerate(st.tallies[:-1]):
        if j in needs or tally.m == tally.M:
            continue
        rel = [i - 1 for i in (j, j + 1) if 1 <= i <= st.H]  # list positions of labels j and j+1
        groups = {}
        for finals, labs in table.items():
            key = () if strict else finals[:j] + finals[j + 1:]
            groups.setdefault(key, set()).add(tuple((t, labs[t][i]) for t in st.label_types for i in rel))
        if any(len(v) > 1 for v in groups.values()):
            bad.append(j)
    return bad


def drive(st, draws, rng, check):
    """Run a stopper on recorded draws with random round sizes, calling check(st) before every round."""
    while not st.done():
        check(st)
        for j, count in st.needs().items():
            got = st.tallies[j].m
            count = min(count, rng.randint(1, count))
            st.record(j, sum(draws[j][got:got + count]), count)
    check(st)


@pytest.mark.parametrize("refined", [True, False])
def test_exact_pauses_survive_brute_force(refined):
    rng = random.Random(5)
    for _ in range(150):
        M, H = rng.randint(2, 6), rng.randint(1, 3)
        params, labels = random_params(rng), rng.choice(LABEL_SETS)
        draws = random_draws(rng, H, M)
        st = EarlyStopper(H, M, bool(draws[-1][0]), labels, params,
                          StopConfig("exact", rng.randint(1, 3), refined=refined))

        def check(s):
            assert pause_violations(s, strict=not refined) == []
        drive(st, draws, rng, check)
        final = list(completion_labels(st).values())
        assert all(f == final[0] for f in final)  # the final state determines the labels
        assert st.labels() == final[0] == full_labels(draws, labels, params)


# ------------------------------------------------------------------ (c) the counter-example

COUNTER = [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]  # Q_0 = 0.5, chunk 1, chunk 2, Q_3


def test_counter_example_exact_matches_full_m():
    want = full_labels(COUNTER, ["rel_ratio"], LabelParams())
    assert want == {"rel_ratio": [1, 1, 1]}  # Q_2 = 0.5 > 0.8 * Q_1 = 0.4
    for refined in (True, False):
        got, spent = simulate(COUNTER, 4, ["rel_ratio"], round_size=2, q0_exact=True, refined=refined)
        assert got == want and spent == [0, 4, 4, 0]
    # after the first round (chunks 1 and 2 drew 1, 1) chunk 1 must keep going: label 2 is open
    k, m, M = [2, 2, 2, 1], [4, 2, 2, 1], [4, 4, 4, 1]
    assert decided(0.5, 0.5, 0.5, 1.0, "rel_ratio") == 1
    assert decided(0.5, 1.0, 0.5, 1.0, "rel_ratio") is None
    assert exact_needs(k, m, M, ["rel_ratio"]) == [False, True, True, False]
    assert exact_needs(k, m, M, ["rel_ratio"], refined=False) == [False, True, True, False]
    assert naive_needs(k, m, M, ["rel_ratio"]) == [False, False, True, False]


def test_counter_example_naive_fails_replay_and_brute_force():
    got, spent = simulate(COUNTER, 4, ["rel_ratio"], mode="naive", round_size=2, q0_exact=True)
    assert spent == [0, 2, 4, 0]  # chunk 1 stopped at [0.5, 1]
    assert got != full_labels(COUNTER, ["rel_ratio"], LabelParams())  # fails (a)
    assert got == {"rel_ratio": [1, 0, 1]}
    st = EarlyStopper(3, 4, True, ["rel_ratio"], config=StopConfig("naive", 2), q0=Tally(4, 2, 4))
    for j in (1, 2):
        st.record(j, 2, 2)
    assert st.needs() == {2: 2}
    assert pause_violations(st, strict=False) == [1]  # fails (b): chunk 1 paused, label 2 can flip


# ------------------------------------------------------------------ confident

def test_grid_prior_predictive():
    u = GridPrior.uniform()
    pred = u.predictive(0, 0, 4)  # flat prior: every count about equally likely
    assert pred.sum() == pytest.approx(1.0) and max(abs(pred - 0.2)) < 0.01
    # P(no success in R more | 0 of m) = (m+1)/(m+R+1) for a continuous flat prior; the 101-point
    # grid also puts 1/101 on p = 0 exactly, which adds up to ~0.02 after a few failures
    for m, R in [(4, 12), (8, 8), (12, 4)]:
        assert u.predictive(0, m, m + R)[0] == pytest.approx((m + 1) / (m + R + 1), abs=0.03)
    pred = u.predictive(3, 5, 8)
    assert pred[:3].sum() == 0 and pred[7:].sum() == 0 and pred.sum() == pytest.approx(1.0)
    assert list(u.predictive(2, 4, 4)) == [0, 0, 1, 0, 0]
    with pytest.raises(ValueError, match="probability 0"):
        GridPrior([0.0, 1.0], [1.0, 0.0]).predictive(1, 2, 4)
    with pytest.raises(ValueError):
        GridPrior([0.0, 1.5], [1, 1])


def test_grid_prior_fit_recovers_point_masses():
    prior = GridPrior.fit([(0, 16)] * 60 + [(16, 16)] * 40)
    assert prior.weights[0] == pytest.approx(0.6, abs=0.01) and prior.weights[-1] == pytest.approx(0.4, abs=0.01)
    assert prior.predictive(0, 4, 16)[0] > 0.99  # four failures: almost surely a Q = 0 index
    assert GridPrior.uniform().predictive(0, 4, 16)[0] < 0.35
    with pytest.raises(ValueError):
        GridPrior.fit([(3, 2)])
    with pytest.raises(ValueError):
        GridPrior.fit([(0, 0)])


def test_label_posteriors_hand_case():
    # Q_0 = 0 known, Q_1 unknown with M = 1 (flat prior: P(K_1 = 1) = 0.5), Q_2 = 1 known
    post = label_posteriors([0, 0, 1], [1, 0, 1], [1, 1, 1], LABEL_TYPES)
    assert post["abs_q"] == pytest.approx([0.5, 1.0])
    assert post["rel_ratio"] == pytest.approx([0.5, 1.0])
    assert post["rel_effective"] == pytest.approx([0.5, 1.0])
    with pytest.raises(ValueError, match="priors"):
        label_posteriors([0, 0], [0, 0], 4, prior=[GridPrior.uniform()])


def test_confident_min_rollouts():
    sure_zero = GridPrior([0.0, 1.0], [1.0, 1.0])  # Q is 0 or 1: one rollout settles it
    k, m = [0, 0, 0], [1, 1, 1]
    assert confident_needs(k, m, [4, 4, 1], ["abs_q"], min_rollouts=1, prior=sure_zero) == [False, False, False]
    assert confident_needs(k, m, [4, 4, 1], ["abs_q"], min_rollouts=2, prior=sure_zero) == [False, True, False]


def test_confident_pauses_can_reopen_exact_ones_never_do():
    rng = random.Random(0)
    reopened = {"exact": 0, "confident": 0}
    for _ in range(80):
        H, M = rng.randint(2, 6), 16
        draws = random_draws(rng, H, M)
        for mode in reopened:
            st = EarlyStopper(H, M, bool(draws[-1][0]), config=StopConfig(mode, 1, 0.05, 2))
            paused: set[int] = set()
            while not st.done():
                needs = st.needs()
                reopened[mode] += len(paused & needs.keys())
                paused = {j for j in range(H) if j not in needs and st.tallies[j].m < M}
                for j, count in needs.items():
                    got = st.tallies[j].m
                    st.record(j, sum(draws[j][got:got + count]), count)
            assert st.labels().keys() == set(LABEL_TYPES)
    assert reopened["exact"] == 0 and reopened["confident"] > 0


def realistic_problems(rng, n, samples=4, M=16):
    """docs/METHOD.md 4.1 profiles: per-step success s in [0.8, 0.93], Q_i = s^(H-i) before the
    first wrong chunk, 0 from it on; Q_0 = s^H shared by the problem's samples."""
    out = []
    for _ in range(n):
        H, s = rng.randint(3, 10), rng.uniform(0.80, 0.93)
        q0 = [int(rng.random() < s ** H) for _ in range(M)]
        rows_per_sample = []
        for _ in range(samples):
            e = next((i for i in range(1, H + 1) if rng.random() >= s), H + 1)
            rows = [[int(rng.random() < (s ** (H - i) if i < e else 0.0)) for _ in range(M)] for i in range(1, H)]
            rows_per_sample.append(rows + [[int(e > H)] * M])
        out.append((q0, rows_per_sample))
    return out


def test_confident_measured_agreement_with_full_m():
    """Measured on replayed draws (seeded): label agreement with full M >= 95% per label type at
    delta = 0.05 and fewer rollouts than off; the prior is fitted on a separate pilot set."""
    rng = random.Random(2024)
    pilot = realistic_problems(rng, 15)
    counts = [(sum(q0), 16) for q0, _ in pilot] + [(sum(r), 16) for _, ss in pilot for s in ss for r in s[:-1]]
    problems = realistic_problems(rng, 25)
    report = {}
    for labels in LABEL_SETS:
        for name, prior in (("uniform", GridPrior.uniform()), ("fitted", GridPrior.fit(counts))):
            agree = total = spent = full = 0
            for q0, samples in problems:
                got, q0_spent, sp = simulate_problem(q0, samples, 16, labels, LabelParams(),
                                                     StopConfig("confident", 2, 0.05, 2), prior=prior)
                spent += q0_spent + sum(map(sum, sp))
                full += 16 + sum(16 * (len(s) - 1) for s in samples)
                for g, s in zip(got, samples):
                    want = full_labels([q0, *s], labels, LabelParams())
                    agree += sum(all(g[t][i] == want[t][i] for t in labels) for i in range(len(s)))
                    total += len(s)
            report[("+".join(labels), name)] = (agree / total, spent / full)
    for key, (agreement, ratio) in report.items():
        assert agreement >= 0.95, (key, report)
        assert ratio < 1.0, (key, report)
    assert report[("rel_effective", "fitted")][1] < 0.5, report  # the fitted prior is where savings come from
