"""The brain's and the node's command lines (no servers: argv building only)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tossit.server_args import BrainArgs, NodeArgs, Tls, options, switch, text, tossit_command

D = Path("/d")


def test_a_brain_with_only_its_port_and_data_dir_gets_nothing_else() -> None:
    assert BrainArgs(port=8000, data_dir=D).argv() == [
        "brain", "--port", "8000", "--data-dir", "/d"]


@pytest.mark.parametrize(("field", "value", "flags"), [
    ("host", "0.0.0.0", ["--host", "0.0.0.0"]),
    ("replicas", 2, ["--replicas", "2"]),
    ("chunk_size", "1MiB", ["--chunk-size", "1MiB"]),
    ("write_quorum", 1, ["--write-quorum", "1"]),
    ("database_url", "postgresql+asyncpg://h/db", ["--database-url", "postgresql+asyncpg://h/db"]),
    ("heartbeat_interval", 0.5, ["--heartbeat-interval", "0.5"]),
    ("suspect_after", 1.5, ["--suspect-after", "1.5"]),
    ("straggler_wait", 60.0, ["--straggler-wait", "60"]),
    ("offline_after", 3.0, ["--offline-after", "3"]),
    ("gc_interval", 3600, ["--gc-interval", "3600"]),
    ("advertise_url", "http://10.0.0.2:8000", ["--advertise-url", "http://10.0.0.2:8000"]),
    ("auto_repair", False, ["--no-auto-repair"]),
    ("auto_repair", True, ["--auto-repair"]),
    ("auth", False, ["--no-auth"]),
    ("auth", True, ["--auth"]),
    ("new_admin_key", True, ["--new-admin-key"]),
    ("tls", Tls(Path("c.pem"), Path("k.pem"), Path("ca.pem")),
     ["--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-ca", "ca.pem"]),
])
def test_each_brain_field_adds_its_flag_and_only_it(field: str, value: object,
                                                    flags: list[str]) -> None:
    base = BrainArgs(port=8000, data_dir=D).argv()
    argv = BrainArgs(port=8000, data_dir=D, **{field: value}).argv()  # type: ignore[arg-type]
    at = next(i for i in range(len(argv)) if argv[i:i + len(flags)] == flags)
    assert argv[:at] + argv[at + len(flags):] == base


def test_extra_brain_flags_come_last_so_they_win() -> None:
    tls = Tls(Path("c.pem"), Path("k.pem"))
    argv = BrainArgs(port=1, data_dir=D, auto_repair=False, tls=tls,
                     extra=["--auto-repair"]).argv()
    assert argv[-1] == "--auto-repair" and argv.index("--no-auto-repair") < len(argv) - 1
    assert "--tls-ca" not in argv  # no CA given: the flag is left out, not sent empty


def test_a_node_with_its_cluster_by_url_and_secret() -> None:
    argv = NodeArgs(port=8081, data_dir=D, name="node-1", host="127.0.0.1",
                    brain="http://127.0.0.1:8000", join_secret_file=Path("/b/cluster.secret"),
                    heartbeat_interval=0.5, extra=["--advertise-url", "http://x:1"]).argv()
    assert argv == ["node", "--host", "127.0.0.1", "--port", "8081", "--data-dir", "/d",
                    "--name", "node-1", "--brain", "http://127.0.0.1:8000",
                    "--join-secret-file", "/b/cluster.secret", "--heartbeat-interval", "0.5",
                    "--advertise-url", "http://x:1"]


def test_a_node_joining_with_a_token_has_neither_brain_nor_secret() -> None:
    argv = NodeArgs(port=1, data_dir=D, name="n", join="tok", zone="rack-2",
                    capacity="50%").argv()
    assert argv == ["node", "--port", "1", "--data-dir", "/d", "--name", "n", "--join", "tok",
                    "--capacity", "50%", "--zone", "rack-2"]


@pytest.mark.parametrize(("value", "shown"), [
    (0.5, "0.5"), (3.0, "3"), (3600.0, "3600"), (7, "7"), ("4MiB", "4MiB"),
    (Path("/a b/c"), "/a b/c"),
])
def test_values_are_spelled_as_a_person_would(value: str | float | Path, shown: str) -> None:
    assert text(value) == shown


def test_unset_options_and_switches_are_left_to_the_server() -> None:
    assert options([("--a", None), ("--b", 0), ("--c", "")]) == ["--b", "0", "--c", ""]
    assert switch("auth", None) == []


def test_the_command_runs_this_interpreter() -> None:
    assert tossit_command(["brain"]) == [sys.executable, "-m", "tossit", "brain"]
