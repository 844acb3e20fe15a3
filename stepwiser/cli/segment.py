"""`stepwiser segment`: teacher segmentation of correct responses into <chunk>s."""
from __future__ import annotations

import click

from stepwiser.cli.common import LazyEngine, engine_options, overwrite_option


@click.command("segment")
@click.option("--teacher", required=True, help="Teacher model (HF id, dir, smollm2-135m-instruct, or the "
              "served model name with --engine openai).")
@click.option("--samples", required=True, type=click.Path(exists=True, dir_okay=False), help="Samples JSONL.")
@click.option("--problems", required=True, type=click.Path(exists=True, dir_okay=False), help="Problems JSONL.")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Output SFT examples JSONL.")
@click.option("--attempts", type=int, default=8, show_default=True, help="Teacher attempts per response.")
@click.option("--temperature", type=float, default=0.7, show_default=True,
              help="Temperature of attempts 2..k (the first is greedy).")
@click.option("--max-tokens", type=int, default=1024, show_default=True)
@click.option("--max-per-problem", type=int, default=4, show_default=True,
              help="At most this many correct responses per problem.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch", type=int, default=32, show_default=True, help="Responses per engine call.")
@engine_options()
@overwrite_option
def command(teacher, samples, problems, out, attempts, temperature, max_tokens, max_per_problem, seed, batch,
            engine_opts, overwrite):
    """Ask a teacher to insert <chunk> tags into correct responses; keep exact reconstructions.

    Output: SFT examples (prompt = problem, response = chunk-tagged text) for `stepwiser train-policy`.
    Responses that fail all attempts go to OUT.failed.jsonl with the reasons.
    """
    from stepwiser.io.summary import print_summary
    from stepwiser.stages.segment import SegmentConfig, run_segment

    cfg = SegmentConfig(teacher=teacher, samples=samples, problems=problems, out=out, attempts=attempts,
                        temperature=temperature, max_tokens=max_tokens, max_per_problem=max_per_problem,
                        seed=seed, engine=engine_opts["engine"], batch=batch)
    with LazyEngine(teacher, engine_opts) as factory:
        print_summary("segment", run_segment(cfg, factory, overwrite=overwrite))
