"""Stages `data synth`, `data synth-bench` and `data load`: problem sets (synthetic arithmetic problems, a
synthetic ProcessBench) and public datasets converted to problems (C2).

`synth` and `load` write one JSONL file with a run manifest (C7): rerunning the same config does nothing,
another config is refused unless `overwrite`. `synth-bench` writes DIR/test.json and DIR/dev.json and
refuses to replace them unless `overwrite`.
"""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from stepwiser.errors import StepwiserError
from stepwiser.io.config import check_choices, option

FORMATS = ("gsm8k", "math", "jsonl", "json", "numina", "processbench")  # stepwiser.data.datasets.FORMATS
MAX_STEPS = 8


@dataclass(kw_only=True)
class SynthConfig:
    n: int = option(help="Number of problems.")
    seed: int = option(0, "Seed (the problems are deterministic for a seed).")
    out: str = option(help="Output problems JSONL.", short="-o")
    min_steps: int = option(3, f"Fewest operations (= solution chunks) per problem (1..{MAX_STEPS}).")
    max_steps: int = option(6, f"Most operations (= solution chunks) per problem (1..{MAX_STEPS}).")
    max_operand: int = option(15, "Largest number stated in a problem (except totals such as a book's pages); "
                                  ">= 4.")
    max_value: int | None = option(None, "Largest intermediate result while building problems (>= 16) "
                                         "[default: 30 * max operand].")
    exclude: list[str] = option([], "Leave out problems whose text is in this JSONL/JSON file or folder "
                                    "(repeatable): e.g. a synthetic bench when making training problems, the "
                                    "training problems when making a bench.", path="any")

    MIN_N = 1

    def __post_init__(self):
        if self.n < self.MIN_N:
            raise ValueError(f"--n must be >= {self.MIN_N}, got {self.n}")
        for name in ("min_steps", "max_steps"):
            if not 1 <= getattr(self, name) <= MAX_STEPS:
                raise ValueError(f"--{name.replace('_', '-')} must be in 1..{MAX_STEPS}, got {getattr(self, name)}")
        if self.min_steps > self.max_steps:
            raise ValueError(f"--min-steps {self.min_steps} is above --max-steps {self.max_steps}")
        if self.max_operand < 4:
            raise ValueError(f"--max-operand must be >= 4, got {self.max_operand}")
        if self.max_value is not None and self.max_value < 16:
            raise ValueError(f"--max-value must be >= 16, got {self.max_value}")
        self.exclude = [str(Path(p)) for p in self.exclude]

    def manifest_config(self) -> dict:
        """The config hashed in the manifest (the output path is not part of it)."""
        return {"n": self.n, "seed": self.seed, "min_steps": self.min_steps, "max_steps": self.max_steps,
                "max_operand": self.max_operand, "max_value": self.max_value, "exclude": list(self.exclude)}


@dataclass(kw_only=True)
class SynthBenchConfig(SynthConfig):
    n: int = option(help="Test items (dev gets n // 4).")
    out: str = option(help="Output folder: test.json and dev.json (ProcessBench format).", short="-o")
    from_samples: str | None = option(
        None, "Build the items from a policy's own solutions (sample records of held-out --problems): the label "
              "is the first chunk the exact arithmetic oracle finds wrong, -1 when all check and the answer is "
              "right. Without it, items are perturbed gold solutions.", path="file")
    problems: str | None = option(None, "With --from-samples: the problems the samples answer (synth problems "
                                        "with their reference trace).", path="file")
    clean_share: float = option(0.5, "With --from-samples: share of clean items (label -1), as far as the "
                                     "samples allow.")
    per_problem: int = option(1, "With --from-samples: most items per problem.")

    MIN_N = 4

    def __post_init__(self):
        super().__post_init__()
        if self.from_samples and not self.problems:
            raise ValueError("--from-samples needs --problems (the problems the samples answer)")
        if self.problems and not self.from_samples:
            raise ValueError("--problems goes with --from-samples")


@dataclass
class LoadConfig:
    format: str = option(help="Dataset layout.", choices=FORMATS)
    input: str = option(help="A local file or folder, or 'hf' to load the dataset from the Hugging Face Hub.")
    out: str = option(help="Output problems JSONL.", short="-o")
    problem_field: str | None = option(None, "Field holding the problem text (jsonl format).")
    answer_field: str | None = option(None, "Field holding the reference answer (jsonl format).")
    split: str | None = option(None, "Dataset split (e.g. test, train; processbench: a subset).")
    limit: int | None = option(None, "Keep only the first N problems.")

    def __post_init__(self):
        check_choices(self)
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")

    def manifest_config(self) -> dict:
        return {"format": self.format, "input": self.input, "problem_field": self.problem_field,
                "answer_field": self.answer_field, "split": self.split, "limit": self.limit}


def exclude_texts(paths) -> set[str]:
    """Problem texts of JSONL/JSON files (records with a "problem" field); a folder: its *.json(l)."""
    from stepwiser.io.records import read_json_or_jsonl

    files = []
    for p in map(Path, paths):
        files += (sorted(q for q in p.iterdir() if q.suffix in (".json", ".jsonl") and "manifest" not in q.name)
                  if p.is_dir() else [p])
    texts: set[str] = set()
    for f in files:
        data = read_json_or_jsonl(f)
        if not isinstance(data, list) or not all(isinstance(o, dict) and isinstance(o.get("problem"), str)
                                                 for o in data):
            raise StepwiserError(f"{f}: --exclude needs records with a 'problem' text field")
        texts |= {o["problem"] for o in data}
    return texts


