"""``tossit install brain|node``: a systemd service for a machine without containers.

It writes three things, and prints what to do next:

* ``/etc/systemd/system/tossit-ROLE.service``, which runs the installed ``tossit``
  as an unprivileged system user with the settings of
* ``/etc/tossit/ROLE.env``, every setting of the role as a ``TOSSIT_*`` variable
  (the ones chosen at install time set, the others commented out with their
  defaults: the file documents itself, from the same fields ``config.py`` reads);
* the data dir (``/var/lib/tossit/ROLE``), owned by that user, mode 0750.

The texts are built by pure functions (:func:`unit_text`, :func:`env_text`) so
that tests and ``--dry-run`` see exactly what a real install writes, without
root; the generated unit is the one documented in docs/deployment.md, so there
is a single source of truth for it.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tossit import __version__
from tossit.auth.secretfile import write_atomic
from tossit.config import BrainSettings, NodeSettings

ROLES = ("brain", "node")
DEFAULT_USER = "tossit"
UNIT_DIR = Path("/etc/systemd/system")
CONFIG_DIR = Path("/etc/tossit")
DATA_ROOT = Path("/var/lib/tossit")
# The env file may hold secrets (a node's cluster secret; a brain's database URL
# with its password, added later by hand): readable by root and the service's group.
ENV_MODE = 0o640
UNIT_MODE = 0o644
DATA_MODE = 0o750

_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_INSTANCE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
# systemd expands % specifiers and splits on whitespace: keep paths plain.
_PATH_RE = re.compile(r"^/[A-Za-z0-9._+@:/-]*$")


class InstallError(Exception):
    """The install cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class Plan:
    """What ``tossit install ROLE`` sets up. Paths are as the running system sees
    them (``--root`` only prefixes where the files are written)."""

    role: str
    tossit: str  # absolute path of the tossit executable ExecStart runs
    user: str
    data_dir: Path
    # TOSSIT_* variables set (uncommented) in the env file, in order.
    settings: dict[str, str] = field(default_factory=dict)
    # Those of them that are secrets: shown as <hidden> by --dry-run.
    secrets: frozenset[str] = frozenset()
    # A second node on this machine (another disk): tossit-node-INSTANCE.
    instance: str | None = None

    @property
    def name(self) -> str:
        """``brain``, ``node`` or ``node-INSTANCE``: names the service and its files."""
        return f"{self.role}-{self.instance}" if self.instance else self.role

    @property
    def command(self) -> str:
        """The command that writes (and with --force re-writes) this service."""
        return f"tossit install {self.role}" + (
            f" --instance {self.instance}" if self.instance else "")

    @property
    def service(self) -> str:
        return f"tossit-{self.name}"

    @property
    def unit_name(self) -> str:
        return f"{self.service}.service"

    @property
    def unit_path(self) -> Path:
        return UNIT_DIR / self.unit_name

    @property
    def env_path(self) -> Path:
        return CONFIG_DIR / f"{self.name}.env"

    @property
    def local_url(self) -> str:
        """The brain as seen from its own machine (for ``tossit ready``)."""
        return f"http://127.0.0.1:{self.settings.get('TOSSIT_PORT', '8000')}"


def check_user(user: str) -> str:
    if not _USER_RE.match(user):
        raise InstallError(f"{user!r} is not a valid system user name (lowercase letters, "
                           "digits, _ and -, at most 32)")
    return user


def check_path(path: Path, what: str) -> Path:
    """An absolute path systemd takes as it is (no spaces, no % specifiers)."""
    text = os.path.normpath(str(path))
    if not _PATH_RE.match(text) or text == "/":
        raise InstallError(f"{what} must be an absolute path of letters, digits and . _ + @ : - "
                           f"(got {str(path)!r})")
    return Path(text)


def find_tossit() -> str:
    """The absolute path of the installed ``tossit`` command: the one running now
    when started as ``tossit``, else the one next to this Python (a venv), else
    the one on PATH."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "tossit" and argv0.is_file():
        return os.path.abspath(argv0)
    beside = Path(sys.executable).parent / "tossit"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("tossit")
    if found:
        return os.path.abspath(found)
    raise InstallError("cannot find the tossit command (install it with pip first)")


def root_refusal(euid: int, dry_run: bool, root: Path | None) -> str | None:
    """Why this run may not go ahead (None: it may). Installing creates a user,
    writes to /etc and changes owners, so it needs root; --dry-run writes nothing
    and --root writes into a folder of the caller's choosing (tests, packagers)."""
    if euid == 0 or dry_run or root is not None:
        return None
    return ("tossit install must run as root (it creates a user, writes to /etc and "
            "/var/lib): run it with sudo, or add --dry-run to see what it would write")


