import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepwiser.core.labels import (
    LABEL_TYPES,
    LabelParams,
    label_chunks,
    label_from_pair,
    qmu,
    rel_effective_scores,
)


def test_label_types_constant():
    assert LABEL_TYPES == ("abs_q", "rel_ratio", "rel_effective")


def test_qmu_values():
    assert qmu(0.8, 4) == pytest.approx(0.9984, abs=1e-12)
    assert qmu(0.2, 4) == pytest.approx(0.5904, abs=1e-12)
    assert qmu(0.5, 1) == 0.5
    assert qmu(0.5, 2) == 0.75
    assert qmu(0.0, 4) == 0.0
    assert qmu(1.0, 4) == 1.0


def test_worked_30_to_70_positive_under_every_label():
    for method in LABEL_TYPES:
        assert label_chunks([0.3, 0.7], method) == [1]
        assert label_chunks([0.3, 0.7], method, gamma=1.2, alpha=1.0) == [1]


def test_worked_80_to_20():
    q = [0.8, 0.2]
    assert label_chunks(q, "abs_q") == [1]
    assert label_chunks(q, "rel_ratio", gamma=0.8) == [0]
    assert label_chunks(q, "rel_ratio", gamma=0.8, alpha=0.1) == [0]  # alpha plays no role
    assert rel_effective_scores(q, alpha=0.8, n=4)[0] == pytest.approx(-0.126, abs=1e-3)
    assert rel_effective_scores(q, alpha=0.8, n=4)[0] == pytest.approx(0.2 + 0.8 * (0.5904 - 0.9984), abs=1e-12)
    assert label_chunks(q, "rel_effective", alpha=0.8) == [0]
    assert rel_effective_scores(q, alpha=0.4, n=4)[0] == pytest.approx(0.037, abs=1e-3)
    assert rel_effective_scores(q, alpha=0.4, n=4)[0] == pytest.approx(0.0368, abs=1e-12)
    assert label_chunks(q, "rel_effective", alpha=0.4) == [1]


def test_zero_previous_q():
    # Rel-Ratio is defined at Q_{i-1} = 0: positive iff Q_i > 0.
    assert label_chunks([0.0, 0.0], "rel_ratio") == [0]
    assert label_chunks([0.0, 1 / 16], "rel_ratio") == [1]
    assert label_chunks([0.0, 0.0], "abs_q") == [0]
    assert rel_effective_scores([0.0, 0.0]) == [0.0]
    assert label_chunks([0.0, 0.0], "rel_effective") == [0]  # score exactly 0 is negative
    assert label_chunks([0.0, 1 / 16], "rel_effective") == [1]


def test_zero_current_q_is_negative_everywhere():
    for method in LABEL_TYPES:
        for prev in (0.0, 0.25, 1.0):
            assert label_chunks([prev, 0.0], method, gamma=0.0, alpha=0.0) == [0]
            assert label_chunks([prev, 0.0], method) == [0]


def test_gamma_above_one():
    assert label_chunks([0.5, 0.55], "rel_ratio", gamma=1.2) == [0]
    assert label_chunks([0.5, 0.65], "rel_ratio", gamma=1.2) == [1]
    assert label_chunks([0.5, 0.5], "rel_ratio", gamma=1.0) == [0]  # no change is not an improvement
    assert label_chunks([0.5, 0.5], "rel_ratio", gamma=0.0) == [1]
    assert label_chunks([1.0, 1.0], "rel_ratio", gamma=1.2) == [0]


def test_exact_ties_are_negative_despite_float_rounding():
    assert label_chunks([0.5, 0.4], "rel_ratio", gamma=0.8) == [0]
    assert label_chunks([10 / 16, 7 / 16], "rel_ratio", gamma=0.7) == [0]
    assert label_chunks([10 / 16, 8 / 16], "rel_ratio", gamma=0.7) == [1]
    assert label_chunks([15 / 16, 12 / 16], "rel_ratio", gamma=0.8) == [0]
    assert label_chunks([15 / 16, 13 / 16], "rel_ratio", gamma=0.8) == [1]