def refuse_existing(paths, overwrite: bool) -> None:
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        raise StepwiserError(f"{existing[0]} exists; use --overwrite to replace it, or another output path")


def open_manifest(out: Path, stage: str, config: dict, inputs: list, overwrite: bool):
    """The run manifest (C7) of a one-file output, or None when `out` is complete with this config."""
    from stepwiser.io.records import RunManifest, manifest_path

    if not manifest_path(out).exists():
        refuse_existing([out], overwrite)
    m = RunManifest.open(out, stage, config, inputs=inputs, overwrite=overwrite)
    if m.complete and out.exists():
        return None
    return m


def nothing_to_do(out) -> dict:
    return {"nothing_to_do": True, "output": str(out)}


def hist(counter: Counter) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items(), key=lambda kv: str(kv[0])))


def run_synth(cfg: SynthConfig, overwrite: bool = False) -> dict:
    """Write `cfg.n` problems; returns the summary ({"nothing_to_do": True, ...} when already complete)."""
    from stepwiser.data.synth import generate_problems
    from stepwiser.io.records import write_jsonl

    out = Path(cfg.out)
    inputs = [Path(p) for p in cfg.exclude if Path(p).is_file()]
    manifest = open_manifest(out, "data-synth", cfg.manifest_config(), inputs, overwrite)
    if manifest is None:
        return nothing_to_do(out)
    problems = generate_problems(cfg.n, cfg.seed, cfg.min_steps, cfg.max_steps, cfg.max_operand,
                                 exclude_texts(cfg.exclude), max_value=cfg.max_value)
    write_jsonl(out, problems)
    summary = {
        "problems": len(problems),
        "output": str(out),
        "steps": dict(sorted(Counter(p.extra["n_steps"] for p in problems).items())),
        "scenarios": dict(sorted(Counter(p.extra["scenario"] for p in problems).items())),
    }
    manifest.finish(summary, records=len(problems), cause="every generated problem was excluded")
    return summary


def run_synth_bench(cfg: SynthBenchConfig, overwrite: bool = False) -> dict:
    """Write DIR/test.json and DIR/dev.json; returns the summary."""
    from stepwiser.data.synth import generate_bench, position_prior_f1
    from stepwiser.io.records import write_json

    out = Path(cfg.out)
    refuse_existing([out / "test.json", out / "dev.json"], overwrite)
    extra = {}
    if cfg.from_samples:
        test, dev, extra = policy_bench(cfg)
    else:
        test, dev = generate_bench(cfg.n, cfg.seed, exclude_texts(cfg.exclude), min_steps=cfg.min_steps,
                                   max_steps=cfg.max_steps, max_operand=cfg.max_operand, max_value=cfg.max_value)
    write_json(out / "test.json", test)
    write_json(out / "dev.json", dev)
    return {
        **extra,
        "output": str(out),
        "test items": len(test),
        "dev items": len(dev),
        "test labels": hist(Counter(it["label"] for it in test)),
        "test error kinds": hist(Counter(it["error_kind"] for it in test if it["error_kind"])),
        "position-prior F1 test": round(position_prior_f1(test), 2),
        "position-prior F1 dev": round(position_prior_f1(dev), 2),
    }


def run_load(cfg: LoadConfig, overwrite: bool = False) -> dict:
    """Convert a dataset into problems; returns the summary ({"nothing_to_do": True, ...} when complete)."""
    from stepwiser.data.datasets import load_problems
    from stepwiser.io.records import write_jsonl

    out = Path(cfg.out)
    inputs = [cfg.input] if Path(cfg.input).is_file() else []
    manifest = open_manifest(out, "data-load", cfg.manifest_config(), inputs, overwrite)
    if manifest is None:
        return nothing_to_do(out)
    problems = load_problems(cfg.format, cfg.input, problem_field=cfg.problem_field,
                             answer_field=cfg.answer_field, split=cfg.split, limit=cfg.limit)
    write_jsonl(out, problems)
    summary = {"problems": len(problems), "output": str(out), "sources": dict(Counter(p.source for p in problems))}
    manifest.finish(summary, records=len(problems), cause=f"no problems in {cfg.input}")
    return summary


def policy_bench(cfg: SynthBenchConfig) -> tuple[list, list, dict]:
    """(test, dev, summary lines) of a bench built from the policy's samples (`data.policy_bench`)."""
    from stepwiser.data.policy_bench import build_policy_bench
    from stepwiser.io.records import Problem, Sample, read_records

    test, dev, stats = build_policy_bench(read_records(cfg.from_samples, Sample),
                                          read_records(cfg.problems, Problem), cfg.n, cfg.n // 4, seed=cfg.seed,
                                          clean_share=cfg.clean_share, per_problem=cfg.per_problem)
    if len(test) < cfg.n or len(dev) < cfg.n // 4:
        print(f"data synth-bench: only {len(test)} test and {len(dev)} dev items from the samples "
              f"(asked {cfg.n} and {cfg.n // 4})", file=sys.stderr)
    return test, dev, {"source": f"policy samples {cfg.from_samples}", "samples": stats.samples,
                       "skipped": dict(stats.skipped), "candidates": stats.candidates,
                       "test clean share": round(sum(it["label"] == -1 for it in test) / len(test), 3)}