def _plain(settings: dict[str, str]) -> dict[str, str]:
    """Values as the env file can hold them: one word each (a newline would start
    another variable, and systemd splits unquoted values on spaces)."""
    for var, value in settings.items():
        if not value or any(c.isspace() or not c.isprintable() for c in value):
            raise InstallError(f"{var}: {value!r} must be one word, without spaces")
    return settings


def brain_plan(tossit: str, *, user: str = DEFAULT_USER, data_dir: Path | None = None,
               host: str = "0.0.0.0", port: int = 8000) -> Plan:
    data = check_path(data_dir or DATA_ROOT / "brain", "the data dir")
    exe = str(check_path(Path(tossit), "the tossit command's path"))
    return Plan("brain", exe, check_user(user), data, _plain({
        "TOSSIT_HOST": host, "TOSSIT_PORT": str(port), "TOSSIT_DATA_DIR": str(data)}))


def node_plan(tossit: str, *, brain: str | None, join_secret: str | None = None,
              join: str | None = None, user: str = DEFAULT_USER,
              data_dir: Path | None = None, host: str = "0.0.0.0", port: int = 8081,
              advertise_url: str | None = None, instance: str | None = None,
              zone: str | None = None) -> Plan:
    """A node's plan, joining with the cluster secret itself (``join_secret``) or a
    join token (``join``, which also names the brains: ``brain`` may then be None).
    Either goes into the env file (mode 0640 root:USER), not a path, because the
    file it came from is often in a home folder, which the service cannot see
    (ProtectHome=yes). A token is used once; the node keeps the secret it obtains
    in its data dir, and a restart with the same token just starts.

    ``zone`` defaults to this machine's name: copies of a chunk then go to distinct
    machines first, and the nodes of one machine (one per disk) share its zone."""
    from tossit.config import brain_urls

    if instance is not None and not _INSTANCE_RE.match(instance):
        raise InstallError(f"--instance {instance!r}: 1-32 lowercase letters, digits and -")
    data = check_path(data_dir or DATA_ROOT / (f"node-{instance}" if instance else "node"),
                      "the data dir")
    if (join_secret is None) == (join is None):
        raise InstallError("give either --join TOKEN or --join-secret-file (one of them)")
    settings = {"TOSSIT_NODE_HOST": host, "TOSSIT_NODE_PORT": str(port),
                "TOSSIT_NODE_DATA_DIR": str(data)}
    if brain is None and join is None:
        raise InstallError("--brain is needed with --join-secret-file")
    if brain is not None:
        try:
            settings["TOSSIT_NODE_BRAIN"] = ",".join(brain_urls(brain))
        except ValueError as exc:
            raise InstallError(f"--brain: {exc}") from None
    if advertise_url:
        settings["TOSSIT_NODE_ADVERTISE_URL"] = advertise_url
    if zone is not None and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", zone):
        raise InstallError("--zone: 1-64 letters, digits or . _ : -")
    settings["TOSSIT_NODE_ZONE"] = zone or machine_zone()
    if join is not None:
        from tossit.auth.jointoken import TokenError, decode

        try:
            decode(join)
        except TokenError as exc:
            raise InstallError(f"--join: {exc}") from None
        secret_var, secret = "TOSSIT_NODE_JOIN", join
    else:
        assert join_secret is not None
        if not join_secret or any(c.isspace() for c in join_secret):
            raise InstallError("the cluster secret is empty or has spaces in it")
        secret_var, secret = "TOSSIT_NODE_JOIN_SECRET", join_secret
    settings[secret_var] = secret
    exe = str(check_path(Path(tossit), "the tossit command's path"))
    return Plan("node", exe, check_user(user), data, _plain(settings),
                frozenset({secret_var}), instance)


def machine_zone() -> str:
    """This machine's short host name as a zone name ("default" if it is not one)."""
    name = socket.gethostname().split(".")[0]
    return name if re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", name) else "default"


def _protect_home(tossit: str) -> str:
    """``yes`` hides /home, /root and /run/user from the service; a tossit installed
    under them (a venv in a home folder, pip install --user) must stay readable."""
    under_home = any(tossit == p or tossit.startswith(p + "/")
                     for p in ("/home", "/root", "/run/user"))
    return "read-only" if under_home else "yes"


