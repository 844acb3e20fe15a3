"""`stepwiser data`: make problem sets (synthetic arithmetic, a synthetic ProcessBench) or load them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from stepwiser.cli.common import overwrite_option

FORMATS = ("gsm8k", "math", "jsonl", "json", "numina", "processbench")  # stepwiser.data.datasets.FORMATS


@click.group("data")
def command():
    """Problem sets: synthetic arithmetic problems, a synthetic ProcessBench, public datasets.

    \b
      stepwiser data synth --n 2000 --seed 0 -o problems.jsonl
      stepwiser data synth-bench --n 400 --seed 1 -o bench/ --exclude problems.jsonl
      stepwiser data load --format gsm8k --input hf --split test -o gsm8k.jsonl
    """


def _exclude_texts(paths) -> set[str]:
    """Problem texts of JSONL/JSON files (records with a "problem" field); a folder: its *.json(l)."""
    from stepwiser.errors import StepwiserError
    from stepwiser.io.records import read_json_or_jsonl

    files = []
    for p in map(Path, paths):
        files += (
            sorted(q for q in p.iterdir() if q.suffix in (".json", ".jsonl") and "manifest" not in q.name)
            if p.is_dir()
            else [p]
        )
    texts: set[str] = set()
    for f in files:
        data = read_json_or_jsonl(f)
        if not isinstance(data, list) or not all(
            isinstance(o, dict) and isinstance(o.get("problem"), str) for o in data
        ):
            raise StepwiserError(f"{f}: --exclude needs records with a 'problem' text field")
        texts |= {o["problem"] for o in data}
    return texts


def _refuse_existing(paths, overwrite: bool) -> None:
    from stepwiser.errors import StepwiserError

    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        raise StepwiserError(f"{existing[0]} exists; use --overwrite to replace it, or another output path")


def _open_manifest(out: Path, stage: str, config: dict, inputs: list, overwrite: bool):
    """The run manifest (C7) of a one-file output, or None when `out` is complete with this config."""
    from stepwiser.io.records import RunManifest, manifest_path

    if not manifest_path(out).exists():
        _refuse_existing([out], overwrite)
    m = RunManifest.open(out, stage, config, inputs=inputs, overwrite=overwrite)
    if m.complete and out.exists():
        click.echo(f"{out} is complete with the same config; nothing to do (--overwrite to remake it)")
        return None
    return m


def _knob_options(f):
    f = click.option(
        "--max-value",
        type=click.IntRange(min=16),
        default=None,
        help="Largest intermediate result while building problems [default: 30 * max operand].",
    )(f)
    f = click.option(
        "--max-operand",
        type=click.IntRange(min=4),
        default=15,
        show_default=True,
        help="Largest number stated in a problem (except totals such as a book's pages).",
    )(f)
    f = click.option(
        "--max-steps",
        type=click.IntRange(1, 8),
        default=6,
        show_default=True,
        help="Most operations (= solution chunks) per problem.",
    )(f)
    f = click.option(
        "--min-steps",
        type=click.IntRange(1, 8),
        default=3,
        show_default=True,
        help="Fewest operations (= solution chunks) per problem.",
    )(f)
    return f


def _check_steps(min_steps: int, max_steps: int) -> None:
    if min_steps > max_steps:
        raise click.BadParameter(
            f"--min-steps {min_steps} is above --max-steps {max_steps}", param_hint="--min-steps"
        )


def _hist(counter: Counter) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items(), key=lambda kv: str(kv[0])))


@command.command("synth")
@click.option("--n", type=click.IntRange(min=1), required=True, help="Number of problems.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output problems JSONL.",
)
@_knob_options
@click.option(
    "--exclude",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Skip problems whose text is in this JSONL/JSON file or folder (repeatable), "
    "e.g. a synthetic bench.",
)
@overwrite_option
def synth(n, seed, out, min_steps, max_steps, max_operand, max_value, exclude, overwrite):
    """Generate N arithmetic word problems with chunk-tagged reference solutions.

    Deterministic for a seed. Each problem has exact integer answers, one <chunk> per operation
    and a machine-readable trace in its "steps" field.
    """
    from stepwiser.io.records import write_jsonl
    from stepwiser.io.summary import print_summary
    from stepwiser.data.synth import generate_problems

    _check_steps(min_steps, max_steps)
    config = {
        "n": n,
        "seed": seed,
        "min_steps": min_steps,
        "max_steps": max_steps,
        "max_operand": max_operand,
        "max_value": max_value,
        "exclude": [str(p) for p in exclude],
    }
    inputs = [p for p in exclude if p.is_file()]
    manifest = _open_manifest(out, "data-synth", config, inputs, overwrite)
    if manifest is None:
        return
    problems = generate_problems(
        n, seed, min_steps, max_steps, max_operand, _exclude_texts(exclude), max_value=max_value
    )
    write_jsonl(out, problems)
    summary = {
        "problems": len(problems),
        "output": str(out),
        "steps": dict(sorted(Counter(p.extra["n_steps"] for p in problems).items())),
        "scenarios": dict(sorted(Counter(p.extra["scenario"] for p in problems).items())),
    }
    manifest.finish(summary)
    print_summary("data synth", summary)


@command.command("synth-bench")
@click.option("--n", type=click.IntRange(min=4), required=True, help="Test items (dev gets n // 4).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder: test.json and dev.json (ProcessBench format).",
)
@_knob_options
@click.option(
    "--exclude",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Keep out problems whose text is in this JSONL/JSON file or folder (repeatable), "
    "e.g. the training problems.",
)
@overwrite_option
def synth_bench(n, seed, out, min_steps, max_steps, max_operand, max_value, exclude, overwrite):
    """Build a synthetic ProcessBench: about half clean solutions (label -1), half with one wrong chunk.

    The wrong chunk has a wrong result, a wrong operator or a misread quantity; later chunks follow
    correctly from the wrong value, so `label` is its index. Evaluate it like ProcessBench:
    `stepwiser eval processbench --data DIR`.
    """
    from stepwiser.io.records import write_json
    from stepwiser.io.summary import print_summary
    from stepwiser.data.synth import generate_bench, position_prior_f1

    _check_steps(min_steps, max_steps)
    _refuse_existing([out / "test.json", out / "dev.json"], overwrite)
    test, dev = generate_bench(
        n,
        seed,
        _exclude_texts(exclude),
        min_steps=min_steps,
        max_steps=max_steps,
        max_operand=max_operand,
        max_value=max_value,
    )
    write_json(out / "test.json", test)
    write_json(out / "dev.json", dev)
    summary = {
        "output": str(out),
        "test items": len(test),
        "dev items": len(dev),
        "test labels": _hist(Counter(it["label"] for it in test)),
        "test error kinds": _hist(Counter(it["error_kind"] for it in test if it["error_kind"])),
        "position-prior F1 test": round(position_prior_f1(test), 2),
        "position-prior F1 dev": round(position_prior_f1(dev), 2),
    }
    print_summary("data synth-bench", summary)


@command.command("load")
@click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="Dataset layout.")
@click.option(
    "--input",
    "input_path",
    required=True,
    help="A local file or folder, or 'hf' to load the dataset from the Hugging Face Hub.",
)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output problems JSONL.",
)
@click.option("--problem-field", default=None, help="Field holding the problem text (jsonl format).")
@click.option("--answer-field", default=None, help="Field holding the reference answer (jsonl format).")
@click.option("--split", default=None, help="Dataset split (e.g. test, train; processbench: a subset).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Keep only the first N problems.")
@overwrite_option
def load(fmt, input_path, out, problem_field, answer_field, split, limit, overwrite):
    """Convert a public dataset (GSM8K, MATH, NuminaMath, ProcessBench) or any JSONL into problems."""
    from stepwiser.data.datasets import load_problems
    from stepwiser.io.records import write_jsonl
    from stepwiser.io.summary import print_summary

    config = {
        "format": fmt,
        "input": input_path,
        "problem_field": problem_field,
        "answer_field": answer_field,
        "split": split,
        "limit": limit,
    }
    inputs = [input_path] if Path(input_path).is_file() else []
    manifest = _open_manifest(out, "data-load", config, inputs, overwrite)
    if manifest is None:
        return
    problems = load_problems(
        fmt, input_path, problem_field=problem_field, answer_field=answer_field, split=split, limit=limit
    )
    write_jsonl(out, problems)
    summary = {
        "problems": len(problems),
        "output": str(out),
        "sources": dict(Counter(p.source for p in problems)),
    }
    manifest.finish(summary)
    print_summary("data load", summary)
