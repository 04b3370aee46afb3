"""The process harness on real (tiny, shell) child processes: logs, environment,
sessions and limits, a death during a wait, and stopping with SIGTERM then SIGKILL."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tossit import localcluster, processes
from tossit.processes import Child, ChildExited, WaitTimedOut, child_env, wait_for


def sh(tmp_path: Path, name: str, script: str) -> Child:
    return Child(name, ["sh", "-c", script], tmp_path / "logs" / f"{name}.log")


def test_a_child_logs_to_its_file_with_the_environment_and_limits_given(
        tmp_path: Path) -> None:
    child = sh(tmp_path, "brain", 'echo "mode=$MODE auth=${TOSSIT_AUTH-unset}"; ulimit -n; '
               'echo "cwd=$(pwd)"; read line || echo "no stdin"')
    env = child_env({**os.environ, "TOSSIT_AUTH": "1"}, {"MODE": "bench"},
                    unset=["TOSSIT_AUTH"])
    proc = processes.start(child, env=env, cwd=tmp_path, nofile=(512, 512))
    assert proc.wait(10) == 0 and child.exit_code() == 0
    assert child.log.read_text().splitlines() == [
        "mode=bench auth=unset", "512", f"cwd={tmp_path}", "no stdin"]


def test_a_child_in_its_own_session_leads_its_own_process_group(tmp_path: Path) -> None:
    alone = processes.start(sh(tmp_path, "alone", "sleep 30"), own_session=True)
    shared = processes.start(sh(tmp_path, "shared", "sleep 30"))
    try:
        assert os.getpgid(alone.pid) == alone.pid
        assert os.getpgid(shared.pid) == os.getpgrp()
    finally:
        processes.stop([alone, shared], grace=5)
    assert alone.returncode == -signal.SIGTERM and shared.returncode == -signal.SIGTERM


def test_a_child_that_dies_during_a_wait_ends_it_at_once_with_its_log(tmp_path: Path) -> None:
    brain = sh(tmp_path, "brain", "sleep 30")
    node = sh(tmp_path, "node-1", 'echo "starting"; echo "error: cannot read the cluster '
              'secret"; exit 3')
    processes.start(brain)
    processes.start(node)
    t0 = time.monotonic()
    try:
        with pytest.raises(ChildExited) as err:
            wait_for(lambda: False, 30, "1 nodes online", watch=[brain, node])
    finally:
        processes.stop([brain.proc], grace=5)
    assert time.monotonic() - t0 < 10
    assert err.value.name == "node-1" and err.value.code == 3
    message = str(err.value)
    assert message.startswith("node-1 exited with code 3 while waiting for 1 nodes online")
    assert f"the end of {node.log}" in message
    assert message.endswith("  | starting\n  | error: cannot read the cluster secret")


def test_a_timed_out_wait_quotes_the_logs_of_the_children_it_watched(tmp_path: Path) -> None:
    brain = sh(tmp_path, "brain", 'echo "waiting for the database"; sleep 30')
    processes.start(brain)
    try:
        wait_for(lambda: brain.log.stat().st_size > 0, 10, "the first log line")
        with pytest.raises(WaitTimedOut) as err:
            wait_for(lambda: None, 0.2, "brain health", watch=[brain])
    finally:
        processes.stop([brain.proc], grace=5)
    assert "waiting for brain health (last: None)" in str(err.value)
    assert str(err.value).endswith("  | waiting for the database")


def test_stop_sends_sigterm_and_sigkills_what_ignores_it(tmp_path: Path) -> None:
    polite = [sh(tmp_path, f"node-{i}", "trap 'echo bye; exit 0' TERM; "
                 "while :; do sleep 0.05; done") for i in (1, 2)]
    # Ignores SIGTERM (and so does the sleep it becomes); in its own session, so the
    # SIGKILL goes to its whole group.
    stubborn = sh(tmp_path, "brain", "trap '' TERM; exec sleep 30")
    for c in polite:
        processes.start(c)
    processes.start(stubborn, own_session=True)
    stopped = sh(tmp_path, "stopped", "sleep 30")
    processes.start(stopped)
    assert stopped.proc is not None
    stopped.proc.send_signal(signal.SIGSTOP)  # must be woken to act on SIGTERM
    time.sleep(0.3)  # the traps are set
    t0 = time.monotonic()
    processes.stop([c.proc for c in [*polite, stubborn, stopped]], grace=1)
    took = time.monotonic() - t0
    assert [c.exit_code() for c in polite] == [0, 0]  # they ran their SIGTERM handler
    assert all(c.log.read_text() == "bye\n" for c in polite)
    assert stubborn.exit_code() == -signal.SIGKILL and 0.9 < took < 5
    assert stopped.exit_code() == -signal.SIGTERM
    processes.stop([c.proc for c in polite], grace=1)  # stopping twice is harmless


def test_a_test_cluster_whose_brain_cannot_start_fails_at_once_with_its_log(
        tmp_path: Path) -> None:
    from cluster import Cluster

    c = Cluster(tmp_path, nodes=1, replicas=1, brain_args=["--chunk-size", "lots"])
    t0 = time.monotonic()
    try:
        with pytest.raises(ChildExited) as err:
            c.start()
    finally:
        c.stop()
    assert time.monotonic() - t0 < 30  # not the 60 s timeout of a brain that never answers
    assert err.value.name == "brain" and err.value.code != 0
    assert f"while waiting for {c.url}/health" in str(err.value)
    assert "lots" in str(err.value).split("the end of", 1)[1]  # the brain's own complaint


def test_tossit_up_stops_the_brain_before_the_nodes(tmp_path: Path) -> None:
    """The brain's requests in flight need the nodes until it has finished them."""
    order = tmp_path / "order"
    brain = sh(tmp_path, "brain", f"trap 'sleep 1; echo brain >> {order}; exit 0' TERM; "
               "while :; do sleep 0.05; done")
    nodes = [sh(tmp_path, f"node-{i}", f"trap 'echo node-{i} >> {order}; exit 0' TERM; "
                "while :; do sleep 0.05; done") for i in (1, 2)]
    children = [brain, *nodes]
    for c in children:
        processes.start(c, own_session=True)
    time.sleep(0.3)  # the traps are set
    localcluster.stop_cluster(children)
    assert [c.exit_code() for c in children] == [0, 0, 0]
    first, *rest = order.read_text().split()
    assert first == "brain" and sorted(rest) == ["node-1", "node-2"]
