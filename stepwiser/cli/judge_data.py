"""`stepwiser judge-data`: judge training examples from annotations (split by problem, balanced)."""
from __future__ import annotations

import click

from stepwiser.core.labels import LABEL_TYPES
from stepwiser.cli.common import overwrite_option


@click.command("judge-data")
@click.option("--annotations", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Annotations JSONL (from `stepwiser annotate`).")
@click.option("--problems", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Problems JSONL the samples were drawn from (annotations hold the problem id only).")
@click.option("--label", type=click.Choice(LABEL_TYPES), default="rel_effective", show_default=True,
              help="Label type to train on.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: train.jsonl, val.jsonl, manifest.json.")
@click.option("--format", "fmt", type=click.Choice(["stepwise", "disc"]), default="stepwise", show_default=True,
              help="stepwise: one judge example per chunk (StepWiser); disc: one record per sample with all "
                   "its chunks and labels (discriminative baseline; never balanced).")
@click.option("--val-frac", type=float, default=0.1, show_default=True,
              help="Share of PROBLEMS held out for validation (no problem is in both splits).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split and the balancing.")
@click.option("--balance/--no-balance", default=True, show_default=True,
              help="Down-sample the majority class of the train split to 50/50 (validation stays unbalanced).")
@click.option("--min-tokens", type=click.IntRange(min=0), default=0, show_default=True,
              help="Drop prompts shorter than this (judge prompt with the chat template).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=3096, show_default=True,
              help="Drop prompts longer than this (the paper's max prompt is 3096).")
@click.option("--tokenizer", default="smollm2-135m-instruct", show_default=True,
              help="Judge model whose tokenizer and chat template count prompt tokens.")
@click.option("--chunk-style", type=click.Choice(["tags", "blank"]), default=None,
              help="Segmentation of the annotated samples (recorded in the examples) [default: from the "
                   "annotations' manifest, else tags].")
@overwrite_option
def command(annotations, problems, label, out, fmt, val_frac, seed, balance, min_tokens, max_tokens, tokenizer,
            chunk_style, overwrite):
    """Turn annotations into judge training data: DIR/train.jsonl and DIR/val.jsonl.

    One example per chunk (problem, previous chunks, chunk, label), split by problem, prompts outside
    the token window dropped, the train split balanced 50/50 by down-sampling the majority class.
    """
    if min_tokens > max_tokens:
        raise click.BadParameter(f"--min-tokens {min_tokens} is above --max-tokens {max_tokens}",
                                 param_hint="--min-tokens")
    if not 0 <= val_frac < 1:
        raise click.BadParameter(f"must be in [0, 1), got {val_frac}", param_hint="--val-frac")
    from stepwiser.stages.judge_data import JudgeDataConfig, print_balance, run_judge_data
    from stepwiser.io.summary import print_summary

    cfg = JudgeDataConfig(annotations=annotations, problems=problems, out=out, label=label, format=fmt,
                          val_frac=val_frac, seed=seed, balance=balance, min_tokens=min_tokens,
                          max_tokens=max_tokens, tokenizer=tokenizer, chunk_style=chunk_style)
    summary = run_judge_data(cfg, overwrite=overwrite)
    if summary.get("nothing_to_do"):
        click.echo(f"{out} is complete with the same config; nothing to do (--overwrite to remake it)")
    print_balance(summary)
    print_summary("judge-data", {k: v for k, v in summary.items() if k not in ("balance", "nothing_to_do")})
