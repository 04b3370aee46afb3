"""The ``tossit`` command: servers (``up``, ``brain``, ``node``) and client verbs."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from tossit.brain.api.wire import (
    BucketEntry,
    DrillResult,
    Event,
    FileDeleted,
    FileInfo,
    FileMeta,
    JoinToken,
    JoinTokenCreated,
    Key,
    KeyCreated,
    Node,
    NodeImpact,
    NodeRemoved,
    ScrubRow,
    ScrubSummary,
    Status,
    TrashEmptied,
    TrashPage,
    TrashPurged,
    TrashTotals,
)
from tossit.brain.states import ReplicationState
from tossit.client.errors import TossitError
from tossit.client.resumable import UploadInterrupted
from tossit.config import (
    BrainSettings,
    ClientSettings,
    ConfigError,
    NodeSettings,
    format_duration,
    format_size,
    parse_duration,
    plural,
)
from tossit.settings_cli import with_settings_options

if TYPE_CHECKING:
    from tossit.brain.schema import SchemaState
    from tossit.client.sdk import Downloaded, OnConflict, ScrubAction, TossitClient

app = typer.Typer(
    help="TossIt: pool the disks of several machines into one replicated store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts show defaults as [x]: not markup
)
console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file", envvar="TOSSIT_CONFIG")
]
BrainOpt = Annotated[
    str | None, typer.Option("--brain", help="brain URL, or several separated by commas",
                             envvar="TOSSIT_BRAIN_URL")
]


JsonOpt = Annotated[bool, typer.Option(
    "--json", help="print the brain's answer as JSON (for scripts) instead of a table")]


def _print_json(answer: Any) -> None:
    """What the brain answered (a model, or a list of them), as JSON on stdout:
    the same fields as the REST API's, for scripts (jq) rather than eyes."""
    def plain(x: Any) -> Any:
        if isinstance(x, list):
            return [plain(v) for v in x]
        return x.model_dump(mode="json") if hasattr(x, "model_dump") else x
    sys.stdout.write(json.dumps(plain(answer), indent=2, ensure_ascii=False) + "\n")


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _client(brain: str | None, config: Path | None = None) -> TossitClient:
    try:
        settings = ClientSettings.load(config, brain_url=brain)
        key = settings.api_key()
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    from tossit.client.sdk import TossitClient  # (not for the servers: httpx stays out)

    return TossitClient(settings.brain_url, settings.timeout, key=key, tls_ca=settings.tls_ca,
                        parts_above=settings.upload_parts_above,
                        part_size=settings.upload_part_size, parallel=settings.upload_parallel)


# `tossit nodes` shows this much of each id; node commands take it (unique, at
# least this long) as well as a whole id or a name.
SHORT_ID = 8

P = ParamSpec("P")
T = TypeVar("T")
_NO_KEY_HINT = (
    "; set TOSSIT_KEY (a key secret) or TOSSIT_KEY_FILE (a file holding one). The brain "
    "wrote its first admin key to DATA_DIR/brain/admin.key, which this command finds by "
    "itself when run from the folder holding data/"
)


def _call(fn: Callable[P, T], *args: P.args, **kw: P.kwargs) -> T:
    """``fn(*args, **kw)`` (a client call, typed as the client declares it), with
    a failure turned into the CLI's error line and exit status."""
    try:
        return fn(*args, **kw)
    except TossitError as exc:
        message = exc.message if exc.status == 0 else str(exc)
        owner = getattr(fn, "__self__", None)
        if exc.status == 401 and not getattr(owner, "has_key", True):
            message += _NO_KEY_HINT
        raise _fail(message, 1) from None


# -- servers ---------------------------------------------------------------

TlsCertOpt = Annotated[Path | None, typer.Option(
    help="PEM certificate: serve HTTPS (with --tls-key)")]
TlsKeyOpt = Annotated[Path | None, typer.Option(help="PEM private key for --tls-cert")]
TlsCaOpt = Annotated[Path | None, typer.Option(
    help="PEM CA bundle to verify the other servers' certificates [system store]")]


def _tls(settings: Any) -> dict[str, Any]:
    if settings.tls_cert is None:
        return {}
    return {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}



def _serving(settings: Any) -> dict[str, Any]:
    """What ``serve`` takes from a server's settings: TLS and connection caps."""
    return {**_tls(settings), "max_connections": settings.max_connections,
            "max_connections_per_client": settings.max_connections_per_client}


@app.command()
@with_settings_options(BrainSettings)
def brain(
    config: ConfigOpt = None,
    new_admin_key: Annotated[bool, typer.Option(
        "--new-admin-key", help="create another admin key at start and write it to "
        "DATA_DIR/admin.key (when its secret was lost)")] = False,
    **flags: Any,
) -> None:
    """Run the brain: metadata, REST API and the cluster's background loops.

    Every setting is an option (and a TOSSIT_* variable, and a key of the TOML
    file's [brain] table): docs/configuration.md."""
    try:
        settings = BrainSettings.load(config, **flags)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    from tossit.brain.app import create_app
    from tossit.logs import setup_logging
    from tossit.serve import port_free, serve

    for port in (settings.port, settings.s3_port):
        if port and not port_free(settings.host, port):
            raise _fail(f"port {port} on {settings.host} is already in use")
    if not settings.database_url:
        try:
            settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise _fail(f"cannot create data dir {settings.data_dir}: {exc.strerror}") from None
    up_to_date = _check_metadata(settings).up_to_date
    setup_logging(settings.log_level, "brain")
    if not up_to_date:
        _migrate_apart(settings.resolved_database_url())
    app = create_app(settings, new_admin_key)
    serve(app, settings.host, settings.port,
          settings.log_level, proxy_headers=bool(settings.trusted_proxies),
          forwarded_allow_ips=settings.trusted_proxies or None,
          more_ports=s3_ports(app, settings), **_serving(settings))


def _migrate_apart(url: str) -> None:
    """Migrate the schema in a child process (forked: nothing to import again),
    so that Alembic, 11 MB once loaded, never stays in the long-running brain.
    Where forking is not safe (threads already running) the brain migrates
    in-process at start, as before."""
    import asyncio
    import logging
    import os

    from tossit.brain.db import migrate
    from tossit.serve import join_threads

    # The database checks' driver threads (aiosqlite's, daemons) may still be
    # ending, more so on a busy machine: give them a few seconds.
    others = [t.name for t in join_threads(5.0, daemons=True)]
    if not hasattr(os, "fork") or others:
        logging.getLogger("tossit").info(
            "migrating the metadata database in the brain itself (threads running: %s)",
            ", ".join(others) or "none; no fork on this system")
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: migrate, say why not if it fails, never return
        code = 0
        try:
            asyncio.run(migrate(url))
        except BaseException as exc:
            print(f"error: cannot migrate the metadata database ({_shown_url(url)}): "
                  f"{str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}",
                  file=sys.stderr)
            code = 2
        finally:
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise typer.Exit(code if code > 0 else 2)


def s3_ports(app: Any, settings: BrainSettings) -> dict[int, Any]:
    """The S3 API's port and app for ``serve`` (none when s3_port is 0)."""
    from tossit.brain.s3.app import S3App
    from tossit.brain.s3.errors import limit_error
    from tossit.serve import ExtraPort

    if not settings.s3_port:
        return {}
    # Every S3 PUT may be an upload, streamed; the S3 handlers bound the bodies they
    # read whole themselves (XML: DeleteObjects' 1,000 keys may pass 1 MiB).
    return {settings.s3_port: ExtraPort(S3App(app.state.brain, settings.s3_domain),
                                        (("PUT", "/"), ("POST", "/")), limit_error)}


def _shown_url(url: str) -> str:
    """A database URL without its credentials."""
    return url.split("@")[-1] if "@" in url else url


def _sqlite_folder(url: str) -> Path | None:
    """The folder of a SQLite database file (None for other databases)."""
    from sqlalchemy.engine import make_url

    if not url.startswith("sqlite"):
        return None
    path = make_url(url).database
    return Path(path).parent if path and path != ":memory:" else None


def _check_metadata(settings: BrainSettings, *, free: bool = True) -> SchemaState:
    """Open the metadata database once before anything starts, so that what stops
    a brain is one line on stderr and exit code 2, not a traceback from inside
    the server: a URL that cannot be opened, a database a newer TossIt migrated,
    another brain on the same data dir or SQLite file (``free``)."""
    import asyncio

    from tossit.brain.brainlock import BrainLockError, check_free
    from tossit.brain.db import check_database
    from tossit.brain.schema import schema_state

    url = settings.resolved_database_url()
    folder = _sqlite_folder(url)
    if folder is not None and not folder.is_dir():
        # Said here: aiosqlite's failing thread would print a traceback of its own.
        raise _fail(f"cannot open the metadata database ({url}): folder {folder} "
                    "does not exist")
    try:
        asyncio.run(check_database(url))
        state = asyncio.run(schema_state(url))
    except Exception as exc:
        reason = str(exc).splitlines()[0][:300]
        raise _fail(f"cannot open the metadata database ({_shown_url(url)}): "
                    f"{reason}") from None
    if state.too_new:
        raise _fail(state.too_new_message())
    if free:
        try:
            check_free(url, settings.data_dir)
        except BrainLockError as exc:
            raise _fail(str(exc)) from None
    return state


