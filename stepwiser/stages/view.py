"""Stage `view`: annotate, eval and search outputs -> one self-contained HTML page (docs/VIEW.md).

Inputs, told apart by their content (and folder layout):

- ``annotate`` JSONL (C2 annotation records): per chunk its Q-value, rollouts and the labels of every label
  type that was requested;
- an ``eval processbench`` folder (or one of its ``<subset>.jsonl``): per step the judge's verdict, score
  and analyses; the problem and step texts come from the bench named by the run's manifest (``--data``);
- an ``eval labels`` folder (or its ``judgments.jsonl``): per judge example the verdict against its label;
  the chunk texts come from the judge examples named by the manifest (``--data``);
- a ``search`` folder (or its ``search.jsonl``, C8): accepted chunks with their resets and the rejected
  attempts (struck through on the page).

Annotate and search records keep only problem ids: the problem texts are read from ``--problems`` or the
problems file their manifest names, when it exists. Every solution is normalised to one shape (a dict:
id, problem, chunks with labels / verdict / Q / rollouts / analyses / rejected attempts, flags for the
filters), which `stepwiser.stages.view_page` renders; model text is escaped there, never trusted.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from stepwiser.core.chunks import OPEN, strip_tags
from stepwiser.errors import EmptyResultError, StepwiserError
from stepwiser.io.config import option
from stepwiser.io.records import iter_jsonl, manifest_path, read_json_or_jsonl

KINDS = ("annotate", "eval", "labels", "search")
NO_TEXT = "(text not available: give --data)"


@dataclass
class ViewConfig:
    inputs: list[str] = option(help="annotate JSONL files, eval processbench or eval labels output folders (or "
                                    "their .jsonl files), search output folders (or search.jsonl).", path="any")
    out: str = option(help="The HTML page to write.", short="-o")
    title: str = option("StepWiser view", "Page title.")
    max_solutions: int = option(500, "Most solutions listed on the page (the first N over the inputs, in order; "
                                     "the summary plots count every record).")
    problems: str | None = option(None, "Problems JSONL for the problem texts of annotate and search outputs "
                                        "(default: the problems file their manifest names, if it exists).",
                                  path="file")
    data: str | None = option(None, "eval processbench: the ProcessBench folder or file; eval labels: the "
                                    "judge examples (default: the --data their manifest names, if local).",
                              path="any")

    def __post_init__(self):
        if not self.inputs:
            raise ValueError("give at least one input (an annotate, eval or search output)")
        if self.max_solutions < 1:
            raise ValueError(f"max_solutions must be >= 1, got {self.max_solutions}")


# --------------------------------------------------------------------------- telling inputs apart

def record_kind(obj: dict) -> str | None:
    """The kind of output a record belongs to (one of KINDS), or None."""
    if "chunks" in obj and "q" in obj and "labels" in obj:
        return "annotate"
    if "chunks" in obj and "resets" in obj:
        return "search"
    if "key" in obj and "verdict" in obj and "label" in obj:
        return "labels"
    if "id" in obj and "prediction" in obj and "label" in obj:
        return "eval"
    return None


def first_record(path: Path) -> dict | None:
    try:
        for _, obj in iter_jsonl(path):
            return obj
    except UnicodeDecodeError:
        raise StepwiserError(f"{path}: not a text file; view reads annotate, eval and search outputs") from None
    return None


def _eval_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.jsonl") if not p.name.endswith(".manifest.json"))


def detect_input(path: str | Path) -> tuple[str | None, Path]:
    """(kind, file or folder to read); kind None for an input that holds no records yet."""
    path = Path(path)
    if not path.exists():
        raise StepwiserError(f"{path}: not found")
    if path.is_dir():
        if (path / "search.jsonl").is_file():
            return "search", path / "search.jsonl"
        if (path / "judgments.jsonl").is_file():
            return "labels", path / "judgments.jsonl"
        stage = manifest_config(path, key="stage")
        files = _eval_files(path)
        if stage == "eval-processbench" or any(record_kind(first_record(f) or {}) == "eval" for f in files):
            return "eval", path
        raise StepwiserError(f"{path}: a folder without search.jsonl, judgments.jsonl or eval processbench "
                             "<subset>.jsonl files; view reads annotate, eval and search outputs")
    obj = first_record(path)
    if obj is None:
        return None, path
    kind = record_kind(obj)
    if kind is None:
        raise StepwiserError(f"{path}: not an annotate, eval or search output (its first record has the fields "
                             f"{', '.join(sorted(obj)[:10]) or 'none'})")
    return kind, path


def manifest_config(output: Path, key: str = "config"):
    """A field of the manifest (C7) of `output` (a file or folder): its config by default; {} / None if absent."""
    p = manifest_path(output)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    return data.get(key, {} if key == "config" else None) if isinstance(data, dict) else None


def problem_texts(path, notes: list[str], given: bool = False) -> dict[str, str]:
    """{problem id: problem text} of a problems file; {} (with a note) when it cannot be read, unless `given`."""
    if not path:
        return {}
    p = Path(path)
    try:
        return {str(o.get("id")): str(o.get("problem", "")) for o in read_json_or_jsonl(p) if isinstance(o, dict)}
    except (OSError, StepwiserError) as e:
        if given:
            raise StepwiserError(f"{p}: cannot read the problems ({e})") from None
        notes.append(f"problem texts not shown: {p} ({type(e).__name__})")
        return {}


def _problems_for(cfg: ViewConfig, output: Path, notes: list[str]) -> dict[str, str]:
    if cfg.problems:
        return problem_texts(cfg.problems, notes, given=True)
    path = manifest_config(output).get("problems")
    if not path:
        notes.append(f"problem texts not shown for {output}: no manifest names its problems (give --problems)")
        return {}
    if not Path(path).is_file():
        notes.append(f"problem texts not shown for {output}: its problems file {path} is not here (give --problems)")
        return {}
    return problem_texts(path, notes)


# --------------------------------------------------------------------------- one solution, normalised

def new_solution(kind: str, source: Path, sid: str, problem: str | None, correct: bool | None) -> dict:
    return {"kind": kind, "source": str(source), "id": sid, "problem": problem, "correct": correct,
            "badges": [], "chunks": [], "tail_rejected": [], "analyses": [], "stats": {}}


def new_chunk(text: str, **fields) -> dict:
    c = {"text": text, "labels": {}, "verdict": "-", "q": None, "rollouts": None, "successes": None,
         "score": None, "analyses": [], "rejected": [], "note": ""}
    c.update(fields)
    return c


def finish_solution(s: dict, disagree: bool | None = None) -> dict:
    """Fill the filter flags: `error` (any label 0 or a wrong answer), `errors`/`disagree` per label type."""
    types = sorted({t for c in s["chunks"] for t in c["labels"]})
    s["errors"] = {t: any(c["labels"].get(t) == 0 for c in s["chunks"]) for t in types}
    s["disagree"] = {t: any(c["verdict"] in (0, 1) and t in c["labels"] and c["verdict"] != c["labels"][t]
                            for c in s["chunks"]) for t in types}
    if disagree is not None:
        s["disagree"] = {t: disagree for t in types} or {"gold": disagree}
    s["error"] = any(s["errors"].values()) or s["correct"] is False
    return s


# --------------------------------------------------------------------------- annotate

def annotation_solution(rec: dict, source: Path, problems: dict, budget: int | None) -> dict:
    chunks, q = list(rec.get("chunks") or []), list(rec.get("q") or [])
    rollouts, successes = list(rec.get("rollouts") or []), list(rec.get("successes") or [])
    labels = {t: v for t, v in (rec.get("labels") or {}).items() if isinstance(v, list)}
    pid = str(rec.get("problem_id"))
    s = new_solution("annotate", source, f"{pid}/{rec.get('sample_id')}", problems.get(pid), rec.get("correct"))
    for i, text in enumerate(chunks):
        s["chunks"].append(new_chunk(
            str(text), labels={t: v[i] for t, v in labels.items() if i < len(v) and v[i] in (0, 1)},
            q=q[i + 1] if i + 1 < len(q) else None, rollouts=rollouts[i] if i < len(rollouts) else None,
            successes=successes[i] if i < len(successes) else None))
    q0 = rec.get("q0") or {}
    if q:
        s["badges"].append(f"Q0 {q[0]:.3g} ({q0.get('rollouts', '?')} rollouts)")
    mode = (rec.get("early_stop") or {}).get("mode")
    if mode:
        s["badges"].append(f"early stop: {mode}")
    spent = sum(r for r in rollouts if isinstance(r, int))
    own_q0 = q0.get("source") == "rollouts"
    spent += int(q0.get("rollouts") or 0) if own_q0 else 0
    n = budget or max([r for r in rollouts if isinstance(r, int)] + [int(q0.get("rollouts") or 0), 0])
    s["stats"] = {"rollouts_spent": spent, "rollouts_budget": n * (max(len(chunks) - 1, 0) + int(own_q0))}
    return finish_solution(s)


def load_annotate(cfg: ViewConfig, path: Path, notes: list[str]) -> list[dict]:
    problems = _problems_for(cfg, path, notes)
    budget = manifest_config(path).get("rollouts")
    budget = budget if isinstance(budget, int) else None
    return [annotation_solution(rec, path, problems, budget) for _, rec in iter_jsonl(path)]


# --------------------------------------------------------------------------- eval processbench

def _bench(cfg: ViewConfig, folder: Path, subsets: list[str], notes: list[str]) -> dict:
    """{subset: {id: BenchItem}} of the bench the run evaluated, or {} (with a note) when it is not here."""
    from stepwiser.data.bench import load_bench

    data = cfg.data or manifest_config(folder).get("data")
    if not data or data == "hf" or not Path(data).exists():
        notes.append(f"problem and step texts not shown for {folder}: "
                     f"{'its bench ' + repr(data) + ' is not local' if data else 'no bench known'} (give --data)")
        return {}
    try:
        bench = load_bench(data, subsets if Path(data).is_dir() else None)
    except (StepwiserError, ValueError, OSError) as e:
        if cfg.data:
            raise
        notes.append(f"problem and step texts not shown for {folder}: {data} ({str(e).splitlines()[0][:100]})")
        return {}
    if Path(data).is_file() and len(subsets) == 1:   # one file: its subset is the name the run wrote
        bench = {subsets[0]: [it for items in bench.values() for it in items]}
    return {name: {it.id: it for it in items} for name, items in bench.items()}


def gold_step_label(label: int, i: int) -> int | None:
    """ProcessBench's label of step i: 1 before the first error (every step of a clean item), 0 at it, else none."""
    if label == -1 or i < label:
        return 1
    return 0 if i == label else None


