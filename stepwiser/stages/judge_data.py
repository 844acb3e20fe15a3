"""Stage `judge-data`: judge training examples from annotations (docs/METHOD.md 2.3, contract C2).

One example per chunk (format ``stepwise``): (problem text, history = all previous chunks of the same
response, the chunk, its label of one type). ``chunk_index`` is 0-based, so ``history`` is
``chunks[:chunk_index]``. The key is a content hash of (problem_id, sample_id, chunk_index,
label_type). The judge never sees the reference answer, the Q-values or the label: an example carries
only the fields above (plus bookkeeping: ``prompt_tokens``, ``chunk_style``).

Format ``disc`` (the discriminative baseline): one record per sample with ``problem``, ``chunks`` and
``labels`` (the list of H labels of the type), never balanced.

Steps, in this order:

1. Read and check the annotations (the label type must be present and non-null on every line, as
   long as the chunks) and the problems (annotations hold the problem id only).
   Stepwise: identical judge inputs (same problem text, history and chunk; samples of a problem often
   share their first chunks) become one example with the majority label of the copies; an input
   whose copies tie is dropped (`dedupe_examples`; counts in the summary's ``dedupe``).
2. Split BY PROBLEM into train and validation (seeded): the problem ids of the whole annotation file
   are shuffled and the first ``round(val_frac * P)`` (at least 1 and at most P - 1 when val_frac > 0)
   go to validation. The split depends only on the problem ids, the seed and val_frac, so the
   ``stepwise`` and ``disc`` formats of the same annotations get the same split.
3. Drop prompts outside the token window [min_tokens, max_tokens] (default [0, 3096], the paper's
   max prompt). Stepwise: the judge prompt (`stepwiser.judges.prompts.judge_messages`, CoT wording) with the
   judge tokenizer's chat template and the generation prompt. Disc: the whole labelled conversation
   (`disc_messages`), the sequence the baseline trains on.
4. Balance the TRAIN split (stepwise only): down-sample the majority class to the size of the minority
   class (seeded), keeping file order; ``balance_by=class_position`` does so within every chunk index
   (`stepwiser.stages.judge_balance`; the summary reports the position-only baseline's balanced accuracy
   either way); ``balance=False`` for the no-balancing ablation. The
   VALIDATION split is kept unbalanced (the natural label distribution): evaluations report balanced
   accuracy and per-class recall on it, which are unaffected by the class ratio.

Outputs: ``DIR/train.jsonl``, ``DIR/val.jsonl`` (written atomically) and ``DIR/manifest.json`` (C7:
config, input hashes and the summary with the class balance at every step).
"""
from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path

from stepwiser.core.chunks import STYLES
from stepwiser.core.labels import LABEL_TYPES, check_method
from stepwiser.data.synth import first_divergent_chunk
from stepwiser.errors import EmptyResultError, StepwiserError
from stepwiser.io.config import check_choices, option
from stepwiser.io.records import (
    Annotation,
    JudgeExample,
    Problem,
    RecordError,
    RunManifest,
    content_hash,
    file_hash,
    iter_jsonl,
    manifest_path,
    parse_record,
    read_records,
    write_jsonl,
)
from stepwiser.judges.base import JudgeItem
from stepwiser.judges.prompts import disc_messages, judge_messages
from stepwiser.models.loading import DEFAULT_MODEL
from stepwiser.stages.judge_balance import BALANCE_BY, balance, balance_by_position, position_baseline

FORMATS = ("stepwise", "disc")
OUTPUTS = ("train.jsonl", "val.jsonl")
PAPER_MAX_PROMPT = 3096