# -- the metadata database -------------------------------------------------

db_app = typer.Typer(
    help="The brain's metadata database: its schema revision, and migrating it.",
    no_args_is_help=True, rich_markup_mode=None)
app.add_typer(db_app, name="db")

DataDirOpt = Annotated[Path | None, typer.Option(help="metadata folder [data/brain]")]
DatabaseUrlOpt = Annotated[str | None, typer.Option(
    help="SQLAlchemy URL, e.g. postgresql+asyncpg://user@host/db [SQLite in data-dir]")]


def _db_settings(config: Path | None, data_dir: Path | None,
                 database_url: str | None) -> BrainSettings:
    """The brain's settings, read as ``tossit brain`` reads them (file, TOSSIT_*
    variables, flags): these commands act on the database that brain would use."""
    try:
        settings: BrainSettings = BrainSettings.load(config, data_dir=data_dir,
                                                     database_url=database_url)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    return settings


def _sqlite_file_missing(settings: BrainSettings) -> bool:
    return not settings.database_url and not (settings.data_dir / "tossit.db").exists()


@db_app.command("current")
def db_current(config: ConfigOpt = None, data_dir: DataDirOpt = None,
               database_url: DatabaseUrlOpt = None) -> None:
    """Show the database's schema revision and whether it is this TossIt's newest.
    Exit code 0: up to date; 1: an upgrade would change it; 2: this TossIt cannot
    use it (or cannot open it)."""
    settings = _db_settings(config, data_dir, database_url)
    if _sqlite_file_missing(settings):
        raise _fail(f"no metadata database in {settings.data_dir} (a brain creates it "
                    "at its first start, or run 'tossit db upgrade')")
    state = _check_metadata(settings, free=False)
    if state.up_to_date:
        console.print(f"schema revision {state.current} (the newest this TossIt knows)",
                      highlight=False)
        return
    if state.current is None:
        console.print(f"no TossIt schema in this database yet (this TossIt's newest "
                      f"revision is {state.head}): 'tossit db upgrade' creates it",
                      highlight=False)
    else:
        console.print(f"schema revision {state.current}; this TossIt's newest is "
                      f"{state.head} ({plural(state.behind, 'migration')} to run): run "
                      "'tossit db upgrade', or start the brain, which upgrades it by itself",
                      highlight=False)
    raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None, data_dir: DataDirOpt = None,
               database_url: DatabaseUrlOpt = None) -> None:
    """Migrate the database to this TossIt's newest schema revision (stop the brain
    first; a brain also does this by itself when it starts)."""
    import asyncio

    from tossit.brain.brainlock import BrainLock
    from tossit.brain.db import make_engine, migrate

    settings = _db_settings(config, data_dir, database_url)
    if not settings.database_url:
        try:
            settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise _fail(f"cannot create data dir {settings.data_dir}: {exc.strerror}") from None
    state = _check_metadata(settings)
    url = settings.resolved_database_url()
    if state.up_to_date:
        console.print(f"schema already at revision {state.head}, the newest this TossIt "
                      "knows: nothing to do", highlight=False)
        return

    async def run() -> bool:
        lock = BrainLock(url, make_engine(url))
        try:
            if await lock.someone_leads():
                return False
            await migrate(url)
            return True
        finally:
            await lock.engine.dispose()

    try:
        done = asyncio.run(run())
    except Exception as exc:
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise _fail(f"the migration failed: {reason}") from None
    if not done:
        raise _fail("a brain is running on this database: stop every brain first")
    if state.current is None:
        console.print(f"created the metadata schema at revision {state.head}",
                      highlight=False)
    else:
        console.print(f"upgraded the metadata schema from revision {state.current} to "
                      f"{state.head} ({plural(state.behind, 'migration')})", highlight=False)


node_app = typer.Typer(
    help="Run a storage node (tossit node [OPTIONS]), or manage one: drain, undrain, remove.",
    rich_markup_mode=None)
app.add_typer(node_app, name="node")


@node_app.callback(invoke_without_command=True)
@with_settings_options(NodeSettings)
def node(ctx: typer.Context, config: ConfigOpt = None, **flags: Any) -> None:
    """Run a storage node that keeps chunks in DATA_DIR and joins the brain.

    Every setting is an option (and a TOSSIT_NODE_* variable, and a key of the
    TOML file's [node] table): docs/configuration.md."""
    if ctx.invoked_subcommand is not None:
        return  # `tossit node drain ID` etc.: a client verb, not the server
    try:
        settings = NodeSettings.load(config, **flags)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if settings.join is not None and (settings.join_secret is not None
                                      or settings.join_secret_file is not None):
        raise _fail("give a join token (--join, TOSSIT_JOIN) or the cluster secret "
                    "(--join-secret-file), not both")
    from tossit.logs import setup_logging
    from tossit.node.app import create_app
    from tossit.serve import port_free, serve

    if not port_free(settings.host, settings.port):
        raise _fail(f"port {settings.port} on {settings.host} is already in use")
    _claim_data_dir(settings)
    from tossit.auth.binding import is_loopback
    from tossit.auth.secretfile import SecretFileError
    from tossit.node.identity import load_join_secret
    from tossit.node.join import JoinError, apply_remembered
    from tossit.node.join import join as join_with

    if settings.join is not None:
        try:
            said = join_with(settings, settings.join.get_secret_value())
        except JoinError as exc:
            raise _fail(str(exc)) from None
        except OSError as exc:
            raise _fail(f"cannot keep what the join gave in {settings.data_dir}: {exc}") from None
        err.print(said, highlight=False, soft_wrap=True, markup=False)
    else:
        apply_remembered(settings)
    try:
        secret = load_join_secret(settings)
    except (SecretFileError, ValueError, OSError) as exc:
        raise _fail(f"cannot load the cluster secret: {exc}") from None
    if secret is None and not is_loopback(settings.host):
        raise _fail(
            f"refusing to listen on {settings.host} without the cluster secret: anyone on the "
            "network could read or delete chunks. Give the node a join token (tossit "
            "join-token create, then --join TOKEN) or the brain's cluster secret "
            "(--join-secret-file BRAIN_DATA_DIR/cluster.secret), or bind to 127.0.0.1")
    setup_logging(settings.log_level, f"node:{settings.port}")
    serve(create_app(settings), settings.host, settings.port, settings.log_level,
          **_serving(settings))


def _claim_data_dir(settings: NodeSettings) -> None:
    """The node's data dir: writable (or held chunks to serve), locked for this
    process alone, with its identity (and the name and zone it had)."""
    try:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe = settings.data_dir / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        if not (settings.data_dir / "node.json").is_file():
            raise _fail(f"data dir {settings.data_dir} is not writable: {exc.strerror}"
                        ) from None
        # A node with chunks on a disk that refuses writes still serves them: it
        # starts, and tells the brain (write_error) so that no copy is sent here.
        err.print(f"warning: data dir {settings.data_dir} is not writable ({exc.strerror}): "
                  "starting to serve what it holds; it takes no new copies until its "
                  "disk writes again", style="yellow", highlight=False, markup=False)
    from tossit import dirlock
    try:  # held until this process ends: one node per data dir
        _held_locks.append(dirlock.take(settings.data_dir / "node.lock"))
    except dirlock.Held as held:
        raise _fail(f"another node (pid {held.pid}) is already running with data dir "
                    f"{settings.data_dir}: stop it first, or give this node its own "
                    "--data-dir") from None
    except OSError as exc:  # (read-only, and no lock file yet)
        err.print(f"warning: cannot lock {settings.data_dir} ({exc.strerror}): make sure no "
                  "other node uses it", style="yellow", highlight=False, markup=False)
    from tossit.node.identity import IdentityError, keep_recorded_names, load_or_create
    try:
        load_or_create(settings.data_dir)
    except IdentityError as exc:
        raise _fail(str(exc)) from None
    kept = keep_recorded_names(settings)
    if kept:
        err.print(f"this node keeps its {' and '.join(kept)} (from {settings.data_dir}/node.json"
                  "; give --name or --zone to change them)", style="dim", highlight=False,
                  markup=False)


# Locks this process holds until it ends (their fds): see tossit.dirlock.
_held_locks: list[int] = []


# -- installing on a bare machine ---------------------------------------

install_app = typer.Typer(
    help="Set this machine up to run a brain or a node under systemd: a unit, a "
    "config file and a data dir owned by a system user (needs root, or --dry-run).",
    no_args_is_help=True, rich_markup_mode=None)
