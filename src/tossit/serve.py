"""Running an ASGI app under uvicorn with the settings every TossIt server shares."""

from __future__ import annotations

import ctypes
import ctypes.util
import faulthandler
import gc
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn

from tossit.limits import (
    BODY_TIMEOUT,
    HEADER_TIMEOUT,
    MAX_BODY,
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_CLIENT,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    UPLOAD_ROUTES,
    ConnectionLimits,
    ErrorRenderer,
    RequestLimits,
    header_guard,
    json_error,
)

log = logging.getLogger("tossit.serve")
# File descriptors kept free of client connections: the database, chunk files,
# connections to nodes and brains, the log.
FD_RESERVE = 128
# Seconds the process waits, once the server has stopped, for the threads still
# running (a disk write handed to a thread) before it exits without them.
THREADS_GRACE = 10.0


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


_HANDED_OUT: set[int] = set()
# (index, count): this process picks ports in the index-th of count equal slices
# of the range, so that parallel test workers never pick the same one.
_SHARE = (0, 1)


def share_ports(index: int, count: int) -> None:
    """Make ``pick_free_port`` pick in a slice of its range no other process of
    ``count`` picks in (parallel test workers: each checks a port free, then
    starts a server on it; two workers checking the same port both saw it free)."""
    global _SHARE
    if not 0 <= index < count:
        raise ValueError(f"share {index} of {count}")
    _SHARE = (index, count)


def pick_free_port(host: str = "127.0.0.1") -> int:
    """A port no server started by this process uses yet (tests and benchmarks).

    Asking the kernel for port 0 twice can give the same port twice (it is free
    again once the probe socket closes), and the kernel also gives those ephemeral
    ports to outgoing connections. So: random ports below the ephemeral range,
    each handed out once per process, checked free by binding.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            ephemeral_from = int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_from = 32768
    index, count = _SHARE
    width = max(1, (max(10001, ephemeral_from) - 10000) // count)
    low = 10000 + index * width
    for _ in range(1000):
        port = random.randrange(low, low + width)
        if port not in _HANDED_OUT and port_free(host, port):
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError(f"no free port found on {host}")


def raise_nofile_limit() -> int:
    """Raise the soft open-file limit to the hard one; return the soft limit.

    The soft limit is often 1024 while the hard one is far higher: a server
    that stays at 1024 runs out of descriptors at about a thousand idle
    connections, and then cannot accept ``/health`` nor open a chunk file.
    Raising the soft limit up to the hard one needs no privilege.
    """
    try:
        import resource
    except ImportError:  # not POSIX
        return 1 << 20
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else target
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:  # e.g. macOS caps it below an "unlimited" hard limit
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
        return soft
    return target


def connection_caps(max_connections: int, per_client: int, nofile: int) -> ConnectionLimits:
    """The connection caps for a process that may open ``nofile`` descriptors:
    the overall cap leaves ``FD_RESERVE`` of them for everything else."""
    room = max(16, nofile - FD_RESERVE)
    if max_connections > room:
        log.warning("open-file limit %d: at most %d client connections (not %d); raise "
                    "the hard limit (ulimit -Hn, LimitNOFILE=) for more", nofile, room,
                    max_connections)
        max_connections = room
    return ConnectionLimits(max_connections, min(per_client, max_connections))


def tune_runtime() -> None:
    """Memory and garbage-collector settings for a long-running server."""
    tune_malloc()
    # The cyclic GC walked the ~100k objects of the imported frameworks on every
    # few hundred allocations (12% of a GET's CPU): move what start-up created
    # out of its sight and run it less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def tune_malloc() -> None:
    """Give big buffers back to the OS as soon as they are freed.

    Chunks are multi-MiB ``bytes``; glibc raises its mmap threshold after the
    first such free and then serves them from fragmented heap arenas that are
    never returned, so RSS creeps up by hundreds of MiB. A fixed threshold keeps
    every chunk-sized buffer in its own mapping, and fewer arenas keep the
    worker threads from multiplying the heap.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_arena_max, m_mmap_threshold = -8, -3
        libc.mallopt(m_mmap_threshold, 1 << 20)
        libc.mallopt(m_arena_max, 2)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


@dataclass(frozen=True)
class ExtraPort:
    """One more port of a server (the brain's S3 API): its app, the routes whose
    bodies stream uncapped, and how a refused body is answered."""

    app: Any
    upload_routes: tuple[tuple[str, str], ...]
    render: ErrorRenderer = json_error


class PortDispatch:
    """One server, several listening ports, an app per port: the brain serves its
    REST API and its S3 API from one process, one event loop and one set of
    connection limits. A request goes to the app of the port it arrived on;
    lifespan events go to the main app alone (it starts and stops the brain)."""

    def __init__(self, main: Any, by_port: dict[int, Any]) -> None:
        self.main = main
        self.by_port = by_port
        self.state = getattr(main, "state", None)  # on_exit, for _Server

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        app = self.main
        if scope["type"] in ("http", "websocket"):
            server = scope.get("server")
            if server is not None:
                app = self.by_port.get(server[1], self.main)
        await app(scope, receive, send)


