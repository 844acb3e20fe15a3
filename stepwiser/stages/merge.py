"""Stage `merge` (`stepwiser annotate --merge SHARD... -o OUT`): join annotation shards, no new rollouts.

The shards are the outputs of `annotate --shard i/n`. Every key must appear exactly once; each shard's
run must be complete (its manifest says so); with the samples file, every sample must be present unless
the shards' manifests record it as skipped. The merged file gets a manifest of its own (complete, the
config the shards share without `shard` and `out`, the shards' seconds summed): later stages read the
chunk style from it, and a report shows its config.
"""
from __future__ import annotations

import json
from pathlib import Path

from stepwiser.errors import StepwiserError
from stepwiser.io.records import (
    Annotation,
    JsonlWriter,
    Sample,
    iter_jsonl,
    manifest_path,
    parse_record,
    read_records,
    sample_key,
    write_json,
)


def merge(shards: list[str], out: str, samples: str | None = None) -> dict:
    """Join shard files into `out`; error on duplicates, and on missing samples not explained by skips."""
    if Path(out).exists():
        raise StepwiserError(f"{out} exists; choose a new output for the merged file")
    seen: dict[str, str] = {}
    skipped = 0
    manifests = []
    with JsonlWriter(out, sample_key) as w:
        for path in shards:
            m = manifest_path(path)
            if m.exists():
                data = json.loads(m.read_text())
                if not data.get("complete"):
                    raise StepwiserError(f"{path}: this shard's run is not complete (its manifest says so)")
                skipped += sum((data.get("summary") or {}).get("skipped", {}).values())
                manifests.append(data)
            for lineno, obj in iter_jsonl(path):
                a = parse_record(Annotation, obj, f"{path}:{lineno}")
                if a.key in seen:
                    raise StepwiserError(f"{a.key} appears in both {seen[a.key]} and {path}")
                seen[a.key] = path
                w.write(obj)
    summary = {"shards": len(shards), "annotations": len(seen)}
    if samples:
        expected = {s.key for s in read_records(samples, Sample)}
        extra = sorted(set(seen) - expected)
        if extra:
            raise StepwiserError(f"{len(extra)} annotations are not in {samples} (e.g. {extra[0]})")
        missing = sorted(expected - set(seen))
        if len(missing) > skipped:
            Path(out).unlink()
            raise StepwiserError(f"{len(missing)} samples of {samples} are missing from the shards and only "
                                 f"{skipped} were skipped by them (e.g. {missing[0]}); run the missing shard(s)")
        summary["missing_explained_by_skips"] = len(missing)
    write_json(manifest_path(out), merged_manifest(manifests, summary, shards))
    return summary


def merged_manifest(manifests: list[dict], summary: dict, shards: list[str]) -> dict:
    """The merged file's manifest: complete, the config every shard manifest shares (without `shard` and
    `out`), the shards' summed seconds (CPU time when they ran side by side)."""
    configs = [m.get("config") or {} for m in manifests]
    common = {k: v for k, v in configs[0].items() if k not in ("shard", "out")
              and all(c.get(k) == v for c in configs[1:])} if configs else {}
    seconds = [(m.get("summary") or {}).get("seconds") for m in manifests]
    total = round(sum(seconds), 1) if seconds and all(isinstance(x, (int, float)) for x in seconds) else None
    return {"stage": "merge", "config": common, "complete": True, "inputs": list(shards),
            "summary": {**summary, "seconds": total}}