app.add_typer(install_app, name="install")

InstallDataDirOpt = Annotated[Path | None, typer.Option(
    help="data dir [/var/lib/tossit/brain or /var/lib/tossit/node]")]
InstallUserOpt = Annotated[str, typer.Option(
    help="system user the service runs as (created if missing)")]
InstallHostOpt = Annotated[str, typer.Option(
    help="address to listen on (0.0.0.0: every interface, so other machines reach it)")]
DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="print what would be written and change nothing (needs no root)")]
ForceOpt = Annotated[bool, typer.Option(
    "--force", help="replace an existing unit and config file (the data dir is kept)")]
RootOpt = Annotated[Path | None, typer.Option(
    help="write under this folder instead of / (like DESTDIR, for packagers and tests): "
    "no user is created")]


def _install(plan_of: Any, dry_run: bool, force: bool, root: Path | None) -> None:
    """Shared by the roles: refuse without root, build the plan, then print it
    (--dry-run) or install it; verify the unit; say what to do next."""
    import os

    from tossit import install as inst

    refusal = inst.root_refusal(os.geteuid(), dry_run, root)
    if refusal:
        raise _fail(refusal)
    try:
        plan = plan_of(inst.find_tossit())
        if dry_run:
            _show_plan(plan, root)
            verdict = inst.verify_text(plan)
        else:
            for line in inst.install(plan, root=root, force=force):
                typer.echo(line)
            verdict = inst.verify_unit(root / plan.unit_path.relative_to("/") if root
                                       else plan.unit_path)
    except (inst.InstallError, OSError) as exc:
        raise _fail(str(exc)) from None
    if not verdict.ran:
        typer.echo(f"({verdict.output})")
    elif verdict.ok:
        typer.echo("systemd-analyze verify: the unit is clean")
    else:
        typer.echo(f"warning: systemd-analyze verify says:\n{verdict.output}", err=True)
    typer.echo("\n" + inst.next_steps(plan))


def _show_plan(plan: Any, root: Path | None) -> None:
    from tossit import install as inst

    def where(p: Path) -> Path:
        return root / p.relative_to("/") if root else p

    if root is None and not inst.user_exists(plan.user):
        typer.echo(f"would create the system user {plan.user} (useradd --system)")
    typer.echo(f"would make the data dir {where(plan.data_dir)} (0750, owned by "
               f"{plan.user})")
    for path, mode, text in ((plan.env_path, f"0640, group of {plan.user}",
                              inst.env_text(plan, hide_secrets=True)),
                             (plan.unit_path, "0644 root:root", inst.unit_text(plan))):
        typer.echo(f"\n--- would write {where(path)} ({mode}) ---")
        typer.echo(text, nl=False)


@install_app.command("brain")
def install_brain(
    data_dir: InstallDataDirOpt = None,
    user: InstallUserOpt = "tossit",
    host: InstallHostOpt = "0.0.0.0",
    port: Annotated[int, typer.Option(help="port", min=1, max=65535)] = 8000,
    dry_run: DryRunOpt = False,
    force: ForceOpt = False,
    root: RootOpt = None,
) -> None:
    """Install the brain as the systemd service tossit-brain."""
    from tossit import install as inst

    _install(lambda exe: inst.brain_plan(exe, user=user, data_dir=data_dir, host=host,
                                         port=port), dry_run, force, root)


@install_app.command("node")
def install_node(
    join: Annotated[str | None, typer.Option(
        help="a join token (tossit join-token create): it names the brains and lets the "
        "node obtain the cluster secret; goes into the config file, mode 0640")] = None,
    brain: Annotated[str | None, typer.Option(
        help="the brain's URL as this machine reaches it, or several separated by commas "
        "(needed with --join-secret-file; with --join, the token's)")] = None,
    join_secret_file: Annotated[Path | None, typer.Option(
        help="instead of --join: the file holding the cluster secret (the brain's "
        "DATA_DIR/cluster.secret); its content goes into the config file, mode 0640")] = None,
    data_dir: InstallDataDirOpt = None,
    user: InstallUserOpt = "tossit",
    host: InstallHostOpt = "0.0.0.0",
    port: Annotated[int, typer.Option(help="port", min=1, max=65535)] = 8081,
    advertise_url: Annotated[str | None, typer.Option(
        help="URL the brain and the other nodes use to reach this node "
        "[http://HOSTNAME:PORT]")] = None,
    zone: Annotated[str | None, typer.Option(
        help="failure domain: copies of a chunk go to distinct zones first [this "
        "machine's name]")] = None,
    instance: Annotated[str | None, typer.Option(
        help="another node on this machine (one per disk): the service tossit-node-INSTANCE, "
        "its config /etc/tossit/node-INSTANCE.env, data dir /var/lib/tossit/node-INSTANCE; "
        "give it its own --port")] = None,
    dry_run: DryRunOpt = False,
    force: ForceOpt = False,
    root: RootOpt = None,
) -> None:
    """Install a storage node as the systemd service tossit-node."""
    from tossit import install as inst
    from tossit.auth.secretfile import SecretFileError, read_secret

    secret = None
    if join_secret_file is not None:
        try:
            secret = read_secret(join_secret_file)
        except SecretFileError as exc:
            raise _fail(f"cannot read the cluster secret: {exc}") from None
    _install(lambda exe: inst.node_plan(
        exe, brain=brain, join_secret=secret, join=join, user=user, data_dir=data_dir, host=host,
        port=port, advertise_url=advertise_url, instance=instance, zone=zone), dry_run, force, root)


@app.command()
def up(
    nodes: Annotated[int, typer.Option(help="storage nodes to start", min=1, max=50)] = 3,
    data_dir: Annotated[Path, typer.Option(help="folder for all data")] = Path("data"),
    port: Annotated[int, typer.Option(help="brain port")] = 8000,
    node_port: Annotated[int, typer.Option(help="first node port")] = 8081,
    s3_port: Annotated[int, typer.Option(help="S3 API port (0: none)")] = 9000,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    replicas: Annotated[int | None, typer.Option(help="copies per chunk [min(3, nodes)]")] = None,
    chunk_size: Annotated[str | None, typer.Option(help="e.g. 8MiB [4MiB]")] = None,
    capacity: Annotated[str | None, typer.Option(help="per-node limit, e.g. 50% or 10GiB")] = None,
    write_quorum: Annotated[int | None, typer.Option(
        help="copies fsynced before an upload is acknowledged [majority]")] = None,
    database_url: Annotated[str | None, typer.Option(
        help="metadata database URL [SQLite in DATA_DIR/brain]")] = None,
    new_admin_key: Annotated[bool, typer.Option(
        "--new-admin-key", help="create another admin key and write it to "
        "DATA_DIR/brain/admin.key (when the one there was revoked or lost)")] = False,
) -> None:
    """Run a local cluster (brain + NODES nodes) in the foreground; Ctrl-C stops it."""
    from tossit import localcluster

    try:
        localcluster.check_ports(host, port, node_port, nodes, s3_port)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if replicas is None:
        replicas = min(3, nodes)
    children = localcluster.plan(data_dir, nodes, port, node_port, host, replicas,
                                 chunk_size, capacity, write_quorum=write_quorum,
                                 database_url=database_url, new_admin_key=new_admin_key,
                                 s3_port=s3_port)
    def say(text: str) -> None:
        console.print(text, soft_wrap=True, highlight=False, markup=False)

    raise typer.Exit(localcluster.run(children, data_dir, host, port, say))


