"""ProcessBench scores (C4): exact values on hand-made predictions, degenerate cases, bootstrap intervals."""
import pytest

from stepwiser.data import synth
from stepwiser.core.metrics import (
    bootstrap_f1,
    f1_score,
    percentile_interval,
    processbench_f1,
    resample_indices,
    subset_scores,
    summarize,
)


def test_one_implementation_of_the_scores():
    assert synth.processbench_f1 is processbench_f1


@pytest.mark.parametrize("labels, preds, expected", [
    # error items 2 and 3: one exact hit; correct items 0 and 1: one hit
    ([-1, -1, 0, 2], [-1, 0, 0, 1], (50.0, 50.0, 50.0)),
    # 4 correct items, 3 of them predicted -1; 4 error items, 2 exact (a null and an off-by-one are wrong)
    ([-1] * 4 + [0, 1, 2, 3], [-1, -1, -1, 0, 0, 1, None, 2], (50.0, 75.0, 60.0)),
    # a null prediction is wrong
    ([-1, 1, 1, 1], [-1, 1, 1, None], (200 / 3, 100.0, 80.0)),
    # no error items: error_acc 0 by convention, so F1 0 however good the correct side is
    ([-1, -1], [-1, -1], (0.0, 100.0, 0.0)),
    # no correct items
    ([0, 2], [0, 2], (100.0, 0.0, 0.0)),
    # all predictions -1
    ([-1, 0, 2, -1], [-1, -1, -1, -1], (0.0, 100.0, 0.0)),
    # both accuracies 0
    ([-1, 0], [0, -1], (0.0, 0.0, 0.0)),
    # all unparsed
    ([-1, 0, 1], [None, None, None], (0.0, 0.0, 0.0)),
])
def test_processbench_f1_exact(labels, preds, expected):
    s = processbench_f1(labels, preds)
    assert (s["error_acc"], s["correct_acc"], s["f1"]) == pytest.approx(expected)


def test_f1_and_subset_counts():
    assert f1_score(0, 0) == 0.0 and f1_score(50, 50) == 50.0 and f1_score(100, 0) == 0.0
    s = subset_scores([-1, -1, 0, 2, 3], [-1, None, 0, None, 1])
    assert (s["n"], s["n_error"], s["n_correct"], s["unparsed"]) == (5, 3, 2, 2)
    with pytest.raises(ValueError, match="one prediction per label"):
        processbench_f1([-1, 0], [-1])


def test_average_is_unweighted_over_subsets():
    big = ([-1] * 50 + [0] * 50, [-1] * 25 + [0] * 25 + [0] * 50)          # F1 = 2*100*50/150 = 66.67
    small = ([-1, 0], [-1, 0])                                              # F1 = 100
    s = summarize({"big": big, "small": small}, resamples=0)
    assert s["subsets"]["big"]["f1"] == pytest.approx(66.67, abs=0.01)
    assert s["average_f1"] == pytest.approx((200 / 3 + 100) / 2, abs=0.01)   # not the pooled F1
    assert s["subsets"]["small"]["f1_ci"] is None and s["average_f1_ci"] is None
    assert set(s["subsets"]["big"]) == {"n", "n_error", "n_correct", "error_acc", "correct_acc", "f1", "unparsed",
                                        "f1_ci"}


def test_bootstrap_replicates_are_f1_of_resampled_items():
    labels = [-1, -1, -1, 0, 1, 2, 2, -1, 0, 3]
    preds = [-1, 0, -1, 0, None, 2, 1, -1, 0, -1]
    reps = bootstrap_f1(labels, preds, resamples=50, seed="s")
    for row, rep in zip(resample_indices(len(labels), 50, "s"), reps):
        expected = processbench_f1([labels[i] for i in row], [preds[i] for i in row])["f1"]
        assert rep == pytest.approx(expected)
    assert list(bootstrap_f1(labels, preds, 50, "s")) == list(reps)                # seeded
    assert list(bootstrap_f1(labels, preds, 50, "t")) != list(reps)


def test_intervals():
    perfect = ([-1, 0, 1, -1] * 10, [-1, 0, 1, -1] * 10)
    assert percentile_interval(bootstrap_f1(*perfect, 200)) == [100.0, 100.0]
    # a resample without error items scores 0 (the convention), which widens tiny subsets' intervals
    assert 0.0 in bootstrap_f1([-1, 0], [-1, 0], 200)
    assert percentile_interval([float(i) for i in range(101)]) == pytest.approx([2.5, 97.5])
    labels = [-1] * 60 + [i % 4 for i in range(60)]
    preds = [-1] * 45 + [0] * 15 + [i % 4 if i % 3 else -1 for i in range(60)]
    s = summarize({"a": (labels, preds)}, resamples=1000, seed=1)["subsets"]["a"]
    lo, hi = s["f1_ci"]
    assert lo < s["f1"] < hi and hi - lo < 30
    with pytest.raises(ValueError):
        percentile_interval([1.0], level=1.5)


def test_subset_interval_does_not_depend_on_other_subsets():
    a = ([-1, 0, 1, -1, 2, -1], [-1, 0, -1, 0, 2, -1])
    b = ([-1, 0], [0, 0])
    alone = summarize({"a": a}, resamples=300, seed=7)
    both = summarize({"a": a, "b": b}, resamples=300, seed=7)
    assert alone["subsets"]["a"]["f1_ci"] == both["subsets"]["a"]["f1_ci"]
    assert alone["average_f1_ci"] == alone["subsets"]["a"]["f1_ci"]
    lo, hi = both["average_f1_ci"]
    assert lo <= both["average_f1"] <= hi
