"""Problem loaders: local JSON/JSONL files and the Hugging Face Hub, producing `Problem` records (C2).

`load_problems(fmt, path, ...)` reads one of these formats (`FORMATS`):

- ``jsonl`` / ``json``: generic records, a JSON list or one object a line (the content decides);
  `problem_field` (default ``problem``) and `answer_field` (default ``answer``) name the fields; the
  id is the ``id`` field if present, else a hash of problem and answer; ``source`` and ``solution``
  are kept if present, as are all other fields (in `Problem.extra`).
- ``gsm8k``: ``question`` and ``answer``; the answer is the text after ``####`` without thousands
  commas, the solution the text before it without calculator notes (``<<3+5=8>>``); id
  ``gsm8k/<split>/<row>``.
- ``math`` (MATH-500 or MATH): ``answer``, or else the last ``\\boxed{}`` of ``solution``; id from
  ``unique_id`` (else a hash).
- ``numina`` (NuminaMath-CoT): ``problem`` and the last ``\\boxed{}`` of ``solution``; rows without
  one, and repeats of the same problem and answer, are skipped and counted.
- ``processbench``: the problems of `load_processbench` (answer ``""``: ProcessBench has none).

`path` is a local file, a folder holding ``<split>.jsonl`` / ``<split>.json`` (the ``processbench``
folder holds ``<subset>.json``), or ``"hf"`` for the Hub (`HUB`). `split` defaults to
`DEFAULT_SPLIT`; for ``processbench`` it names the subsets (comma-separated). Malformed records
raise `RecordError` naming file and line.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from stepwiser.errors import StepwiserError
from stepwiser.io.records import Problem, RecordError, content_hash, iter_jsonl
from stepwiser.core.boxed import last_boxed

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "json", "gsm8k", "math", "numina", "processbench")
HUB = {
    "gsm8k": ("openai/gsm8k", "main"),
    "math": ("HuggingFaceH4/MATH-500", None),
    "numina": ("AI-MO/NuminaMath-CoT", None),
    "processbench": ("Qwen/ProcessBench", None),
}
DEFAULT_SPLIT = {"gsm8k": "test", "math": "test", "numina": "train"}
PROCESSBENCH_SUBSETS = ("gsm8k", "math", "olympiadbench", "omnimath")
PROCESSBENCH_FIELDS = ("id", "problem", "steps", "label")


# --------------------------------------------------------------------------- reading rows

_WS = re.compile(r"\s*")
_CALC = re.compile(r"<<[^<>\n]*>>")  # GSM8K calculator annotations, e.g. <<3+5=8>>


def _iter_json_list(path: Path, text: str) -> Iterator[tuple[str, dict]]:
    """(where, item) for each item of a JSON list, `where` = ``file:line (item i)``."""
    dec = json.JSONDecoder()
    pos = _WS.match(text).end() + 1  # past the "["
    line, counted, index = 1, 0, 0
    try:
        while True:
            pos = _WS.match(text, pos).end()
            if text.startswith("]", pos):
                return
            line += text.count("\n", counted, pos)
            counted = pos
            item, pos = dec.raw_decode(text, pos)
            yield f"{path}:{line} (item {index})", item
            index += 1
            pos = _WS.match(text, pos).end()
            if text.startswith(",", pos):
                pos += 1
            elif not text.startswith("]", pos):
                raise json.JSONDecodeError("expected ',' or ']'", text, pos)
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None


def iter_rows(path: str | Path) -> Iterator[tuple[str, dict]]:
    """(where, object) for each record of a JSON-list or JSONL file; `where` names file and line."""
    path = Path(path)
    if not path.is_file():
        raise StepwiserError(f"{path}: file not found")
    with open(path, encoding="utf-8") as f:
        is_list = f.read(1 << 16).lstrip().startswith("[")
    if is_list:
        yield from _iter_json_list(path, path.read_text(encoding="utf-8"))
    else:
        for lineno, obj in iter_jsonl(path):
            yield f"{path}:{lineno}", obj


def _hub_rows(name: str, config: str | None, split: str) -> Iterator[tuple[str, dict]]:
    from datasets import load_dataset

    try:
        ds = load_dataset(name, config, split=split)
    except Exception as e:  # network, auth and missing-split errors all end here
        raise StepwiserError(f"could not load {name} (split {split!r}) from the Hugging Face Hub: "
                             f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}") from e
    for i, row in enumerate(ds):
        yield f"{name}[{split}] row {i}", dict(row)


def _local_file(path: Path, split: str) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        for ext in (".jsonl", ".json"):
            if (path / f"{split}{ext}").is_file():
                return path / f"{split}{ext}"
        present = sorted(p.name for p in path.iterdir() if p.suffix in (".json", ".jsonl"))
        raise StepwiserError(f"{path}: no {split}.jsonl or {split}.json in this folder "
                             f"(found: {', '.join(present) or 'none'}); pick one with --split or a file path")
    raise StepwiserError(f"{path}: file or folder not found")


# --------------------------------------------------------------------------- one row -> Problem

def _text(row: dict, key: str, where: str) -> str:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise RecordError(f"{where}: field {key!r} must be a non-empty string, got {value!r:.80}")
    return str(value)


def _require(row, where: str, fields: Iterable[str]) -> None:
    if not isinstance(row, dict):
        raise RecordError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [f for f in fields if f not in row]
    if missing:
        raise RecordError(f"{where}: missing field(s) {', '.join(map(repr, missing))} "
                          f"(fields present: {', '.join(sorted(row)) or 'none'})")


def _generic(row: dict, where: str, pfield: str, afield: str, source: str) -> Problem:
    _require(row, where, (pfield, afield))
    problem, answer = _text(row, pfield, where), _text(row, afield, where)
    pid = str(row["id"]) if row.get("id") is not None else content_hash({"problem": problem, "answer": answer})
    solution = row.get("solution") if isinstance(row.get("solution"), str) else None
    extra = {k: v for k, v in row.items() if k not in (pfield, afield, "id", "source", "solution")}
    return Problem(id=pid, problem=problem, answer=answer, source=str(row.get("source") or source),
                   solution=solution, extra=extra)


def _gsm8k(row: dict, where: str, split: str, index: int) -> Problem:
    _require(row, where, ("question", "answer"))
    text = _text(row, "answer", where)
    if "####" not in text:
        raise RecordError(f"{where}: GSM8K answer has no '#### <number>' line")
    solution, _, final = text.rpartition("####")
    answer = final.strip().replace(",", "")
    if not answer:
        raise RecordError(f"{where}: GSM8K answer is empty after '####'")
    return Problem(id=f"gsm8k/{split}/{index}", problem=_text(row, "question", where), answer=answer,
                   source="gsm8k", solution=_CALC.sub("", solution).strip())


def _math(row: dict, where: str) -> Problem:
    _require(row, where, ("problem",))
    answer = row.get("answer")
    if not (isinstance(answer, str) and answer.strip()):
        answer = last_boxed(row["solution"]) if isinstance(row.get("solution"), str) else None
        if not answer or not answer.strip():
            raise RecordError(f"{where}: MATH record has no 'answer' and no \\boxed{{}} in its 'solution'")
    problem = _text(row, "problem", where)
    pid = str(row.get("unique_id") or content_hash({"problem": problem, "answer": answer}))
    extra = {k: row[k] for k in ("subject", "type", "level") if k in row}
    solution = row.get("solution") if isinstance(row.get("solution"), str) else None
    return Problem(id=pid, problem=problem, answer=answer.strip(), source="math", solution=solution, extra=extra)


def _numina(row: dict, where: str) -> Problem | str:
    _require(row, where, ("problem", "solution"))
    answer = last_boxed(_text(row, "solution", where))
    if answer is None or not answer.strip():
        return "no \\boxed{} answer in the solution"
    problem = _text(row, "problem", where)
    extra = {"origin": row["source"]} if "source" in row else {}
    return Problem(id=content_hash({"problem": problem, "answer": answer.strip()}), problem=problem,
                   answer=answer.strip(), source="numina", solution=row["solution"], extra=extra)


# --------------------------------------------------------------------------- public loaders

def _check_args(fmt, path, problem_field, answer_field, limit) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown problem format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if (problem_field or answer_field) and fmt not in ("jsonl", "json"):
        raise ValueError(f"problem_field/answer_field apply to the jsonl and json formats, not {fmt!r}")
    if str(path) == "hf" and fmt not in HUB:
        raise ValueError(f"path 'hf' (the Hugging Face Hub) is for {', '.join(HUB)}; give a file for {fmt!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")


def load_problems(fmt: str, path: str | Path, problem_field: str | None = None, answer_field: str | None = None,
                  split: str | None = None, limit: int | None = None,
                  skipped: list | None = None) -> list[Problem]:
    """Problems from a local file/folder or the Hub (`path="hf"`); see the module docstring.

    At most `limit` problems (the first ones). Skipped rows (numina only) are appended to `skipped`
    as (where, reason) when given, and counted in a logged warning.
    """
    _check_args(fmt, path, problem_field, answer_field, limit)
    if fmt == "processbench":
        bench = load_processbench(path, subsets=split.split(",") if split else None)
        problems = [Problem(id=str(it["id"]), problem=it["problem"], answer="", source=f"processbench/{name}")
                    for name, items in bench.items() for it in items]
        return problems[:limit]
    if str(path) == "hf":
        split = split or DEFAULT_SPLIT[fmt]
        rows = _hub_rows(*HUB[fmt], split)
    else:
        file = _local_file(Path(path), split or DEFAULT_SPLIT.get(fmt, "train"))
        split = split or file.stem
        rows = iter_rows(file)
    return _collect(fmt, rows, split, problem_field or "problem", answer_field or "answer", limit, skipped)


def _collect(fmt: str, rows, split: str, pfield: str, afield: str, limit: int | None,
             skipped: list | None) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    skips: list[tuple[str, str]] = []
    for index, (where, row) in enumerate(rows):
        if limit is not None and len(problems) >= limit:
            break
        if fmt == "gsm8k":
            p = _gsm8k(row, where, split, index)
        elif fmt == "math":
            p = _math(row, where)
        elif fmt == "numina":
            p = _numina(row, where)
        else:
            p = _generic(row, where, pfield, afield, source=split)
        if isinstance(p, str):
            skips.append((where, p))
            continue
        if p.id in seen:
            if fmt != "numina":
                raise RecordError(f"{where}: duplicate problem id {p.id!r} (first at {seen[p.id]})")
            skips.append((where, f"repeats the problem at {seen[p.id]}"))
            continue
        seen[p.id] = where
        problems.append(p)
    if skips:
        log.warning("skipped %d %s record(s), e.g. %s: %s", len(skips), fmt, *skips[0])
        if skipped is not None:
            skipped.extend(skips)
    return problems


def _check_processbench_item(item, where: str) -> dict:
    _require(item, where, PROCESSBENCH_FIELDS)
    where = f"{where} id {item['id']!r}"
    if isinstance(item["id"], bool) or not isinstance(item["id"], (str, int)):
        raise RecordError(f"{where}: 'id' must be a string or an integer")
    _text(item, "problem", where)
    steps = item["steps"]
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise RecordError(f"{where}: 'steps' must be a non-empty list of strings")
    label = item["label"]
    if isinstance(label, bool) or not isinstance(label, int) or not -1 <= label < len(steps):
        raise RecordError(f"{where}: 'label' must be an integer in [-1, {len(steps)}) for {len(steps)} steps "
                          f"(-1 = every step correct), got {label!r}")
    return item


def _processbench_sources(path: str | Path, subsets: list[str] | None) -> dict[str, object]:
    """subset name -> a local file, or None for the Hub."""
    if str(path) == "hf":
        return {s: None for s in (subsets or PROCESSBENCH_SUBSETS)}
    path = Path(path)
    if path.is_file():
        found = {path.stem: path}
    elif path.is_dir():
        found = {p.stem: p for p in sorted(path.glob("*.json"))}
        if not found:
            raise StepwiserError(f"{path}: no <subset>.json files in this folder")
    else:
        raise StepwiserError(f"{path}: file or folder not found")
    missing = [s for s in subsets or () if s not in found]
    if missing:
        raise StepwiserError(f"{path}: no subset(s) {', '.join(missing)} (available: {', '.join(found)})")
    return {s: found[s] for s in subsets} if subsets else found


def load_processbench(path: str | Path, subsets: Iterable[str] | None = None,
                      limit: int | None = None) -> dict[str, list[dict]]:
    """ProcessBench items by subset, validated: each has ``id``, ``problem``, ``steps`` (a non-empty
    list of str) and ``label`` in [-1, len(steps)); ids are unique within a subset.

    `path`: a folder of ``<subset>.json`` files (all of them, or those in `subsets`), one such file,
    or ``"hf"`` (``Qwen/ProcessBench``, splits = subsets). `limit`: the first items of each subset.
    Malformed items and empty subsets raise `RecordError` naming file, line and item.
    """
    if isinstance(subsets, str):
        subsets = subsets.split(",")
    subsets = [s.strip() for s in subsets if s.strip()] if subsets is not None else None
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    out: dict[str, list[dict]] = {}
    for name, source in _processbench_sources(path, subsets).items():
        rows = _hub_rows(HUB["processbench"][0], None, name) if source is None else iter_rows(source)
        items, seen = [], {}
        for where, item in rows:
            if limit is not None and len(items) >= limit:
                break
            _check_processbench_item(item, where)
            if str(item["id"]) in seen:
                raise RecordError(f"{where}: duplicate id {item['id']!r} (first at {seen[str(item['id'])]})")
            seen[str(item["id"])] = where
            items.append(item)
        if not items:
            raise RecordError(f"{source or HUB['processbench'][0]}: subset {name!r} has no items")
        out[name] = items
    return out
