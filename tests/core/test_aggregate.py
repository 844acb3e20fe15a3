"""Process-reward aggregates (stepwiser.core.aggregate): exact values of every rule."""
from __future__ import annotations

import pytest

from stepwiser.core.aggregate import AGGREGATES, aggregate, combine, resolve_unparsed

P, N, U = 1, 0, None


@pytest.mark.parametrize("verdicts,expected", [
    ([P, P, P], {"min": 1.0, "mean": 1.0, "first-negative": 1.0}),
    ([P, N, P, P], {"min": 0.0, "mean": 0.75, "first-negative": 0.25}),
    ([N, P, P, P], {"min": 0.0, "mean": 0.75, "first-negative": 0.0}),
    ([P, P, P, N], {"min": 0.0, "mean": 0.75, "first-negative": 0.75}),
    ([P, P, N, N, P], {"min": 0.0, "mean": 0.6, "first-negative": 0.4}),
    ([N], {"min": 0.0, "mean": 0.0, "first-negative": 0.0}),
    ([P], {"min": 1.0, "mean": 1.0, "first-negative": 1.0}),
])
def test_aggregates_are_exact(verdicts, expected):
    for method in AGGREGATES:
        assert aggregate(verdicts, method) == pytest.approx(expected[method], abs=0), method


@pytest.mark.parametrize("rule,expected", [
    # verdicts [P, U, P, N]
    ("negative", {"min": 0.0, "mean": 0.5, "first-negative": 0.25}),
    ("positive", {"min": 0.0, "mean": 0.75, "first-negative": 0.75}),
    ("skip", {"min": 0.0, "mean": 2 / 3, "first-negative": 2 / 3}),
])
def test_unparsed_rule(rule, expected):
    for method in AGGREGATES:
        assert aggregate([P, U, P, N], method, unparsed=rule) == pytest.approx(expected[method]), (rule, method)


def test_unparsed_only_and_empty():
    assert aggregate([U, U], "min") == 0.0                          # default: unparsed is negative
    assert aggregate([U, U], "min", unparsed="positive") == 1.0
    assert aggregate([U, U], "mean", unparsed="skip") == 0.0        # nothing left -> empty (0.0)
    assert aggregate([U, U], "mean", unparsed="skip", empty=None) is None
    for method in AGGREGATES:
        assert aggregate([], method) == 0.0
        assert aggregate([], method, empty=None) is None
        assert aggregate([], method, empty=0.5) == 0.5
    assert resolve_unparsed([P, U, N], "skip") == [1, 0]
    assert resolve_unparsed([P, U, N], "negative") == [1, 0, 0]


def test_combine_with_outcome():
    assert combine(0.5, 1.0, "times") == 0.5
    assert combine(0.5, 0.0, "times") == 0.0
    assert combine(0.5, 1.0, "plus") == 1.5
    assert combine(0.5, 0.0, "none") == 0.5
    assert combine(None, 1.0, "plus") is None
    assert combine(0.5, None, "times") is None
    assert combine(0.5, None, "none") == 0.5


@pytest.mark.parametrize("call,msg", [
    (lambda: aggregate([P], "max"), "aggregate must be one of min, mean, first-negative"),
    (lambda: aggregate([P], "min", unparsed="ignore"), "unparsed must be one of negative, positive, skip"),
    (lambda: combine(1.0, 1.0, "minus"), "combine must be one of none, times, plus"),
])
def test_bad_names_raise_naming_the_allowed_values(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()
