"""`JudgeTrainConfig`: the settings of one `train-judge` run, for every method; each field declares its
command-line option (`stepwiser.cli.options.config_options` generates `stepwiser train-judge` from it).

Names that differ from the TRL/HF argument of similar name, on purpose:
- `format_warmup_steps` / `format_warmup_lr`: the label-agnostic format SFT before GRPO (not a learning-rate
  warm-up; that is `lr_warmup_ratio`). Old names `warmup_steps` / `warmup_lr` (flags `--warmup-steps`,
  `--warmup-lr`) still work for one release, with a warning.
- `optimizer_steps_per_generation`: optimiser steps per generation batch; TRL's `steps_per_generation`
  counts micro-batches (= this x `grad_accum`, `trl_steps_per_generation`). Old flag `--steps-per-generation`.

Run manifests keep the names of stepwiser 0.1 (`manifest_config`), so runs started before the renaming resume.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from stepwiser.io.config import check_choices, field_default, option
from stepwiser.judges.prompts import JUDGE_PROMPTS
from stepwiser.train.sft import PACKING_RULE, ModelTrainOptions

METHODS = ("grpo", "grpo-nocot", "rft", "disc-sft", "warmup")
GRPO_METHODS = ("grpo", "grpo-nocot")
LOSS_TYPES = ("dapo", "grpo", "dr_grpo", "bnpo")
SCALE_REWARDS = ("group", "batch", "none")
VLLM_MODES = ("colocate", "server")
SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")

# field name -> the name it has in run manifests (the name of stepwiser 0.1: earlier runs still resume)
MANIFEST_NAMES = {"format_warmup_steps": "warmup_steps", "format_warmup_lr": "warmup_lr"}
WARMUP_ANALYSES = ("template", "policy")
# fields added after runs were made: left out of the manifest while at their defaults, so earlier runs resume
LATER_FIELDS = ("warmup_analysis", "warmup_policy", "warmup_policy_samples", "warmup_policy_temperature",
                "warmup_policy_max_tokens", "collapse_threshold", "collapse_action", "judge_prompt", "balanced_batches")
COLLAPSE_ACTIONS = ("warn", "stop")
# GRPO settings whose defaults the judge runs and the policy runs (train/policy_grpo.py) share: written once
GRPO_DEFAULTS = {"epsilon": 0.2, "epsilon_high": 0.28, "beta": 0.0, "loss_type": "dapo", "scale_rewards": "group",
                 "temperature": 1.0, "top_p": 1.0, "mask_truncated_completions": False}


@dataclass
class JudgeTrainConfig(ModelTrainOptions):
    """One `train-judge` run. Settings marked GRPO or SFT apply to those methods only.

    Batches: GRPO counts completions (`per_device_batch` completions per micro-batch, `grad_accum`
    micro-batches per optimiser step, `optimizer_steps_per_generation` optimiser steps per generation batch,
    so one generation batch holds per_device_batch x grad_accum x world x steps / num_generations prompts).
    The SFT methods (rft, disc-sft, warmup and the format warm-up before GRPO) count sequences:
    `global_batch` per optimiser step."""

    model: str = option(help="Base judge: HF id, local dir, or smollm2-135m-instruct.")
    out: str = option(help="Run folder: checkpoints/, metrics.jsonl (GRPO) or train_log.jsonl (SFT), manifest.json, "
                           "warmup/ (if any) and final/ (the merged judge model).", short="-o")
    method: str = option("grpo", "grpo: the StepWiser judge (RL with CoT); grpo-nocot: RL on the bare verdict; rft: "
                                 "rejection-sampling fine-tuning; disc-sft: discriminative +/- SFT (on --format disc "
                                 "data); warmup: the label-agnostic format warm-up alone (the control).",
                         choices=METHODS)
    cot: bool | None = option(None, "Judgment format (warmup only; the other methods fix it) [default: cot, "
                                    "no-cot for grpo-nocot].")
    judge_prompt: str = option("full", "Judge prompt: full (role and task instructions) or compact (one line of "
                                       "task, then problem / previous reasoning / new chunk; about half the "
                                       "tokens, for micro models). Recorded in the judge's stepwiser_judge.json, "
                                       "which every engine and `load_judge` follow.", choices=JUDGE_PROMPTS)
    data: str | None = option(None, "A judge-data output folder (its train.jsonl) or a JSONL file.", path="any")
    lr: float | None = option(None, "Learning rate [default: 1e-6 GRPO (paper), 1e-5 SFT methods (paper)].")
    epochs: float = option(1.0, "Training epochs.")
    max_steps: int | None = option(None, "Optimiser steps (overrides --epochs).")
    per_device_batch: int = option(16, "GRPO: completions per micro-batch; SFT methods: sequences per micro-batch.")
    grad_accum: int = option(1, "GRPO: micro-batches per optimiser step.")
    global_batch: int = option(32, "SFT methods: sequences per optimiser step (paper: 32).")
    scheduler: str | None = option(None, "Learning-rate schedule [default: constant GRPO, cosine SFT methods].",
                                   choices=SCHEDULERS)
    lr_warmup_ratio: float = option(0.0, "Share of the steps with a linear learning-rate warm-up.")
    weight_decay: float = option(0.0, "AdamW weight decay.")
    # GRPO
    num_generations: int = option(4, "GRPO: completions per prompt.")
    optimizer_steps_per_generation: int = option(
        4, "GRPO: optimiser steps per generation batch (clipping only acts from the second on); TRL's "
           "steps_per_generation counts micro-batches, this x --grad-accum.", aliases=("steps_per_generation",))
    epsilon: float = option(GRPO_DEFAULTS["epsilon"], "GRPO: lower clip range.")
    epsilon_high: float = option(GRPO_DEFAULTS["epsilon_high"], "GRPO: upper clip range (clip-higher).")
    beta: float = option(GRPO_DEFAULTS["beta"], "GRPO: KL coefficient.")
    loss_type: str = option(GRPO_DEFAULTS["loss_type"], "GRPO: TRL loss type.", choices=LOSS_TYPES)
    scale_rewards: str = option(GRPO_DEFAULTS["scale_rewards"], "GRPO: advantage normalisation.", choices=SCALE_REWARDS)
    temperature: float = option(GRPO_DEFAULTS["temperature"], "GRPO sampling temperature.")
    top_p: float = option(GRPO_DEFAULTS["top_p"], "GRPO sampling top-p.")
    max_completion_length: int | None = option(None, "GRPO: most tokens per judgment [default: 1024 with CoT, 32 "
                                                     "for grpo-nocot] (paper: 3096).")
    format_penalty: float = option(-1.0, "GRPO: reward of a badly formed judgment (anything but one boxed verdict "
                                         "at the very end, then EOS; grpo-nocot: the verdict alone).")
    mask_truncated_completions: bool = option(GRPO_DEFAULTS["mask_truncated_completions"], "GRPO: leave truncated completions out of the loss.")
    use_vllm: bool = option(False, "GRPO: generate with vLLM (GPU).")
    vllm_mode: str = option("colocate", "GRPO with vLLM: colocate (in the training processes) or server.",
                            choices=VLLM_MODES)
    vllm_server_base_url: str | None = option(None, "vllm-mode server: e.g. http://localhost:8000 (trl vllm-serve).")
    vllm_gpu_memory_utilization: float = option(0.3, "vllm-mode colocate: GPU memory share for vLLM.")
    vllm_tensor_parallel_size: int = option(1, "vllm-mode colocate: tensor parallel size.")
    vllm_max_model_length: int | None = option(None, "vLLM context length [default: the model's].")
    log_completions: bool = option(False, "GRPO: print sample completions when logging.")
    collapse_threshold: float | None = option(None, "GRPO collapse watch: act when the share of prompt groups "
                                                    "with zero reward variance, averaged over the last 3 "
                                                    "generation batches, reaches this (e.g. 0.9) [default: off].")
    balanced_batches: bool = option(False, "GRPO: every generation batch holds as many Positive as Negative "
                                           "prompts (a class-balanced sampler, reshuffled every epoch): with few "
                                           "prompts per step it keeps the verdict bias from drifting with the "
                                           "batch's class mix.")
    shared_prompt: bool = option(True, "GRPO: compute each distinct prompt once per batch, for generation and "
                                       "the loss (exact, faster: a prompt has num_generations completions; "
                                       "stepwiser.train.grpo_shared_prompt). Single-process transformers "
                                       "generation only; elsewhere TRL's own code runs.")
    collapse_action: str = option("warn", "GRPO collapse watch: warn, or stop (end training cleanly: final model "
                                          "saved, the summary says why).", choices=COLLAPSE_ACTIONS)
    # validation during GRPO: greedy judgments of the validation split every `eval_steps` (0: off)
    eval_steps: int = option(0, "GRPO: judge the validation split (greedy) every N steps and at step 0 (0: off).")
    val_data: str | None = option(None, "Validation examples [default: val.jsonl of the --data folder].", path="any")
    eval_max_examples: int | None = option(256, "Validate on the first N validation examples.")
    # the control: labels permuted across training examples (seeded; class balance kept)
    shuffle_labels: bool = option(False, "The control: permute the training labels (seeded); validation labels "
                                         "stay true.")
    # format warm-up (label-agnostic SFT before GRPO; the whole run for method "warmup")
    format_warmup_steps: int = option(0, "Format warm-up SFT steps before GRPO (label-agnostic verdicts; not a "
                                         "learning-rate warm-up); --method warmup: its steps.",
                                      aliases=("warmup_steps",))
    format_warmup_lr: float = option(1e-5, "Learning rate of the format warm-up.", aliases=("warmup_lr",))
    warmup_analysis: str = option("template", "CoT format warm-up analyses: template (the chunk's goal and stated "
                                              "results) or policy (the chunk policy --warmup-policy re-derives the "
                                              "step from the same history; --engine options).",
                                  choices=WARMUP_ANALYSES)
    warmup_policy: str | None = option(None, "warmup-analysis policy: the policy model (HF id or folder).")
    warmup_policy_samples: int = option(2, "warmup-analysis policy: steps the policy draws per example (the "
                                           "distinct ones go into the analysis).")
    warmup_policy_temperature: float = option(1.0, "warmup-analysis policy: sampling temperature (0: greedy).")
    warmup_policy_max_tokens: int = option(128, "warmup-analysis policy: most tokens per drawn step.")
    # rejection-sampling fine-tuning
    rft_k: int = option(4, "rft: judgments sampled per example.")
    rft_max_tokens: int = option(1024, "rft: most tokens per sampled judgment.")
    rft_temperature: float = option(1.0, "rft: sampling temperature.")
    rft_balance: bool = option(True, "rft: down-sample the label with more kept judgments to 50/50.")
    # SFT
    max_length: int = option(4096, "SFT methods: tokens per sequence.")
    packing: bool = option(False, "SFT methods: pack whole examples into rows of --max-length tokens "
                                  "(padding-free). " + PACKING_RULE)
    # common
    seed: int = option(0, "Seed of the data order, sampling, label shuffling and warm-up verdicts.")
    logging_steps: int = option(1, "Log every N optimiser steps.")
    save_steps: int = option(50, "Checkpoint every N optimiser steps.")
    save_total_limit: int = option(2, "Checkpoints kept.")
    resume: bool = option(True, "Continue from the last checkpoint in OUT/checkpoints.")
    num_threads: int | None = option(None, "torch CPU threads.")

    VOLATILE = ("logging_steps", "save_steps", "save_total_limit", "resume", "num_threads", "log_completions",
                "shared_prompt",
                "vllm_server_base_url", "vllm_gpu_memory_utilization", "eval_steps", "val_data",
                "eval_max_examples")

    def __post_init__(self):
        check_choices(self)
        if self.cot is None:
            self.cot = self.method != "grpo-nocot"
        if self.max_completion_length is None:
            self.max_completion_length = 1024 if self.cot else 32
        if self.cot != (self.method != "grpo-nocot") and self.method != "warmup":
            raise ValueError(f"method {self.method} is {'not ' if self.cot else ''}a chain-of-thought judge; "
                             "only the warmup method takes either format")
        if not self.model or not self.out:
            raise ValueError("model and out are required")
        self._check_ranges()

    def _check_ranges(self) -> None:
        positive = {k: getattr(self, k) for k in (
            "epochs", "per_device_batch", "grad_accum", "global_batch", "num_generations",
            "optimizer_steps_per_generation", "format_warmup_lr", "rft_k", "rft_max_tokens",
            "max_length", "lora_r", "lora_alpha", "logging_steps", "save_steps")}
        positive.update({k: getattr(self, k) for k in ("lr", "max_steps", "num_threads", "max_completion_length")
                         if getattr(self, k) is not None})
        bad = [f"{k}={v!r}" for k, v in positive.items() if not isinstance(v, (int, float)) or v <= 0]
        if bad:
            raise ValueError(f"these settings must be positive numbers: {', '.join(bad)}")
        if self.num_generations < 2:
            raise ValueError("num_generations must be at least 2 (GRPO normalises rewards within a group)")
        if self.warmup_analysis == "policy" and not self.warmup_policy:
            raise ValueError("warmup_analysis policy needs warmup_policy (the policy model that writes the analyses)")
        if self.warmup_policy_samples < 1 or self.warmup_policy_max_tokens < 1 or self.warmup_policy_temperature < 0:
            raise ValueError("need warmup_policy_samples >= 1, warmup_policy_max_tokens >= 1 and "
                             "warmup_policy_temperature >= 0")
        if self.format_warmup_steps < 0 or self.eval_steps < 0:
            raise ValueError("format_warmup_steps and eval_steps must be >= 0")
        if self.eval_max_examples is not None and self.eval_max_examples < 1:
            raise ValueError(f"eval_max_examples must be positive or null, got {self.eval_max_examples}")
        if not (0 <= self.epsilon < 1 and self.epsilon_high >= 0 and self.beta >= 0):
            raise ValueError("need 0 <= epsilon < 1, epsilon_high >= 0 and beta >= 0")
        if not 0 < self.top_p <= 1 or self.temperature <= 0 or self.rft_temperature <= 0:
            raise ValueError("need 0 < top_p <= 1 and positive temperatures")
        if not 0 <= self.lr_warmup_ratio < 1 or not 0 <= self.lora_dropout < 1:
            raise ValueError("lr_warmup_ratio and lora_dropout must be in [0, 1)")
        if self.collapse_threshold is not None and not 0 < self.collapse_threshold <= 1:
            raise ValueError(f"collapse_threshold must be in (0, 1], got {self.collapse_threshold}")
        if self.use_vllm and self.vllm_mode == "server" and not self.vllm_server_base_url:
            raise ValueError("vllm_mode server needs vllm_server_base_url (e.g. http://localhost:8000)")

    @property
    def lr_scheduler(self) -> str:
        return self.scheduler or ("constant" if self.method in GRPO_METHODS else "cosine")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-6 if self.method in GRPO_METHODS else 1e-5)

    @property
    def trl_steps_per_generation(self) -> int:
        """TRL's steps_per_generation counts micro-batches: optimiser steps x gradient accumulation."""
        return self.optimizer_steps_per_generation * self.grad_accum


def manifest_config(cfg: JudgeTrainConfig, **extra) -> dict:
    """The config a run's manifest records and hashes: the fields under their manifest names
    (`MANIFEST_NAMES`), plus `extra`; `LATER_FIELDS` at their defaults are left out (earlier runs resume)."""
    defaults = {f.name: field_default(f) for f in dataclasses.fields(cfg) if f.name in LATER_FIELDS}
    values = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in defaults or v != defaults[k]}
    return {MANIFEST_NAMES.get(k, k): v for k, v in {**values, **extra}.items()}
