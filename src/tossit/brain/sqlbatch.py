"""Statements over many ids or rows, a slice at a time.

SQLite caps the bound parameters of one statement (32,766 by default), and huge
``IN (...)`` lists are slow everywhere: every multi-row statement of the brain
goes through ``batches``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

BATCH = 500  # rows or ids per statement


def batches(rows: Sequence[Any], size: int = BATCH) -> Iterable[Sequence[Any]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]