@app.command()
def recover(
    cluster_secret_file: Annotated[Path, typer.Option(
        help="the cluster secret: the lost brain's cluster.secret, or any node's "
        "DATA_DIR/cluster.secret")],
    node: Annotated[list[str] | None, typer.Option(
        "--node", help="a node's URL, e.g. http://10.0.0.5:8081 (repeat for each node)")] = None,
    node_dir: Annotated[list[Path] | None, typer.Option(
        "--node-dir", help="a node's data dir on this machine (repeat); the node need "
        "not run")] = None,
    data_dir: Annotated[Path, typer.Option(
        help="the new brain's data dir: tossit.db, cluster.secret and a new admin key "
        "go there")] = Path("data/brain"),
    database_url: Annotated[str | None, typer.Option(
        help="write into this (empty) database instead, e.g. PostgreSQL")] = None,
    replicas: Annotated[int, typer.Option(help="copies each chunk should have [3]")] = 3,
    from_snapshot: Annotated[bool, typer.Option(
        "--from-snapshot", help="start from the newest metadata snapshot on the nodes "
        "(keeps the event history and drained or removed nodes), then apply the "
        "manifests written after it")] = False,
    keys_master: Annotated[Path | None, typer.Option(
        help="a backup of the lost brain's keys.master: the API keys made before keep "
        "working on the S3 API too (without it, only on the REST API and dashboard)")
    ] = None,
    tls_ca: TlsCaOpt = None,
) -> None:
    """Rebuild the brain's metadata from the nodes alone (the brain's disk is lost).

    Reads every node's manifests and inventory, writes a new metadata database
    with every file, its chunks and their copies, deleted files kept deleted, the
    API keys, and a new admin key. Then start the brain on it (tossit brain
    --data-dir DATA_DIR). Runbook: docs/operations.md."""
    import asyncio

    from tossit.auth.secretfile import SecretFileError
    from tossit.recover import RecoverError, recover, report_lines

    try:
        secret = read_secret_or_fail(cluster_secret_file)
    except SecretFileError as exc:
        raise _fail(f"cannot read the cluster secret: {exc}") from None
    with _progress_counts() as progress:
        tasks: dict[str, Any] = {}

        def tick(what: str, done: int, total: int | None) -> None:
            if what not in tasks:
                tasks[what] = progress.add_task(what, total=total)
            progress.update(tasks[what], completed=done, total=total)

        try:
            result = asyncio.run(recover(
                secret=secret, nodes=node or [], dirs=node_dir or [], data_dir=data_dir,
                database_url=database_url, replicas=replicas, tls_ca=tls_ca, progress=tick,
                from_snapshot=from_snapshot, keys_master=keys_master))
        except RecoverError as exc:
            raise _fail(str(exc)) from None
        except Exception as exc:
            raise _fail(f"recovery failed, nothing was kept: {exc}") from None
    for text, style in report_lines(result):
        console.print(text, style=style, highlight=False, markup=False, soft_wrap=True)
    console.print(f"next: tossit brain --data-dir {data_dir}"
                  + (f" --database-url {database_url.split('@')[-1]}" if database_url else "")
                  + " --port PORT, at the address the nodes know (their --brain URL); "
                  "they reconnect by themselves. A `tossit up` cluster: run tossit up "
                  "again in its folder", highlight=False, markup=False)
    if result.plan.incomplete:
        raise typer.Exit(1)


def read_secret_or_fail(path: Path) -> str:
    from tossit.auth.secretfile import read_secret

    return read_secret(path)


def _progress_counts() -> Progress:
    from rich.progress import MofNCompleteColumn

    return Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                    MofNCompleteColumn(), console=err, transient=False)


# -- client verbs ----------------------------------------------------------


