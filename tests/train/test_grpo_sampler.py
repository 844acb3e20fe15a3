"""The class-balanced GRPO prompt sampler: exact layout and balance."""
import pytest

from stepwiser.train.grpo_sampler import BalancedRepeatSampler


def test_every_batch_is_half_positive_and_groups_are_contiguous():
    labels = [1] * 7 + [0] * 13
    s = BalancedRepeatSampler(labels, mini_repeat_count=3, batch_size=4, repeat_count=2, seed=0)
    idx = list(s)
    assert len(idx) == len(s) == 5 * 4 * 3 * 2
    per_batch = 4 * 3 * 2
    for b in range(5):
        chunk = idx[b * per_batch:(b + 1) * per_batch]
        first, second = chunk[:12], chunk[12:]
        assert first == second                           # the batch repeated (reused generations)
        prompts = first[::3]
        assert all(first[3 * k:3 * k + 3] == [p] * 3 for k, p in enumerate(prompts))   # a group in a row
        assert sum(labels[p] for p in prompts) == 2      # 2 Positive, 2 Negative


def test_epochs_differ_and_are_seeded():
    labels = [1, 0] * 10
    a, b = BalancedRepeatSampler(labels, 2, 4, seed=1), BalancedRepeatSampler(labels, 2, 4, seed=1)
    assert list(a) == list(b)
    assert a.batches(0) != a.batches(1)
    assert BalancedRepeatSampler(labels, 2, 4, seed=2).batches(0) != b.batches(0)


def test_errors():
    with pytest.raises(ValueError, match="both"):
        BalancedRepeatSampler([1, 1], 2, 2)
    with pytest.raises(ValueError, match="even"):
        BalancedRepeatSampler([1, 0, 1], 2, 3)
