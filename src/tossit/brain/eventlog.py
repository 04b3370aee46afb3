"""Keeping the event log bounded.

Events are written by every loop, and a cluster with a problem can write many
(a repeating failure is one row with a count, see ``Store.add_event``, but
distinct ones add up over months). So the leader prunes them: those last seen
more than ``events_max_age`` ago, and all but the newest ``events_max_rows``.
Both bounds are settings (``docs/configuration.md``).
"""

from __future__ import annotations

import logging
import time

from tossit.brain.store import Store
from tossit.config import BrainSettings
from tossit.periodic import Periodic

log = logging.getLogger("tossit.brain.events")
PRUNE_EVERY = 3600.0  # seconds between prunes
FIRST_PRUNE_AFTER = 30.0  # seconds after taking the lead: not in the start-up rush


class EventPruner(Periodic):
    name = "event pruning"
    first_delay = FIRST_PRUNE_AFTER
    retry_after = PRUNE_EVERY

    def __init__(self, settings: BrainSettings, store: Store) -> None:
        super().__init__()
        self.settings = settings
        self.store = store

    async def run_once(self) -> int:
        """Prune now; returns how many events went."""
        gone = await self.store.prune_events(time.time() - self.settings.events_max_age,
                                             self.settings.events_max_rows)
        if gone:
            log.info("pruned %d old events (kept: %s days at most, %d rows at most)", gone,
                     round(self.settings.events_max_age / 86400, 1),
                     self.settings.events_max_rows)
        return gone

    async def next_delay(self) -> float:
        return PRUNE_EVERY

    def failed(self, exc: Exception) -> None:  # the log must not stop the brain
        log.warning("could not prune the event log: %s", exc)
