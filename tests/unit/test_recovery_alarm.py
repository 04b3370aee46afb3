"""The rules that keep a brain on the wrong metadata from deleting the cluster."""

from __future__ import annotations

import pytest

from tossit.brain.rebuild import NodeFound, cluster_of
from tossit.brain.strangers import (
    STRANGER_MIN,
    RecoveryAlarm,
    Suspect,
    cluster_refusal,
    is_stranger,
)

OURS, THEIRS = "a" * 16, "b" * 16


@pytest.mark.parametrize(("ours", "theirs", "adopt", "refused"), [
    (OURS, None, None, False),  # a new node (or one from before ids) joins
    (OURS, OURS, None, False),
    (OURS, THEIRS, None, True),  # another cluster: refused
    (OURS, THEIRS, OURS, False),  # unless the operator says to adopt this one
    (OURS, THEIRS, "c" * 16, True),  # adopting some other cluster does not count
    (None, THEIRS, None, False),  # a follower before the leader made the id
])
def test_cluster_refusal(ours: str | None, theirs: str | None, adopt: str | None,
                         refused: bool) -> None:
    why = cluster_refusal(ours, theirs, adopt)
    assert (why is not None) == refused
    if why:
        assert f"cluster {theirs}" in why and f"--adopt-cluster {ours}" in why
        assert "tossit recover" in why


@pytest.mark.parametrize(("total", "unknown", "stranger"), [
    (0, 0, False),
    (10, 10, False),  # too few to judge: a new node with a failed upload's leftovers
    (STRANGER_MIN, STRANGER_MIN, True),
    (1000, 499, False),
    (1000, 500, True),  # half unknown: this metadata is not the one its data belongs to
    (1000, 1000, True),
])
def test_is_stranger(total: int, unknown: int, stranger: bool) -> None:
    assert is_stranger(total, unknown) == stranger


def test_the_alarm_blocks_deletion_for_strangers_and_newer_packs_not_for_refusals() -> None:
    alarm = RecoveryAlarm()
    assert not alarm.blocks_deletion and alarm.message() is None
    alarm.refused["n1"] = Suspect("nas-1", cluster_refusal(OURS, THEIRS) or "")
    assert not alarm.blocks_deletion  # it never got in: nothing of it is touched
    assert (alarm.message() or "").startswith("nas-1 refused: this node belongs to cluster")
    alarm.strangers["n2"] = Suspect("nas-2", "900 of its 1,000 chunks are unknown")
    assert alarm.blocks_deletion and "nas-2 holds mostly data" in (alarm.message() or "")
    alarm.strangers.clear()
    alarm.behind = "nas-3 holds manifest pack 0123 with changes newer than this brain's"
    assert alarm.blocks_deletion


@pytest.mark.parametrize(("blobs", "vouched", "may"), [
    (0, False, True),  # an empty node takes the id at once
    (5, False, False),  # one with data only once a sweep found it known here
    (5, True, True),
])
def test_who_may_learn_the_cluster_id(blobs: int, vouched: bool, may: bool) -> None:
    alarm = RecoveryAlarm(vouched={"n"} if vouched else set())
    assert alarm.may_learn_cluster("n", blobs) == may


@pytest.mark.parametrize(("remembered", "kept"), [
    ([], None),
    ([None, None], None),
    ([OURS, OURS, THEIRS], OURS),
    ([THEIRS, OURS], OURS),  # a tie: the smallest id, the same every time
    ([None, THEIRS], THEIRS),
])
def test_a_rebuild_keeps_the_cluster_id_the_nodes_remember(
        remembered: list[str | None], kept: str | None) -> None:
    nodes = [NodeFound(id=f"n{i}", name=f"n{i}", cluster=c) for i, c in enumerate(remembered)]
    assert cluster_of(nodes) == kept
