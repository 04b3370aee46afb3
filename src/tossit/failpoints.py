"""Failpoints: named places where a test can make the process die on the spot.

Crash safety is a claim about what survives a process killed between two steps
(say, between the metadata commit and the write of its manifest to the nodes).
A timer cannot hit such a window reliably; a failpoint can. The points are
armed only by the ``TOSSIT_FAILPOINTS`` environment variable, e.g.
``TOSSIT_FAILPOINTS=commit.before_pack=victim``: the process kills itself with
SIGKILL (no clean-up, as a power cut) when it reaches ``commit.before_pack``
with ``victim`` among the names it handles. Unset, a failpoint costs one dict
lookup. (The same idea as FreeBSD's fail points or TiKV's fail-rs.)
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterable

log = logging.getLogger("tossit.failpoints")


def _armed() -> dict[str, str]:
    spec = os.environ.get("TOSSIT_FAILPOINTS", "")
    out = {}
    for item in spec.split(","):
        name, _, match = item.strip().partition("=")
        if name:
            out[name] = match
    return out


ARMED = _armed()


def hit(name: str, names: Callable[[], Iterable[str]] = lambda: ()) -> None:
    """Die here if ``name`` is armed (and its match is in one of ``names()``,
    which is only called then)."""
    if not ARMED or name not in ARMED:
        return
    match = ARMED[name]
    if match and not any(match in n for n in names()):
        return
    log.critical("failpoint %s: killing this process now", name)
    os.kill(os.getpid(), signal.SIGKILL)
