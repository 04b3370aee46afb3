"""The server commands' options come from the settings classes: every setting is
a flag with the field's help, and a flag given reaches the settings."""

from __future__ import annotations

from pathlib import Path

import typer

from tossit.cli import app
from tossit.config import BrainSettings, NodeSettings


def _command(name: str) -> object:
    group = typer.main.get_command(app)
    return group.commands[name]  # type: ignore[attr-defined]


def test_every_setting_is_an_option_with_its_help() -> None:
    for name, cls in (("brain", BrainSettings), ("node", NodeSettings)):
        cmd = _command(name)
        options = {p.name: p for p in cmd.params}  # type: ignore[attr-defined]
        missing = [f for f in cls.model_fields if f not in options]
        assert not missing, f"tossit {name}: no option for {missing}"
        for field, info in cls.model_fields.items():
            assert info.description and info.description in (options[field].help or ""), field


def test_flags_reach_the_settings_and_unset_ones_stay_unset() -> None:
    cmd = _command("brain")
    ctx = cmd.make_context("brain", [  # type: ignore[attr-defined]
        "--dead-after", "30", "--chunk-size", "8MiB", "--no-auth", "--replicas", "2",
        "--data-dir", "/tmp/x"])
    flags = {k: v for k, v in ctx.params.items() if k not in ("config", "new_admin_key")}
    assert {k: v for k, v in flags.items() if v is not None} == {
        "dead_after": 30.0, "chunk_size": "8MiB", "auth": False, "replicas": 2,
        "data_dir": Path("/tmp/x")}
    settings = BrainSettings.load(None, **flags)
    assert (settings.dead_after, settings.chunk_size, settings.auth, settings.replicas) == (
        30.0, 8 * 2**20, False, 2)
    assert settings.gc_interval == BrainSettings.model_fields["gc_interval"].default
    node = _command("node").make_context(  # type: ignore[attr-defined]
        "node", ["--scrub-rate", "0", "--zone", "rack-2", "--join", "tossit-join-1.x"])
    assert (node.params["scrub_rate"], node.params["zone"], node.params["join"]) == (
        "0", "rack-2", "tossit-join-1.x")