@dataclass
class JudgeDataConfig:
    annotations: str = option(help="Annotations JSONL (from `stepwiser annotate`).", path="file")
    problems: str = option(help="Problems JSONL the samples were drawn from (annotations hold the problem id "
                                "only).", path="file")
    out: str = option(help="Output folder: train.jsonl, val.jsonl, manifest.json.", short="-o")
    label: str = option("rel_effective", "Label type to train on.", choices=LABEL_TYPES)
    format: str = option("stepwise", "stepwise: one judge example per chunk (StepWiser); disc: one record per "
                                     "sample with all its chunks and labels (discriminative baseline; never "
                                     "balanced).", choices=FORMATS)
    val_frac: float = option(0.1, "Share of PROBLEMS held out for validation (no problem is in both splits).")
    seed: int = option(0, "Seed of the split and the balancing.")
    balance: bool = option(True, "Down-sample the majority class of the train split to 50/50 (validation stays "
                                 "unbalanced).")
    balance_by: str = option("class", "What --balance equalises: class (positives = negatives) or class_position "
                                      "(positives = negatives within every chunk index).", choices=BALANCE_BY)
    min_tokens: int = option(0, "Drop prompts shorter than this (judge prompt with the chat template).")
    max_tokens: int = option(PAPER_MAX_PROMPT, "Drop prompts longer than this (the paper's max prompt is 3096).")
    tokenizer: str = option(DEFAULT_MODEL, "Judge model whose tokenizer and chat template count prompt tokens.")
    chunk_style: str | None = option(None, "Segmentation of the annotated samples (recorded in the examples) "
                                           "[default: from the annotations' manifest, else tags].", choices=STYLES)

    def __post_init__(self):
        check_method(self.label)
        check_choices(self)
        if not 0 <= self.val_frac < 1:
            raise ValueError(f"val_frac must be in [0, 1), got {self.val_frac}")
        if self.min_tokens < 0 or self.max_tokens < max(self.min_tokens, 1):
            raise ValueError(f"need 0 <= min_tokens <= max_tokens and max_tokens >= 1, got "
                             f"[{self.min_tokens}, {self.max_tokens}]")


# --------------------------------------------------------------------------- reading and checking

