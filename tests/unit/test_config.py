"""Settings: sizes, capacity limits, validation messages and source priority."""

from __future__ import annotations

from pathlib import Path

import pytest

from tossit.config import (
    DEFAULT_CHUNK_SIZE,
    BrainSettings,
    ClientSettings,
    ConfigError,
    GiB,
    KiB,
    MiB,
    NodeSettings,
    TiB,
    capacity_limit,
    format_size,
    parse_size,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TOSSIT_* variable of the developer's shell leaks into these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("TOSSIT_"):
            monkeypatch.delenv(name)
    # load() keeps the config file on the class; start every test without one.
    for cls in (BrainSettings, NodeSettings, ClientSettings):
        monkeypatch.setattr(cls, "config_file", None)


# -- sizes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4096", 4096),
        ("0", 0),
        ("1b", 1),
        ("1B", 1),
        ("8MiB", 8 * MiB),
        ("8 MiB", 8 * MiB),
        ("8mib", 8 * MiB),
        ("8M", 8 * MiB),
        ("8m", 8 * MiB),
        ("8MB", 8_000_000),
        ("1k", KiB),
        ("1KiB", KiB),
        ("1kb", 1000),
        ("500GB", 500 * 1000**3),
        ("2GiB", 2 * GiB),
        ("1.5GiB", int(1.5 * GiB)),
        ("3TiB", 3 * TiB),
        ("1tb", 1000**4),
        ("  64 KiB  ", 64 * KiB),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_size_numbers() -> None:
    assert parse_size(123) == 123
    assert parse_size(12.9) == 12
    with pytest.raises(ValueError, match="negative"):
        parse_size(-1)
    with pytest.raises(ValueError):
        parse_size(True)


@pytest.mark.parametrize("text", ["", "MiB", "8 PiB", "eight", "-5", "8MiBs", "1e3", "8 Mi B",
                                  "1,000"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (8 * MiB, "8.0 MiB"),
        (int(4.7 * GiB), "4.7 GiB"),
        (3 * TiB, "3.0 TiB"),
        (5000 * TiB, "5000.0 TiB"),
    ],
)
def test_format_size(n: int, text: str) -> None:
    assert format_size(n) == text


def test_format_parse_round_trip() -> None:
    for n in (KiB, 3 * MiB, 7 * GiB, 2 * TiB):
        assert parse_size(format_size(n).replace(" ", "")) == n


# -- capacity ------------------------------------------------------------------


def test_capacity_limit() -> None:
    assert capacity_limit("50%", 1000) == 500
    assert capacity_limit(" 100% ", 1000) == 1000
    assert capacity_limit("12.5%", 1000) == 125
    assert capacity_limit("1MiB", 10) == MiB  # a fixed size ignores the disk size
    assert capacity_limit("500GB", 1) == 500 * 1000**3


@pytest.mark.parametrize("spec", ["0%", "101%", "-5%", "abc%", "%", "0", "0MiB", "lots"])
def test_capacity_limit_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        capacity_limit(spec, 1000)


# -- validation ------------------------------------------------------------------


def test_brain_defaults() -> None:
    s = BrainSettings.load()
    assert s.port == 8000
    assert s.replicas == 3
    assert s.write_quorum == 2 and s.quorum == 2
    assert s.chunk_size == DEFAULT_CHUNK_SIZE
    assert s.resolved_database_url().startswith("sqlite+aiosqlite:///")
    assert s.resolved_database_url().endswith("tossit.db")


@pytest.mark.parametrize(("replicas", "quorum"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
def test_default_write_quorum_is_a_majority(replicas: int, quorum: int) -> None:
    assert BrainSettings.load(replicas=replicas).write_quorum == quorum


def test_explicit_write_quorum() -> None:
    s = BrainSettings.load(replicas=3, write_quorum=3)
    assert s.quorum == 3
    assert BrainSettings.load(replicas=5, write_quorum=1).quorum == 1


def _error(cls: type, **flags: object) -> str:
    with pytest.raises(ConfigError) as info:
        cls.load(**flags)  # type: ignore[attr-defined]
    msg = str(info.value)
    assert "Traceback" not in msg
    return msg


def test_bad_port_message() -> None:
    msg = _error(BrainSettings, port=70000)
    assert msg.startswith("invalid configuration:")
    assert "port" in msg and "1 to 65535" in msg and "70000" in msg
    msg = _error(NodeSettings, port=0)
    assert "port" in msg and "1 to 65535" in msg


def test_port_not_a_number() -> None:
    msg = _error(BrainSettings, port="eighty")
    assert "port" in msg and "eighty" in msg


def test_write_quorum_above_replicas() -> None:
    msg = _error(BrainSettings, replicas=2, write_quorum=3)
    assert "write_quorum (3) cannot exceed replicas (2)" in msg


@pytest.mark.parametrize("replicas", [0, 6])
def test_replicas_out_of_range(replicas: int) -> None:
    msg = _error(BrainSettings, replicas=replicas)
    assert "replicas" in msg


@pytest.mark.parametrize("size", ["1KiB", "4096", "128MiB"])
def test_chunk_size_bounds(size: str) -> None:
    msg = _error(BrainSettings, chunk_size=size)
    assert "chunk_size" in msg and "between 64.0 KiB and 64.0 MiB" in msg


def test_chunk_size_garbage() -> None:
    msg = _error(BrainSettings, chunk_size="huge")
    assert "chunk_size" in msg and "not a size" in msg


def test_chunk_size_accepts_units() -> None:
    assert BrainSettings.load(chunk_size="4MiB").chunk_size == 4 * MiB
    assert BrainSettings.load(chunk_size=64 * KiB).chunk_size == 64 * KiB


def test_offline_before_suspect() -> None:
    msg = _error(BrainSettings, suspect_after=10, offline_after=5)
    assert "offline_after" in msg


@pytest.mark.parametrize("zone", ["", "rack 1", "a/b", "x" * 65, "zone\n"])
def test_bad_zone(zone: str) -> None:
    msg = _error(NodeSettings, zone=zone)
    assert "zone" in msg and "letters, digits" in msg


def test_good_zones() -> None:
    for zone in ("rack-1", "eu-west:a", "Z_9.b", "x" * 64):
        assert NodeSettings.load(zone=zone).zone == zone


@pytest.mark.parametrize("url", ["localhost:8000", "ftp://host", "http://", "http:// host",
                                 "brain"])
def test_bad_brain_url(url: str) -> None:
    msg = _error(NodeSettings, brain=url)
    assert "brain" in msg and "http://HOST:PORT" in msg


def test_brain_url_trailing_slash_stripped() -> None:
    assert NodeSettings.load(brain="http://10.0.0.1:8000/").brain == "http://10.0.0.1:8000"
    assert ClientSettings.load(brain_url="https://b:8000/").brain_url == "https://b:8000"


def test_bad_capacity() -> None:
    msg = _error(NodeSettings, capacity="150%")
    assert "capacity" in msg
    msg = _error(NodeSettings, capacity="plenty")
    assert "capacity" in msg


def test_several_errors_reported_together() -> None:
    msg = _error(BrainSettings, port=70000, replicas=9)
    assert "port" in msg and "replicas" in msg


def test_unknown_setting_is_refused() -> None:
    msg = _error(BrainSettings, replicaz=3)
    assert "replicaz" in msg


def test_node_public_url() -> None:
    assert NodeSettings.load(port=8082).public_url() == "http://127.0.0.1:8082"
    assert NodeSettings.load(host="::1", port=9).public_url() == "http://[::1]:9"
    s = NodeSettings.load(advertise_url="http://nas.local:8081/")
    assert s.public_url() == "http://nas.local:8081"
    assert NodeSettings.load(name="n1").node_name() == "n1"


# -- sources: flags > env > TOML > defaults -------------------------------------


def test_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOSSIT_REPLICAS", "5")
    monkeypatch.setenv("TOSSIT_CHUNK_SIZE", "16MiB")
    monkeypatch.setenv("TOSSIT_NODE_PORT", "9091")
    monkeypatch.setenv("TOSSIT_NODE_ZONE", "rack-2")
    b = BrainSettings.load()
    assert b.replicas == 5 and b.write_quorum == 3 and b.chunk_size == 16 * MiB
    assert b.port == 8000  # TOSSIT_NODE_PORT is the node's, not the brain's
    n = NodeSettings.load()
    assert n.port == 9091 and n.zone == "rack-2"


def test_bad_env_var_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOSSIT_NODE_PORT", "70000")
    msg = _error(NodeSettings)
    assert "port" in msg and "1 to 65535" in msg


def _toml(tmp_path: Path) -> Path:
    path = tmp_path / "tossit.toml"
    path.write_text(
        '[brain]\nport = 8100\nreplicas = 2\nchunk_size = "4MiB"\n'
        'database_url = "postgresql+asyncpg://db/tossit"\n\n'
        '[node]\nport = 9000\nzone = "toml-zone"\ncapacity = "10GiB"\n'
        'brain = "http://brain.lan:8100"\n'
    )
    return path


def test_toml_tables(tmp_path: Path) -> None:
    path = _toml(tmp_path)
    b = BrainSettings.load(path)
    assert (b.port, b.replicas, b.chunk_size) == (8100, 2, 4 * MiB)
    assert b.write_quorum == 2
    assert b.resolved_database_url() == "postgresql+asyncpg://db/tossit"
    n = NodeSettings.load(path)
    assert (n.port, n.zone, n.capacity, n.brain) == (9000, "toml-zone", "10GiB",
                                                     "http://brain.lan:8100")


def test_toml_via_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOSSIT_CONFIG", str(_toml(tmp_path)))
    assert BrainSettings.load().port == 8100
    assert NodeSettings.load().port == 9000


def test_flags_over_env_over_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _toml(tmp_path)
    monkeypatch.setenv("TOSSIT_REPLICAS", "4")
    monkeypatch.setenv("TOSSIT_NODE_ZONE", "env-zone")
    b = BrainSettings.load(path)
    assert b.replicas == 4  # env beats TOML
    assert b.port == 8100  # TOML beats the default
    b = BrainSettings.load(path, replicas=5, port=None)  # None = flag not given
    assert b.replicas == 5 and b.port == 8100  # flag beats env
    n = NodeSettings.load(path)
    assert n.zone == "env-zone" and n.port == 9000
    n = NodeSettings.load(path, zone="flag-zone", port=9999)
    assert n.zone == "flag-zone" and n.port == 9999


def test_toml_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        BrainSettings.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[brain\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        BrainSettings.load(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('brain = "not a table"\n')
    with pytest.raises(ConfigError, match=r"\[brain\] must be a table"):
        BrainSettings.load(wrong)
    invalid = tmp_path / "invalid.toml"
    invalid.write_text("[brain]\nport = 70000\n")
    msg = _error(BrainSettings, config_file=invalid)
    assert "port" in msg and "1 to 65535" in msg


def test_toml_missing_table_uses_defaults(tmp_path: Path) -> None:
    path = tmp_path / "only-node.toml"
    path.write_text("[node]\nport = 9001\n")
    assert BrainSettings.load(path).port == 8000
    assert NodeSettings.load(path).port == 9001


def test_durations_read_like_a_person_would_say_them() -> None:
    from tossit.config import format_duration

    assert [format_duration(s) for s in (0, 0.42, 9.96, 42.4, 60, 130, 580, 700, 3600, 3900,
                                         200_000)] == [
        "0 s", "0.4 s", "10 s", "42 s", "1 min", "2 min 10 s", "9 min 40 s", "11 min", "1 h",
        "1 h 5 min", "2 d 7 h"]


def test_the_brain_id_survives_restarts_and_a_torn_file(tmp_path: Path) -> None:
    """brain.json is written atomically and fsynced; an unreadable one (a crash on
    a filesystem without ordering) gives a new id instead of a brain that will
    not start."""
    from tossit.brain.brains import brain_id

    first = brain_id(tmp_path)
    assert len(first) == 16 and brain_id(tmp_path) == first
    (tmp_path / "brain.json").write_text("")  # torn
    second = brain_id(tmp_path)
    assert second != first and brain_id(tmp_path) == second
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
