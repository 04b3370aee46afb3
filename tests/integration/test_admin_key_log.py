"""The first admin key's secret reaches a log only when asked (show_admin_key):
the Docker image's brain has no terminal, and its log is where a user finds it."""

from __future__ import annotations

from pathlib import Path

from cluster import Cluster


def test_admin_key_in_the_log_only_when_asked_and_only_when_created(tmp_path: Path) -> None:
    cl = Cluster(tmp_path, nodes=0)
    try:
        cl.start_brain()  # stdout is a file, not a terminal: the secret stays out
        first = cl.admin_key
        cl.stop_brain()
        log = cl.log("brain")
        assert "created admin key" in log
        assert first not in log

        # Asked to show it (the compose file does): a new key is printed, once.
        cl.brain_env["TOSSIT_SHOW_ADMIN_KEY"] = "true"
        cl.brain_args = ["--new-admin-key"]
        seen = len(log)
        cl.start_brain()
        second = cl.admin_key
        cl.stop_brain()
        log = cl.log("brain")
        assert second != first
        assert log[seen:].count(f"secret    {second}") == 1
        assert first not in log

        # A restart creates no key, so it prints none.
        cl.brain_args = []
        seen = len(log)
        cl.start_brain()
        assert cl.admin_key == second
        cl.stop_brain()
        assert "secret    " not in cl.log("brain")[seen:]
    finally:
        cl.stop()
