"""`stepwiser data`: make problem sets (synthetic arithmetic, a synthetic ProcessBench) or load them."""
from __future__ import annotations

import click

from stepwiser.cli.common import overwrite_option
from stepwiser.cli.options import config_options
from stepwiser.stages.data import LoadConfig, SynthBenchConfig, SynthConfig


@click.group("data")
def command():
    """Problem sets: synthetic arithmetic problems, a synthetic ProcessBench, public datasets.

    \b
      stepwiser data synth --n 2000 --seed 0 -o problems.jsonl
      stepwiser data synth-bench --n 400 --seed 1 -o bench/ --exclude problems.jsonl
      stepwiser data load --format gsm8k --input hf --split test -o gsm8k.jsonl
    """


def _report(stage: str, summary: dict) -> None:
    from stepwiser.io.summary import print_summary

    if summary.get("nothing_to_do"):
        click.echo(f"{summary['output']} is complete with the same config; nothing to do (--overwrite to remake it)")
        return
    print_summary(stage, summary)


@command.command("synth")
@config_options(SynthConfig, section="data_synth")
@overwrite_option
def synth(cfg, overwrite):
    """Generate N arithmetic word problems with chunk-tagged reference solutions.

    Deterministic for a seed. Each problem has exact integer answers, one <chunk> per operation
    and a machine-readable trace in its "steps" field.
    """
    from stepwiser.stages.data import run_synth

    _report("data synth", run_synth(cfg, overwrite=overwrite))


@command.command("synth-bench")
@config_options(SynthBenchConfig, section="data_synth_bench")
@overwrite_option
def synth_bench(cfg, overwrite):
    """Build a synthetic ProcessBench: about half clean solutions (label -1), half with one wrong chunk.

    The wrong chunk has a wrong result, a wrong operator or a misread quantity; later chunks follow
    correctly from the wrong value, so `label` is its index. Evaluate it like ProcessBench:
    `stepwiser eval processbench --data DIR`.
    """
    from stepwiser.stages.data import run_synth_bench

    _report("data synth-bench", run_synth_bench(cfg, overwrite=overwrite))


@command.command("load")
@config_options(LoadConfig, section="data_load")
@overwrite_option
def load(cfg, overwrite):
    """Convert a public dataset (GSM8K, MATH, NuminaMath, ProcessBench) or any JSONL into problems."""
    from stepwiser.stages.data import run_load

    _report("data load", run_load(cfg, overwrite=overwrite))