def load_annotations(path: str, label: str) -> list[Annotation]:
    """The annotations of `path`, checked for the label type `label` (errors name file:line)."""
    check_method(label)
    rows, seen = [], {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        a = parse_record(Annotation, obj, where)
        labels = a.labels if isinstance(a.labels, dict) else {}
        if labels.get(label) is None:
            raise StepwiserError(f"{where}: no {label!r} labels in this annotation; label types present in "
                                 f"{path}: {', '.join(present_label_types(path)) or 'none'} (choose one with "
                                 f"--label, or relabel with `stepwiser annotate --relabel`)")
        lab = labels[label]
        if not isinstance(lab, list) or len(lab) != len(a.chunks) or any(x not in (0, 1) for x in lab):
            raise RecordError(f"{where}: labels[{label!r}] must be a list of {len(a.chunks)} values 0/1 "
                              f"(one per chunk), got {lab!r}")
        if a.key in seen:
            raise RecordError(f"{where}: sample {a.key} already appears on line {seen[a.key]}")
        seen[a.key] = lineno
        rows.append(a)
    if not rows:
        raise StepwiserError(f"{path}: no annotations")
    # the file's order is the order the annotations finished in (a resumed run appends the rest later):
    # sort, so that the split, the balancing and the output do not depend on it
    return sorted(rows, key=lambda a: (str(a.problem_id), str(a.sample_id)))


def present_label_types(path: str) -> list[str]:
    """The label types with a non-null list on at least one line of an annotation file."""
    found = set()
    for _, obj in iter_jsonl(path, on_error="skip"):
        labels = obj.get("labels")
        if isinstance(labels, dict):
            found |= {k for k, v in labels.items() if v is not None}
    return [t for t in LABEL_TYPES if t in found] + sorted(found - set(LABEL_TYPES))


def load_problem_texts(path: str, annotations: list[Annotation], ann_path: str) -> dict[str, str]:
    """problem id -> problem text for every annotated problem (a missing one is an error)."""
    texts = {p.id: p.problem for p in read_records(path, Problem)}
    missing = sorted({a.problem_id for a in annotations} - texts.keys())
    if missing:
        raise StepwiserError(f"{ann_path}: {len(missing)} annotated problem(s) are not in {path} "
                             f"(first: {missing[0]!r}); give the problems file the samples were drawn from")
    return texts


def annotation_chunk_style(path: str) -> str | None:
    """The chunk style recorded in the annotation file's manifest, if any."""
    m = manifest_path(path)
    if not m.exists():
        return None
    return json.loads(m.read_text(encoding="utf-8")).get("config", {}).get("chunk_style")


def resolve_chunk_style(cfg: JudgeDataConfig) -> str:
    recorded = annotation_chunk_style(cfg.annotations)
    if cfg.chunk_style and recorded and cfg.chunk_style != recorded:
        raise ValueError(f"--chunk-style {cfg.chunk_style} but {cfg.annotations} was annotated with chunk "
                         f"style {recorded!r}")
    return cfg.chunk_style or recorded or "tags"


# --------------------------------------------------------------------------- building examples

def example_key(problem_id: str, sample_id, chunk_index: int, label_type: str) -> str:
    return content_hash({"problem_id": problem_id, "sample_id": sample_id, "chunk_index": chunk_index,
                         "label_type": label_type})


def stepwise_examples(annotations: list[Annotation], texts: dict[str, str], label: str,
                      chunk_style: str = "tags") -> list[JudgeExample]:
    """One judge example per chunk of every annotation (history = the chunks before it)."""
    out = []
    for a in annotations:
        for i, (chunk, y) in enumerate(zip(a.chunks, a.labels[label])):
            out.append(JudgeExample(
                key=example_key(a.problem_id, a.sample_id, i, label), problem_id=a.problem_id,
                sample_id=a.sample_id, chunk_index=i, problem=texts[a.problem_id], history=list(a.chunks[:i]),
                chunk=chunk, label=int(y), label_type=label, extra={"chunk_style": chunk_style}))
    return out


def disc_examples(annotations: list[Annotation], texts: dict[str, str], label: str,
                  chunk_style: str = "tags") -> list[dict]:
    """One discriminative-baseline record per sample: all its chunks and their labels."""
    return [{"key": content_hash({"problem_id": a.problem_id, "sample_id": a.sample_id, "label_type": label,
                                  "format": "disc"}),
             "problem_id": a.problem_id, "sample_id": a.sample_id, "problem": texts[a.problem_id],
             "chunks": list(a.chunks), "labels": [int(y) for y in a.labels[label]], "label_type": label,
             "chunk_style": chunk_style} for a in annotations]


def exact_labels(chunks: list[str], problem: Problem) -> list[int | None]:
    """The oracle's verdict per chunk (micro domain): 1 before the first chunk whose arithmetic or
    quantity leaves the reference trace, 0 at it, None after it (no exact label once the solution has gone
    wrong). For evaluation only: never part of a judge's input or training text."""
    first, _ = first_divergent_chunk(list(chunks), problem)
    if first is None:
        return [1] * len(chunks)
    return [1] * first + [0] + [None] * (len(chunks) - first - 1)


def attach_exact_labels(examples: list[JudgeExample], annotations: list[Annotation], problems_path: str) -> int:
    """Add `exact_label` to the examples of problems with a reference trace (synth problems); returns how
    many got one (0 when the problems have no trace, e.g. GSM8K)."""
    problems = {p.id: p for p in read_records(problems_path, Problem) if (p.extra or {}).get("steps")}
    labels = {(a.problem_id, a.sample_id): exact_labels(a.chunks, problems[a.problem_id])
              for a in annotations if a.problem_id in problems}
    n = 0
    for e in examples:
        labs = labels.get((e.problem_id, e.sample_id))
        if labs is not None:
            e.extra["exact_label"] = labs[e.chunk_index]
            n += labs[e.chunk_index] is not None
    return n


def exact_label_agreement(examples: list[JudgeExample]) -> dict:
    """How the Monte Carlo labels agree with the exact ones where an exact label exists."""
    pairs = [(e.label, e.extra["exact_label"]) for e in examples if e.extra.get("exact_label") is not None]
    pos = [y for y, x in pairs if x == 1]
    neg = [y for y, x in pairs if x == 0]
    rec = (sum(pos) / len(pos) if pos else None, sum(1 - y for y in neg) / len(neg) if neg else None)
    return {"with_exact_label": len(pairs), "exact_positive": len(pos), "exact_negative": len(neg),
            "mc_recall_on_exact_positive": None if rec[0] is None else round(rec[0], 3),
            "mc_recall_on_exact_negative": None if rec[1] is None else round(rec[1], 3)}


def judge_item(example: JudgeExample | dict) -> JudgeItem:
    """The judging input of a stepwise example (what the judge sees; nothing else)."""
    d = example.to_dict() if isinstance(example, JudgeExample) else example
    return JudgeItem(problem=d["problem"], history=list(d["history"]), chunk=d["chunk"])


def load_judge_tokenizer(name: str):
    """The judge's tokenizer; a tokenizer without a chat template is an error naming the model."""
    from stepwiser.models.loading import load_tokenizer, require_chat_template

    tokenizer = load_tokenizer(name)
    require_chat_template(tokenizer, name)
    return tokenizer


def count_chat_tokens(conversations: list[list[dict]], tokenizer, add_generation_prompt: bool) -> list[int]:
    """Token count of each conversation with the tokenizer's chat template (as the engines build it)."""
    texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=add_generation_prompt)
             for m in conversations]
    counts = []
    for i in range(0, len(texts), 512):
        counts += [len(ids) for ids in tokenizer(texts[i:i + 512], add_special_tokens=False)["input_ids"]]
    return counts


