"""`stepwiser train-judge`: the StepWiser judge (GRPO) and its baselines (STEPWISER.md 2.3)."""
from __future__ import annotations

import click

from stepwiser.io.config import config_from, explicit_params
from stepwiser.cli.common import engine_options, overwrite_option

METHODS = ("grpo", "grpo-nocot", "rft", "disc-sft", "warmup")

# CLI parameter -> JudgeTrainConfig field (same name unless listed)
RENAMED = {"steps_per_generation": "optimizer_steps_per_generation"}


@click.command("train-judge")
@click.option("--method", type=click.Choice(METHODS), default="grpo", show_default=True,
              help="grpo: the StepWiser judge (RL with CoT); grpo-nocot: RL on the bare verdict; rft: "
                   "rejection-sampling fine-tuning; disc-sft: discriminative +/- SFT (on --format disc data); "
                   "warmup: the label-agnostic format warm-up alone (the control).")
@click.option("--data", default=None, type=click.Path(exists=True),
              help="A judge-data output folder (its train.jsonl) or a JSONL file.")
@click.option("--model", default=None, help="Base judge: HF id, local dir, or smollm2-135m-instruct.")
@click.option("-o", "--out", default=None, type=click.Path(file_okay=False),
              help="Run folder: checkpoints/, metrics.jsonl (GRPO) or train_log.jsonl (SFT), manifest.json, "
                   "warmup/ (if any) and final/ (the merged judge model).")
