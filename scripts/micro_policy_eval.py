"""Evaluate a micro chunk policy on held-out synthetic problems and analyse its mistakes.

    python scripts/micro_policy_eval.py --model runs/micro-policy/final \
        --problems runs/micro-policy/data/heldout.jsonl --out runs/micro-policy/eval

Greedy answers come from the `stepwiser sample` stage (hf engine, n=1, temperature 0; resumable,
written to OUT/samples.jsonl). Then, per response:

- well-formed: at least one chunk, no text outside the chunk tags, a \\boxed{} answer in the last
  chunk, and the generation ended by itself (EOS), not by running out of --max-tokens;
- for each wrong answer, the first chunk that leaves the reference solution's trace
  (`stepwiser.data.synth.first_divergent_chunk`; positions are 1-based) and the kind of error there.

Prints and writes OUT/summary.json: accuracy, well-formedness, the distribution of the first
divergent chunk's position (1-based, and relative to the number of reference steps) and of error kinds.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

from stepwiser.core.chunks import outside_text, parse_chunks
from stepwiser.io.records import Problem, Sample, read_records, write_json
from stepwiser.data.synth import first_divergent_chunk

_BOXED = re.compile(r"\\boxed\s*\{")


def well_formed(sample: Sample) -> bool:
    """Chunks only, a boxed answer in the last chunk, finished by EOS (not truncated)."""
    chunks = parse_chunks(sample.response, "tags")
    return (bool(chunks) and not outside_text(sample.response) and bool(_BOXED.search(chunks[-1]))
            and sample.extra.get("finish_reason") == "stop")


def analyse(samples: list[Sample], problems: dict[str, Problem]) -> dict:
    """Accuracy, well-formedness and the first-divergence statistics of the wrong answers."""
    n = len(samples)
    wrong = [s for s in samples if not s.correct]
    positions, relative, kinds, rows = Counter(), Counter(), Counter(), []
    for s in wrong:
        p = problems[s.problem_id]
        idx, kind = first_divergent_chunk(s.chunks, p)
        steps = len(p.extra["steps"])
        if idx is None:
            kind = "no divergence found" if well_formed(s) else "malformed"
        else:
            positions[idx + 1] += 1
            relative["first" if idx == 0 else "last" if idx >= steps - 1 else "middle"] += 1
        kinds[kind] += 1
        chunk = s.chunks[idx] if idx is not None and idx < len(s.chunks) else None
        rows.append({"problem_id": s.problem_id, "steps": steps, "chunks": len(s.chunks),
                     "first_divergent": None if idx is None else idx + 1, "kind": kind,
                     "chunk": chunk, "answer": p.answer})
    return {
        "n": n,
        "accuracy": round(100 * sum(s.correct for s in samples) / max(n, 1), 1),
        "well_formed": round(100 * sum(well_formed(s) for s in samples) / max(n, 1), 1),
        "boxed": round(100 * sum(bool(_BOXED.search(s.response)) for s in samples) / max(n, 1), 1),
        "truncated": sum(s.extra.get("finish_reason") == "length" for s in samples),
        "mean_chunks": round(sum(len(s.chunks) for s in samples) / max(n, 1), 2),
        "wrong": len(wrong),
        "first_divergent_position": dict(sorted(positions.items())),
        "first_divergent_relative": dict(relative),
        "error_kinds": dict(kinds.most_common()),
        "wrong_answers": rows,
    }


def run_greedy(model: str, problems: str, out: Path, max_tokens: int, batch_size: int,
               temperature: float = 0.0, seed: int = 0) -> None:
    from stepwiser.engines import make_engine
    from stepwiser.stages.sample import SampleConfig, run_sample

    cfg = SampleConfig(policy=model, problems=problems, out=str(out / "samples.jsonl"), n=1, temperature=temperature,
                       max_tokens=max_tokens, seed=seed, batch_problems=batch_size)
    with make_engine("hf", model, batch_size=batch_size) as engine:
        run_sample(cfg, engine)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--problems", required=True, help="held-out synth problems JSONL (with their steps)")
    ap.add_argument("--out", required=True, help="folder for samples.jsonl and summary.json")
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--num-threads", type=int, default=2)
    ap.add_argument("--show", type=int, default=5, help="print this many wrong answers")
    ap.add_argument("--temperature", type=float, default=0.0, help="0: greedy; 1.0: the sampled accuracy")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch
    torch.set_num_threads(args.num_threads)
    out = Path(args.out)
    run_greedy(args.model, args.problems, out, args.max_tokens, args.batch_size, args.temperature, args.seed)
    problems = {p.id: p for p in read_records(args.problems, Problem)}
    samples = read_records(out / "samples.jsonl", Sample)
    summary = {"model": args.model, "problems": args.problems, "max_tokens": args.max_tokens,
               "temperature": args.temperature,
               **analyse(samples, problems)}
    write_json(out / "summary.json", summary)
    brief = {k: v for k, v in summary.items() if k != "wrong_answers"}
    print(json.dumps(brief, indent=1))
    for row in summary["wrong_answers"][: args.show]:
        print(f"- {row['problem_id']}: chunk {row['first_divergent']} of {row['chunks']} ({row['kind']}, "
              f"reference answer {row['answer']}): {row['chunk']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
