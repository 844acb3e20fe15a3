"""`stepwiser init-model`: a randomly initialised micro model (Llama + word-level domain tokenizer)."""
from __future__ import annotations

import click

from stepwiser.cli.options import config_options
from stepwiser.stages.init_model import InitModelConfig


@click.command("init-model")
@config_options(InitModelConfig, section="init_model")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output folder.")
def command(cfg, overwrite):
    """Write a randomly initialised micro model folder (config, safetensors weights, tokenizer).

    \b
      stepwiser init-model --size micro-1m --seed 0 -o runs/micro/init

    The word-level tokenizer is built from the micro domain's texts (synthetic problems, their
    solutions and every prompt the pipeline writes for them), or reused with --tokenizer DIR after a
    coverage check. The same seed gives identical weights. Train it with `stepwiser train-policy`.
    """
    from stepwiser.io.summary import print_summary
    from stepwiser.stages.init_model import run_init_model

    print_summary("init-model", run_init_model(cfg, overwrite=overwrite))