def eval_solution(rec: dict, subset: str, source: Path, item) -> dict:
    label, pred = int(rec.get("label", -1)), rec.get("prediction")
    verdicts = list(rec.get("step_verdicts") or [])
    scores, per_step = list(rec.get("scores") or []), "step_verdicts" in rec
    analyses = list(rec.get("analyses") or []) if per_step else []
    steps = list(item.steps) if item is not None else [NO_TEXT] * max(len(verdicts), label + 1, 0)
    s = new_solution("eval", source, str(rec.get("id")), item.problem if item else None, None)
    for i, text in enumerate(steps):
        gold = gold_step_label(label, i)
        a = analyses[i] if i < len(analyses) else []
        s["chunks"].append(new_chunk(
            str(text), labels={} if gold is None else {"gold": gold},
            verdict=verdicts[i] if i < len(verdicts) else "-", score=scores[i] if i < len(scores) else None,
            analyses=[str(x) for x in (a if isinstance(a, list) else [a]) if x is not None]))
    if not per_step and rec.get("analyses"):   # a critic: one critique per sample, of the whole solution
        s["analyses"] = [str(x) for x in rec["analyses"] if x is not None]
    s["badges"] += [subset, "label: correct" if label == -1 else f"label: first error at step {label + 1}",
                    "judge: unparsed" if pred is None else
                    "judge: correct" if pred == -1 else f"judge: first error at step {pred + 1}"]
    s["stats"] = {"steps_judged": rec.get("steps_judged"), "steps": len(steps) if item is not None else None}
    return finish_solution(s, disagree=pred != label)


