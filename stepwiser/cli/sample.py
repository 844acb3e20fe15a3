"""`stepwiser sample`: N responses per problem, chunked and verified."""
from __future__ import annotations

import click

from .common import LazyEngine, engine_options, overwrite_option


@click.command("sample")
@click.option("--policy", required=True, help="Policy model: HF id, local dir, or smollm2-135m-instruct.")
@click.option("--problems", required=True, type=click.Path(exists=True, dir_okay=False), help="Problems JSONL.")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Output samples JSONL.")
@click.option("--n", type=int, default=4, show_default=True, help="Responses per problem.")
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--top-p", type=float, default=1.0, show_default=True)
@click.option("--max-tokens", type=int, default=512, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--chunk-style", type=click.Choice(["tags", "blank"]), default="tags", show_default=True,
              help="How responses are split into chunks (C6).")
@click.option("--batch-problems", type=int, default=16, show_default=True, help="Problems per engine call.")
@click.option("--limit", type=int, default=None, help="Only the first N problems.")
@click.option("--filtered-out", type=click.Path(dir_okay=False), default=None,
              help="Also write the problems whose samples are neither all correct nor all wrong.")
@engine_options()
@overwrite_option
def command(policy, problems, out, n, temperature, top_p, max_tokens, seed, chunk_style, batch_problems, limit,
            filtered_out, engine_opts, overwrite):
    """Sample N responses per problem from a policy; parse chunks; verify final answers.

    Writes one sample record per line (problem_id, sample_id, response, chunks, correct, sampling).
    Rerunning the same command resumes; a different config into the same output is refused.
    """
    from ..sample import SampleConfig, run_sample

    cfg = SampleConfig(policy=policy, problems=problems, out=out, n=n, temperature=temperature, top_p=top_p,
                       max_tokens=max_tokens, seed=seed, chunk_style=chunk_style, engine=engine_opts["engine"],
                       batch_problems=batch_problems, filtered_out=filtered_out, limit=limit)
    with LazyEngine(policy, engine_opts) as factory:
        summary = run_sample(cfg, factory, overwrite=overwrite)
    from ..report_text import print_summary
    print_summary("sample", summary)
