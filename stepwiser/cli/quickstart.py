"""`stepwiser quickstart`: the embedded default job (CPU, bundled model, generated data, no network)."""
from __future__ import annotations

import click

from stepwiser.cli.common import overwrite_option
from stepwiser.cli.options import config_options
from stepwiser.stages.quickstart import QuickstartConfig


@click.command("quickstart")
@config_options(QuickstartConfig, section="quickstart")
@overwrite_option
def command(cfg, overwrite):
    """Run the pipeline's first stages on the micro domain with the bundled model.

    1. generate micro-domain problems with chunk-tagged reference solutions;
    2. generate a synthetic ProcessBench (test/dev) disjoint from them;
    3. sample the bundled policy greedily, split its answers into chunks and verify them.
    Everything resumes if interrupted. Each generated file has a manifest (C7): rerunning into OUT with
    other --problems/--bench/--seed is refused (another --out, or --overwrite to regenerate). The
    untrained SmolLM2 rarely solves these problems: the chunk-policy SFT stage (`stepwiser train-policy`)
    is what makes it useful.
    """
    from stepwiser.io.summary import print_summary
    from stepwiser.stages.quickstart import run_quickstart

    summary = run_quickstart(cfg, overwrite=overwrite, echo=click.echo)
    print_summary("quickstart: bundled policy on the micro domain (greedy)", summary)
