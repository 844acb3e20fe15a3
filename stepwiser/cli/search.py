"""`stepwiser search`: chunk-reset reasoning with a step judge (contract C8)."""
from __future__ import annotations

import dataclasses

import click

from stepwiser.cli.common import LazyEngine, engine_options, overwrite_option
from stepwiser.cli.options import config_options
from stepwiser.stages.search import SearchConfig


class LazyJudge:
    """A zero-argument judge factory (the judge is loaded only when there is work); closes its engine."""

    def __init__(self, model: str, engine_opts, kind: str, cot, max_tokens, seed: int, threshold: float):
        self.args = (model, engine_opts, kind, cot, max_tokens, seed, threshold)
        self.loaded = None

    def __call__(self):
        if self.loaded is None:
            from stepwiser.judges.load import load_judge
            model, opts, kind, cot, max_tokens, seed, threshold = self.args
            self.loaded = load_judge(model, opts, kind=kind, cot=cot, max_tokens=max_tokens, seed=seed,
                                    threshold=threshold)
        return self.loaded

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        engine = getattr(self.loaded, "engine", None)
        if engine is not None:
            engine.close()


@click.command("search")
@config_options(SearchConfig, section="search")
@engine_options("policy")
@engine_options("judge")
@overwrite_option
def command(cfg, policy_engine_opts, judge_engine_opts, overwrite):
    """Chunk-reset reasoning: the chunk policy writes one chunk at a time, the judge checks each one, and a
    chunk judged Negative is sampled again (at most --max-resets times, then the last attempt is kept).

    \b
      stepwiser search --policy runs/policy --judge runs/judge -o runs/search \\
          --problems math500.jsonl --policy-engine vllm --judge-engine vllm

    Writes OUT/search.jsonl (per problem: response, chunks, correct, resets per chunk, accepted and
    rejected tokens, judge calls, unparsed verdicts, rejected attempts), OUT/baseline.jsonl (the same
    policy generating freely) and OUT/summary.json. Rerunning resumes; a different config is refused.
    """
    from stepwiser.io.summary import print_summary
    from stepwiser.stages.search import SUMMARY_NOTES, run_search

    cfg = dataclasses.replace(cfg, policy_engine=policy_engine_opts.engine, judge_engine=judge_engine_opts.engine)
    with LazyEngine(cfg.policy, policy_engine_opts) as policy, \
            LazyJudge(cfg.judge, judge_engine_opts, cfg.judge_kind, cfg.cot, cfg.judge_max_tokens, cfg.seed,
                      cfg.threshold) as judge:
        summary = run_search(cfg, policy, judge, overwrite=overwrite)
    print_summary("search", summary)
    click.echo(SUMMARY_NOTES)
    click.echo(f"wrote {cfg.out}/search.jsonl and {cfg.out}/summary.json")
