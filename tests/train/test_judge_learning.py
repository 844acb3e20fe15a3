"""The learning test: a micro judge (init-model micro-1m, from scratch) trained by no-CoT GRPO for a fixed
number of steps on a task whose label is learnable from the input scores above chance on held-out examples,
and the same run with shuffled labels does not (docs/METHOD.md 2.3, the shuffled-label control).

The task (tests/judge_learning_helpers.py): first chunks of micro problems; half keep their `a op b = c`,
half get a wrong result, c followed by twelve zeros (no right example has a 0 digit anywhere). A 1M model
from scratch cannot learn arithmetic in a few GRPO steps; this corruption is visible as a bag of tokens, so
the test measures whether the training loop (reward -> advantages -> update) learns what the labels say,
not the judge's skill. Before GRPO a label-agnostic format warm-up (random verdicts, then EOS) teaches the
bare verdict, since a random model never writes one and every group would have zero reward variance.
"""
from __future__ import annotations

import time

import pytest
from judge_learning_helpers import evaluate, run_grpo, task_examples, warm_up

from stepwiser.stages.init_model import InitModelConfig, run_init_model

pytestmark = pytest.mark.slow

# 8 prompts x 8 completions per step at lr 3e-4 (the format penalty on): 0.891 held-out balanced accuracy
# after 30 steps when measured by hand; at lr 1e-3 the same run collapsed to one verdict (format-penalty
# spikes in the gradient), so the learning rate stays at 3e-4
GRPO = {"lr": 3e-4, "steps": 30, "gens": 8, "prompts": 8}


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("learning")
    run_init_model(InitModelConfig(out=str(root / "init"), size="micro-1m", seed=0, vocab_problems=100))
    train, val = task_examples("zeros", 400, 64, seed=0)
    return str(warm_up(str(root / "init"), str(root / "warm"), train, steps=40, lr=3e-3)), train, val, root


def test_grpo_judge_learns_a_learnable_label_and_not_shuffled_ones(warm):
    model, train, val, root = warm
    before = evaluate(model, val)
    t0 = time.time()
    learned = evaluate(run_grpo(model, str(root / "true"), train, **GRPO), val)
    shuffled = evaluate(run_grpo(model, str(root / "shuffled"), train, shuffle=True, **GRPO), val)
    print(f"balanced accuracy: warm-up {before['balanced_accuracy']}, GRPO {learned['balanced_accuracy']}, "
          f"shuffled labels {shuffled['balanced_accuracy']} ({time.time() - t0:.0f} s)")
    assert before["balanced_accuracy"] <= 0.6 and before["unparsed"] == 0
    assert learned["balanced_accuracy"] >= 0.8 and learned["unparsed"] <= 0.05
    assert shuffled["balanced_accuracy"] <= 0.65
