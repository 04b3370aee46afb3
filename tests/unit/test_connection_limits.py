"""``ConnectionLimits``: which connection gives way when a cap is reached."""

from __future__ import annotations

from typing import Any, cast

from tossit.limits import ConnectionLimits, HeaderGuard


class Fake:
    """Stands in for a ``HeaderGuard``: an address, busy or idle, evictable."""

    def __init__(self, address: str, busy: bool = False) -> None:
        self.client_key = address
        self._busy = busy
        self.evicted = False

    def busy(self) -> bool:
        return self._busy

    def evict(self) -> None:
        self.evicted = True


def admit(limits: ConnectionLimits, conn: Fake) -> bool:
    return limits.admit(cast(HeaderGuard, conn))


def release(limits: ConnectionLimits, conn: Fake) -> None:
    limits.release(cast(HeaderGuard, conn))


def test_per_address_cap_closes_that_address_oldest_idle_one() -> None:
    limits = ConnectionLimits(max_connections=100, per_client=3)
    busy = Fake("a", busy=True)
    a1, a2, b1 = Fake("a"), Fake("a"), Fake("b")
    for c in (busy, a1, a2, b1):
        assert admit(limits, c)
    newcomer = Fake("a")
    assert admit(limits, newcomer)
    assert a1.evicted and not busy.evicted and not a2.evicted and not b1.evicted
    assert limits.total == 4 and len(limits.by_client["a"]) == 3
    release(limits, a1)  # its connection_lost, later: counted out once only
    assert limits.total == 4


def test_overall_cap_takes_from_the_address_holding_most() -> None:
    limits = ConnectionLimits(max_connections=4, per_client=10)
    conns: list[Any] = [Fake("b"), Fake("a"), Fake("a"), Fake("a")]
    for c in conns:
        assert admit(limits, c)
    assert admit(limits, Fake("c"))
    assert [c.evicted for c in conns] == [False, True, False, False]
    assert limits.total == 4


def test_refused_only_when_everyone_concerned_is_busy() -> None:
    limits = ConnectionLimits(max_connections=10, per_client=2)
    for _ in range(2):
        assert admit(limits, Fake("a", busy=True))
    assert not admit(limits, Fake("a"))
    assert admit(limits, Fake("b"))  # another address is not affected
    full = ConnectionLimits(max_connections=2, per_client=2)
    assert admit(full, Fake("a", busy=True)) and admit(full, Fake("b", busy=True))
    assert not admit(full, Fake("c"))
    assert full.total == 2


def test_release_forgets_empty_addresses() -> None:
    limits = ConnectionLimits(max_connections=10, per_client=2)
    c = Fake("a")
    assert admit(limits, c)
    release(limits, c)
    release(limits, c)
    assert limits.total == 0 and limits.by_client == {}
