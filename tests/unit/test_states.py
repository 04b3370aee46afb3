"""The states and event kinds live in one module; the docs and the dashboard
must know every event kind (a new kind that nobody documents fails here)."""

from __future__ import annotations

import re
from pathlib import Path

from tossit.brain import registry, repair_plan
from tossit.brain.states import READABLE_STATES, EventKind, NodeState

ROOT = Path(__file__).resolve().parents[2]


def test_every_event_kind_is_documented_and_labelled() -> None:
    api = (ROOT / "docs" / "api.md").read_text()
    events_table = api[api.index("`brain_started`"):]  # the GET /api/events table
    labels = (ROOT / "src/tossit/brain/dashboard/activity.js").read_text()
    undocumented = [k.value for k in EventKind if f"`{k.value}`" not in events_table]
    unlabelled = [k.value for k in EventKind if not re.search(rf"\b{k.value}:", labels)]
    assert not undocumented, f"not in docs/api.md's event table: {undocumented}"
    assert not unlabelled, f"no label in activity.js KIND_WORDS: {unlabelled}"


def test_the_short_names_are_the_states_and_compare_as_strings() -> None:
    assert registry.ONLINE is NodeState.ONLINE and repair_plan.DEAD is NodeState.DEAD
    assert registry.READABLE_STATES == repair_plan.READABLE == READABLE_STATES
    assert NodeState.ONLINE == "online" and f"{NodeState.UNREACHABLE}" == "unreachable"
    assert EventKind("node_dead") is EventKind.NODE_DEAD  # built from a state: f"node_{s}"
    assert {f"node_{s}" for s in NodeState} <= {k.value for k in EventKind}