def unit_text(plan: Plan) -> str:
    """The systemd unit. Settings live in the env file, so ExecStart stays short and
    holds no secret (a command line is visible to every user of the machine)."""
    role = plan.role
    if role == "brain":
        description = "TossIt brain (metadata, REST API and dashboard)"
        extra_unit = "# With PostgreSQL on this machine, also: After=postgresql.service\n"
        readiness = (
            "# Readiness: a unit that needs the cluster waits for it (a new brain is alive\n"
            "# but not ready until enough nodes joined, so this is no ExecStartPost here):\n"
            f"#   After={plan.unit_name}\n"
            f"#   ExecStartPre={plan.tossit} ready --wait 300 --brain {plan.local_url}\n")
    else:
        description = "TossIt storage node" + (f" {plan.instance}" if plan.instance else "")
        extra_unit = ""
        readiness = ""
    return f"""\
# Written by '{plan.command}' (TossIt {__version__}); settings: {plan.env_path}.
# Regenerate with '{plan.command} --force' (replaces this file and the env file).
[Unit]
Description={description}
After=network-online.target
Wants=network-online.target
# Never start on an empty mount point (it would look like a new, empty {role}):
RequiresMountsFor={plan.data_dir}
{extra_unit}
[Service]
Type=simple
User={plan.user}
EnvironmentFile={plan.env_path}
WorkingDirectory={plan.data_dir}
ExecStart={plan.tossit} {role}
{readiness}Restart=on-failure
RestartSec=3
# uvicorn lets requests finish for up to 5 s after SIGTERM
TimeoutStopSec=30
UMask=0077
# At start the server raises its open-file limit to this and sizes its connection cap
LimitNOFILE=65536
# Hardening: the service writes only to its data dir and sees no home folders.
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={plan.data_dir}
ProtectHome={_protect_home(plan.tossit)}
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes

[Install]
WantedBy=multi-user.target
"""


def _default_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _comment(text: str, width: int = 80) -> list[str]:
    """``text`` as ``# `` lines of at most ``width`` characters."""
    lines: list[str] = []
    line = "#"
    for word in text.split():
        if len(line) + 1 + len(word) > width and line != "#":
            lines.append(line)
            line = "#"
        line += " " + word
    if line != "#":
        lines.append(line)
    return lines


def env_text(plan: Plan, *, hide_secrets: bool = False) -> str:
    """The env file: the plan's settings, then every other setting of the role
    commented out with its default, described as in config.py (so the file
    names each variable the process reads, and the two cannot drift apart)."""
    cls: type[BrainSettings] | type[NodeSettings] = (
        BrainSettings if plan.role == "brain" else NodeSettings)
    prefix = str(cls.model_config.get("env_prefix", "TOSSIT_"))
    out = [
        f"# TossIt {plan.role} settings, read by {plan.unit_name} (EnvironmentFile=).",
        f"# Written by '{plan.command}'. After a change: "
        f"systemctl restart {plan.service}",
        "# One VARIABLE=value a line, no quotes needed; these win over a TOML file, if",
        "# you also keep one: TOSSIT_CONFIG=/etc/tossit/tossit.toml. All settings:",
        "# docs/configuration.md. Sizes take units (4MiB), durations are seconds.",
        "",
    ]
    for var, value in plan.settings.items():
        shown = "<hidden>" if hide_secrets and var in plan.secrets else value
        out.append(f"{var}={shown}")
    out += ["", "# Defaults (uncomment to change):"]
    for name, info in cls.model_fields.items():
        var = (prefix + name).upper()
        if var in plan.settings:
            continue
        if info.description:
            out += _comment(info.description)
        out.append(f"# {var}={_default_text(info.default)}")
    return "\n".join(out) + "\n"


def _reachable_host(host: str) -> str:
    """How other machines name this one, for a server listening on ``host``."""
    return socket.gethostname() if host in ("0.0.0.0", "::", "") else host


def next_steps(plan: Plan) -> str:
    """What the operator does after the files are written."""
    service = plan.service
    lines = ["Next:",
             f"  systemctl daemon-reload && systemctl enable --now {service}",
             f"  journalctl -u {service} -f          # its log"]
    if plan.role == "brain":
        port = plan.settings.get("TOSSIT_PORT", "8000")
        url = f"http://{_reachable_host(plan.settings.get('TOSSIT_HOST', ''))}:{port}"
        lines += [
            f"On its first start the brain writes the admin key to {plan.data_dir}/admin.key",
            f"and the cluster secret to {plan.data_dir}/cluster.secret (root can read both).",
            f"  Dashboard: {url}/ - sign in with the admin key "
            f"(sudo cat {plan.data_dir}/admin.key)",
            f"  CLI here:  sudo TOSSIT_KEY_FILE={plan.data_dir}/admin.key "
            f"{plan.tossit} status" + (f" --brain {plan.local_url}" if port != "8000" else ""),
            f"  Nodes:     here, '{plan.tossit} join-token create' (with the admin key) "
            "prints a token;",
            "             on each storage machine: sudo tossit install node --join TOKEN",
            "             (or copy cluster.secret there and use --brain "
            f"{url} --join-secret-file cluster.secret)",
            f"  Wait until the cluster takes writes: {plan.tossit} ready --wait 300 "
            f"--brain {plan.local_url}",
            f"Without TLS, keys cross the network in clear: set TOSSIT_TLS_CERT and "
            f"TOSSIT_TLS_KEY in {plan.env_path} (docs/deployment.md, TLS).",
        ]
    else:
        port = plan.settings["TOSSIT_NODE_PORT"]
        brains = plan.settings.get("TOSSIT_NODE_BRAIN") or "the brain its join token names"
        lines += [
            f"The node joins {brains} within seconds; on the brain, 'tossit nodes' lists it.",
            "The brain and the other nodes reach it at TOSSIT_NODE_ADVERTISE_URL "
            f"(default http://{socket.gethostname()}:{port}): set it in "
            f"{plan.env_path} if that name does not resolve.",
        ]
    return "\n".join(lines)