def prompt_tokens(examples: list, fmt: str, tokenizer) -> list[int]:
    """Prompt length per example: the judge prompt (stepwise) or the labelled conversation (disc)."""
    if fmt == "stepwise":
        return count_chat_tokens([judge_messages(judge_item(e)) for e in examples], tokenizer, True)
    return count_chat_tokens([disc_messages(e["problem"], e["chunks"], e["labels"]) for e in examples],
                             tokenizer, False)


def dedupe_examples(examples: list[JudgeExample]) -> tuple[list[JudgeExample], dict]:
    """One example per judge input (problem text, history, chunk), with the majority label of its copies
    (samples of a problem often share their first chunks); an input whose copies tie is dropped.

    Returns the kept examples (the first copy's record, in file order) and the counts: ``inputs`` kept,
    ``duplicates_merged`` (copies folded into a kept example), ``conflicts`` (inputs whose copies
    disagree, ties included), ``dropped_ties`` (examples dropped with the inputs that tie)."""
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        groups.setdefault(content_hash([e.problem, list(e.history), e.chunk]), []).append(i)
    label: dict[int, int] = {}
    merged = conflicts = dropped = 0
    for idx in groups.values():
        pos = sum(examples[i].label for i in idx)
        neg = len(idx) - pos
        conflicts += bool(pos and neg)
        if pos == neg:
            dropped += len(idx)
            continue
        label[idx[0]] = int(pos > neg)
        merged += len(idx) - 1
    kept = [dataclasses.replace(examples[i], label=y) if examples[i].label != y else examples[i]
            for i, y in sorted(label.items())]
    return kept, {"inputs": len(kept), "duplicates_merged": merged, "conflicts": conflicts, "dropped_ties": dropped}


# --------------------------------------------------------------------------- split and balance (pure)

def split_problems(problem_ids, val_frac: float, seed: int) -> set[str]:
    """The problem ids of the validation split (seeded shuffle of the sorted distinct ids)."""
    ids = sorted(set(problem_ids))
    if val_frac <= 0:
        return set()
    if len(ids) < 2:
        raise StepwiserError(f"a problem-disjoint validation split needs at least 2 problems, got {len(ids)}; "
                             f"use --val-frac 0")
    n_val = min(len(ids) - 1, max(1, round(val_frac * len(ids))))
    random.Random(f"judge-data-split:{seed}").shuffle(ids)
    return set(ids[:n_val])


def labels_of(example) -> list[int]:
    """The labels an example contributes (one for stepwise, all its chunks' for disc)."""
    if isinstance(example, JudgeExample):
        return [example.label]
    return list(example["labels"])


def class_counts(examples: list) -> dict:
    labels = [y for e in examples for y in labels_of(e)]
    pos = sum(labels)
    problems = {e.problem_id if isinstance(e, JudgeExample) else e["problem_id"] for e in examples}
    return {"records": len(examples), "positive": pos, "negative": len(labels) - pos,
            "positive_pct": round(100 * pos / len(labels), 1) if labels else None, "problems": len(problems)}


