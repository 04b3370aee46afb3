"""The command lines of ``tossit brain`` and ``tossit node``, built in one place.

``tossit up``, the integration tests and the benchmarks all start the same two
servers. Each says what it wants as fields of ``BrainArgs`` or ``NodeArgs``
(None: the server's own default) and gets the argv from here, so a new flag is
one field and one line of ``argv()``, not an edit in three launchers that drift
apart. Pure: building a command line starts nothing (see ``tossit.processes``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

Value = str | int | float | Path | None


def tossit_command(argv: Sequence[str]) -> list[str]:
    """``argv`` run by this interpreter (so a venv's tossit runs, whatever PATH says)."""
    return [sys.executable, "-m", "tossit", *argv]


def text(value: str | int | float | Path) -> str:
    """A flag's value as the command line spells it: 0.5 s, but 3 s rather than 3.0."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def options(pairs: Iterable[tuple[str, Value]]) -> list[str]:
    """``--flag value`` for every pair whose value is set (None: the server's default)."""
    out: list[str] = []
    for flag, value in pairs:
        if value is not None:
            out += [flag, text(value)]
    return out


def switch(name: str, on: bool | None) -> list[str]:
    """``--name`` or ``--no-name`` for a boolean flag; nothing for the server's default."""
    if on is None:
        return []
    return [f"--{name}" if on else f"--no-{name}"]


@dataclass(frozen=True)
class Tls:
    """HTTPS for a server: its certificate and key, and the CA it checks the others
    with (None: a node that joined with a token knows the CA from it)."""

    cert: Path
    key: Path
    ca: Path | None = None

    def argv(self) -> list[str]:
        return options([("--tls-cert", self.cert), ("--tls-key", self.key),
                        ("--tls-ca", self.ca)])


@dataclass(frozen=True)
class BrainArgs:
    """How to start one brain. ``extra``: flags no field names, appended last, so
    they win over the fields (typer keeps the last of a repeated flag)."""

    port: int
    data_dir: Path
    host: str | None = None
    s3_port: int | None = None
    replicas: int | None = None
    chunk_size: str | None = None
    write_quorum: int | None = None
    database_url: str | None = None
    heartbeat_interval: float | None = None
    suspect_after: float | None = None
    straggler_wait: float | None = None
    offline_after: float | None = None
    gc_interval: float | None = None
    auto_repair: bool | None = None
    auth: bool | None = None
    advertise_url: str | None = None
    new_admin_key: bool = False
    tls: Tls | None = None
    extra: Sequence[str] = ()

    def argv(self) -> list[str]:
        """``brain ...``, without the interpreter (``tossit_command`` adds it)."""
        return [
            "brain",
            *options([
                ("--host", self.host),
                ("--port", self.port),
                ("--s3-port", self.s3_port),
                ("--data-dir", self.data_dir),
                ("--replicas", self.replicas),
                ("--chunk-size", self.chunk_size),
                ("--write-quorum", self.write_quorum),
                ("--database-url", self.database_url),
                ("--heartbeat-interval", self.heartbeat_interval),
                ("--suspect-after", self.suspect_after),
                ("--straggler-wait", self.straggler_wait),
                ("--offline-after", self.offline_after),
                ("--gc-interval", self.gc_interval),
                ("--advertise-url", self.advertise_url),
            ]),
            *switch("auto-repair", self.auto_repair),
            *switch("auth", self.auth),
            *(["--new-admin-key"] if self.new_admin_key else []),
            *(self.tls.argv() if self.tls else []),
            *self.extra,
        ]


@dataclass(frozen=True)
class NodeArgs:
    """How to start one node. It finds its cluster by ``brain`` (URLs, comma-separated)
    and ``join_secret_file``, or by a ``join`` token that carries both, or by neither
    (a node that joined before keeps what it learnt). ``extra`` as for the brain."""

    port: int
    data_dir: Path
    name: str
    host: str | None = None
    brain: str | None = None
    join_secret_file: Path | None = None
    join: str | None = None
    capacity: str | None = None
    zone: str | None = None
    heartbeat_interval: float | None = None
    tls: Tls | None = None
    extra: Sequence[str] = ()

    def argv(self) -> list[str]:
        """``node ...``, without the interpreter (``tossit_command`` adds it)."""
        return [
            "node",
            *options([
                ("--host", self.host),
                ("--port", self.port),
                ("--data-dir", self.data_dir),
                ("--name", self.name),
                ("--brain", self.brain),
                ("--join-secret-file", self.join_secret_file),
                ("--join", self.join),
                ("--capacity", self.capacity),
                ("--zone", self.zone),
                ("--heartbeat-interval", self.heartbeat_interval),
            ]),
            *(self.tls.argv() if self.tls else []),
            *self.extra,
        ]
