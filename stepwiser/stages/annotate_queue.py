"""The order of an annotation run's work: shards of a problem set, and blocks of problems that share engine
calls (so a resumed run redoes an unfinished block from its start and writes the records of an uninterrupted
run). Pure functions; `stepwiser.stages.annotate` uses them."""
from __future__ import annotations

from stepwiser.io.records import content_hash


def parse_shard(shard: str | None) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n; None -> (0, 1)."""
    if shard is None:
        return 0, 1
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {shard!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {shard}: need 0 <= i < n")
    return i, n


def in_shard(problem_id: str, shard: tuple[int, int]) -> bool:
    return int(content_hash(problem_id, 8), 16) % shard[1] == shard[0]


def problem_blocks(order: list[str], size: int) -> dict[str, int]:
    """problem id -> its block: consecutive runs of `size` problems in `order`; size 0: no blocks (every
    problem its own block for resuming, and problems mix freely in engine calls)."""
    return {pid: (i // size if size else -1) for i, pid in enumerate(order)}


def resume_queue(groups: dict, block: dict[str, int], written) -> list[str]:
    """The problems to (re)do, in order: every problem of a block that has a sample not yet `written` (the
    block is redone from its start, so its engine calls are those of an uninterrupted run); without blocks
    (-1), only the problems with a sample missing."""
    unfinished = {pid for pid, g in groups.items() if not all(written(s) for s in g)}
    blocks = {block[pid] for pid in unfinished} - {-1}
    return [pid for pid in groups if pid in unfinished or block[pid] in blocks]
