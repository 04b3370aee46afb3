"""``tossit up``: a whole cluster on this machine, one process per server.

Each node is its own process (so one can crash, or be killed in a test, while
the others keep serving); this supervisor only starts them, shows where things
are, and stops them all on Ctrl-C. Data lives under one folder and is reused
on the next start.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tossit import processes
from tossit.auth.secretfile import (
    ADMIN_KEY_FILE,
    CLUSTER_SECRET_FILE,
    SecretFileError,
    ensure_secret,
    read_secret,
)
from tossit.config import LOCAL_ADMIN_KEY, ConfigError
from tossit.processes import (
    Child,
    ChildExited,
    WaitTimedOut,
    read_tail,
    wait_healthy,
    wait_ready,
)
from tossit.serve import port_free
from tossit.server_args import BrainArgs, NodeArgs, tossit_command

# Seconds a server has, once told to stop, before it is killed. The brain's is its
# own shutdown: 5 s for the requests in flight, then up to 10 s for its threads.
BRAIN_STOP_GRACE = 20.0
NODE_STOP_GRACE = 10.0


def plan(
    data_dir: Path, nodes: int, port: int, node_port: int, host: str,
    replicas: int | None, chunk_size: str | None, capacity: str | None,
    heartbeat: float | None = None, write_quorum: int | None = None,
    database_url: str | None = None, new_admin_key: bool = False, s3_port: int = 9000,
) -> list[Child]:
    """The brain, then node-1..node-NODES on consecutive ports from ``node_port``, each
    logging to DATA_DIR/logs/NAME.log. Pure: nothing starts until ``run``."""
    logs = data_dir / "logs"
    brain = BrainArgs(
        host=host, port=port, data_dir=data_dir / "brain", replicas=replicas,
        chunk_size=chunk_size, heartbeat_interval=heartbeat, write_quorum=write_quorum,
        database_url=database_url, new_admin_key=new_admin_key, s3_port=s3_port)
    children = [Child("brain", tossit_command(brain.argv()), logs / "brain.log")]
    secret = data_dir / "brain" / CLUSTER_SECRET_FILE
    for i in range(1, nodes + 1):
        node = NodeArgs(
            host=host, port=node_port + i - 1, data_dir=data_dir / f"node{i}",
            brain=f"http://{host}:{port}", name=f"node-{i}", join_secret_file=secret,
            capacity=capacity, heartbeat_interval=heartbeat)
        children.append(Child(f"node-{i}", tossit_command(node.argv()), logs / f"node-{i}.log"))
    return children


def check_ports(host: str, port: int, node_port: int, nodes: int, s3_port: int = 0) -> None:
    for p in [port, *([s3_port] if s3_port else []), *range(node_port, node_port + nodes)]:
        if not 1 <= p <= 65535:
            raise ConfigError(f"port {p} is outside 1-65535")
        if not port_free(host, p):
            raise ConfigError(
                f"port {p} on {host} is already in use (is another 'tossit up' running?); "
                "stop it or choose other ports with --port / --s3-port / --node-port"
            )


def last_error(log: Path) -> str | None:
    """The last error line a child wrote to its log (its ``error: …`` refusal, or
    an ERROR or CRITICAL record), for the one line tossit up prints."""
    for line in reversed((read_tail(log) or "").splitlines()):
        text = line.strip()
        if text.startswith("error:"):
            return text.removeprefix("error:").strip()
        if " ERROR " in text or " CRITICAL " in text:
            return text
    return None


def wait_brain(url: str, timeout: float, children: list[Child]) -> None:
    """Wait for the brain's /health, in the words tossit up has always used (its
    error names the logs folder, so it does not quote the log)."""
    try:
        wait_healthy(url, timeout, watch=children)
    except ChildExited as exc:
        why = last_error(exc.log)
        raise RuntimeError(f"{exc.name} exited with code {exc.code} while starting"
                           + (f": {why}" if why else "")) from None
    except WaitTimedOut:
        raise RuntimeError(
            f"the brain did not become healthy at {url} within {timeout:.0f} s") from None


def key_refused(url: str, key: str) -> str | None:
    """Why the brain refuses this key (revoked, expired), or None."""
    try:
        resp = httpx.get(f"{url}/api/keys/me", headers={"Authorization": f"Bearer {key}"},
                         timeout=5)
    except httpx.HTTPError:
        return None  # the brain's own trouble shows elsewhere
    if resp.status_code != 401:
        return None
    try:
        return str(resp.json().get("message") or "refused")
    except ValueError:
        return "refused"


def run(children: list[Child], data_dir: Path, host: str, port: int, say: object) -> int:
    """Start everything, wait for Ctrl-C (or the brain dying), stop everything."""
    echo = say if callable(say) else print
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    old_int = signal.signal(signal.SIGINT, stop)
    old_term = signal.signal(signal.SIGTERM, stop)
    brain_dir = data_dir / "brain"
    # Made here (the brain would make it too) so the nodes can be given its path.
    ensure_secret(brain_dir / CLUSTER_SECRET_FILE)
    key_file = brain_dir / ADMIN_KEY_FILE
    first_start = not key_file.exists() or "--new-admin-key" in children[0].argv
    try:
        url = f"http://{host}:{port}"
        for c in children:
            processes.start(c, own_session=True)  # Ctrl-C reaches us only; we stop them in order
            if c.name == "brain":  # nodes register at once when the brain is up first
                wait_brain(url, 60, children)
        try:
            key = read_secret(key_file)
        except SecretFileError as exc:
            raise RuntimeError(
                f"the brain wrote no admin key ({exc}); tossit up always runs with "
                "authentication: unset TOSSIT_AUTH") from None
        ready = wait_ready(url, 30, want_nodes=len(children) - 1)
        _banner(echo, children, data_dir, url, host, ready, key if first_start else None)
        refused = key_refused(url, key)
        if refused:
            echo(f"warning: the key in {key_file} no longer works ({refused}); to make a "
                 "new one, stop and run tossit up --new-admin-key")
        echo("Press Ctrl-C to stop.")
        reported: set[str] = set()
        while not stopping:
            # (Never assign False here: a Ctrl-C handled during the call would be lost.)
            if _report_exits(children, reported, echo, logs):
                stopping = True
            time.sleep(0.3)
        return 0
    except RuntimeError as exc:
        echo(f"error: {exc}; see the logs in {logs}")
        return 1
    finally:
        echo("stopping...")
        stop_cluster(children)
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        echo("stopped.")


def _banner(echo: Callable[[str], object], children: list[Child], data_dir: Path, url: str,
            host: str, ready: dict[str, object], new_key: str | None) -> None:
    """What is running where, and how to use it. ``new_key``: the admin secret
    made on this first start, shown once (on a terminal only)."""
    online = ready.get("nodes_writable", 0)
    brain_dir = data_dir / "brain"
    key_file = brain_dir / ADMIN_KEY_FILE
    echo(f"TossIt is running: brain + {len(children) - 1} nodes ({online} online)"
         + ("" if ready.get("status") == "ready" else
            f"; not ready for writes yet: {ready.get('reason')}"))
    echo(f"  dashboard + API  {url}   (OpenAPI docs: {url}/docs)")
    s3_port = children[0].argv[children[0].argv.index("--s3-port") + 1]
    if s3_port != "0":
        echo(f"  S3 API           http://{host}:{s3_port}   (access key id: a key's id, "
             "from tossit key list; secret: its secret; docs/s3.md)")
    for c in children[1:]:
        echo(f"  {c.name:<8}         http://{host}:{c.argv[c.argv.index('--port') + 1]}")
    logs = (data_dir / "logs").resolve()
    echo(f"  data             {data_dir.resolve()}   (logs in {logs})")
    local = key_file.resolve() == LOCAL_ADMIN_KEY.resolve()
    echo(f"  admin key        {key_file.resolve()}   (mode 0600; "
         + ("the tossit CLI finds it when run from this folder)" if local else
            f"for the CLI: export TOSSIT_KEY_FILE={key_file.resolve()})")
         + ("  [new]" if new_key else ""))
    if new_key and sys.stdout.isatty():
        echo(f"                   secret: {new_key}  (shown on this first start only)")
    elif new_key:  # a log file or a pipe would keep the secret where it does not belong
        echo("                   (a new key: the secret is in that file, not printed because "
             "the output is not a terminal)")
    echo(f"  cluster secret   {(brain_dir / CLUSTER_SECRET_FILE).resolve()}   (nodes on "
         "other machines: --join-secret-file)")
    rel = key_file if not key_file.is_absolute() else key_file.resolve()
    echo(f'  try: curl -H "Authorization: Bearer $(cat {rel})" '
         f"-F file=@README.md {url}/api/files/upload")


def _report_exits(children: list[Child], reported: set[str], echo: Callable[[str], object],
                  logs: Path) -> bool:
    """Say which children exited since the last look; True if the brain did."""
    brain_gone = False
    for c in children:
        assert c.proc is not None
        if c.proc.poll() is not None and c.name not in reported:
            reported.add(c.name)
            echo(f"! {c.name} exited with code {c.proc.returncode} "
                 f"(see {logs / (c.name + '.log')})")
            brain_gone = brain_gone or c.name == "brain"
    return brain_gone


def stop_cluster(children: list[Child]) -> None:
    """Stop the brain first, then the nodes (SIGTERM; SIGKILL what has not exited
    after BRAIN_STOP_GRACE, then NODE_STOP_GRACE, seconds).

    The brain's requests in flight get their graceful end only while the nodes
    still answer: stopped together (or nodes first), uploads the brain had
    committed were answered 503 manifest_not_stored, their packs' nodes gone."""
    brains = [c.proc for c in children if c.name == "brain"]
    processes.stop(brains, grace=BRAIN_STOP_GRACE)
    processes.stop([c.proc for c in reversed(children) if c.name != "brain"],
                   grace=NODE_STOP_GRACE)