def _listen(host: str, port: int) -> socket.socket:
    """A bound socket for one more port of the server (uvicorn listens on it)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """Tells the app when shutdown starts (``app.state.on_exit``), so that
    endless responses (the dashboard's event stream) end at once instead of
    holding the graceful-shutdown window open."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._on_exit is not None and not self.should_exit:
            self._on_exit()
        super().handle_exit(sig, frame)


def serve(
    app: Any,
    host: str,
    port: int,
    log_level: str,
    *,
    header_timeout: float = HEADER_TIMEOUT,
    max_header_bytes: int = MAX_HEADER_BYTES,
    max_headers: int = MAX_HEADERS,
    body_timeout: float = BODY_TIMEOUT,
    max_body: int = MAX_BODY,
    upload_routes: tuple[tuple[str, str], ...] = UPLOAD_ROUTES,
    max_connections: int = MAX_CONNECTIONS,
    max_connections_per_client: int = MAX_CONNECTIONS_PER_CLIENT,
    more_ports: dict[int, ExtraPort] | None = None,
    **uvicorn_kwargs: Any,
) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests get a few seconds to finish.

    Every server is guarded against slow and oversized requests (see
    ``tossit.limits``): headers must arrive within ``header_timeout`` seconds and
    fit ``max_header_bytes`` / ``max_headers``; a request body may pause at most
    ``body_timeout`` seconds; every body is capped at ``max_body`` (sign-in
    bodies lower), except streamed uploads on ``upload_routes``. The soft
    open-file limit is raised to the hard one, and open connections are capped
    overall and per client address (``tossit.limits.ConnectionLimits``).
    ``uvicorn_kwargs`` (e.g. ``ssl_certfile``/``ssl_keyfile``) go to ``uvicorn.Config``
    and override the defaults below. ``more_ports``: more ports, each with its app,
    served by the same server on the same host (the brain's S3 API).
    """
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level.lower(),
        "access_log": False,
        "loop": "uvloop",
        "http": header_guard(header_timeout, max_header_bytes, max_headers, connection_caps(
            max_connections, max_connections_per_client, raise_nofile_limit())),
        "timeout_keep_alive": 30,
        "timeout_graceful_shutdown": 5,
        "log_config": None,
    }
    options.update(uvicorn_kwargs)
    guarded: Any = RequestLimits(app, body_timeout=body_timeout, max_body=max_body,
                                 upload_routes=upload_routes)
    more = more_ports or {}
    if more:
        guarded = PortDispatch(guarded, {
            p: RequestLimits(x.app, body_timeout=body_timeout, max_body=max_body,
                             upload_routes=x.upload_routes, render=x.render)
            for p, x in more.items()})
    config = uvicorn.Config(guarded, **options)
    tune_runtime()
    server = _Server(config, getattr(getattr(app, "state", None), "on_exit", None))
    scheme = "https" if options.get("ssl_certfile") else "http"
    for p in (port, *more):
        logging.getLogger("tossit").info("listening on %s://%s:%d", scheme, host, p)
    # `kill -USR1 PID` writes every thread's stack to the log: what a server that
    # seems stuck is doing, without stopping it.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    if not more:
        server.run()
    else:
        server.run(sockets=[config.bind_socket(), *(_listen(host, p) for p in more)])
    exit_despite_threads(THREADS_GRACE)


def join_threads(grace: float, *, daemons: bool) -> list[threading.Thread]:
    """Wait up to ``grace`` seconds in all for this process's other threads
    (daemon threads too with ``daemons``) to end; returns those still running."""
    deadline = time.monotonic() + grace
    others = [t for t in threading.enumerate()
              if t is not threading.current_thread() and (daemons or not t.daemon)]
    for t in others:
        t.join(max(0.0, deadline - time.monotonic()))
    return [t for t in others if t.is_alive()]


def exit_despite_threads(grace: float) -> None:
    """The server has stopped: give the threads still running ``grace`` seconds,
    then exit without them, naming them and where they stand in the log.

    Python waits for every non-daemon thread before it exits, and some are
    not ours to stop (a database driver's connection thread): one that never
    ends would leave a stopped server as a process that never exits, holding
    its data dir's lock. Everything the server acknowledged is on disk by now;
    a thread cut short is at worst a write nobody waits for, which the disk's
    own recovery (SQLite's journal, the node's temporary files) undoes."""
    stuck = join_threads(grace, daemons=False)
    if not stuck:
        return
    frames = sys._current_frames()
    for t in stuck:
        where = "".join(traceback.format_stack(frames[t.ident])) if t.ident in frames else "?"
        log.warning("thread %r still running %.0f s after the server stopped:\n%s",
                    t.name, grace, where)
    log.warning("exiting without %d thread(s)", len(stuck))
    logging.shutdown()
    os._exit(0)
