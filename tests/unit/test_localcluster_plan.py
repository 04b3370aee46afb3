"""``tossit up``'s plan of children and its port checks (nothing is started)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from tossit.config import ConfigError
from tossit.localcluster import check_ports, plan
from tossit.serve import pick_free_port


def flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_the_brain_comes_first_then_nodes_on_consecutive_ports(tmp_path: Path) -> None:
    children = plan(tmp_path, 3, 8000, 8081, "127.0.0.1", 3, None, None)
    assert [c.name for c in children] == ["brain", "node-1", "node-2", "node-3"]
    assert all(c.argv[:3] == [sys.executable, "-m", "tossit"] for c in children)
    assert [c.log for c in children] == [tmp_path / "logs" / f"{c.name}.log" for c in children]
    assert all(c.proc is None for c in children)
    brain = children[0].argv
    assert brain[3] == "brain" and flag(brain, "--port") == "8000"
    assert flag(brain, "--host") == "127.0.0.1"
    assert flag(brain, "--data-dir") == str(tmp_path / "brain")
    assert flag(brain, "--replicas") == "3"
    for i, node in enumerate(c.argv for c in children[1:]):
        assert node[3] == "node" and flag(node, "--port") == str(8081 + i)
        assert flag(node, "--name") == f"node-{i + 1}"
        assert flag(node, "--data-dir") == str(tmp_path / f"node{i + 1}")
        assert flag(node, "--brain") == "http://127.0.0.1:8000"
        assert flag(node, "--join-secret-file") == str(tmp_path / "brain" / "cluster.secret")


def test_options_not_given_are_left_to_the_servers(tmp_path: Path) -> None:
    children = plan(tmp_path, 1, 8000, 8081, "127.0.0.1", None, None, None)
    brain, node = children[0].argv, children[1].argv
    for name in ("--replicas", "--chunk-size", "--heartbeat-interval", "--write-quorum",
                 "--database-url", "--new-admin-key"):
        assert name not in brain
    assert "--capacity" not in node and "--heartbeat-interval" not in node


def test_options_given_go_to_the_server_that_takes_them(tmp_path: Path) -> None:
    children = plan(tmp_path, 2, 9000, 9100, "0.0.0.0", 2, "8MiB", "10GiB", heartbeat=0.5,
                    write_quorum=1, database_url="postgresql+asyncpg://h/db",
                    new_admin_key=True)
    brain = children[0].argv
    assert flag(brain, "--chunk-size") == "8MiB" and flag(brain, "--write-quorum") == "1"
    assert flag(brain, "--heartbeat-interval") == "0.5"
    assert flag(brain, "--database-url") == "postgresql+asyncpg://h/db"
    assert "--new-admin-key" in brain and "--capacity" not in brain
    for c in children[1:]:
        assert flag(c.argv, "--capacity") == "10GiB"
        assert flag(c.argv, "--heartbeat-interval") == "0.5"
        assert flag(c.argv, "--brain") == "http://0.0.0.0:9000"
        assert "--new-admin-key" not in c.argv and "--chunk-size" not in c.argv


def test_ports_outside_the_range_are_refused() -> None:
    with pytest.raises(ConfigError, match="port 70000 is outside 1-65535"):
        check_ports("127.0.0.1", 70000, 8081, 1)
    with pytest.raises(ConfigError, match="port 65536 is outside"):
        check_ports("127.0.0.1", pick_free_port(), 65535, 2)  # the second node's


def test_a_port_in_use_is_named_with_the_way_out() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {busy} on 127.0.0.1 is already in use"
                           r".*--node-port"):
            check_ports("127.0.0.1", pick_free_port(), busy, 1)
    check_ports("127.0.0.1", pick_free_port(), pick_free_port(), 1)  # free: no error


def test_the_brains_own_refusal_is_quoted_when_it_stops_at_start(tmp_path: Path) -> None:
    """tossit up said only 'brain exited with code 2 while starting'; the reason
    (a database of a newer TossIt, say) was in the log alone."""
    from tossit.localcluster import last_error

    log = tmp_path / "brain.log"
    log.write_text("INFO tossit.brain: starting\n"
                   "error: the metadata database was written by a newer TossIt (0099)\n"
                   "\n")
    assert last_error(log) == "the metadata database was written by a newer TossIt (0099)"
    log.write_text("2026-12-07 INFO x: a\n2026-12-07 CRITICAL tossit.brain: lost the disk\n")
    assert last_error(log) == "2026-12-07 CRITICAL tossit.brain: lost the disk"
    log.write_text("INFO fine\n")
    assert last_error(log) is None
    assert last_error(tmp_path / "absent.log") is None
