"""Client traffic through the brain, in short time buckets, for the dashboard's
live throughput figure and chart (Prometheus keeps the long-term counters).

Counting is a dict-free add to the current bucket, so the data path pays next
to nothing; rates are worked out when someone asks.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

BUCKET_S = 2.0
KEEP = 150  # 5 minutes of history


class Traffic:
    def __init__(self, bucket: float = BUCKET_S, keep: int = KEEP) -> None:
        self.bucket = bucket
        self.keep = keep
        self._buckets: deque[list[int]] = deque(maxlen=keep + 1)  # [slot, in, out]

    def _current(self) -> list[int]:
        slot = int(time.time() // self.bucket)
        if not self._buckets or self._buckets[-1][0] != slot:
            self._buckets.append([slot, 0, 0])
        return self._buckets[-1]

    def received(self, n: int) -> None:
        """``n`` bytes of file data arrived from a client."""
        self._current()[1] += n

    def sent(self, n: int) -> None:
        """``n`` bytes of file data went out to a client."""
        self._current()[2] += n

    def snapshot(self) -> dict[str, Any]:
        """Rates over the last complete bucket, and the history before it (a
        bucket with no traffic is a zero, not a gap)."""
        now = int(time.time() // self.bucket)
        seen = {b[0]: b for b in self._buckets}
        history = []
        for slot in range(now - self.keep, now):
            _, inb, outb = seen.get(slot, (slot, 0, 0))
            history.append({
                "t": datetime.fromtimestamp(slot * self.bucket, UTC).isoformat(),
                "in": round(inb / self.bucket), "out": round(outb / self.bucket),
            })
        return {
            "bucket_s": self.bucket,
            "in_bytes_per_s": history[-1]["in"], "out_bytes_per_s": history[-1]["out"],
            "history": history,
        }
