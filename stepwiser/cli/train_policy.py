"""`stepwiser train-policy`: SFT of the chunk policy (STEPWISER.md 2.1) on TRL's SFTTrainer."""
from __future__ import annotations

import click

from stepwiser.io.config import config_from, explicit_params


@click.command("train-policy")
@click.option("--model", default=None, help="Base policy: HF id, local dir, or smollm2-135m-instruct.")
@click.option("--data", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Training JSONL: SFT examples (prompt, response), problems with a chunk-tagged `solution` "
                   "(`stepwiser data synth`), or conversations (prompt/completion or messages).")
@click.option("-o", "--out", default=None, type=click.Path(file_okay=False),
              help="Run folder: checkpoints/, train_log.jsonl, manifest.json and final/ (the merged model).")
@click.option("--config", "recipe", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Recipe YAML; its `train_policy` section gives defaults, flags override.")
@click.option("--lr", type=float, default=1e-5, show_default=True, help="Peak learning rate (paper: 1e-5).")
@click.option("--epochs", type=float, default=1.0, show_default=True)
@click.option("--max-steps", type=int, default=None, help="Optimiser steps (overrides --epochs).")
@click.option("--global-batch", type=int, default=32, show_default=True,
              help="Sequences per optimiser step over all devices (paper: 32); sets gradient accumulation.")
@click.option("--per-device-batch", type=int, default=8, show_default=True)
@click.option("--packing/--no-packing", default=True, show_default=True,
              help="Pack whole examples into rows of --max-length tokens (padding-free).")
@click.option("--max-length", type=int, default=8192, show_default=True, help="Tokens per (packed) row.")
@click.option("--lora", is_flag=True, default=False, help="Train a LoRA adapter (merged into final/).")
@click.option("--lora-r", type=int, default=16, show_default=True)
@click.option("--bf16/--no-bf16", default=False, help="bfloat16 autocast (GPU, or CPU with AMX/AVX512-BF16; on AVX2-only CPUs it is much slower than float32). --no-bf16 overrides a recipe.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--num-threads", type=int, default=None, help="torch CPU threads.")
@click.option("--overwrite", is_flag=True, help="Delete an existing run made with a different config and start over.")
@click.pass_context
def command(ctx, model, data, out, recipe, lr, epochs, max_steps, global_batch, per_device_batch, packing,
            max_length, lora, lora_r, bf16, seed, num_threads, overwrite):
    """Fine-tune a policy to write its reasoning in <chunk> tags with a boxed answer.

    Full fine-tuning or LoRA; the result is always a plain HF model directory OUT/final (LoRA merged),
    usable by every engine. Rerunning resumes from the last checkpoint in OUT/checkpoints.
    Several GPUs: accelerate launch --config_file recipes/accelerate/zero2.yaml -m stepwiser train-policy ...
    """
    from stepwiser.train.sft import SFTTrainConfig, load_conversations, train_sft

    params = {"model": model, "data": data, "out": out, "lr": lr, "epochs": epochs, "max_steps": max_steps,
              "global_batch": global_batch, "per_device_batch": per_device_batch, "packing": packing,
              "max_length": max_length, "lora": lora, "lora_r": lora_r, "bf16": bf16, "seed": seed,
              "num_threads": num_threads}
    given = explicit_params(ctx, params)
    if recipe is None:  # no recipe: click defaults are the config
        given = {k: v for k, v in params.items() if v is not None or k in given}
    cfg = config_from(SFTTrainConfig, recipe, "train_policy", given)
    if not cfg.data:
        raise click.UsageError("give --data (or `data` in the recipe's train_policy section)")
    examples = load_conversations(cfg.data)
    click.echo(f"train-policy: {len(examples)} examples from {cfg.data}, model {cfg.model} "
               f"({'LoRA' if cfg.lora else 'full fine-tuning'}), out {cfg.out}", err=True)
    final = train_sft(cfg, examples, overwrite=overwrite, stage="train-policy")
    click.echo(str(final))
