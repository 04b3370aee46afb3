"""One brain per metadata store: a second one refuses to start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

from cluster import Cluster
from tossit.serve import pick_free_port


def test_a_second_brain_on_the_same_metadata_refuses_to_start(
        make_cluster: Callable[..., Cluster], database_url: str | None) -> None:
    c = make_cluster(nodes=1, replicas=1, database_url=database_url)
    argv = c.brain_argv()
    argv[argv.index("--port") + 1] = str(pick_free_port())
    second = subprocess.run([sys.executable, "-m", "tossit", *argv], capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    out = second.stdout + second.stderr
    assert second.returncode != 0, out
    assert "another brain" in out and "is already running on" in out, out
    # The first one is untouched and still serves.
    data = os.urandom(10_000)
    up = c.upload("after.bin", data)
    assert c.download(up["id"]) == data
    # Once it has stopped, even killed, a brain starts again on the same metadata.
    c.stop_brain(signal.SIGKILL)
    c.start_brain()
    assert c.download(up["id"]) == data