@click.option("--config", "recipe", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Recipe YAML; its `train_judge` section gives defaults, flags override.")
@click.option("--lr", type=float, default=None, help="Learning rate [default: 1e-6 GRPO, 1e-5 SFT methods].")
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--max-steps", type=int, default=None, help="Optimiser steps (overrides --epochs).")
@click.option("--per-device-batch", type=int, default=16, show_default=True,
              help="GRPO: completions per micro-batch; SFT methods: sequences per micro-batch.")
@click.option("--grad-accum", type=int, default=1, show_default=True, help="GRPO: micro-batches per optimiser step.")
@click.option("--global-batch", type=int, default=32, show_default=True,
              help="SFT methods: sequences per optimiser step (paper: 32).")
@click.option("--num-generations", type=int, default=4, show_default=True, help="GRPO: completions per prompt.")
@click.option("--steps-per-generation", type=int, default=4, show_default=True,
              help="GRPO: optimiser steps per generation batch (clipping only acts from the second on).")
@click.option("--epsilon", type=float, default=0.2, show_default=True, help="GRPO: lower clip range.")
@click.option("--epsilon-high", type=float, default=0.28, show_default=True, help="GRPO: upper clip range (clip-higher).")
@click.option("--beta", type=float, default=0.0, show_default=True, help="GRPO: KL coefficient.")
@click.option("--loss-type", type=click.Choice(["dapo", "grpo", "dr_grpo", "bnpo"]), default="dapo", show_default=True)
@click.option("--temperature", type=float, default=1.0, show_default=True, help="GRPO sampling temperature.")
@click.option("--max-completion-length", type=int, default=None,
              help="GRPO: most tokens per judgment [default: 1024 with CoT, 32 for grpo-nocot] (paper: 3096).")
@click.option("--format-penalty", type=float, default=-1.0, show_default=True,
              help="grpo-nocot: reward of anything but a lone boxed verdict.")
@click.option("--cot/--no-cot", default=None, help="warmup: judgment format [default: cot].")
@click.option("--warmup-steps", type=int, default=0, show_default=True,
              help="Format warm-up SFT steps before GRPO (label-agnostic); --method warmup: its steps.")
@click.option("--warmup-lr", type=float, default=1e-5, show_default=True)
@click.option("--rft-k", type=int, default=4, show_default=True, help="rft: judgments sampled per example.")
@click.option("--rft-max-tokens", type=int, default=1024, show_default=True)
@click.option("--rft-balance/--no-rft-balance", default=True, show_default=True,
              help="rft: down-sample the label with more kept judgments to 50/50.")
@click.option("--max-length", type=int, default=4096, show_default=True, help="SFT methods: tokens per sequence.")
@click.option("--lora", is_flag=True, default=False, help="Train a LoRA adapter (merged into final/).")
@click.option("--lora-r", type=int, default=16, show_default=True)
@click.option("--bf16/--no-bf16", default=False, help="bfloat16 autocast (GPU, or CPU with AMX/AVX512-BF16; on AVX2-only CPUs it is much slower than float32). --no-bf16 overrides a recipe.")
@click.option("--gradient-checkpointing", is_flag=True, default=False)
@click.option("--use-vllm/--no-vllm", default=False, show_default=True, help="GRPO: generate with vLLM (GPU).")
@click.option("--vllm-mode", type=click.Choice(["colocate", "server"]), default="colocate", show_default=True)
@click.option("--vllm-server-base-url", default=None, help="vllm-mode server: e.g. http://localhost:8000 (trl vllm-serve).")
@click.option("--vllm-gpu-memory-utilization", type=float, default=0.3, show_default=True,
              help="vllm-mode colocate: GPU memory share for vLLM.")
@click.option("--eval-steps", type=int, default=0, show_default=True,
              help="GRPO: judge the validation split (greedy) every N steps and at step 0 (0: off).")
@click.option("--val-data", default=None, type=click.Path(exists=True),
              help="Validation examples [default: val.jsonl of the --data folder].")
@click.option("--eval-max-examples", type=int, default=256, show_default=True)
@click.option("--shuffle-labels", is_flag=True, default=False,
              help="The control: permute the training labels (seeded); validation labels stay true.")
@click.option("--log-completions", is_flag=True, default=False, help="GRPO: print sample completions when logging.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--logging-steps", type=int, default=1, show_default=True)
@click.option("--save-steps", type=int, default=50, show_default=True)
@click.option("--num-threads", type=int, default=None, help="torch CPU threads.")
@engine_options()
@overwrite_option
@click.pass_context
def command(ctx, recipe, overwrite, engine_opts, **params):
    """Train a judge. GRPO on CPU, or on GPUs with accelerate + DeepSpeed and vLLM generation:

    \b
      stepwiser train-judge --data runs/jd --model smollm2-135m-instruct -o runs/judge --warmup-steps 60
      accelerate launch --config_file recipes/accelerate/zero2.yaml -m stepwiser train-judge \\
          --config recipes/judge-grpo-1.5b.yaml --use-vllm --vllm-mode colocate

    The result is OUT/final, a plain HF model directory (LoRA merged) with stepwiser_judge.json, usable by
    every engine and by `load_judge`. Rerunning resumes from the last checkpoint in OUT/checkpoints.
    """
    from stepwiser.engines import make_engine
    from stepwiser.train.grpo import JudgeTrainConfig, read_metrics, summarize_metrics
    from stepwiser.train.judge_sft import train_judge
    from stepwiser.cli.common import engine_kwargs

    given = explicit_params(ctx, params)
    if recipe is None:
        given = {k: v for k, v in params.items() if v is not None or k in given}
    cfg = config_from(JudgeTrainConfig, recipe, "train_judge", {RENAMED.get(k, k): v for k, v in given.items()})
    if not cfg.data:
        raise click.UsageError("give --data (or `data` in the recipe's train_judge section)")
    engine = make_engine(engine_opts["engine"], cfg.model, **engine_kwargs(engine_opts)) if cfg.method == "rft" else None
    click.echo(f"train-judge: method {cfg.method}, model {cfg.model}, data {cfg.data}, lr {cfg.learning_rate:g}, "
               f"{'LoRA' if cfg.lora else 'full fine-tuning'}, out {cfg.out}", err=True)
    final = train_judge(cfg, engine=engine, overwrite=overwrite)
    if cfg.method in ("grpo", "grpo-nocot"):
        summary = summarize_metrics(read_metrics(cfg.out))
        if summary:
            click.echo("train-judge: " + ", ".join(f"{k} {v}" for k, v in summary.items()), err=True)
    click.echo(str(final))
