"""Stage `train-policy-grpo`: GRPO of the chunk policy with an outcome reward, optionally plus the StepWiser
judge's process reward (`stepwiser.train.policy_grpo`; its `PolicyGRPOConfig` is the stage config and
declares the options)."""
from __future__ import annotations

from pathlib import Path

from stepwiser.train.policy_grpo import PolicyGRPOConfig, train_policy_grpo


def run_train_policy_grpo(cfg: PolicyGRPOConfig, judge_engine=None, overwrite: bool = False, judge=None,
                          log=None, show: bool = True) -> Path:
    """Train; return OUT/final. `judge_engine`: the engine options of the in-process judge (default hf);
    `judge`: a ready judge (or a factory) instead; `log(str)` hears one line before training."""
    if log is not None:
        what = (f"outcome + {cfg.process_weight:g} x process ({cfg.aggregate}) of judge {cfg.judge}"
                if cfg.uses_judge else "outcome")
        log(f"train-policy-grpo: policy {cfg.model}, problems {cfg.problems}, reward {what}, lr {cfg.lr:g}, "
            f"{cfg.per_device_batch * cfg.grad_accum // cfg.num_generations} prompts x {cfg.num_generations} "
            f"completions per step, out {cfg.out}")
    return train_policy_grpo(cfg, overwrite=overwrite, judge=judge, judge_engine=judge_engine, show=show)