# --------------------------------------------------------------------------- the stage

def problem_of(example) -> str:
    return example.problem_id if isinstance(example, JudgeExample) else example["problem_id"]


def _set_tokens(example, n: int) -> None:
    if isinstance(example, JudgeExample):
        example.extra["prompt_tokens"] = n
    else:
        example["prompt_tokens"] = n


def _prepare_output(out: Path, overwrite: bool) -> None:
    """Refuse outputs this stage did not write (no manifest); with overwrite remove ours first."""
    files = [out / name for name in OUTPUTS]
    if overwrite:
        for p in [*files, manifest_path(out)]:
            p.unlink(missing_ok=True)
    elif not manifest_path(out).exists():
        existing = [str(p) for p in files if p.exists()]
        if existing:
            raise StepwiserError(f"{existing[0]} exists without a manifest; use --overwrite to replace it, "
                                 f"or another --out")


def _check_two_classes(cfg: JudgeDataConfig, counts: dict) -> None:
    if cfg.format == "stepwise" and cfg.balance and (counts["positive"] == 0 or counts["negative"] == 0):
        only = "positive (1)" if counts["positive"] else "negative (0)"
        raise StepwiserError(f"{cfg.annotations}: all {counts['records']} {cfg.label!r} labels are {only}: "
                             f"balancing to 50/50 is impossible; use --no-balance, or another --label")


def _window(examples: list, lengths: list[int], cfg: JudgeDataConfig) -> tuple[list, int, int]:
    """The examples whose prompt length is in [min_tokens, max_tokens], and the counts dropped."""
    kept, short, long = [], 0, 0
    for e, n in zip(examples, lengths):
        _set_tokens(e, n)
        if n < cfg.min_tokens:
            short += 1
        elif n > cfg.max_tokens:
            long += 1
        else:
            kept.append(e)
    if not kept:
        raise StepwiserError(f"all {len(examples)} prompts are outside the token window "
                             f"[{cfg.min_tokens}, {cfg.max_tokens}] ({short} shorter, {long} longer); "
                             f"widen it with --min-tokens/--max-tokens")
    return kept, short, long


def _completed_summary(out: Path, config: dict, inputs: list) -> dict | None:
    """The stored summary when `out` is complete with this config and these inputs, else None."""
    path = manifest_path(out)
    if not path.exists() or not all((out / name).exists() for name in OUTPUTS):
        return None
    old = json.loads(path.read_text(encoding="utf-8"))
    same = (old.get("complete") and old.get("stage") == "judge-data"
            and old.get("config_hash") == RunManifest.config_hash(config)
            and old.get("inputs") == {str(p): file_hash(p) for p in inputs})
    return old.get("summary", {}) if same else None


def _balance_train(cfg: JudgeDataConfig, train: list, val: list, counts: dict) -> tuple[list, dict]:
    """The train split balanced as `cfg` asks (stepwise), and the summary's position fields: the examples
    per chunk index (class_position) and the position-only baseline before and after balancing."""
    if cfg.format != "stepwise":
        return train, {}
    balanced, extra = train, {}
    if cfg.balance and cfg.balance_by == "class_position":
        balanced, positions = balance_by_position(train, cfg.seed)
        extra["positions"] = {str(i): c for i, c in positions.items()}
    elif cfg.balance:
        balanced = balance(train, cfg.seed)
    if cfg.balance:
        counts["train_balanced"] = class_counts(balanced)
    extra["position_baseline"] = {"train": position_baseline(balanced, val),
                                  "train_before_balancing": position_baseline(train, val)}
    return balanced, extra