def load_eval(cfg: ViewConfig, path: Path, notes: list[str]) -> list[dict]:
    folder = path if path.is_dir() else path.parent
    files = _eval_files(path) if path.is_dir() else [path]
    bench = _bench(cfg, folder, [f.stem for f in files], notes)
    out = []
    for f in files:
        items = bench.get(f.stem, {})
        out += [eval_solution(rec, f.stem, f, items.get(str(rec.get("id")))) for _, rec in iter_jsonl(f)
                if record_kind(rec) == "eval"]
    return out


# --------------------------------------------------------------------------- eval labels

def _examples(cfg: ViewConfig, folder: Path, notes: list[str]) -> list:
    from stepwiser.data.judge_examples import data_file
    from stepwiser.io.records import JudgeExample, read_records

    mcfg = manifest_config(folder)
    data = cfg.data or mcfg.get("data")
    try:
        return read_records(data_file(data, mcfg.get("split", "val")), JudgeExample) if data else []
    except StepwiserError as e:
        if cfg.data:
            raise
        notes.append(f"chunk texts not shown for {folder}: {str(e).splitlines()[0][:120]} (give --data)")
        return []


def labels_solution(group: list, judgments: dict, source: Path) -> dict:
    """One solution of an eval labels run: its judged chunks (with their histories filling in the others)."""
    last = max(group, key=lambda e: e.chunk_index)
    texts = [str(h) for h in last.history] + [last.chunk]
    s = new_solution("labels", source, f"{last.problem_id}/{last.sample_id}", last.problem, None)
    by_index = {e.chunk_index: e for e in group}
    for i, text in enumerate(texts):
        e = by_index.get(i)
        j = judgments.get(e.key) if e is not None else None
        c = new_chunk(text)
        if e is not None:
            c["labels"] = {e.label_type or "label": e.label}
        if j is not None:
            c.update(verdict=j.get("verdict"), score=j.get("score"),
                     analyses=[str(a) for a in (j.get("analyses") or []) if a is not None])
        s["chunks"].append(c)
    return finish_solution(s)