# -- I/O ---------------------------------------------------------------------


def _under(root: Path | None, path: Path) -> Path:
    return root / path.relative_to("/") if root is not None else path


def existing_files(plan: Plan, root: Path | None) -> list[Path]:
    """The files an install would replace (it refuses to without --force)."""
    return [p for p in (_under(root, plan.unit_path), _under(root, plan.env_path))
            if p.exists()]


def _ids(user: str) -> tuple[int, int] | None:
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


def user_exists(user: str) -> bool:
    return _ids(user) is not None


def create_user(user: str) -> None:
    """A system user with its own group, no login shell and no home folder made."""
    shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
    cmd = ["useradd", "--system", "--user-group", "--no-create-home",
           "--home-dir", str(DATA_ROOT), "--shell", shell, user]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise InstallError(f"useradd not found: create the system user {user!r} "
                           "yourself, then run this again") from None
    if done.returncode != 0:
        raise InstallError(f"useradd failed: {done.stderr.strip() or done.returncode}")


def install(plan: Plan, *, root: Path | None = None, force: bool = False) -> list[str]:
    """Create the user (not under ``root``), the data dir, the env file and the unit.
    Returns what it did, one line each. Refuses (before writing anything) to
    replace the unit or the env file without ``force``; never touches the data
    dir's contents."""
    there = existing_files(plan, root)
    if there and not force:
        names = " and ".join(str(p) for p in there)
        raise InstallError(f"{names} already exist{'s' if len(there) == 1 else ''}: add "
                           "--force to replace (changes made in them are lost)")
    done: list[str] = []
    if root is None and not user_exists(plan.user):
        create_user(plan.user)
        done.append(f"created the system user {plan.user}")
    # Owners are set when we can: as root, for a user this system knows. Under
    # --root (tests, packagers) the user may belong to another system.
    ids = _ids(plan.user) if os.geteuid() == 0 else None
    group_ids = (0, ids[1]) if ids else None

    data = _under(root, plan.data_dir)
    existed = data.is_dir()
    full = existed and any(data.iterdir())
    data.parent.mkdir(parents=True, exist_ok=True)
    data.mkdir(mode=DATA_MODE, exist_ok=True)
    if ids:
        os.chown(data, *ids)
    os.chmod(data, DATA_MODE)
    owner = f"{plan.user}:{_group_name(ids[1])}" if ids else "owner unchanged"
    done.append(f"{'kept' if existed else 'made'} the data dir {data} (0750, {owner})"
                + (": the files in it keep their owners" if full else ""))

    env = _under(root, plan.env_path)
    write_atomic(env, env_text(plan), ENV_MODE, group_ids)
    group = _group_name(group_ids[1]) if group_ids else None
    done.append(f"wrote {env} (0640{', root:' + group if group else ''})")
    unit = _under(root, plan.unit_path)
    write_atomic(unit, unit_text(plan), UNIT_MODE, (0, 0) if ids else None)
    done.append(f"wrote {unit} (0644)")
    return done


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


@dataclass(frozen=True)
class Verdict:
    """What ``systemd-analyze verify`` said about a unit (``ran`` False: not here)."""

    ran: bool
    ok: bool
    output: str


def verify_unit(unit_file: Path) -> Verdict:
    """Run ``systemd-analyze verify`` on a unit file when the command exists (it needs
    no running systemd). Clean means exit 0 and nothing said: it only warns
    about unknown keys, for instance, and still exits 0."""
    exe = shutil.which("systemd-analyze")
    if exe is None:
        return Verdict(False, True, "systemd-analyze not found: the unit was not verified")
    try:
        done = subprocess.run([exe, "verify", str(unit_file)], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Verdict(True, False, f"systemd-analyze verify did not run: {exc}")
    said = (done.stdout + done.stderr).strip()
    return Verdict(True, done.returncode == 0 and not said, said)


def verify_text(plan: Plan) -> Verdict:
    """Verify the unit text without installing it (for --dry-run): the file name
    matters to systemd, so it goes into a temporary folder under its real name."""
    with tempfile.TemporaryDirectory(prefix="tossit-unit-") as tmp:
        path = Path(tmp) / plan.unit_name
        path.write_text(unit_text(plan))
        return verify_unit(path)
