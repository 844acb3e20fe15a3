"""Record types (contract C2), append-only JSONL with resume, and run manifests (C7).

JSONL files are written one record per line, each line flushed as soon as it is written. On resume,
anything after the last newline (a line cut short by a killed process) is dropped from the file
before appending, so a partial record is never merged with a new one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepwiser.errors import ConfigMismatchError, EmptyResultError, StepwiserError


class RecordError(StepwiserError):
    """A malformed input record; the message names file and line."""


# --------------------------------------------------------------------------- record types (C2)

@dataclass
class _Record:
    """Base: known fields are attributes, unknown ones are kept in `extra` and written back."""

    extra: dict = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**self.extra, **d}

    @classmethod
    def from_dict(cls, d: dict, where: str = "") -> _Record:
        if not isinstance(d, dict):
            raise RecordError(f"{where}: expected a JSON object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - d.keys())
        if missing:
            raise RecordError(f"{where}: {cls.__name__.lower()} record is missing field(s) {', '.join(missing)}")
        known = {k: v for k, v in d.items() if k in names}
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})


@dataclass
class Problem(_Record):
    id: str = ""
    problem: str = ""
    answer: str = ""
    source: str = ""
    solution: str | None = None

    key = property(lambda self: self.id)


@dataclass
class Sample(_Record):
    problem_id: str = ""
    sample_id: int = 0
    response: str = ""
    chunks: list = field(default_factory=list)
    correct: bool = False
    sampling: dict = field(default_factory=dict)

    key = property(lambda self: f"{self.problem_id}/{self.sample_id}")


@dataclass
class Annotation(Sample):
    successes: list = field(default_factory=list)
    rollouts: list = field(default_factory=list)
    q0: dict = field(default_factory=dict)
    q: list = field(default_factory=list)
    labels: dict = field(default_factory=dict)
    label_params: dict = field(default_factory=dict)
    early_stop: dict = field(default_factory=dict)


@dataclass
class JudgeExample(_Record):
    key: str = ""
    problem_id: str = ""
    sample_id: int = 0
    chunk_index: int = 0
    problem: str = ""
    history: list = field(default_factory=list)
    chunk: str = ""
    label: int = 0
    label_type: str = ""


@dataclass
class SFTExample(_Record):
    prompt: str = ""
    response: str = ""
    source: str = ""
    problem_id: str | None = None

    @property
    def key(self) -> str:
        return content_hash({"prompt": self.prompt, "response": self.response})


REQUIRED = {
    Problem: ("id", "problem", "answer"),
    Sample: ("problem_id", "sample_id", "response", "chunks", "correct"),
    Annotation: ("problem_id", "sample_id", "response", "chunks", "correct", "successes", "rollouts", "q",
                 "labels"),
    JudgeExample: ("key", "problem_id", "chunk_index", "problem", "history", "chunk", "label"),
    SFTExample: ("prompt", "response"),
}


def parse_record(cls, d: Any, where: str = ""):
    """Build a `cls` record from a decoded JSON object; RecordError names `where` if malformed."""
    if not isinstance(d, dict):
        raise RecordError(f"{where}: expected a JSON object, got {type(d).__name__}")
    missing = [k for k in REQUIRED[cls] if k not in d]
    if missing:
        raise RecordError(f"{where}: {cls.__name__} record is missing field(s): {', '.join(missing)}")
    return cls.from_dict(d, where)


# --------------------------------------------------------------------------- hashing

def content_hash(obj: Any, length: int = 16) -> str:
    """Stable short hash of a JSON-serialisable object (sorted keys)."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def file_hash(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- reading

def iter_jsonl(path: str | os.PathLike, on_error: str = "raise", skipped: list | None = None
               ) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object) for each non-blank line of a JSONL file.

    on_error="raise": a malformed line raises RecordError naming file and line.
    on_error="skip": it is skipped; (line_number, reason) is appended to `skipped` if given.
    A last line without its newline (cut short by a kill) is treated like any malformed line if it
    does not parse, and parsed normally if it does.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    if not path.exists():
        raise StepwiserError(f"{path}: file not found")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
            except ValueError as e:
                reason = f"{path}:{lineno}: malformed JSON line ({str(e).splitlines()[0][:120]})"
                if on_error == "raise":
                    raise RecordError(reason) from None
                if skipped is not None:
                    skipped.append((lineno, reason))
                continue
            yield lineno, obj


