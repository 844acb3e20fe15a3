"""Stage `quickstart`: the embedded default job (CPU, bundled model, generated data, no network).

1. generate micro-domain problems with chunk-tagged reference solutions;
2. generate a synthetic ProcessBench (test/dev) disjoint from them;
3. sample the bundled policy greedily, split its answers into chunks and verify them.
Everything resumes if interrupted. Each generated file has a manifest (C7): rerunning into OUT with other
problems/bench/seed is refused unless `overwrite` (which regenerates the data and what was made from it).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from stepwiser.io.config import option
from stepwiser.models.loading import DEFAULT_MODEL


@dataclass
class QuickstartConfig:
    out: str = option("runs/quickstart", "Output folder.")
    n_problems: int = option(16, "Micro-domain problems to generate and solve.", flag="--problems")
    n_bench: int = option(40, "Items of the synthetic ProcessBench to generate (>= 4).", flag="--bench")
    policy: str = option(DEFAULT_MODEL, "Policy model.")
    max_tokens: int = option(160, "Most new tokens per response.")
    seed: int = option(0, "Seed of the problems, the bench (seed + 1) and the sampling.")

    def __post_init__(self):
        if self.n_problems < 1:
            raise ValueError(f"--problems must be >= 1, got {self.n_problems}")
        if self.n_bench < 4:
            raise ValueError(f"--bench must be >= 4, got {self.n_bench}")
        if self.max_tokens < 1:
            raise ValueError(f"--max-tokens must be >= 1, got {self.max_tokens}")


def run_quickstart(cfg: QuickstartConfig, overwrite: bool = False, echo=print) -> dict:
    """Run the three steps; `echo` gets a line on the generated data. Returns the sample stage's summary."""
    from stepwiser.data.synth import position_prior_f1
    from stepwiser.engines import make_engine
    from stepwiser.stages.sample import SampleConfig, run_sample

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    problems_path = make_problems(out / "problems.jsonl", cfg.n_problems, cfg.seed, overwrite)
    bench = make_bench(out / "synth-bench", problems_path, cfg.n_bench, cfg.seed, overwrite)
    test = json.loads((bench / "test.json").read_text())
    echo(f"micro domain: {problems_path} ({cfg.n_problems} problems); synthetic ProcessBench: {bench} "
         f"(position-prior F1 on test: {position_prior_f1(test):.1f})")
    scfg = SampleConfig(policy=cfg.policy, problems=str(problems_path), out=str(out / "samples.jsonl"), n=1,
                        temperature=0.0, max_tokens=cfg.max_tokens, seed=cfg.seed)
    with make_engine("hf", cfg.policy) as engine:
        return run_sample(scfg, engine, overwrite=overwrite)


def same_rows(path: Path, rows: list) -> bool:
    """Does `path` (JSON list or JSONL) hold exactly `rows`?"""
    from stepwiser.io.records import read_json_or_jsonl

    return read_json_or_jsonl(path) == json.loads(json.dumps(rows))


def claim_outputs(path: Path, stage: str, config: dict, files: dict, overwrite: bool, inputs=()):
    """The manifest (C7) of generated `files` ({path: rows}), or None when they are already there.

    A manifest of another config is refused (ConfigMismatchError naming it) unless `overwrite`; files
    of an earlier quickstart without a manifest are kept only if they hold what this config makes."""
    from stepwiser.errors import StepwiserError
    from stepwiser.io.records import RunManifest, manifest_path

    if not overwrite and not manifest_path(path).exists():
        stale = [f for f in files if f.exists() and not same_rows(f, files[f])]
        if stale:
            raise StepwiserError(f"{stale[0]} was generated with other options than "
                                 f"{', '.join(f'{k}={v}' for k, v in config.items())}; "
                                 "use another --out, or --overwrite to regenerate it (and what was made from it)")
    m = RunManifest.open(path, stage, config, inputs, overwrite=overwrite, outputs=list(files))
    if m.complete and all(f.exists() for f in files):
        return None
    return m


def make_problems(path: Path, n: int, seed: int, overwrite: bool) -> Path:
    from stepwiser.data.synth import generate_problems
    from stepwiser.io.records import write_jsonl

    problems = [p.to_dict() for p in generate_problems(n, seed)]
    m = claim_outputs(path, "quickstart-problems", {"problems": n, "seed": seed}, {path: problems}, overwrite)
    if m is not None:
        write_jsonl(path, problems)
        m.finish({"problems": len(problems)}, records=len(problems))
    return path


def make_bench(folder: Path, problems_path: Path, n: int, seed: int, overwrite: bool) -> Path:
    from stepwiser.data.synth import generate_bench
    from stepwiser.io.records import Problem, read_records, write_json

    exclude = [p.problem for p in read_records(problems_path, Problem)]
    test, dev = generate_bench(n, seed + 1, exclude_texts=exclude)
    files = {folder / "test.json": test, folder / "dev.json": dev}
    m = claim_outputs(folder, "quickstart-bench", {"bench": n, "seed": seed}, files, overwrite, [problems_path])
    if m is not None:
        for f, rows in files.items():
            write_json(f, rows)
        m.finish({"test": len(test), "dev": len(dev)}, records=len(test))
    return folder