def run_judge_data(cfg: JudgeDataConfig, tokenizer=None, overwrite: bool = False) -> dict:
    """Build, split, filter and balance judge examples; write DIR/train.jsonl and DIR/val.jsonl.

    `tokenizer`: an already loaded judge tokenizer (default: load `cfg.tokenizer`). Returns the summary
    (also stored in the manifest); a rerun of a complete output with the same config and inputs does
    nothing and returns the stored summary with ``nothing_to_do`` set."""
    out = Path(cfg.out)
    style = resolve_chunk_style(cfg)
    config = {**dataclasses.asdict(cfg), "chunk_style": style}
    if cfg.balance_by == "class":   # added later: left out at its default, so earlier outputs stay complete
        config.pop("balance_by")
    inputs = [cfg.annotations, cfg.problems]
    _prepare_output(out, overwrite)
    done = _completed_summary(out, config, inputs)
    if done is not None:
        return {**done, "nothing_to_do": True}
    anns = load_annotations(cfg.annotations, cfg.label)
    texts = load_problem_texts(cfg.problems, anns, cfg.annotations)
    build = stepwise_examples if cfg.format == "stepwise" else disc_examples
    examples = build(anns, texts, cfg.label, style)
    exact = attach_exact_labels(examples, anns, cfg.problems) if cfg.format == "stepwise" else 0
    counts = {"all": class_counts(examples)}
    dedupe = None
    if cfg.format == "stepwise":
        examples, dedupe = dedupe_examples(examples)
        counts["deduped"] = class_counts(examples)
    _check_two_classes(cfg, counts.get("deduped", counts["all"]))
    val_ids = split_problems((a.problem_id for a in anns), cfg.val_frac, cfg.seed)
    tok = tokenizer if tokenizer is not None else load_judge_tokenizer(cfg.tokenizer)
    kept, short, long = _window(examples, prompt_tokens(examples, cfg.format, tok), cfg)
    counts["in_window"] = class_counts(kept)
    train = [e for e in kept if problem_of(e) not in val_ids]
    val = [e for e in kept if problem_of(e) in val_ids]
    counts["train"] = class_counts(train)
    if not train:
        raise EmptyResultError(f"{cfg.annotations}: no training example: all {len(kept)} examples in the token "
                               f"window belong to the {len(val_ids)} validation problems; lower --val-frac")
    train, positions = _balance_train(cfg, train, val, counts)
    counts["val"] = class_counts(val)
    # every check passed: only now claim the output (C7; a config mismatch is refused here)
    manifest = RunManifest.open(out, "judge-data", config, inputs)
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "val.jsonl", val)
    summary = {"format": cfg.format, "label": cfg.label, "chunk_style": style, "train": len(train),
               "val": len(val), "train_problems": counts["train"]["problems"], "val_problems": len(val_ids),
               "dropped_short": short, "dropped_long": long, "token_window": [cfg.min_tokens, cfg.max_tokens],
               "max_prompt_tokens": max(_tokens(e) for e in kept), "balance": counts, "output": str(out)}
    if dedupe is not None:
        summary["dedupe"] = dedupe
    summary.update(positions)
    if exact:
        summary["exact_labels"] = exact_label_agreement(train + val)
    one_class = [k for k in ("train", "val") if counts[k]["records"] and 0 in (counts[k]["positive"],
                                                                              counts[k]["negative"])]
    if one_class:
        summary["warning"] = f"one class only in: {', '.join(one_class)}"
    manifest.finish(summary)
    return summary


def _tokens(example) -> int:
    return example.extra["prompt_tokens"] if isinstance(example, JudgeExample) else example["prompt_tokens"]


BALANCE_ROWS = {"all": "all", "deduped": "identical inputs merged", "in_window": "in token window", "train": "train (before balancing)",
                "train_balanced": "train (balanced)", "val": "val (unbalanced)"}


def print_balance(summary: dict, console=None) -> None:
    """The class balance at every step, as a rich table."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    unit = "samples" if summary["format"] == "disc" else "examples"
    t = Table(title=f"judge-data: {summary['label']} class balance ({summary['format']})", title_justify="left")
    for col in ("step", unit, "positive", "negative", "% positive", "problems"):
        t.add_column(col, justify="left" if col == "step" else "right")
    for key, name in BALANCE_ROWS.items():
        c = summary["balance"].get(key)
        if c is not None:
            pct = "-" if c["positive_pct"] is None else f"{c['positive_pct']:.1f}"
            t.add_row(name, str(c["records"]), str(c["positive"]), str(c["negative"]), pct, str(c["problems"]))
    console.print(t)
