"""How a big file is cut into parts, and which parts a resume must send: pure
arithmetic, apart from any I/O, so it is tested without a server.

The brain takes at most 10,000 parts per upload, each but the last at least
5 MiB (the S3 rules its multipart service follows), so the part size grows
with the file: 16 MiB parts cover 156 GiB; a 1 TiB file gets 105 MiB parts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MiB = 1 << 20
MIN_PART_SIZE = 5 * MiB
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 16 * MiB
DEFAULT_PARTS_ABOVE = 64 * MiB  # smaller files go in one request: parts would gain nothing
DEFAULT_PARALLEL = 4
# Seconds before each new attempt at a part that failed in passing: about 23 s in
# all, enough for a brain restart (an upgrade) or a node's reboot mid-upload.
RETRY_WAITS = (1.0, 2.0, 4.0, 8.0, 8.0)
# Answers that say "not now" rather than "not this": overload, a brain or node
# restarting (503 not_enough_nodes), a proxy's timeout.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class PartSpan:
    """Part ``number`` (from 1) is the file's bytes ``offset`` to ``offset + size``."""

    number: int
    offset: int
    size: int


@dataclass(frozen=True)
class HeldPart:
    """A part the brain already holds: its size and the MD5 of its bytes (hex)."""

    size: int
    md5: str


def part_size_for(file_size: int, wanted: int = DEFAULT_PART_SIZE) -> int:
    """The part size to use: ``wanted``, raised to the 5 MiB minimum and, for a
    file too big for 10,000 parts of it, to the next MiB that fits."""
    needed = -(-file_size // MAX_PARTS)  # ceiling
    needed = -(-needed // MiB) * MiB
    return max(wanted, MIN_PART_SIZE, needed)


def plan_parts(file_size: int, part_size: int) -> list[PartSpan]:
    """The parts of a file, in order; the last may be shorter (an empty file is
    one empty part)."""
    if part_size <= 0:
        raise ValueError("the part size must be positive")
    if file_size == 0:
        return [PartSpan(1, 0, 0)]
    return [PartSpan(n + 1, offset, min(part_size, file_size - offset))
            for n, offset in enumerate(range(0, file_size, part_size))]


def may_be_held(plan: list[PartSpan], held: Mapping[int, HeldPart]) -> list[PartSpan]:
    """The planned parts the brain holds with the right size: each is sent
    again only if its MD5 differs from the local bytes' (checked while the
    upload runs). Any other planned part is sent; a held part outside the plan
    is left out of the completion, and freed by it."""
    return [span for span in plan
            if (got := held.get(span.number)) is not None and got.size == span.size]


def retry_wait(status: int, code: str, failures: int) -> float | None:
    """How long to wait before sending a part again after its ``failures``-th
    failed attempt (status 0: no answer, ``code`` says why), or None: the part
    is not worth another try, because the brain refused it for what it is (a
    wrong digest, an upload that is gone, no space) or the tries are used up.
    A part is whole in memory, so sending it again is always possible."""
    transient = status in TRANSIENT_STATUS or (status == 0 and code == "transfer_failed")
    if not transient or failures > len(RETRY_WAITS):
        return None
    return RETRY_WAITS[failures - 1]