@app.command()
def ready(
    wait: Annotated[float, typer.Option(
        help="seconds to wait for readiness (0: answer at once)")] = 0,
    brain: BrainOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Is the cluster ready for writes? Exit 0 if so, 1 with the reason if not
    (for scripts and systemd: tossit ready --wait 120)."""
    from tossit.processes import wait_ready

    try:
        url = ClientSettings.load(config, brain_url=brain).brain_url
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    answer = wait_ready(url, max(wait, 0.1))
    if answer.get("status") == "ready":
        n = int(str(answer["nodes_writable"]))
        console.print(f"ready: {plural(n, 'node', verb=('takes', 'take'))} writes "
                      f"(write quorum {answer['write_quorum']})", highlight=False)
        return
    err.print(f"not ready: {answer.get('reason')}", highlight=False, markup=False)
    raise typer.Exit(1)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def _walk(paths: list[Path]) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    for p in paths:
        if p.is_dir():
            base = p.resolve().parent
            out += [(f, f.resolve().relative_to(base).as_posix())
                    for f in sorted(p.rglob("*")) if f.is_file()]
        elif p.is_file():
            out.append((p, p.name))
        else:
            raise _fail(f"{p}: no such file or folder")
    return out


@app.command()
def put(
    paths: Annotated[list[Path], typer.Argument(help="files or folders")],
    name: Annotated[str | None, typer.Option(
        "--name", "--as", help="stored name (single file only)")] = None,
    parallel: Annotated[int | None, typer.Option(
        min=1, max=64, help="parts of a big file sent at once [upload_parallel: 4]")] = None,
    no_resume: Annotated[bool, typer.Option(
        "--no-resume", help="start big files over instead of resuming an interrupted "
        "upload of them")] = False,
    brain: BrainOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Upload files and folders (folders keep their relative paths as names).

    Files above upload_parts_above (64 MiB) go in parts, several at once; an
    interrupted one (Ctrl-C, a lost connection) resumes when the same command
    runs again, sending only the parts the cluster lacks."""
    files = _walk(paths)
    if name and len(files) != 1:
        raise _fail("--name (--as) works with exactly one file")
    client = _client(brain, config)
    if parallel is not None:
        client.parallel = parallel
    total = sum(f.stat().st_size for f, _ in files)
    failures = 0
    t0 = time.monotonic()
    with _progress() as progress:
        overall = None
        if len(files) > 1:
            overall = progress.add_task(plural(len(files), "file"), total=total)
        for path, key in files:
            key = name or key
            task = progress.add_task(key, total=path.stat().st_size)

            def advance(n: int, task: Any = task) -> None:
                progress.advance(task, n)
                if overall is not None:
                    progress.advance(overall, n)

            try:
                res = client.upload(path, key, progress=advance, resume=not no_resume,
                                    notify=lambda text: progress.console.print(
                                        text, highlight=False, markup=False))
                health = res.replication.state
                note = "" if health == ReplicationState.HEALTHY else f"  [{health}]"
                progress.console.print(
                    f"[green]✓[/] {key}  id={res.id}  {format_size(res.size)}  "
                    f"{plural(res.chunks, 'chunk')}{note}", highlight=False)
            except TossitError as exc:
                failures += 1
                progress.console.print(f"[red]✗[/] {key}: {exc}", highlight=False)
            except UploadInterrupted as stop:
                progress.stop()
                err.print(_interrupted(key, stop), highlight=False, markup=False,
                          soft_wrap=True)
                raise typer.Exit(130) from None
            progress.remove_task(task)
    dt = max(time.monotonic() - t0, 1e-6)
    err.print(f"{len(files) - failures} of {len(files)} uploaded, {format_size(total)} "
              f"in {dt:.1f} s ({total / dt / 1e6:.1f} MB/s)", highlight=False)
    if failures:
        raise typer.Exit(1)


def _interrupted(key: str, stop: UploadInterrupted) -> str:
    return (f"interrupted: {stop.parts_done} of {stop.parts} parts of {key} are on the "
            f"cluster (upload {stop.upload_id}). Run the same tossit put again to resume, "
            f"or drop them: tossit uploads abort {stop.upload_id}")


def _when(iso_time: str | None) -> str:
    """An ISO time as the tables show it: to the second, no T."""
    return (iso_time or "")[:19].replace("T", " ")


def _resolve(client: TossitClient, ref: str) -> FileMeta:
    if ref.isdigit():
        meta: FileMeta = _call(client.file, int(ref))
        return meta
    found: FileMeta | None = _call(client.find, ref)
    if not found:
        raise _fail(f"no file named {ref!r}", 1)
    return found


@app.command()
def get(
    ref: Annotated[str, typer.Argument(help="file id or name")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="file or folder")] = None,
    brain: BrainOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Download a file (verified against its SHA-256)."""
    client = _client(brain, config)
    meta = _resolve(client, ref)
    dest = output or Path(meta.name.rsplit("/", 1)[-1])
    if dest.is_dir():
        dest = dest / meta.name.rsplit("/", 1)[-1]
    t0 = time.monotonic()
    with _progress() as progress:
        task = progress.add_task(escape(meta.name), total=meta.size)
        try:
            res: Downloaded = _call(client.download, meta.id, dest,
                                    progress=lambda n: progress.advance(task, n))
        except OSError as exc:  # where it was to be saved: no such folder, no room
            raise _fail(f"cannot save {dest}: {exc.strerror or exc}", 1) from None
    dt = max(time.monotonic() - t0, 1e-6)
    err.print(f"saved {dest} ({format_size(res.size)}, sha256 verified, "
              f"{res.size / dt / 1e6:.1f} MB/s)", highlight=False)


@app.command("ls")
def ls(
    search: Annotated[str | None, typer.Argument(help="substring of the name")] = None,
    limit: Annotated[int, typer.Option(help="rows")] = 100,
    bucket: Annotated[str | None, typer.Option(
        help="an S3 bucket's files (default: the REST API's, bucket 'default')")] = None,
    brain: BrainOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List files, newest first."""
    files: list[FileMeta] = _call(_client(brain, config).list_files, search, limit,
                                  bucket=bucket)
    if as_json:
        return _print_json(files)
    table = Table("id", "name", "size", "chunks", "replication", "created", box=None)
    for f in files:
        rep = f.replication
        colour = {"healthy": "green", "degraded": "yellow"}.get(rep.state, "red")
        table.add_row(str(f.id), escape(f.name), format_size(f.size), str(f.chunks),
                      f"[{colour}]{rep.state}[/] {rep.min_copies}/{rep.target}",
                      _when(f.created))
    console.print(table)


@app.command()
def buckets(
    brain: BrainOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the buckets (S3's; the REST API's files are in 'default'), with their
    files and sizes: ``tossit ls --bucket NAME`` lists one's files."""
    found: list[BucketEntry] = _call(_client(brain, config).list_buckets)
    if as_json:
        return _print_json(found)
    table = Table("bucket", "files", "size", "created", box=None)
    for b in found:
        table.add_row(escape(b.name), f"{b.files:,}", format_size(b.bytes), _when(b.created))
    console.print(table)


@app.command()
def rm(
    refs: Annotated[list[str], typer.Argument(help="file ids or names")],
    brain: BrainOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Delete files (to the trash, when it is on)."""
    client = _client(brain, config)
    for ref in refs:
        meta = _resolve(client, ref)
        out: FileDeleted = _call(client.delete, meta.id)
        if out.trash:
            console.print(f"moved {escape(meta.name)} (id {meta.id}) to the trash "
                          f"(tossit trash restore {meta.id} brings it back)", highlight=False)
        else:
            console.print(f"deleted {escape(meta.name)} (id {meta.id})", highlight=False)


@app.command()
def info(
    ref: Annotated[str, typer.Argument(help="file id or name")],
    brain: BrainOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a file's chunk map: which nodes hold each chunk."""
    client = _client(brain, config)
    meta: FileInfo = _call(client.info, _resolve(client, ref).id)
    if as_json:
        return _print_json(meta)
    console.print(f"[bold]{escape(meta.name)}[/]  id={meta.id}  {format_size(meta.size)}  "
                  f"sha256={meta.sha256}", highlight=False)
    rep = meta.replication
    console.print(f"replication: {rep.state} (fewest copies {rep.min_copies} of "
                  f"{rep.target})", highlight=False)
    table = Table("#", "chunk", "size", "nodes", "placement wants", box=None)
    for c in meta.chunk_map:
        held = ", ".join(f"{escape(n.name)}({n.node_state}/{n.replica_state})"
                         for n in c.nodes)
        table.add_row(str(c.index), c.id[:16], format_size(c.size), held,
                      str(len(c.desired_nodes)) + " nodes")
    console.print(table)


@app.command("nodes")
def nodes_cmd(brain: BrainOpt = None, config: ConfigOpt = None,
              as_json: JsonOpt = False) -> None:
    """List storage nodes."""
    rows: list[Node] = _call(_client(brain, config).nodes)
    if as_json:
        return _print_json(rows)
    table = Table(box=None, padding=(0, 1, 0, 0))
    for col in ("name", "state", "zone", "address", "used", "limit", "chunks", "seen", "id"):
        table.add_column(col, no_wrap=True,
                         justify="right" if col in ("used", "limit", "chunks") else "left")
    for n in rows:
        colour = {"online": "green", "suspect": "yellow"}.get(n.state, "red")
        state = f"[{colour}]{n.state}[/]" + (f", {n.admin_state}" if n.admin_state else "")
        table.add_row(
            escape(n.name), state, escape(n.zone), n.address.split("://")[-1],
            format_size(n.used), format_size(n.capacity), f"{n.chunk_count:,}",
            format_duration(n.seconds_since_heartbeat), n.id[:SHORT_ID])
    console.print(table)
    for n in rows:
        if n.address_problem:
            console.print(f"! {n.name} unreachable: {n.address_problem}",
                          style="bold red", highlight=False, markup=False)
        if n.write_error:
            console.print(f"! {n.name} refuses writes: its disk says {n.write_error!r}; no "
                          "new copies go there, reads go on", style="bold red",
                          highlight=False, markup=False)
        elif n.full and n.state == "online" and not n.admin_state:
            console.print(f"! {n.name} is full ({format_size(n.used)} used, "
                          f"{format_size(n.free)} free): no new copies go there; reads and "
                          "deletes go on", style="bold yellow", highlight=False, markup=False)
    console.print(f"seen: time since the last heartbeat; node commands take a name, an id "
                  f"or its first {SHORT_ID} characters", style="dim", highlight=False)
    _shared_fate(_call(_client(brain, config).status))


def _copies(n: int) -> str:
    return plural(n, "copy", "copies")


def _shared_fate(s: Status) -> None:
    """Say loudly when copies share a disk or a machine."""
    for fate in s.shared_fate:
        console.print(f"! {fate.message}", style="bold yellow", highlight=False,
                      markup=False)


@app.command()
def status(brain: BrainOpt = None, config: ConfigOpt = None,
           as_json: JsonOpt = False) -> None:
    """Cluster capacity, usage and replication health."""
    s: Status = _call(_client(brain, config).status)
    if as_json:
        return _print_json(s)
    cap = s.capacity
    rep = s.replication
    if s.needs_recovery:  # first, before anything that looks reassuring
        console.print(f"NEEDS RECOVERY: {s.needs_recovery}", style="bold red",
                      highlight=False, markup=False)
    console.print(f"nodes: {s.nodes.online} online of {s.nodes.total}  "
                  f"R={s.replicas} W={s.write_quorum}", highlight=False)
    brains = s.brains
    if brains.shared:
        live = [b for b in brains.list if b.role in ("leader", "follower")]
        leader = next((b.url for b in live if b.role == "leader"), None)
        console.print(f"brains: {len(live)} serving, leader {leader or 'none right now'}; this "
                      f"one {'leads' if brains.role == 'leader' else 'follows'}",
                      highlight=False, markup=False)
    console.print(f"capacity: room for about {format_size(cap.room)} more at "
                  f"{_copies(s.replicas)} (~{format_size(cap.usable)} in all; raw "
                  f"{format_size(cap.raw)}, used {format_size(cap.used)}, free "
                  f"{format_size(cap.free)})", highlight=False)
    takers = cap.nodes_with_room
    if takers is not None and takers < s.replicas:
        # No room at R copies however much is free: a chunk's R copies need R nodes.
        then = (f"new files get only {_copies(takers)} (about "
                f"{format_size(cap.room_fewer_copies or 0)} more that way)"
                if takers and takers >= s.write_quorum else "uploads are refused")
        console.print(f"[yellow]only {plural(takers, 'node')} can take new copies, "
                      f"{s.replicas} needed: {then}; add a node[/]", highlight=False)
    _shared_fate(s)
    console.print(f"files: {s.objects} ({format_size(s.object_bytes)}), unique chunks: "
                  f"{s.chunks} ({format_size(s.chunk_bytes)})", highlight=False)
    _trash_line(s.trash)
    _metadata_safety(s)
    table = Table("copies", "chunks", "bytes", box=None)
    for k, v in rep.by_copies.items():
        table.add_row(k, str(v.chunks), format_size(v.bytes))
    console.print(table)
    repair = s.repair
    if repair.running:
        eta = repair.eta_s
        console.print(
            f"[yellow]repairing: {repair.chunks_done:,} of {repair.chunks_total:,} "
            f"copies made ({format_size(repair.bytes_done)} of "
            f"{format_size(repair.bytes_total)}, "
            f"{format_size(repair.rate_bytes_per_s)}/s"
            + (f", about {format_duration(eta)} left" if eta is not None else "") + ")[/]",
            highlight=False)
    if rep.chunks_unavailable:
        n = rep.chunks_unavailable
        console.print(f"[red]{plural(n, 'chunk', verb=('has', 'have'))} no live copy[/]")
    elif rep.chunks_below_target:
        console.print(f"[yellow]{plural(rep.chunks_below_target, 'chunk')} below "
                      f"{_copies(s.replicas)}, "
                      f"{format_size(rep.bytes_at_risk)} at risk[/]")
    if rep.repair_stuck is not None:
        console.print(f"{rep.repair_stuck.message}: {rep.repair_stuck.advice}", style="yellow",
                      highlight=False, markup=False)
    for g in rep.waiting_for:
        console.print(f"{g.name} is {g.state}: its copies still count; they are re-made "
                      f"elsewhere if it stays "
                      f"{'unreachable' if g.state == 'unreachable' else 'silent'} for "
                      f"another {format_duration(g.dead_in_s)}",
                      highlight=False, markup=False)
    if not rep.chunks_unavailable and not rep.chunks_below_target:
        console.print("[green]every chunk has its full set of copies[/]")
    _scrub_line(s.scrub)


def _trash_line(t: TrashTotals) -> None:
    """The trash's share of the space used (its bytes are in the figures above)."""
    if t.files:
        keep = t.keep_s
        within = f"within {format_duration(keep)} or " if keep else ""
        console.print(f"in trash: {format_size(t.bytes)} ({plural(t.files, 'file')}), "
                      f"freed {within}by emptying the trash (tossit trash empty)",
                      highlight=False, markup=False)


def _scrub_line(sc: ScrubSummary) -> None:
    """One line on the scrubbers: are copies nobody reads checked for rot?"""
    if not sc.nodes:
        return
    states = ", ".join(f"{n} {st}" for st, n in sc.by_state.items())
    progress = f" ({sc.progress * 100:.0f}% through)" if sc.progress is not None else ""
    if sc.oldest_full_pass is not None:
        checked = f"oldest full pass ended {_ago(sc.oldest_full_pass)}"
    else:
        checked = f"{plural(sc.nodes_never_scrubbed, 'node')} not fully scrubbed yet"
    corrupt = sc.corrupt_found
    console.print(f"scrub: {states}{progress}; {checked}; "
                  f"{plural(corrupt, 'corrupt copy', 'corrupt copies')} found",
                  style="yellow" if corrupt or "off" in sc.by_state else None,
                  highlight=False, markup=False)


def _metadata_safety(s: Status) -> None:
    """How well the metadata would survive losing the brain: manifests waiting for
    the nodes, the last snapshot, the last fire drill."""
    m = s.manifests
    if m.deletions_frozen:
        console.print("nothing is deleted until this is sorted out (see above)",
                      style="bold red", highlight=False)
    kept = m.unknown_kept
    if kept.copies:
        console.print(f"{plural(kept.copies, 'unknown copy', 'unknown copies')} "
                      f"({format_size(kept.bytes)}) kept: no file and no record of this "
                      "brain names them, so they are not deleted", highlight=False)
    if m.waiting:
        console.print(f"[red]{plural(m.waiting, 'manifest')} not on the nodes yet: a brain "
                      "disk lost now would lose their changes[/]"
                      + (f" ({escape(m.last_error)})" if m.last_error else ""),
                      highlight=False)
    elif none := m.by_copies.get("0", 0):
        console.print(f"[red]{plural(none, 'manifest pack')} without a readable copy: a brain "
                      "disk lost now would lose their changes; the repairer writes them "
                      "again from the metadata[/]", highlight=False)
    elif m.below_target:
        console.print(f"[yellow]{plural(m.below_target, 'manifest pack')} below "
                      f"{_copies(s.replicas)}[/]", highlight=False)
    snap = s.snapshot
    if snap.last:
        console.print(f"last metadata snapshot {format_duration(snap.age_s or 0.0)} ago "
                      f"({format_size(snap.last['size'])}, {snap.kept} kept)",
                      highlight=False)
    elif snap.interval_s:
        console.print("[yellow]no metadata snapshot yet[/]", highlight=False)
    drill = s.drill
    if drill.last:
        style = "green" if drill.last.get("ok") else "red"
        console.print(f"[{style}]fire drill {format_duration(drill.age_s or 0.0)} ago said: "
                      f"{escape(drill.last['summary'])}[/]", highlight=False)


@app.command()
def drill(brain: BrainOpt = None, config: ConfigOpt = None,
          as_json: JsonOpt = False) -> None:
    """Fire drill: would losing the brain now lose anything? Rebuilds the metadata
    from the nodes into a scratch database and compares it, file by file, with
    the live one (nothing changes). Exit 1 if something would be lost."""
    client = _client(brain, config)
    with err.status("reading every node's manifests and chunk lists..."):
        r: DrillResult = _call(client.drill)
    if as_json:
        _print_json(r)
        if not r.ok:
            raise typer.Exit(1)
        return
    console.print(r.summary, style="green" if r.ok else "red", highlight=False,
                  markup=False, soft_wrap=True)
    # (what, names, count, words, a loss rather than a risk)
    findings = (("file", r.lost, r.lost_count, "would be lost", True),
                ("file", r.wrong, r.wrong_count, "would come back as another version", True),
                ("file", r.incomplete, r.incomplete_count, "would miss chunks", True),
                ("file", r.reappear, r.reappear_count, "deleted, would come back", True),
                ("file", r.manifest_below, r.manifest_below_count,
                 "manifest on fewer nodes than it should", False),
                ("file", r.chunks_below, r.chunks_below_count,
                 "chunks on fewer nodes than they should", False),
                ("bucket", r.buckets_lost, r.buckets_lost_count, "would be lost", True),
                ("bucket", r.buckets_reappear, r.buckets_reappear_count,
                 "deleted, would come back", True))
    for what, names, n, words, loss in findings:
        if n:
            console.print(f"{plural(n, what)} {words}: " + ", ".join(names)
                          + (" ..." if n > len(names) else ""), highlight=False,
                          markup=False, soft_wrap=True, style="red" if loss else "yellow")
    for src, why in r.nodes_unreachable.items():
        console.print(f"not read: {src} ({why})", style="yellow", highlight=False,
                      markup=False)
    if not r.ok:
        raise typer.Exit(1)


# -- node management -----------------------------------------------------


@node_app.command("drain")
def node_drain(
    node_id: Annotated[str, typer.Argument(help="node id or name")],
    brain: BrainOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Copy every chunk off a node; it ends 'drained' and can then be removed."""
    client = _client(brain, config)
    ref = _node_ref(client, node_id)
    plan = _call(client.node_impact, ref).drain.summary
    n: Node = _call(client.drain_node, ref)
    console.print(f"draining {escape(n.name)}: {plan}\nfollow with 'tossit status' or "
                  "'tossit events'", highlight=False, markup=False)


@node_app.command("what-if")
def node_what_if(
    node_id: Annotated[str, typer.Argument(help="node id or name")],
    brain: BrainOpt = None,
    config: ConfigOpt = None,
) -> None:
    """What would happen if this node stopped now, or were drained or removed."""
    client = _client(brain, config)
    impact: NodeImpact = _call(client.node_impact, _node_ref(client, node_id))
    stopped = impact.if_stopped
    colour = "red" if stopped.chunks_unavailable else (
        "yellow" if stopped.bytes_at_risk else "green")
    drain, remove = impact.drain, impact.remove
    lines = [(stopped.summary, colour),
             (f"drain: {drain.summary}" if drain.allowed else
              f"drain: refused now: {drain.reason}", None),
             ("remove: allowed now" if remove.allowed else
              f"remove: refused now: {remove.reason}", None)]
    for text, style in lines:  # node names come from users: never read them as markup
        console.print(text, style=style, highlight=False, markup=False, soft_wrap=True)


@node_app.command("undrain")
def node_undrain(
    node_id: Annotated[str, typer.Argument(help="node id or name")],
    brain: BrainOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Stop draining a node: it takes new chunks again."""
    client = _client(brain, config)
    n: Node = _call(client.undrain_node, _node_ref(client, node_id))
    console.print(f"{escape(n.name)} takes new chunks again", highlight=False)


@node_app.command("remove")
def node_remove(
    node_id: Annotated[str, typer.Argument(help="node id or name")],
    brain: BrainOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Forget a node. Refused while it holds the only copy of anything."""
    client = _client(brain, config)
    n: NodeRemoved = _call(client.remove_node, _node_ref(client, node_id))
    console.print(f"removed {escape(n.name)} ({n.id})", highlight=False)


def _node_ref(client: TossitClient, ref: str) -> str:
    """A node's id from its id, name or the start of its id (as `tossit nodes` shows)."""
    rows: list[Node] = _call(client.nodes)
    for n in rows:
        if ref == n.id:
            return n.id
    named = [n for n in rows if n.name == ref]
    if len(named) == 1:
        return named[0].id
    if named:  # (a node re-installed under the same name, its old self not removed yet)
        listed = ", ".join(f"{n.id[:SHORT_ID]} ({n.state})" for n in named)
        raise _fail(f"{len(named)} nodes are named {ref!r}: {listed}; give the id", 1)
    starts = [n for n in rows if len(ref) >= SHORT_ID and n.id.startswith(ref)]
    if len(starts) == 1:
        return starts[0].id
    if starts:
        raise _fail(f"{ref!r} starts the ids of {len(starts)} nodes: give more of it", 1)
    raise _fail(f"no node {ref!r} (see 'tossit nodes')", 1)


def _id_column(table: Table, header: str, width: int) -> None:
    """A column of ids users copy into other commands: never cut short with an
    ellipsis nor folded, whatever the terminal's width (other columns wrap)."""
    table.add_column(header, no_wrap=True, min_width=width)


def _by_prefix(ref: str, rows: list[tuple[str, str]], what: str, listing: str,
               shortest: int) -> str:
    """The one id of ``rows`` ((id, label) pairs, as ``listing`` shows them)
    that ``ref`` is, or starts: as node commands take an id's start. A start
    shorter than ``shortest``, several ids or none: refused, with why."""
    for row_id, _ in rows:
        if ref == row_id:
            return row_id
    if len(ref) < shortest:
        raise _fail(f"{escape(repr(ref))} is too short: give the {what}'s id, or at least "
                    f"its first {shortest} characters (see '{listing}')", 1)
    starts = [(i, label) for i, label in rows if i.startswith(ref)]
    if len(starts) == 1:
        return starts[0][0]
    if starts:
        shown = ", ".join(f"{i} ({escape(label)})" for i, label in starts[:5])
        more = f" and {len(starts) - 5} more" if len(starts) > 5 else ""
        raise _fail(f"{escape(repr(ref))} starts the ids of {len(starts)} {what}s: {shown}{more}; "
                    "give more of it", 1)
    raise _fail(f"no {what} {escape(repr(ref))} (see '{listing}')", 1)


@app.command()
def events(
    limit: Annotated[int, typer.Option(help="rows")] = 30,
    kind: Annotated[str | None, typer.Option(help="only this kind, e.g. node_offline")] = None,
    brain: BrainOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What the cluster did and why, newest first."""
    rows: list[Event] = _call(_client(brain, config).events, limit, kind)
    if as_json:
        return _print_json(rows)
    colours = {"error": "red", "warning": "yellow"}
    for e in rows:  # names come from users: never read them as markup
        again = f"  (×{e.count:,} since {_when(e.first_time)})" if e.count > 1 else ""
        console.print(f"{_when(e.time)}  {e.message}{again}",
                      style=colours.get(e.severity), highlight=False, markup=False,
                      soft_wrap=True)


# -- scrub -----------------------------------------------------------------

# An upload's id: 12 hex digits of its start time (ms), then 20 random ones.
UPLOAD_ID_LENGTH = 32

uploads_app = typer.Typer(help="Parted uploads of big files not completed yet (tossit put "
                          "resumes them; the cluster drops them after multipart_keep, 7 days).",
                          no_args_is_help=True)
app.add_typer(uploads_app, name="uploads")


@uploads_app.command("ls")
def uploads_ls(brain: BrainOpt = None, config: ConfigOpt = None,
               as_json: JsonOpt = False) -> None:
    """Uploads started and neither completed nor aborted, with the parts they hold."""
    client = _client(brain, config)
    uploads = _call(client.list_uploads)
    if as_json:
        return _print_json(uploads)
    if not uploads:
        console.print("no uploads in progress")
        return
    table = Table(box=None)
    _id_column(table, "id", UPLOAD_ID_LENGTH)
    table.add_column("name", overflow="fold")
    for col in ("started", "parts", "size"):
        table.add_column(col)
    for u in uploads:
        parts = _call(client.upload_parts, u.id)
        table.add_row(u.id, escape(u.name), _when(u.created), str(len(parts)),
                      format_size(sum(p.size for p in parts)))
    console.print(table)


@uploads_app.command("abort")
def uploads_abort(
    upload_ids: Annotated[list[str], typer.Argument(
        help="upload ids, or their first characters (tossit uploads ls)")],
    brain: BrainOpt = None, config: ConfigOpt = None,
) -> None:
    """Drop uploads and free the space their parts hold."""
    client = _client(brain, config)
    listed: list[tuple[str, str]] | None = None
    for ref in upload_ids:
        upload_id = ref.lower()
        if len(upload_id) != UPLOAD_ID_LENGTH:  # the start of one: which?
            if listed is None:
                listed = [(u.id, u.name) for u in _call(client.list_uploads)]
            upload_id = _by_prefix(upload_id, listed, "upload", "tossit uploads ls", 4)
        _call(client.abort_upload, upload_id)
        console.print(f"aborted upload {upload_id}", highlight=False)


trash_app = typer.Typer(help="Deleted and overwritten files, kept for trash_keep (7 days by "
                        "default): list, restore, delete for good.", no_args_is_help=True,
                        rich_markup_mode=None)
app.add_typer(trash_app, name="trash")


@trash_app.command("ls")
def trash_ls(
    limit: Annotated[int, typer.Option(help="show at most this many")] = 100,
    brain: BrainOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False,
) -> None:
    """Files in the trash, newest first, with when each is purged."""
    out: TrashPage = _call(_client(brain, config).trash, limit)
    if as_json:
        return _print_json(out)
    table = Table("id", "name", "size", "why", "deleted", "purged after", box=None)
    for f in out.files:
        table.add_row(str(f.id), escape(shown_name(f.name, f.bucket)), format_size(f.size), f.why,
                      _when(f.deleted), _when(f.purge_at))
    if out.files:
        console.print(table)
    shown = len(out.files)
    more = f" (showing {shown:,})" if shown < out.total else ""
    console.print(f"{plural(out.total, 'file')} in the trash, "
                  f"{format_size(out.bytes)}{more}; restore with tossit trash restore ID",
                  style="dim", highlight=False, markup=False)


def shown_name(name: str, bucket: str | None) -> str:
    """A file's name as listings show it: an S3 bucket's file (not the REST API's
    bucket 'default') with its bucket in front, as s3:// names it."""
    return name if bucket in (None, "default") else f"{bucket}/{name}"


@trash_app.command("restore")
def trash_restore(
    file_id: Annotated[int, typer.Argument(help="the file's id (tossit trash ls)")],
    as_name: Annotated[str | None, typer.Option("--as", help="restore under this name")] = None,
    on_conflict: Annotated[str, typer.Option(
        "--on-conflict", help="when a file has that name now: fail, rename (keep both) or "
        "replace (that file goes to the trash)")] = "fail",
    brain: BrainOpt = None, config: ConfigOpt = None,
) -> None:
    """Bring a file back from the trash, with its id and bytes."""
    choices: dict[str, OnConflict] = {"fail": "fail", "rename": "rename", "replace": "replace"}
    if on_conflict not in choices:
        raise _fail("--on-conflict is fail, rename or replace")
    f = _call(_client(brain, config).restore, file_id, as_name, choices[on_conflict])
    console.print(f"restored {escape(f.name)} (id {f.id}, {format_size(f.size)})"
                  + (f"; the file that had the name (id {f.replaced}) went to the trash"
                     if f.replaced else ""), highlight=False)


@trash_app.command("rm")
def trash_rm(
    file_ids: Annotated[list[int], typer.Argument(help="file ids (tossit trash ls)")],
    brain: BrainOpt = None, config: ConfigOpt = None,
) -> None:
    """Delete files from the trash for good (needs an admin key)."""
    client = _client(brain, config)
    for file_id in file_ids:
        out: TrashPurged = _call(client.purge, file_id)
        console.print(f"deleted id {file_id} for good ({format_size(out.bytes)})",
                      highlight=False)


@trash_app.command("empty")
def trash_empty(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    brain: BrainOpt = None, config: ConfigOpt = None,
) -> None:
    """Delete everything in the trash for good (needs an admin key). Asks first
    in a terminal; elsewhere it needs --yes."""
    client = _client(brain, config)
    if not yes:
        if not sys.stdin.isatty():
            raise _fail("emptying the trash deletes its files for good: add --yes")
        t: TrashPage = _call(client.trash, 1)
        if not t.total:
            console.print("the trash is empty")
            return
        if not typer.confirm(f"Delete {plural(t.total, 'file')} "
                             f"({format_size(t.bytes)}) for good?"):
            raise typer.Exit(1)
    out: TrashEmptied = _call(client.empty_trash)
    console.print(f"emptied the trash: {plural(out.purged, 'file')} "
                  f"({format_size(out.bytes)}) deleted for good", highlight=False)


scrub_app = typer.Typer(help="See and steer the nodes' background scrubbing, which re-hashes "
                        "every copy to find rot (needs an admin key).", no_args_is_help=True,
                        rich_markup_mode=None)
app.add_typer(scrub_app, name="scrub")
NodeOpt = Annotated[str | None, typer.Option("--node", help="only this node (name or id)")]


def _ago(ts: float | None) -> str:
    return "never" if ts is None else f"{format_duration(max(0.0, time.time() - ts))} ago"


def _scrub_rows(rows: list[ScrubRow]) -> None:
    table = Table(box=None, padding=(0, 1, 0, 0))
    for col in ("node", "scrub", "progress", "checked", "rate", "last full pass", "corrupt"):
        table.add_column(col, no_wrap=True, justify="right" if col in (
            "progress", "checked", "rate", "corrupt") else "left")
    for r in rows:
        s = r.scrub
        if s is None or r.error:
            table.add_row(escape(r.name), f"[red]{escape(r.error or '?')}[/]",
                          "", "", "", "", "")
            continue
        colour = {"scanning": "green", "paused": "yellow", "off": "red"}.get(s["state"], "")
        state = f"[{colour}]{s['state']}[/]" if colour else s["state"]
        rate = f"{format_size(s['rate'])}/s"
        if s.get("measured_rate") is not None and s["state"] == "scanning":
            rate = f"{format_size(s['measured_rate'])}/s of {rate}"
        last = s.get("last_full_pass")
        progress = "" if s["progress"] is None else f"{s['progress'] * 100:.1f}%"
        table.add_row(escape(r.name), state, progress, format_size(s["bytes_checked"]),
                      rate, _ago(last["finished"] if last else None), f"{s['corrupt_found']:,}")
    console.print(table)


@scrub_app.command("status")
def scrub_status(brain: BrainOpt = None, config: ConfigOpt = None,
                 as_json: JsonOpt = False) -> None:
    """Per node: the pass in progress, bytes checked, rate, the last full pass
    and the corrupt copies found (quarantined and repaired from good copies)."""
    answer = _call(_client(brain, config).scrub_status)
    if as_json:
        return _print_json(answer)
    _scrub_rows(answer.nodes)
    console.print("checked: this pass; corrupt: copies found rotten since the node's first "
                  "pass", style="dim", highlight=False)


def _scrub_order(action: ScrubAction, node: str | None, brain: str | None,
                 config: Path | None) -> None:
    client = _client(brain, config)
    target = _node_ref(client, node) if node else None  # (a name, an id or its start)
    rows: list[ScrubRow] = _call(client.scrub, action, target).nodes
    _scrub_rows(rows)
    if any(r.error for r in rows):
        raise typer.Exit(1)


@scrub_app.command("start")
def scrub_start(node: NodeOpt = None, brain: BrainOpt = None, config: ConfigOpt = None) -> None:
    """Begin a pass now (a pass in progress goes on; a paused one resumes)."""
    _scrub_order("start", node, brain, config)


@scrub_app.command("pause")
def scrub_pause(node: NodeOpt = None, brain: BrainOpt = None, config: ConfigOpt = None) -> None:
    """Pause scrubbing where it is (kept across node restarts)."""
    _scrub_order("pause", node, brain, config)


@scrub_app.command("resume")
def scrub_resume(node: NodeOpt = None, brain: BrainOpt = None, config: ConfigOpt = None) -> None:
    """Go on scrubbing from where it was paused."""
    _scrub_order("resume", node, brain, config)


@scrub_app.command("rate")
def scrub_rate(
    rate: Annotated[str, typer.Argument(help="bytes/s, e.g. 200MiB/s")],
    node: NodeOpt = None, brain: BrainOpt = None, config: ConfigOpt = None,
) -> None:
    """Change the scrub rate now; each node keeps it across restarts (until its
    configured scrub_rate is changed)."""
    client = _client(brain, config)
    target = _node_ref(client, node) if node else None
    rows: list[ScrubRow] = _call(client.scrub_rate, rate, target).nodes
    _scrub_rows(rows)
    if any(r.error for r in rows):
        raise typer.Exit(1)


# -- keys ----------------------------------------------------------------

key_app = typer.Typer(help="Manage API keys (needs an admin key).", no_args_is_help=True,
                      rich_markup_mode=None)
app.add_typer(key_app, name="key")
ROLES = ("readonly", "readwrite", "admin")
KEY_ID_LENGTH = 20  # TK and 18 base32 characters


@key_app.command("create")
def key_create(
    name: Annotated[str, typer.Option(help="who or what will use the key")],
    role: Annotated[str, typer.Option(
        help="readonly (list, download), readwrite (+ upload, delete), admin (+ nodes, keys)"
    )] = "readwrite",
    expires: Annotated[str | None, typer.Option(help="lifetime, e.g. 12h, 30d, 1y [never]")
                       ] = None,
    secret_only: Annotated[bool, typer.Option(
        "--secret-only", help="print only the secret (for scripts)")] = False,
    brain: BrainOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create a key. Its secret is shown once: store it now."""
    if role not in ROLES:
        raise _fail(f"--role is one of {', '.join(ROLES)}")
    try:
        lifetime = parse_duration(expires) if expires else None
    except ValueError as exc:
        raise _fail(f"--expires: {exc}") from None
    k: KeyCreated = _call(_client(brain, config).create_key, name, role, lifetime)
    if secret_only:
        print(k.secret)
        return
    console.print(f"created {k.role} key {k.id} ({escape(k.name)})"
                  + (f", expires {k.expires[:19]}Z" if k.expires else ""), highlight=False)
    console.print(f"secret: {k.secret}", highlight=False, soft_wrap=True)
    err.print("This secret is not stored anywhere and cannot be shown again. Use it as "
              "TOSSIT_KEY=... or 'Authorization: Bearer ...'.", highlight=False)


@key_app.command("list")
def key_list(brain: BrainOpt = None, config: ConfigOpt = None,
             as_json: JsonOpt = False) -> None:
    """List keys (never their secrets)."""
    rows: list[Key] = _call(_client(brain, config).list_keys)
    if as_json:
        return _print_json(rows)
    table = Table(box=None)
    _id_column(table, "id", KEY_ID_LENGTH)
    table.add_column("name", overflow="fold")
    for col in ("role", "state", "created", "expires"):
        table.add_column(col)
    for k in rows:
        colour = {"active": "green"}.get(k.state, "red")
        table.add_row(k.id, escape(k.name), k.role, f"[{colour}]{k.state}[/]",
                      _when(k.created), _when(k.expires) or "never")
    console.print(table)


@key_app.command("revoke")
def key_revoke(
    key_id: Annotated[str, typer.Argument(
        help="the key's id (TK...), or its first characters (tossit key list)")],
    brain: BrainOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Revoke a key: every request made with it fails from now on."""
    client = _client(brain, config)
    ref = key_id.upper()  # (ids are upper-case base32)
    if len(ref) != KEY_ID_LENGTH:  # the start of one: which?
        listed = [(k.id, f"{k.name}, {k.state}") for k in _call(client.list_keys)]
        ref = _by_prefix(ref, listed, "key", "tossit key list", 6)
    k: Key = _call(client.revoke_key, ref)
    console.print(f"revoked key {k.id} ({escape(k.name)})", highlight=False)


# -- join tokens -----------------------------------------------------------

join_app = typer.Typer(help="Join tokens: one line that lets a new machine join as a node "
                       "(tossit node --join TOKEN). Needs an admin key.",
                       no_args_is_help=True, rich_markup_mode=None)
app.add_typer(join_app, name="join-token")


@join_app.command("create")
def join_token_create(
    expires: Annotated[str, typer.Option(help="lifetime, e.g. 10m, 1h, 2d (at most 30d)")
                       ] = "1h",
    uses: Annotated[int, typer.Option(help="machines it lets join", min=1, max=1000)] = 1,
    url: Annotated[list[str] | None, typer.Option(
        "--url", help="brain URL the new machine should use (repeat for several) [the "
        "brain's advertised URL(s)]")] = None,
    brain: BrainOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create a join token and print it (one line, shown once)."""
    try:
        lifetime = parse_duration(expires)
    except ValueError as exc:
        raise _fail(f"--expires: {exc}") from None
    t: JoinTokenCreated = _call(_client(brain, config).create_join_token, lifetime, uses,
                                url or None)
    print(t.token, flush=True)
    from urllib.parse import urlsplit

    from tossit.auth.binding import is_loopback

    lets = "one machine" if t.uses == 1 else f"{t.uses} machines"
    err.print(f"join token {t.id}: lets {lets} join until {t.expires[:19]}Z, at "
              f"{', '.join(t.brains)}. On the new machine: tossit node --join TOKEN "
              "(or TOSSIT_JOIN=TOKEN). It is not stored anywhere and cannot be shown again.",
              highlight=False, markup=False, soft_wrap=True)
    if all(is_loopback(urlsplit(u).hostname or "") for u in t.brains):
        port = urlsplit(t.brains[0]).port if t.brains else None
        err.print("warning: the token names only loopback addresses, so only a node on "
                  "this machine can use it: give --url http://HOST"
                  f"{f':{port}' if port else ''}, or start the "
                  "brain with --advertise-url", style="yellow", highlight=False,
                  markup=False, soft_wrap=True)


@join_app.command("ls")
@join_app.command("list", hidden=True)  # as in tossit key list
def join_token_ls(brain: BrainOpt = None, config: ConfigOpt = None,
                  as_json: JsonOpt = False) -> None:
    """List join tokens (never their secrets)."""
    rows: list[JoinToken] = _call(_client(brain, config).list_join_tokens)
    if as_json:
        return _print_json(rows)
    table = Table(box=None)
    _id_column(table, "id", max((len(t.id) for t in rows), default=2))
    for col in ("state", "used", "expires", "used by", "created by"):
        table.add_column(col, overflow="fold")  # (created by: a key's name and whole id)
    for t in rows:
        colour = {"active": "green", "used": "dim"}.get(t.state, "red")
        used_by = (f"{t.used_by_name} ({t.used_by[:SHORT_ID]})" if t.used_by
                   else "")
        table.add_row(t.id, f"[{colour}]{t.state}[/]", f"{t.used}/{t.uses}",
                      _when(t.expires), escape(used_by), escape(t.created_by))
    console.print(table)


@join_app.command("revoke")
def join_token_revoke(
    token_id: Annotated[str, typer.Argument(help="the token's id (JT...)")],
    brain: BrainOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Revoke a join token: no machine can join with it from now on."""
    t: JoinToken = _call(_client(brain, config).revoke_join_token, token_id)
    console.print(f"revoked join token {t.id}", highlight=False)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
