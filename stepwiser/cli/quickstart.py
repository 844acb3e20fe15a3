"""`stepwiser quickstart`: the embedded default job (CPU, bundled model, generated data, no network)."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("quickstart")
@click.option("--out", default="runs/quickstart", show_default=True, type=click.Path(file_okay=False),
              help="Output folder.")
@click.option("--problems", "n_problems", type=int, default=16, show_default=True,
              help="Micro-domain problems to generate and solve.")
@click.option("--bench", "n_bench", type=int, default=40, show_default=True,
              help="Items of the synthetic ProcessBench to generate.")
@click.option("--policy", default="smollm2-135m-instruct", show_default=True, help="Policy model.")
@click.option("--max-tokens", type=int, default=160, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def command(out, n_problems, n_bench, policy, max_tokens, seed):
    """Run the pipeline's first stages on the micro domain with the bundled model.

    1. generate micro-domain problems with chunk-tagged reference solutions;
    2. generate a synthetic ProcessBench (test/dev) disjoint from them;
    3. sample the bundled policy greedily, split its answers into chunks and verify them.
    Everything resumes if interrupted. The untrained SmolLM2 rarely solves these problems: the
    chunk-policy SFT stage (`stepwiser train-policy`) is what makes it useful.
    """
    from stepwiser.engines import make_engine
    from stepwiser.io.records import Problem, read_records, write_json, write_jsonl
    from stepwiser.io.summary import print_summary
    from stepwiser.stages.sample import SampleConfig, run_sample
    from stepwiser.data.synth import generate_bench, generate_problems, position_prior_f1

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    problems_path = out / "problems.jsonl"
    if not problems_path.exists():
        write_jsonl(problems_path, generate_problems(n_problems, seed))
    bench = out / "synth-bench"
    if not (bench / "test.json").exists():
        exclude = [p.problem for p in read_records(problems_path, Problem)]
        test, dev = generate_bench(n_bench, seed + 1, exclude_texts=exclude)
        write_json(bench / "dev.json", dev)
        write_json(bench / "test.json", test)
    click.echo(f"micro domain: {problems_path} ({n_problems} problems); synthetic ProcessBench: {bench} "
               f"(position-prior F1 on test: {position_prior_f1(_load(bench / 'test.json')):.1f})")
    cfg = SampleConfig(policy=policy, problems=str(problems_path), out=str(out / "samples.jsonl"), n=1,
                       temperature=0.0, max_tokens=max_tokens, seed=seed)
    with make_engine("hf", policy) as engine:
        summary = run_sample(cfg, engine)
    print_summary("quickstart: bundled policy on the micro domain (greedy)", summary)


def _load(path):
    import json
    return json.loads(Path(path).read_text())
