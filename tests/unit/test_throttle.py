"""Wrong keys per address: free, then told to wait doubling times (no servers)."""

from __future__ import annotations

from tossit.auth.throttle import WrongKeys


def test_a_few_mistakes_are_free_then_each_one_doubles_the_wait() -> None:
    w = WrongKeys(free=3, window=60, max_lock=10)
    assert [w.failed("a", t) for t in (0, 1, 2)] == [(1, 0.0), (2, 0.0), (3, 0.0)]
    assert w.locked("a", 2) == 0.0
    assert w.failed("a", 3) == (4, 1.0)
    assert w.locked("a", 3.5) == 0.5 and w.locked("a", 4) == 0.0
    assert w.failed("a", 4) == (5, 2.0)
    assert w.failed("a", 6) == (6, 4.0)
    assert w.failed("a", 10) == (7, 8.0)
    assert w.failed("a", 18) == (8, 10.0)  # capped
    # Another address is not affected.
    assert w.locked("b", 18) == 0.0 and w.failed("b", 18) == (1, 0.0)


def test_the_window_forgets_old_mistakes() -> None:
    w = WrongKeys(free=2, window=10, max_lock=100)
    w.failed("a", 0)
    w.failed("a", 1)
    assert w.failed("a", 2) == (3, 1.0)
    assert w.failed("a", 30) == (1, 0.0)  # the earlier ones are outside the window
    assert w.locked("a", 30) == 0.0


def test_the_table_is_bounded() -> None:
    w = WrongKeys(free=0, window=60, max_lock=100, max_addresses=3)
    for i, addr in enumerate("abcd"):
        w.failed(addr, float(i))
    assert w.locked("a", 3) == 0.0  # forgotten: the oldest went first
    assert w.locked("d", 3) == 1.0
