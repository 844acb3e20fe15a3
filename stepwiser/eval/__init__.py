"""Evaluation (STEPWISER.md 2.4, contract C4): ProcessBench and policy accuracy.

- `metrics`: the ProcessBench scores (error_acc, correct_acc, F1, average) and bootstrap intervals;
- `items`: ProcessBench items (`BenchItem`) loaded and validated;
- `stepwise`: the stepwise protocol for any step judge (generative or discriminative);
- `critic`: the whole-solution critic protocol for any chat model;
- `prm`: off-the-shelf Qwen2.5-Math-PRM-style process reward models;
- `predictions`: scoring predictions made elsewhere;
- `reference`: floors and the oracle ceiling for the synthetic bench;
- `processbench`: the `eval processbench` stage (outputs, resume, summary.json);
- `accuracy`: the `eval accuracy` stage;
- `labels`: the `eval labels` stage (a judge against held-out Monte Carlo labels: balanced accuracy).

Importing this package is cheap (no torch, no transformers): heavy imports happen inside functions.
"""
