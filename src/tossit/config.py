"""Configuration for every TossIt process.

Settings come, highest priority first, from command-line flags, ``TOSSIT_*``
environment variables, a TOML file (``--config`` or ``TOSSIT_CONFIG``, one table
per role: ``[brain]``, ``[node]``, ``[client]``) and the defaults below. They are
validated when a process starts so that a typo fails loudly with a sentence a
user can act on, instead of surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

_UNITS = {
    "": 1, "b": 1,
    "k": KiB, "kb": 1000, "kib": KiB,
    "m": MiB, "mb": 1000**2, "mib": MiB,
    "g": GiB, "gb": 1000**3, "gib": GiB,
    "t": TiB, "tb": 1000**4, "tib": TiB,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$", re.ASCII)

DEFAULT_CHUNK_SIZE = 4 * MiB  # chosen by measurement: docs/benchmarks.md, "Chunk size"
MIN_CHUNK_SIZE = 64 * KiB
MAX_CHUNK_SIZE = 64 * MiB


class ConfigError(ValueError):
    """A setting is wrong; the message says which one and how to fix it."""


def parse_size(value: str | int | float) -> int:
    """Parse ``8MiB``, ``500 GB``, ``4096`` into bytes (binary units for ``K/M/G``)."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value}")
        return int(value)
    m = _SIZE_RE.match(value)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {value!r} (examples: 8MiB, 500GB, 4096)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_rate(value: str | int | float) -> int:
    """A rate in bytes/s: ``200MiB/s``, ``200MiB`` or a plain number."""
    if isinstance(value, str) and value.strip().lower().endswith("/s"):
        value = value.strip()[:-2]
    return parse_size(value)


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdwy]?)\s*$", re.ASCII)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def parse_duration(value: str) -> float:
    """Parse ``90s``, ``15m``, ``12h``, ``30d``, ``2w``, ``1y`` (or plain seconds)."""
    m = _DURATION_RE.match(value.lower())
    if not m:
        raise ValueError(f"not a duration: {value!r} (examples: 12h, 30d, 1y)")
    seconds = float(m.group(1)) * _SECONDS[m.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def format_size(n: float) -> str:
    """Human-readable binary size, e.g. ``4.7 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """Human-readable duration, e.g. ``0.4 s``, ``42 s``, ``2 min 10 s``, ``1 h 5 min``
    (the same rules as the dashboard's ``duration`` in format.js)."""
    if 0 < seconds < 9.95:
        return f"{seconds:.1f} s"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    m = s // 60
    if m < 60:
        return f"{m} min" if m >= 10 or not s % 60 else f"{m} min {s % 60} s"
    h = m // 60
    if h < 48:
        return f"{h} h {m % 60} min" if m % 60 else f"{h} h"
    return f"{h // 24} d {h % 24} h"


def plural(n: int, word: str, words: str | None = None,
           verb: tuple[str, str] | None = None) -> str:
    """``1 chunk``, ``2 chunks``, ``1,200 copies`` (with ``words`` for irregular ones);
    ``verb=("has", "have")`` adds the verb that agrees: ``1 chunk has``."""
    said = f"{n:,} {word if n == 1 else (words or word + 's')}"
    return f"{said} {verb[0] if n == 1 else verb[1]}" if verb else said


class _TomlTable(PydanticBaseSettingsSource):
    """Reads one table (``[brain]``, ``[node]``...) of the TOML config file."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None, table: str):
        super().__init__(settings_cls)
        self.data: dict[str, Any] = {}
        if path is None:
            return
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        section = doc.get(table, {})
        if not isinstance(section, dict):
            raise ConfigError(f"config file {path}: [{table}] must be a table")
        self.data = section

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


class _Settings(BaseSettings):
    """Shared plumbing: TOML table + env prefix + flags."""

    toml_table: ClassVar[str] = ""
    config_file: ClassVar[Path | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = cls.config_file or (
            Path(os.environ["TOSSIT_CONFIG"]) if os.environ.get("TOSSIT_CONFIG") else None
        )
        return (init_settings, env_settings, _TomlTable(settings_cls, path, cls.toml_table))

    @classmethod
    def load(cls, config_file: Path | None = None, **flags: Any) -> Any:
        """Build settings from flags (None means "not given") and turn pydantic's
        validation report into a ConfigError a person can read."""
        given = {k: v for k, v in flags.items() if v is not None}
        cls.config_file = config_file
        try:
            return cls(**given)
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "settings"
                msg = err["msg"].removeprefix("Value error, ")
                lines.append(f"  {where}: {msg}{_shown_input(where, err.get('input'))}")
            raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None
        finally:
            cls.config_file = None  # a later direct construction must not reuse it


_SECRET_WORDS = ("secret", "key", "password", "database_url", "token", "join")


def _shown_input(where: str, value: Any) -> str:
    """The offending value for an error message, unless it may be a secret (or a
    whole-settings dict, which would contain every secret given)."""
    if isinstance(value, dict) or any(w in where.lower() for w in _SECRET_WORDS):
        return ""
    return f" (got {value!r})"


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _check_log_level(v: str) -> str:
    if v.lower() not in LOG_LEVELS:
        raise ValueError(f"log_level is one of {', '.join(LOG_LEVELS)}")
    return v.lower()


def _check_port(v: int) -> int:
    if not 1 <= v <= 65535:
        raise ValueError("a port is a number from 1 to 65535")
    return v


def _check_file(v: Path | None) -> Path | None:
    if v is not None and not v.is_file():
        raise ValueError(f"{v} does not exist or is not a file")
    return v


class _ServerSettings(_Settings):
    """What every server process has: where it listens, how much it logs, and
    its TLS certificate (HTTPS when both ``tls_cert`` and ``tls_key`` are set)."""

    host: str = Field(default="127.0.0.1", description="address to bind (0.0.0.0: every "
                      "interface)")
    port: int = Field(default=8000, description="port")
    log_level: str = Field(default="info", description="critical, error, warning, info or "
                           "debug")
    api_docs: bool = Field(
        default=True, description="serve the API reference at /docs (from the package, "
        "under a content security policy); false: no /docs page")
    tls_cert: Path | None = Field(default=None, description="PEM certificate (chain)")
    tls_key: Path | None = Field(default=None, description="PEM private key")
    tls_ca: Path | None = Field(
        default=None, description="PEM CA bundle to verify the other servers' certificates "
        "[the system's trust store]")
    max_connections: int = Field(
        default=4096, ge=16, le=1_000_000,
        description="open client connections in all (at most the open-file limit less "
        "128); past it a new one closes the oldest idle one")
    max_connections_per_client: int = Field(
        default=256, ge=1, le=1_000_000,
        description="open connections from one client address; past it a new one closes "
        "that address's oldest idle one, so idle sockets cannot lock others out")

    @field_validator("tls_cert", "tls_key", "tls_ca")
    @classmethod
    def _tls_file(cls, v: Path | None) -> Path | None:
        return _check_file(v)

    @model_validator(mode="after")
    def _tls_pair(self) -> _ServerSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        return self

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    def public_url(self) -> str:
        """Where the other processes reach this server: ``advertise_url``, else
        built from the address it listens on."""
        advertised: str | None = getattr(self, "advertise_url", None)
        if advertised:
            return advertised
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}"

    @field_validator("port")
    @classmethod
    def _port(cls, v: int) -> int:
        return _check_port(v)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, v: str) -> str:
        return _check_log_level(v)


class BrainSettings(_ServerSettings):
    """The coordinator: metadata, REST API, background loops."""

    model_config = SettingsConfigDict(env_prefix="TOSSIT_", extra="forbid")
    toml_table: ClassVar[str] = "brain"

    port: int = Field(default=8000, description="port")
    s3_port: int = Field(default=9000, description="S3 API port, on the address of host "
                         "(0: no S3 API)")
    s3_domain: str = Field(
        default="", max_length=253, description="domain of virtual-host style S3 requests "
        "(BUCKET.DOMAIN as Host selects the bucket); empty: path style only")
    data_dir: Path = Field(default=Path("data/brain"), description="metadata folder (the "
                           "SQLite database, the secrets, admin.key)")
    advertise_url: str | None = Field(
        default=None, description="URL the other brains use to reach this one, with "
        "several brains on PostgreSQL [http://HOST:PORT]")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default: SQLite in data_dir"
    )
    replicas: int = Field(default=3, ge=1, le=5, description="copies of each chunk, 1-5")
    write_quorum: int | None = Field(
        default=None, ge=1, le=5, description="copies fsynced before an upload is "
        "acknowledged [a majority of replicas]")
    chunk_size: int = Field(default=DEFAULT_CHUNK_SIZE, description="chunk size, e.g. 4MiB")
    heartbeat_interval: float = Field(default=2.0, gt=0, le=60,
                                      description="seconds between a node's heartbeats")
    suspect_after: float = Field(default=6.0, gt=0,
        description="seconds of silence before a node is suspect")
    offline_after: float = Field(default=10.0, gt=0,
        description="seconds of silence before a node is offline (its copies still count)")
    high_water: float = Field(default=0.95, gt=0, le=1,
        description="the share of a node's capacity writes may fill (0-1)")
    gc_interval: float = Field(default=60.0, gt=0,
        description="seconds between garbage-collection sweeps of the nodes")
    gc_grace: float = Field(default=3600.0, ge=0,
        description="seconds before an unreferenced chunk found on a node is deleted")
    gc_sweep_max: int = Field(
        default=100_000, ge=1, description="stray copies one orphan sweep deletes at most "
        "(more: an event, and the rest waits for the next sweep)")
    intent_keep: float = Field(
        default=7 * 86400.0, gt=0, description="seconds the brain remembers a chunk it "
        "wrote for an upload that did not commit (a node away longer keeps such copies)")
    trash_keep: float = Field(
        default=7 * 86400.0, ge=0, description="seconds a deleted or overwritten file "
        "stays in the trash (restorable, its bytes still stored) before it is purged "
        "(0: no trash, a delete frees the space at once)")
    multipart_keep: float = Field(
        default=7 * 86400.0, gt=0, description="seconds an S3 multipart upload may stay "
        "incomplete before the leading brain aborts it and frees its parts' chunks")
    upload_parallel_chunks: int = Field(default=4, ge=1, le=32,
        description="chunks of one upload on their way to the nodes at once")
    upload_buffer: int = Field(
        default=64 * MiB, description="upload data all uploads together may hold in memory "
        "(chunks being read and on their way to the nodes)"
    )
    read_ahead_chunks: int = Field(default=2, ge=1, le=16,
        description="chunks a download fetches ahead of the one it sends")
    node_timeout: float = Field(default=60.0, gt=0,
        description="seconds a request to a node may take")
    straggler_wait: float = Field(default=1.0, ge=0, description="once W nodes hold a "
        "chunk, seconds the other copies may still take (at least; or 4 times what the "
        "first W took) before the upload goes on without them and the repairer makes "
        "them: a paused node does not hold every upload for node_timeout; a read "
        "whose copy is later than that (or 4 times what that node usually takes) goes "
        "on to the next copy")
    auth: bool = Field(
        default=True, description="require API keys and signed node requests; false is "
        "for benchmarks on loopback only")
    dead_after: float = Field(
        default=600.0, gt=0, description="seconds without a heartbeat before a node's "
        "copies stop counting and are re-replicated elsewhere")
    repair_interval: float = Field(default=60.0, gt=0, description="seconds between "
                                   "repair passes when nothing wakes the repairer")
    auto_repair: bool = Field(default=True, description="repair and rebalance in the "
                              "background (off: only POST /api/admin/repair does)")
    repair_concurrency: int = Field(default=4, ge=1, le=64,
                                    description="chunk copies in flight, cluster-wide")
    rebalance_batch: int = Field(default=64, ge=0, le=100_000,
                                 description="rebalancing moves per pass (0: never move)")
    snapshot_interval: float = Field(
        default=900.0, ge=0, description="seconds between metadata snapshots stored on "
        "the nodes, taken only when something changed (0: none)")
    wrong_keys_free: int = Field(
        default=5, ge=0, le=1_000_000,
        description="wrong API keys one client address may send within a minute before "
        "each further one is answered late, with 429 and a doubling Retry-After "
        "(good keys always pass)")
    snapshot_keep: int = Field(default=4, ge=1, le=1000,
                               description="metadata snapshots kept on the nodes")
    recovery_hold: float = Field(
        default=7 * 86400.0, ge=0, description="seconds after a 'tossit recover' during "
        "which chunks and packs the rebuilt metadata does not know are kept on the nodes "
        "(a node that was away may still bring the manifests that name them)")
    events_max_age: float = Field(
        default=30 * 86400.0, gt=0, description="seconds an event is kept after it last "
        "happened (the brain prunes older ones every hour)")
    events_max_rows: int = Field(
        default=100_000, ge=100, le=100_000_000,
        description="events kept at most (the newest; older ones are pruned)")
    show_admin_key: bool = Field(
        default=False, description="print a newly created admin key's secret on stdout "
        "even when it is not a terminal, so a container's log shows it once, on the first "
        "start (it is always shown on a terminal and always written to admin.key)")
    trusted_proxies: str = Field(
        default="127.0.0.1", max_length=2000,
        description="comma-separated addresses or networks (CIDR) of reverse proxies "
        "whose X-Forwarded-Proto/-For headers are believed ('' for none): behind a TLS "
        "proxy this makes the dashboard's session cookie Secure")

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, v: str) -> str:
        import ipaddress

        items = [x.strip() for x in v.split(",") if x.strip()]
        for item in items:
            if item == "*":
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {item!r} is not an IP address or "
                                 "network (CIDR) or '*'") from None
        return ",".join(items)

    @field_validator("s3_port")
    @classmethod
    def _s3_port(cls, v: int) -> int:
        return v if v == 0 else _check_port(v)

    @field_validator("s3_domain")
    @classmethod
    def _s3_domain(cls, v: str) -> str:
        v = v.strip().strip(".").lower()
        if v and not re.match(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$",
                              v):
            raise ValueError(f"s3_domain: {v!r} is not a domain name like s3.example.lan")
        return v

    @field_validator("advertise_url")
    @classmethod
    def _advertise(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+$", v.rstrip("/")):
            raise ValueError("must be a URL like http://HOST:PORT")
        return v.rstrip("/") if v else v

    @field_validator("upload_buffer", mode="before")
    @classmethod
    def _upload_buffer(cls, v: Any) -> int:
        n = parse_size(v)
        if n < MIN_CHUNK_SIZE:
            raise ValueError(f"upload_buffer must be at least {format_size(MIN_CHUNK_SIZE)}")
        return n

    @field_validator("chunk_size", mode="before")
    @classmethod
    def _chunk_size(cls, v: Any) -> int:
        n = parse_size(v)
        if not MIN_CHUNK_SIZE <= n <= MAX_CHUNK_SIZE:
            raise ValueError(
                f"chunk_size must be between {format_size(MIN_CHUNK_SIZE)} "
                f"and {format_size(MAX_CHUNK_SIZE)}"
            )
        return n

    @model_validator(mode="after")
    def _quorum(self) -> BrainSettings:
        if self.write_quorum is None:
            self.write_quorum = self.replicas // 2 + 1
        if self.write_quorum > self.replicas:
            raise ValueError(
                f"write_quorum ({self.write_quorum}) cannot exceed replicas ({self.replicas})"
            )
        if self.offline_after < self.suspect_after:
            raise ValueError("offline_after must be at least suspect_after")
        if self.dead_after < self.offline_after:
            raise ValueError("dead_after must be at least offline_after")
        if self.s3_port == self.port:
            raise ValueError(f"s3_port and port are both {self.port}: the S3 API needs a "
                             "port of its own (or s3_port = 0 for none)")
        from tossit.auth.binding import is_loopback

        if not self.auth and not is_loopback(self.host):
            raise ValueError(
                f"refusing to listen on {self.host} with auth = false: anyone on the network "
                "could read, change and delete every file. Turn auth on (the default) or bind "
                "to 127.0.0.1")
        return self

    @property
    def quorum(self) -> int:
        assert self.write_quorum is not None
        return self.write_quorum

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'tossit.db').resolve()}"


class NodeSettings(_ServerSettings):
    """A storage node: holds chunks on one local folder."""

    # populate_by_name: ``join`` is read from TOSSIT_JOIN (or TOSSIT_NODE_JOIN), and
    # still taken by its name from flags and the TOML file.
    model_config = SettingsConfigDict(env_prefix="TOSSIT_NODE_", extra="forbid",
                                      populate_by_name=True)
    toml_table: ClassVar[str] = "node"

    port: int = Field(default=8081, description="port")
    data_dir: Path = Field(default=Path("data/node"), description="chunk folder")
    brain: str = Field(default="http://127.0.0.1:8000", description="brain URL, or several "
                       "separated by commas (brains sharing PostgreSQL)")
    name: str | None = Field(default=None, description="display name [HOST-PORT]")
    zone: str = Field(default="default", description="failure domain label: copies of a "
                      "chunk go to distinct zones first")
    capacity: str = Field(
        default="50%",
        description="storage limit: a percentage of the disk (50%) or a size (500GiB)",
    )
    advertise_url: str | None = Field(
        default=None, description="URL the brain should use to reach this node "
        "[http://HOST:PORT]")
    heartbeat_interval: float = Field(
        default=2.0, gt=0, le=60, description="seconds between heartbeats (the brain's "
        "answer at registration sets it)")
    repair_bandwidth: int = Field(
        default=64 * MiB, description="bytes/s this node fetches for repairs and moves "
        "(0: unlimited)")
    # 1 TiB a day needs 12.7 MB/s sustained; 32 MiB/s gets through it in ~9 h, a
    # small share of one disk's bandwidth, so copies nobody reads are checked daily.
    scrub_rate: int = Field(
        default=32 * MiB, description="bytes/s the background scrubber re-hashes (0: off; "
        "changeable at run time: tossit scrub rate)")
    scrub_interval: float = Field(
        default=86400.0, ge=0, description="seconds between the starts of two full "
        "scrub passes (a pass that takes longer is followed by the next at once)")

    @field_validator("repair_bandwidth", "scrub_rate", mode="before")
    @classmethod
    def _rate(cls, v: Any) -> int:
        return parse_rate(v)

    join_secret: SecretStr | None = Field(
        default=None, description="the cluster secret (brain data dir: cluster.secret)")
    adopt_cluster: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{16,64}$",
        description="the id of a cluster to join even though this node joined another "
        "one before (the brain's refusal names it); its chunks are then unknown to that "
        "brain, which keeps them but never deletes them")
    join_secret_file: Path | None = Field(
        default=None, description="a file holding the cluster secret")
    join: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("tossit_join", "tossit_node_join"),
        description="a join token (tossit join-token create): the node obtains the "
        "cluster secret with it, and the brain URLs and CA from it (TOSSIT_JOIN)")

    @field_validator("join_secret_file")
    @classmethod
    def _secret_file(cls, v: Path | None) -> Path | None:
        return _check_file(v)

    @field_validator("advertise_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be a URL like http://HOST:PORT")
        return v.rstrip("/") if v else v

    @field_validator("brain")
    @classmethod
    def _brains(cls, v: str) -> str:
        return ",".join(brain_urls(v))

    def brain_urls(self) -> list[str]:
        """The brains to talk to, in order (several on PostgreSQL: any of them)."""
        return brain_urls(self.brain)

    @field_validator("zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", v):
            raise ValueError("a zone is 1-64 letters, digits or . _ : -")
        return v

    @field_validator("capacity", mode="before")
    @classmethod
    def _capacity(cls, v: Any) -> str:
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)  # a plain byte count from TOML
        if not isinstance(v, str):
            raise ValueError("capacity is a percentage (50%) or a size (500GiB)")
        capacity_limit(v, disk_total=1)  # validates the syntax
        return v

    def node_name(self) -> str:
        return self.name or f"{socket.gethostname()}-{self.port}"



def brain_urls(value: str) -> list[str]:
    """``http://a:8000,http://b:8000`` -> the URLs (each checked)."""
    urls = [u.strip().rstrip("/") for u in value.split(",") if u.strip()]
    if not urls:
        raise ValueError("give at least one brain URL")
    for u in urls:
        if not re.match(r"^https?://[^/\s,]+$", u):
            raise ValueError(f"{u!r} is not a URL like http://HOST:PORT (several: "
                             "separate them with commas)")
    return urls


def capacity_limit(spec: str, disk_total: int) -> int:
    """Bytes a node may fill: ``"50%"`` of ``disk_total`` or a fixed size."""
    spec = spec.strip()
    if spec.endswith("%"):
        try:
            pct = float(spec[:-1])
        except ValueError:
            raise ValueError(f"not a percentage: {spec!r}") from None
        if not 0 < pct <= 100:
            raise ValueError("a capacity percentage is between 0 and 100")
        return int(disk_total * pct / 100)
    n = parse_size(spec)
    if n <= 0:
        raise ValueError("capacity must be positive")
    return n


LOCAL_ADMIN_KEY = Path("data/brain/admin.key")  # where `tossit up` keeps it by default


class ClientSettings(_Settings):
    """The CLI and Python SDK."""

    model_config = SettingsConfigDict(env_prefix="TOSSIT_", extra="ignore")
    toml_table: ClassVar[str] = "client"

    brain_url: str = "http://127.0.0.1:8000"
    timeout: float = 60.0
    key: SecretStr | None = Field(default=None, description="API key secret (TOSSIT_KEY)")
    key_file: Path | None = Field(
        default=None, description="file holding the API key secret (TOSSIT_KEY_FILE) "
        "[data/brain/admin.key when the brain is on this machine]")
    tls_ca: Path | None = Field(default=None, description="PEM CA bundle for an HTTPS brain")
    upload_parts_above: int = Field(
        default=64 * MiB, description="files larger than this are uploaded in parts, several "
        "at once, and resume after an interruption; smaller ones in one request")
    upload_part_size: int = Field(
        default=16 * MiB, description="bytes per part of a parted upload (at least 5MiB; "
        "raised for a file too big for 10,000 parts)")
    upload_parallel: int = Field(default=4, ge=1, le=64,
                                 description="parts of a parted upload sent at once")

    @field_validator("upload_parts_above", "upload_part_size", mode="before")
    @classmethod
    def _upload_size(cls, v: Any, info: ValidationInfo) -> int:
        n = parse_size(v)
        if info.field_name == "upload_part_size" and n < 5 * MiB:
            raise ValueError("upload_part_size must be at least 5MiB (the brain's smallest "
                             "part but the last)")
        return n

    @field_validator("key_file", "tls_ca")
    @classmethod
    def _file(cls, v: Path | None) -> Path | None:
        return _check_file(v)

    def api_key(self) -> str | None:
        """The key to send: ``key``, else ``key_file``, else (only for a brain on
        this machine) the admin key a local brain wrote on its first start."""
        from urllib.parse import urlsplit

        from tossit.auth.binding import is_loopback
        from tossit.auth.secretfile import SecretFileError, read_secret

        if self.key is not None:
            return self.key.get_secret_value().strip()
        path = self.key_file
        if path is None and all(is_loopback(urlsplit(u).hostname or "")
                                for u in brain_urls(self.brain_url)):
            path = LOCAL_ADMIN_KEY if LOCAL_ADMIN_KEY.is_file() else None
        if path is None:
            return None
        try:
            return read_secret(path)
        except SecretFileError as exc:
            raise ConfigError(f"cannot read the API key: {exc}") from None

    @field_validator("brain_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return ",".join(brain_urls(v))
