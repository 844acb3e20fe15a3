"""Judge verdicts: parsing ``\\boxed{Positive|Negative}`` and the tie rule of contract C4."""
from __future__ import annotations

import re

from stepwiser.core.boxed import last_boxed, opens_after_last_box, unwrap


def parse_verdict(text: str) -> int | None:
    """1 for Positive, 0 for Negative, None when unparsed.

    The LAST ``\\boxed{...}`` of the text decides (case and whitespace tolerant, ``\\text{}`` and
    similar wrappers removed); if it is anything but Positive/Negative, or a later ``\\boxed{`` is left
    unclosed, the output is unparsed.
    """
    content = last_boxed(text)
    if content is None or opens_after_last_box(text):
        return None
    word = re.sub(r"[\s.!*$]", "", unwrap(content)).lower()
    return {"positive": 1, "negative": 0}.get(word)


def majority(verdicts: list[int | None]) -> int | None:
    """Majority of parsed verdicts; a tie is Negative (0); all unparsed -> None (contract C4)."""
    parsed = [v for v in verdicts if v is not None]
    if not parsed:
        return None
    pos = sum(parsed)
    return 1 if pos > len(parsed) - pos else 0
