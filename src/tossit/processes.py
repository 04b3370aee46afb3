"""Brain and node processes on this machine: start them, wait for them, stop them.

One harness for the three launchers: ``tossit up`` (``tossit.localcluster``), the
integration tests (``tests/cluster.py``) and the benchmarks
(``bench/bench_cluster.py``). What to run comes from ``tossit.server_args``; how
each launcher names, orders and configures its children stays with it.

Every child writes to its own log file, which is what makes a failed start
explainable: when a child dies while a launcher waits for it, or the wait times
out, the error carries the end of the log instead of a bare "timed out".
"""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

POLL_S = 0.1  # loopback answers in well under this: a short poll keeps starts fast
TAIL_LINES = 15
# What a probe raises while a server is still starting (refused connection, half an
# answer, an answer without the expected fields): try again, do not fail.
TRANSIENT: tuple[type[Exception], ...] = (httpx.HTTPError, OSError, ValueError, KeyError,
                                          http.client.HTTPException)


@dataclass
class Child:
    """One server process: its name, its whole command line, the log file its stdout
    and stderr go to, and the process once started."""

    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def exit_code(self) -> int | None:
        """The code it exited with; None while it runs (or before it starts)."""
        return None if self.proc is None else self.proc.poll()


def child_env(base: Mapping[str, str], add: Mapping[str, str] | None = None,
              unset: Iterable[str] = ()) -> dict[str, str]:
    """``base`` (usually os.environ) with ``add`` set and the ``unset`` names removed:
    a launcher that sets a server's mode by flags removes the variables that would
    change it behind the flags' back."""
    drop = set(unset)
    return {k: v for k, v in base.items() if k not in drop} | dict(add or {})


def start(child: Child, *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
          own_session: bool = False,
          nofile: tuple[int, int] | None = None) -> subprocess.Popen[bytes]:
    """Start ``child`` with its output appended to its log file and no stdin.

    ``env``: the whole environment (None: this process's). ``own_session``: Ctrl-C
    in the launcher's terminal then reaches the launcher only, which stops its
    children in its own order. ``nofile``: the (soft, hard) open-file limit the
    child starts with."""
    child.log.parent.mkdir(parents=True, exist_ok=True)

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

    with open(child.log, "ab") as log:  # the child keeps its own copy of the descriptor
        child.proc = subprocess.Popen(
            child.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=None if env is None else dict(env), cwd=cwd, start_new_session=own_session,
            preexec_fn=limit if nofile is not None else None,
        )
    return child.proc


# -- waiting -----------------------------------------------------------------------


def last_lines(text: str, n: int = TAIL_LINES) -> list[str]:
    """The last ``n`` non-blank lines of ``text``."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-n:] if n > 0 else []


def read_tail(path: Path, max_bytes: int = 16384) -> str | None:
    """The last ``max_bytes`` of a file as text (None if it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - max_bytes))
            return fh.read().decode(errors="replace")
    except OSError:
        return None


def log_tail(path: Path, n: int = TAIL_LINES, max_bytes: int = 16384) -> str:
    """The end of a log, indented, for an error message ("" if there is none)."""
    text = read_tail(path, max_bytes)
    if text is None:
        return ""
    lines = last_lines(text, n)
    if not lines:
        return f"\n  ({path} is empty)"
    return f"\n  the end of {path}:\n" + "\n".join("  | " + line for line in lines)


class ChildExited(RuntimeError):
    """A child exited while a launcher waited for it to become ready."""

    def __init__(self, child: Child, code: int, what: str) -> None:
        self.name, self.code, self.what, self.log = child.name, code, what, child.log
        super().__init__(f"{child.name} exited with code {code} while waiting for {what}"
                         + log_tail(child.log))


class WaitTimedOut(TimeoutError):
    """A wait ran out of time; carries the end of the logs of the children it watched."""

    def __init__(self, what: str, timeout: float, last: object, watched: Sequence[Child]) -> None:
        self.what, self.timeout, self.last = what, timeout, last
        super().__init__(f"timed out after {timeout} s waiting for {what} (last: {last!r})"
                         + "".join(log_tail(c.log) for c in watched if c.proc is not None))


def wait_for(check: Callable[[], T | None], timeout: float, what: str, *,
             watch: Sequence[Child] = (), interval: float = POLL_S) -> T:
    """Call ``check`` until it returns something true, and return that.

    A ``TRANSIENT`` error counts as "not yet". A child of ``watch`` that has exited
    ends the wait at once (``ChildExited``): no point waiting the whole timeout for
    a server that is gone. ``what`` names the wait in the errors."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        for child in watch:
            code = child.exit_code()
            if code is not None:
                raise ChildExited(child, code, what)
        with contextlib.suppress(*TRANSIENT):
            last = check()
            if last:
                return last
        if time.monotonic() >= deadline:
            raise WaitTimedOut(what, timeout, last, watch)
        time.sleep(interval)


def healthy(url: str, verify: Any = True) -> bool:
    """Does the server at ``url`` answer 200 on /health? (It does once it listens.)"""
    return httpx.get(url + "/health", timeout=5, verify=verify).status_code == 200


def wait_healthy(url: str, timeout: float, *, watch: Sequence[Child] = (),
                 verify: Any = True) -> None:
    wait_for(lambda: healthy(url, verify), timeout, f"{url}/health", watch=watch)


def online(nodes: Iterable[Mapping[str, Any]]) -> int:
    """How many of the brain's /api/nodes entries are online."""
    return sum(1 for n in nodes if n.get("state") == "online")


def wait_online(list_nodes: Callable[[], list[dict[str, Any]]], count: int, timeout: float, *,
                watch: Sequence[Child] = ()) -> list[dict[str, Any]]:
    """Wait until ``count`` nodes are online; returns the brain's list of nodes.
    ``list_nodes``: GET /api/nodes with the caller's client (its key, its TLS)."""

    def enough() -> list[dict[str, Any]] | None:
        nodes = list_nodes()
        return nodes if online(nodes) >= count else None

    return wait_for(enough, timeout, f"{count} nodes online", watch=watch)


def wait_ready(url: str, timeout: float, want_nodes: int = 0,
               verify: Any = True) -> dict[str, object]:
    """Poll /ready (of the brains in ``url``, comma-separated, in turn) until one
    says ready (and, with ``want_nodes``, that many nodes take writes) or
    ``timeout`` passes; returns the last answer, so the caller can say why not."""
    urls = [u.strip() for u in url.split(",") if u.strip()]
    deadline = time.monotonic() + timeout
    last: dict[str, object] = {"status": "not_ready", "reason": "the brain did not answer"}
    while time.monotonic() < deadline:
        for u in urls:
            try:
                last = httpx.get(u + "/ready", timeout=2, verify=verify).json()
                if last.get("status") == "ready" and int(
                        str(last.get("nodes_writable", 0))) >= want_nodes:
                    return last
            except (httpx.HTTPError, ValueError):
                last = {"status": "not_ready", "reason": f"{u} did not answer"}
        time.sleep(0.2)
    return last


# -- stopping ----------------------------------------------------------------------


def stop(procs: Iterable[subprocess.Popen[bytes] | None], grace: float) -> None:
    """SIGTERM every running process in the order given (the caller's: nodes before
    the brain, or after), then SIGKILL whatever has not exited ``grace`` seconds
    later. A stopped (SIGSTOP) process gets SIGCONT first: it would never act on
    SIGTERM otherwise."""
    order = [p for p in procs if p is not None]
    for p in order:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in order:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill(p)
            p.wait()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL; the whole process group when the child leads one (started in its own
    session), so nothing it started outlives it."""
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
