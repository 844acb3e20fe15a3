"""`stepwiser annotate`: Monte Carlo Q-values and labels for every chunk."""
from __future__ import annotations

import click

from stepwiser.cli.common import LazyEngine, engine_options, overwrite_option

LABELS = "abs_q,rel_ratio,rel_effective"


@click.command("annotate")
@click.option("--policy", help="Policy model that continues the prefixes (the one that wrote the samples).")
@click.option("--samples", type=click.Path(exists=True, dir_okay=False), help="Samples JSONL (C2).")
@click.option("--problems", type=click.Path(exists=True, dir_okay=False), help="Problems JSONL (answers).")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Output annotations JSONL.")
@click.option("--rollouts", "-M", type=int, default=16, show_default=True, help="Rollouts per chunk (M).")
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--top-p", type=float, default=1.0, show_default=True)
@click.option("--max-tokens", type=int, default=512, show_default=True)
@click.option("--labels", default=LABELS, show_default=True, help="Label types to compute (comma-separated).")
@click.option("--gamma", type=float, default=0.8, show_default=True, help="Rel-Ratio gamma.")
@click.option("--alpha", type=float, default=0.4, show_default=True, help="Rel-Effective alpha.")
@click.option("--n", "n_best", type=int, default=4, show_default=True, help="Rel-Effective best-of-n.")
@click.option("--q0", type=click.Choice(["rollouts", "samples"]), default="rollouts", show_default=True,
              help="Q_0 from M rollouts of the empty prefix, or the pass rate of the problem's samples "
                   "(only if they were sampled with the rollout settings).")
@click.option("--early-stop", type=click.Choice(["off", "exact", "confident"]), default="off", show_default=True,
              help="exact: labels identical to full M; confident: stop when each label is decided with "
                   "error probability <= delta (agreement measured in benchmarks/earlystop.py).")
@click.option("--delta", type=float, default=0.05, show_default=True, help="confident mode error bound.")
@click.option("--round-size", type=int, default=None,
              help="Rollouts per index per round (default: M with --early-stop off, else 2).")
@click.option("--min-rollouts", type=int, default=2, show_default=True, help="confident: rollouts before a pause.")
@click.option("--prior-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="confident: fit the prior on Q from an earlier full-M annotation file (empirical Bayes).")
@click.option("--chunk-style", type=click.Choice(["tags", "blank"]), default="tags", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--shard", default=None, help="Process shard i of n (i/n), partitioned by problem_id.")
@click.option("--target-sequences", type=int, default=256, show_default=True,
              help="Rollouts gathered per engine call (keeps the engine's batch full).")
@click.option("--relabel", "relabel_from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Recompute labels of this annotation file for new --gamma/--alpha/--n (no rollouts).")
@click.option("--merge", "merge_from", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Merge these shard files into --out (repeat the option); checks against --samples.")
@engine_options()
@overwrite_option
def command(policy, samples, problems, out, rollouts, temperature, top_p, max_tokens, labels, gamma, alpha,
            n_best, q0, early_stop, delta, round_size, min_rollouts, prior_from, chunk_style, seed, shard,
            target_sequences, relabel_from, merge_from, engine_opts, overwrite):
    """Estimate Q for every chunk by rollouts and label chunks (Abs-Q, Rel-Ratio, Rel-Effective).

    Also: --relabel FILE (new gamma/alpha from stored counts) and --merge SHARD... (join shards).
    """
    from stepwiser.io.summary import print_summary

    label_list = tuple(x.strip() for x in labels.split(",") if x.strip())
    if relabel_from:
        from stepwiser.stages.relabel import relabel
        print_summary("relabel", relabel(relabel_from, out, label_list, gamma, alpha, n_best))
        return
    if merge_from:
        from stepwiser.stages.relabel import merge
        print_summary("merge", merge(list(merge_from), out, samples))
        return
    missing = [f"--{k}" for k, v in (("policy", policy), ("samples", samples), ("problems", problems)) if not v]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)}")
    from stepwiser.stages.annotate import AnnotateConfig, run_annotate

    cfg = AnnotateConfig(policy=policy, samples=samples, problems=problems, out=out, rollouts=rollouts,
                         temperature=temperature, top_p=top_p, max_tokens=max_tokens, labels=label_list,
                         gamma=gamma, alpha=alpha, n=n_best, q0=q0, early_stop=early_stop, delta=delta,
                         round_size=round_size, min_rollouts=min_rollouts, prior_from=prior_from,
                         chunk_style=chunk_style, seed=seed, shard=shard, engine=engine_opts["engine"],
                         target_sequences=target_sequences)
    with LazyEngine(policy, engine_opts) as factory:
        print_summary("annotate", run_annotate(cfg, factory, overwrite=overwrite))
