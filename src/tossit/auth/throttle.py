"""Slowing down wrong keys: counted per client address.

A few mistakes are free (a mistyped key, a script with an old one). Past
``free`` wrong keys within ``WINDOW`` seconds, each further one from that address
is answered late and with 429 and a Retry-After that doubles (up to
``MAX_LOCK``). Good keys always pass: a reverse proxy puts every user behind one
address, and one guesser must not lock the others out. (Guessing is hopeless
anyway, keys carry 238 random bits; this keeps a guesser or a misconfigured
script from flooding the brain and its log.) The table is bounded: the oldest
addresses are forgotten. Pure bookkeeping, no I/O: the clock is passed in.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

FREE = 5  # wrong keys per address and window answered at once
WINDOW = 60.0  # seconds over which wrong keys are counted
MAX_LOCK = 300.0  # the longest an address is refused for
MAX_ADDRESSES = 10_000


@dataclass
class _Record:
    times: list[float] = field(default_factory=list)  # wrong keys within the window
    locked_until: float = 0.0


class WrongKeys:
    def __init__(self, free: int = FREE, window: float = WINDOW,
                 max_lock: float = MAX_LOCK, max_addresses: int = MAX_ADDRESSES) -> None:
        self.free = free
        self.window = window
        self.max_lock = max_lock
        self.max_addresses = max_addresses
        self._by_address: OrderedDict[str, _Record] = OrderedDict()

    def locked(self, address: str, now: float) -> float:
        """Seconds this address is still told to wait (0: none)."""
        record = self._by_address.get(address)
        return max(0.0, record.locked_until - now) if record else 0.0

    def failed(self, address: str, now: float) -> tuple[int, float]:
        """Count a wrong key; returns the wrong keys within the window and how
        long the address is now told to wait (0 while still within ``free``)."""
        record = self._by_address.pop(address, None) or _Record()
        self._by_address[address] = record  # most recent last
        while len(self._by_address) > self.max_addresses:
            self._by_address.popitem(last=False)
        record.times = [t for t in record.times if now - t < self.window] + [now]
        over = len(record.times) - self.free
        lock = min(self.max_lock, 2.0 ** (over - 1)) if over > 0 else 0.0
        record.locked_until = now + lock
        return len(record.times), lock