def load_labels(cfg: ViewConfig, path: Path, notes: list[str]) -> list[dict]:
    judgments = {str(r.get("key")): r for _, r in iter_jsonl(path)}
    examples = [e for e in _examples(cfg, path.parent, notes) if e.key in judgments]
    if not examples:   # no chunk texts: one solution per judged example
        out = []
        for key, j in judgments.items():
            s = new_solution("labels", path, key, None, None)
            label = {"label": j["label"]} if j.get("label") in (0, 1) else {}
            s["chunks"].append(new_chunk(NO_TEXT, labels=label, verdict=j.get("verdict"),
                                         analyses=[str(a) for a in (j.get("analyses") or []) if a is not None]))
            out.append(finish_solution(s))
        return out
    groups: dict[tuple, list] = {}
    for e in examples:
        groups.setdefault((e.problem_id, e.sample_id), []).append(e)
    return [labels_solution(g, judgments, path) for g in groups.values()]


# --------------------------------------------------------------------------- search

def attempt_text(text: str) -> str:
    """A rejected attempt as the judge saw it (text after its <chunk> tag, tags removed)."""
    text = str(text)
    return strip_tags(text[text.index(OPEN) + len(OPEN):] if OPEN in text else text)


def search_solution(rec: dict, source: Path, problems: dict) -> dict:
    pid = str(rec.get("problem_id"))
    s = new_solution("search", source, pid, problems.get(pid), rec.get("correct"))
    resets, rejected = list(rec.get("resets") or []), list(rec.get("rejected") or [])
    verdicts = list(rec.get("verdicts") or [])
    for i, text in enumerate(rec.get("chunks") or []):
        rej = [attempt_text(t) for t in (rejected[i] if i < len(rejected) else [])]
        vs = list(verdicts[i]) if i < len(verdicts) else []
        c = new_chunk(str(text), verdict=vs[len(rej)] if len(vs) > len(rej) else "-")
        c["rejected"] = [{"text": t, "verdict": vs[j] if j < len(vs) else "-"} for j, t in enumerate(rej)]
        n = resets[i] if i < len(resets) else len(rej)
        c["note"] = f"{n} reset{'s' * (n != 1)}" + ("; accepted unjudged" if c["verdict"] == "-" and vs else "")
        s["chunks"].append(c)
    s["tail_rejected"] = [{"text": attempt_text(t), "verdict": 0} for t in rec.get("rejected_at_end") or []]
    s["badges"] += [f"stop: {rec.get('stop_reason')}",
                    f"{sum(resets)} reset{'s' * (sum(resets) != 1)}",
                    f"{rec.get('accepted_tokens', 0)} accepted / {rec.get('rejected_tokens', 0)} rejected tokens"]
    if rec.get("error"):
        s["badges"].append(f"error: {rec['error']}")
    s["stats"] = {"accepted_tokens": rec.get("accepted_tokens") or 0,
                  "rejected_tokens": rec.get("rejected_tokens") or 0,
                  "resets": resets}
    return finish_solution(s)


