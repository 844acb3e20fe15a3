"""Exact values of the paired comparison of two judges (core/metrics.py)."""
import pytest

from stepwiser.core.metrics import balanced_accuracy, paired_difference


def test_balanced_accuracy_exact_values():
    assert balanced_accuracy([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.75)
    assert balanced_accuracy([1, 1, 0, 0], [None, 1, 1, 1]) == pytest.approx(0.25)
    assert balanced_accuracy([1, 1], [1, 0]) == pytest.approx(0.5)   # one class only: its recall
    with pytest.raises(ValueError):
        balanced_accuracy([], [])


def test_paired_difference_of_a_perfect_and_a_constant_judge():
    groups = [f"p{i // 2}" for i in range(40)]
    labels = [i % 2 for i in range(40)]
    out = paired_difference(groups, labels, labels, [1] * 40, resamples=200, seed=1)
    assert out["diff"] == 50.0 and out["ci"] == [50.0, 50.0] and out["p"] == 0.0
    assert out["n"] == 40 and out["groups"] == 20


def test_paired_difference_of_identical_judges_is_zero_and_not_significant():
    groups = [f"p{i // 3}" for i in range(30)]
    labels = [(i * 7) % 2 for i in range(30)]
    v = [(i * 5) % 2 for i in range(30)]
    out = paired_difference(groups, labels, v, v, resamples=100)
    assert out["diff"] == 0.0 and out["ci"] == [0.0, 0.0] and out["p"] == 1.0


def test_paired_difference_checks_lengths():
    with pytest.raises(ValueError):
        paired_difference(["a"], [1], [1], [])
