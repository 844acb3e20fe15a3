"""Does a CoT judge's analysis do the arithmetic, and does its verdict follow from it? (micro domain)

For one judgment (the judged chunk and the judge's text):
- the analysis is the text before the verdict's box (the last `\\boxed{}`; all of it when there is none);
- its recomputation is the LAST equation of the analysis with an arithmetic left side (`a op b = c`,
  read by `stepwiser.core.arith.equations`); it is right when that equation holds;
- the chunk's result is the last result the chunk states (`= N`);
- the verdict the analysis implies is Positive when the recomputation's value equals the chunk's result,
  Negative when it differs; the verdict agrees when the parsed verdict equals it.

`analysis_stats` counts these over many judgments (each sample of a Maj@k judgment counts once):
`right_share` = right recomputations / all analyses (as "right 9 times in 598"), `right_share_of_recomputed`
over the analyses that recompute, and `agree_share` = agreeing verdicts / judgments that have a
recomputation, a chunk result and a parsed verdict (`compared`). A judge that says Negative to almost
everything while its (mostly wrong) recomputation implies Negative agrees often by chance, so
`agree_balanced` is the mean of the agreement rates among the judgments whose analysis implies Positive
(`implied_positive` of them, `agree_positive` agreeing) and among those implying Negative (0.5: chance). Copying the chunk's equation counts as a
recomputation (it is what the analysis wrote): a copying judge is right exactly when the chunk is.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from stepwiser.core.arith import equations
from stepwiser.core.verdict import parse_verdict

KEYS = ("analyses", "recomputed", "right", "compared", "agree", "implied_positive", "agree_positive")


def analysis_text(text: str) -> str:
    """The analysis of a judgment: the text before its last `\\boxed` (the verdict)."""
    at = text.rfind("\\boxed")
    return text if at < 0 else text[:at]


def judgment_check(chunk: str, text: str) -> dict:
    """The per-judgment facts of the module docstring: recomputed, right, implied and verdict (None
    where undefined) and agree (None when not compared)."""
    checked = [e for e in equations(analysis_text(text)) if e.ok is not None]
    stated = [e.rhs_value for e in equations(chunk) if e.stated]
    verdict = parse_verdict(text)
    if not checked:
        return {"recomputed": False, "right": None, "implied": None, "verdict": verdict, "agree": None}
    last = checked[-1]
    implied = int(last.rhs_value == stated[-1]) if stated else None
    agree = None if implied is None or verdict is None else verdict == implied
    return {"recomputed": True, "right": bool(last.ok), "implied": implied, "verdict": verdict, "agree": agree}


def _share(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def analysis_stats(pairs: Iterable[tuple[str, str]]) -> dict:
    """Counts and shares over (chunk, judgment text) pairs (see the module docstring)."""
    n = dict.fromkeys(KEYS, 0)
    for chunk, text in pairs:
        c = judgment_check(chunk, text)
        n["analyses"] += 1
        n["recomputed"] += c["recomputed"]
        n["right"] += bool(c["right"])
        n["compared"] += c["agree"] is not None
        n["agree"] += bool(c["agree"])
        n["implied_positive"] += c["agree"] is not None and c["implied"] == 1
        n["agree_positive"] += bool(c["agree"]) and c["implied"] == 1
    neg, agree_neg = n["compared"] - n["implied_positive"], n["agree"] - n["agree_positive"]
    rates = [_share(a, b) for a, b in ((n["agree_positive"], n["implied_positive"]), (agree_neg, neg)) if b]
    return {**n, "right_share": _share(n["right"], n["analyses"]),
            "right_share_of_recomputed": _share(n["right"], n["recomputed"]),
            "agree_share": _share(n["agree"], n["compared"]),
            "agree_balanced": round(sum(rates) / len(rates), 4) if rates else None}


def record_pairs(examples, records) -> list[tuple[str, str]]:
    """(chunk, analysis) of every sample of `eval labels` records (`analyses`), matched to the examples by
    key; records without analyses (a discriminative judge) give none."""
    chunks = {str(e.key): e.chunk for e in examples}
    return [(chunks[str(r["key"])], t) for r in records if str(r["key"]) in chunks
            for t in (r.get("analyses") or []) if isinstance(t, str)]


def judgments_analysis_stats(judgments: str | Path, data: str | Path, split: str = "val") -> dict:
    """`analysis_stats` of an `eval labels` output (its judgments.jsonl, or the folder holding it) on the
    judge examples it judged (a judge-data folder's `split`, or a JSONL file)."""
    from stepwiser.data.judge_examples import data_file, load_judge_examples
    from stepwiser.io.records import iter_jsonl

    path = Path(judgments)
    path = path / "judgments.jsonl" if path.is_dir() else path
    examples = load_judge_examples(data_file(data, split))
    return analysis_stats(record_pairs(examples, [r for _, r in iter_jsonl(path)]))