def test_vector_example():
    q = [0.5, 0.6, 0.2, 0.0, 0.0, 0.0]
    assert label_chunks(q, "abs_q") == [1, 1, 0, 0, 0]
    assert label_chunks(q, "rel_ratio") == [1, 0, 0, 0, 0]
    scores = rel_effective_scores(q)
    assert scores[1] == pytest.approx(0.2 + 0.4 * (0.5904 - 0.9744), abs=1e-12)  # +0.0464
    assert scores[2] == pytest.approx(-0.4 * 0.5904, abs=1e-12)
    assert label_chunks(q, "rel_effective") == [1, 1, 0, 0, 0]
    assert len(label_chunks([0.1, 1.0], "abs_q")) == 1


@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 3), st.floats(0, 3), st.integers(1, 8),
       st.sampled_from(LABEL_TYPES))
def test_label_from_pair_agrees_with_label_chunks(a, b, gamma, alpha, n, method):
    assert label_from_pair(a, b, method, gamma, alpha, n) == label_chunks([a, b], method, gamma, alpha, n)[0]


@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 3), st.floats(0, 3),
       st.integers(1, 8), st.sampled_from(LABEL_TYPES))
def test_labels_are_monotone(a, b, c, gamma, alpha, n, method):
    """Increasing in Q_i, decreasing in Q_{i-1}: what early stopping relies on."""
    lo, hi = min(b, c), max(b, c)
    assert label_from_pair(a, lo, method, gamma, alpha, n) <= label_from_pair(a, hi, method, gamma, alpha, n)
    assert label_from_pair(hi, a, method, gamma, alpha, n) <= label_from_pair(lo, a, method, gamma, alpha, n)


@pytest.mark.parametrize("q", [[0.5, 1.1], [-0.1, 0.5], [0.5, math.nan], [0.2, math.inf], [0.2, "0.3"],
                               [True, 0.5]])
def test_q_outside_unit_interval_rejected(q):
    with pytest.raises(ValueError, match="Q_"):
        label_chunks(q, "abs_q")


def test_too_few_values_rejected():
    for q in ([], [0.5]):
        with pytest.raises(ValueError, match="at least 2"):
            label_chunks(q, "abs_q")
        with pytest.raises(ValueError, match="at least 2"):
            rel_effective_scores(q)


def test_unknown_method_names_allowed_values():
    with pytest.raises(ValueError, match="abs_q, rel_ratio, rel_effective"):
        label_chunks([0.1, 0.2], "relative")
    with pytest.raises(ValueError, match="abs_q, rel_ratio, rel_effective"):
        label_from_pair(0.1, 0.2, "abs")


@pytest.mark.parametrize("kwargs, name", [({"gamma": -0.1}, "gamma"), ({"alpha": -1.0}, "alpha"),
                                          ({"gamma": math.nan}, "gamma"), ({"alpha": math.inf}, "alpha"),
                                          ({"n": 0}, "n"), ({"n": -2}, "n"), ({"n": 1.5}, "n"),
                                          ({"n": True}, "n")])
def test_bad_parameters_rejected(kwargs, name):
    with pytest.raises(ValueError, match=name):
        label_chunks([0.1, 0.2], "rel_effective", **kwargs)
    with pytest.raises(ValueError, match=name):
        LabelParams(**kwargs)
    with pytest.raises(ValueError, match=name):
        label_from_pair(0.1, 0.2, "rel_ratio", **kwargs)


def test_negative_parameters_rejected_even_for_methods_that_ignore_them():
    with pytest.raises(ValueError, match="alpha"):
        label_chunks([0.1, 0.2], "abs_q", alpha=-0.5)
    with pytest.raises(ValueError, match="n must"):
        qmu(0.5, 0)


def test_label_params_defaults_are_the_paper_1_5b_values():
    assert LabelParams() == LabelParams(gamma=0.8, alpha=0.4, n=4)
