"""Which process this is under `accelerate launch` / torchrun, and a barrier that works before the Trainer
exists (rank 0 writes a run's files; the other ranks wait for it, then read them)."""
from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def barrier() -> None:
    """Wait for every process (a no-op in a single process). Initialises the process group through
    accelerate's PartialState when the Trainer has not done so yet."""
    if world_size() <= 1:
        return
    from accelerate import PartialState

    PartialState().wait_for_everyone()