def load_search(cfg: ViewConfig, path: Path, notes: list[str]) -> list[dict]:
    problems = _problems_for(cfg, path.parent, notes)
    return [search_solution(rec, path, problems) for _, rec in iter_jsonl(path)]


LOADERS = {"annotate": load_annotate, "eval": load_eval, "labels": load_labels, "search": load_search}


# --------------------------------------------------------------------------- the stage

def load_inputs(cfg: ViewConfig) -> tuple[list[dict], list[str], dict[str, int]]:
    """(solutions, notes, solutions per kind) of every input, in order."""
    solutions, notes, kinds = [], [], {}
    for inp in cfg.inputs:
        kind, path = detect_input(inp)
        if kind is None:
            notes.append(f"{inp}: no records")
            continue
        got = LOADERS[kind](cfg, path, notes)
        kinds[kind] = kinds.get(kind, 0) + len(got)
        solutions += got
    return solutions, notes, kinds


def run_view(cfg: ViewConfig) -> dict:
    """Write the page `cfg.out`; returns the summary (solutions, chunks, where the page is)."""
    from stepwiser.stages.view_page import render_page, summary_plots

    solutions, notes, kinds = load_inputs(cfg)
    if not solutions:
        raise EmptyResultError(f"view: {', '.join(map(str, cfg.inputs))} hold(s) no records; nothing to show")
    shown = solutions[: cfg.max_solutions]
    if len(shown) < len(solutions):
        notes.append(f"listing the first {len(shown)} of {len(solutions)} solutions (--max-solutions); "
                     "the plots count all of them")
    page = render_page(cfg.title, shown, summary_plots(solutions), notes, total=len(solutions))
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return {"inputs": kinds, "solutions": len(solutions), "shown": len(shown),
            "chunks": sum(len(s["chunks"]) for s in solutions), "page": str(out),
            "page_kb": round(len(page.encode("utf-8")) / 1024, 1), "notes": len(notes)}