def read_records(path, cls, on_error: str = "raise", skipped: list | None = None) -> list:
    """All records of type `cls` in a JSONL file (see `iter_jsonl` for `on_error`)."""
    out = []
    for lineno, obj in iter_jsonl(path, on_error, skipped):
        try:
            out.append(parse_record(cls, obj, f"{path}:{lineno}"))
        except RecordError as e:
            if on_error == "raise":
                raise
            if skipped is not None:
                skipped.append((lineno, str(e)))
    return out


def read_json_or_jsonl(path) -> list[dict]:
    """A JSON list file or a JSONL file, as a list of objects (errors name file and line)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except ValueError as e:
            raise RecordError(f"{path}: malformed JSON ({e})") from None
        return data
    return [obj for _, obj in iter_jsonl(path)]


# --------------------------------------------------------------------------- writing with resume

def repair_truncated_tail(path: str | os.PathLike) -> int:
    """Drop anything after the last newline of `path` (a record cut short by a kill).

    Returns the number of bytes dropped (0 when the file ends cleanly or does not exist)."""
    path = Path(path)
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return 0
        # scan back for the last newline
        pos, block = size, 1 << 16
        keep = 0
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        f.truncate(keep)
        return size - keep


class JsonlWriter:
    """Append-only JSONL output that knows which keys it already holds.

    `key_fn(obj) -> str` gives a record's key. Opening an existing file drops a truncated last line
    (reported in `.dropped_bytes`), reads the keys already present and, by default, refuses
    duplicates: `write` of a key already present raises (callers check `done` first).
    """

    def __init__(self, path: str | os.PathLike, key_fn: Callable[[dict], str], fsync: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.key_fn = key_fn
        self.fsync = fsync
        self.dropped_bytes = repair_truncated_tail(self.path)
        self.done: set[str] = set()
        if self.path.exists():
            for lineno, obj in iter_jsonl(self.path):
                k = key_fn(obj)
                if k in self.done:
                    raise RecordError(f"{self.path}:{lineno}: duplicate key {k!r} in an output file")
                self.done.add(k)
        self._f = open(self.path, "a", encoding="utf-8")
        self.written = 0

    def __contains__(self, key: str) -> bool:
        return key in self.done

    def write(self, obj: dict | _Record) -> None:
        if isinstance(obj, _Record):
            obj = obj.to_dict()
        k = self.key_fn(obj)
        if k in self.done:
            raise RecordError(f"{self.path}: key {k!r} already written")
        self._f.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.fileno())
        self.done.add(k)
        self.written += 1

    def write_many(self, objs: Iterable[dict | _Record]) -> None:
        for o in objs:
            self.write(o)

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_jsonl(path, records: Iterable[dict | _Record]) -> int:
    """Write a whole JSONL file at once (atomically: temp file then rename). Returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_dict() if isinstance(r, _Record) else r, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def write_json(path, obj) -> None:
    """Write a JSON file atomically (temp file then rename), so readers never see half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- run manifests (C7)

def manifest_path(output: str | os.PathLike) -> Path:
    """Where the manifest of `output` (a file or a folder) lives: beside it, `<name>.manifest.json`
    (inside the folder for a folder output)."""
    output = Path(output)
    if output.suffix:  # a file
        return output.with_name(output.name + ".manifest.json")
    return output / "manifest.json"


class RunManifest:
    """The manifest of one stage's output (C7): config, its hash, input hashes, completion.

    `RunManifest.open(...)` is called before a stage writes anything:
      - no manifest: a fresh run, the manifest is written (complete = false);
      - same config hash and same inputs: resume;
      - otherwise: ConfigMismatchError naming what differs, unless overwrite=True, in which case
        the outputs listed in `outputs` and the manifest are removed first; an output that holds no
        records (a first run that failed before writing any, e.g. on a wrong model path) is replaced
        without overwrite.
    `volatile` config keys (batch sizes, worker counts...) are recorded but not hashed.
    `finish` marks the run complete; a run that produced no records is an EmptyResultError instead.
    """

    def __init__(self, path: Path, data: dict):
        self.path, self.data = path, data

    @staticmethod
    def config_hash(config: dict, volatile: Iterable[str] = ()) -> str:
        return content_hash({k: v for k, v in config.items() if k not in set(volatile)})

    @classmethod
    def open(cls, output, stage: str, config: dict, inputs: Iterable = (), overwrite: bool = False,
             volatile: Iterable[str] = (), outputs: Iterable = ()) -> RunManifest:
        from stepwiser import __version__

        path = manifest_path(output)
        volatile = list(volatile)
        chash = cls.config_hash(config, volatile)
        in_hashes = {str(p): file_hash(p) for p in inputs}
        if path.exists() and overwrite:
            _remove_run(path, [output, *outputs])
        old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        problems = _differences(old, stage, config, chash, in_hashes, volatile) if old is not None else []
        if problems and not holds_records([output, *outputs], path):
            _remove_run(path, [output, *outputs])   # nothing of the other run to keep
            old = None
        if old is not None:
            if problems:
                raise ConfigMismatchError(
                    f"{output} exists from a different run ({'; '.join(problems)}); "
                    "use a new output path or --overwrite to start over")
            m = cls(path, old)
            m.data["resumed"] = m.data.get("resumed", 0) + 1
            m.data["config"] = config  # volatile keys may change
            m.save()
            return m
        m = cls(path, {"stage": stage, "version": __version__, "config": config, "config_hash": chash,
                       "inputs": in_hashes, "complete": False, "resumed": 0})
        m.save()
        return m

    @classmethod
    def completed(cls, output, config: dict, volatile: Iterable[str] = ()) -> bool:
        """True when `output` holds a complete run of this config (read-only: any rank may check)."""
        path = manifest_path(output)
        if not path.exists():
            return False
        data = json.loads(path.read_text(encoding="utf-8"))
        return bool(data.get("complete")) and data.get("config_hash") == cls.config_hash(config, volatile)

    @property
    def complete(self) -> bool:
        return bool(self.data.get("complete"))

    def save(self) -> None:
        write_json(self.path, self.data)

    def finish(self, summary: dict | None = None, records: int | None = None, cause: str = "") -> None:
        """Mark the run complete. `records`: how many records the output holds; 0 raises
        EmptyResultError (the run stays incomplete) naming `cause` (what emptied it)."""
        if records == 0:
            output = self.path.parent if self.path.name == "manifest.json" else self.path.with_name(
                self.path.name.removesuffix(".manifest.json"))
            raise EmptyResultError(f"{output}: the run produced no records{': ' + cause if cause else ''}; "
                                   "nothing is marked complete")
        self.data["complete"] = True
        if summary is not None:
            self.data["summary"] = summary
        self.save()


def _differences(old: dict, stage: str, config: dict, chash: str, in_hashes: dict, volatile: list) -> list[str]:
    """What differs between a manifest on disk and this run (empty: the same run)."""
    problems = []
    if old.get("stage") != stage:
        problems.append(f"it was written by stage {old.get('stage')!r}")
    if old.get("config_hash") != chash:
        oc = old.get("config", {})
        diff = sorted(k for k in set(oc) | set(config) if k not in volatile and oc.get(k) != config.get(k))
        problems.append("config differs in: " + ", ".join(
            f"{k} ({oc.get(k)!r} -> {config.get(k)!r})" for k in diff[:6]))
    if old.get("inputs", {}) != in_hashes:
        changed = sorted(set(old.get("inputs", {}).items()) ^ set(in_hashes.items()))
        problems.append("inputs changed: " + ", ".join(sorted({p for p, _ in changed})))
    return problems


def holds_records(paths: Iterable, manifest: Path | None = None) -> bool:
    """True when any of `paths` (files or folders, searched recursively) holds a file with content
    other than whitespace, the manifest aside."""
    for p in map(Path, paths):
        files = p.rglob("*") if p.is_dir() else [p]
        for f in files:
            if f.is_file() and f != manifest and f.stat().st_size and _has_content(f):
                return True
    return False


def _has_content(f: Path) -> bool:
    with open(f, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            if block.strip():
                return True
    return False


def _remove_run(manifest: Path, outputs: list) -> None:
    for o in outputs:
        _remove(Path(o))
    manifest.unlink(missing_ok=True)


def _remove(p: Path) -> None:
    if p.is_dir():
        import shutil
        shutil.rmtree(p)
    elif p.exists():
        p.unlink()


def request_seed(seed: int, *parts) -> int:
    """A per-request seed derived from content, so results do not depend on batching or resume."""
    return int(content_hash([seed, *parts], 8), 16)


def sample_key(obj: dict) -> str:
    """`problem_id/sample_id`: the key of a sample or annotation record."""
    return f"{obj['problem_id']}/{obj['sample_id']}"


def refuse_stale_outputs(out: Path, names, overwrite: bool) -> None:
    """Refuse (or with --overwrite clear) results in `out` that no manifest accounts for."""
    if manifest_path(out).exists():
        return
    stale = [p for p in [*(out / f"{n}.jsonl" for n in names), out / "summary.json"] if p.exists()]
    if stale and not overwrite:
        raise StepwiserError(f"{out} holds results without a manifest ({stale[0].name}); use another --out "
                             "or --overwrite")
    for p in stale:
        p.unlink()
