"""``tossit install brain|node``: the unit and env file it writes, their modes and
owners, its refusals, and that a brain and a node started the way systemd would
(ExecStart with the env file's variables) come up and find each other."""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cluster import free_port, wait_until
from tossit import install as inst


def tossit(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tossit", *args], capture_output=True,
                          text=True, timeout=60, user=user, cwd="/")


def unit_lines(text: str) -> dict[str, str]:
    """``Key=value`` lines of a unit or env file (comments skipped; last one wins)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


def section(text: str, start: str) -> str:
    """One file out of --dry-run's output (from its '--- would write' header on)."""
    part = text.split(f"--- would write {start}", 1)[1]
    return part.split("\n", 1)[1].split("\n--- would write", 1)[0]


def test_dry_run_shows_the_unit_and_settings_and_needs_no_root(tmp_path: Path) -> None:
    secret = tmp_path / "cluster.secret"
    secret.write_text("# the cluster secret\nS3cr3t-value_0123\n")
    done = tossit("install", "node", "--brain", "http://10.1.2.3:8000",
                  "--join-secret-file", str(secret), "--dry-run", "--data-dir", "/srv/disk1",
                  "--port", "8082")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    unit = unit_lines(section(out, "/etc/systemd/system/tossit-node.service"))
    exe = inst.find_tossit()
    assert Path(exe).is_absolute() and Path(exe).is_file()
    assert unit["ExecStart"] == f"{exe} node"
    assert unit["User"] == "tossit" and "Group" not in unit  # the user's own group
    assert unit["EnvironmentFile"] == "/etc/tossit/node.env"
    assert unit["ReadWritePaths"] == "/srv/disk1" == unit["WorkingDirectory"]
    assert unit["RequiresMountsFor"] == "/srv/disk1"
    assert (unit["Restart"], unit["NoNewPrivileges"], unit["ProtectSystem"],
            unit["ProtectHome"], unit["PrivateTmp"], unit["LimitNOFILE"]) == (
        "on-failure", "yes", "strict", "yes", "yes", "65536")
    assert unit["After"] == "network-online.target" == unit["Wants"]
    env = unit_lines(section(out, "/etc/tossit/node.env"))
    assert env == {"TOSSIT_NODE_HOST": "0.0.0.0", "TOSSIT_NODE_PORT": "8082",
                   "TOSSIT_NODE_DATA_DIR": "/srv/disk1",
                   "TOSSIT_NODE_BRAIN": "http://10.1.2.3:8000",
                   "TOSSIT_NODE_ZONE": inst.machine_zone(),
                   "TOSSIT_NODE_JOIN_SECRET": "<hidden>"}
    assert "S3cr3t" not in out  # never printed
    assert "# TOSSIT_NODE_SCRUB_RATE=33554432" in out  # the defaults, commented out
    assert "systemctl daemon-reload && systemctl enable --now tossit-node" in out
    assert not Path("/etc/tossit/node.env").exists() or "S3cr3t" not in \
        Path("/etc/tossit/node.env").read_text()
    # A second node on this machine (another disk): its own service, files and zone.
    second = tossit("install", "node", "--brain", "http://10.1.2.3:8000", "--join-secret-file",
                    str(secret), "--dry-run", "--instance", "disk2", "--port", "8083",
                    "--zone", "shelf-1")
    assert second.returncode == 0, second.stderr
    unit = unit_lines(section(second.stdout, "/etc/systemd/system/tossit-node-disk2.service"))
    assert unit["EnvironmentFile"] == "/etc/tossit/node-disk2.env"
    assert unit["ReadWritePaths"] == "/var/lib/tossit/node-disk2"
    env = unit_lines(section(second.stdout, "/etc/tossit/node-disk2.env"))
    assert (env["TOSSIT_NODE_PORT"], env["TOSSIT_NODE_ZONE"], env["TOSSIT_NODE_DATA_DIR"]) == (
        "8083", "shelf-1", "/var/lib/tossit/node-disk2")
    assert "systemctl enable --now tossit-node-disk2" in second.stdout


def test_every_default_in_the_env_file_is_a_value_the_settings_take() -> None:
    """Uncommenting any default line must give a valid setting: the env file is
    generated from the settings' own fields, and this checks it round-trips."""
    from tossit.config import BrainSettings, NodeSettings

    for role, cls in (("brain", BrainSettings), ("node", NodeSettings)):
        plan = (inst.brain_plan("/usr/bin/tossit") if role == "brain" else
                inst.node_plan("/usr/bin/tossit", brain="http://b:8000", join_secret="s"))
        text = inst.env_text(plan)
        defaults = {}
        for line in text.splitlines():
            if line.startswith("# TOSSIT_") and "=" in line:
                key, value = line[2:].split("=", 1)
                if value:
                    defaults[key] = value
        names = {(str(cls.model_config["env_prefix"]) + f).upper() for f in cls.model_fields}
        assert set(defaults) | set(plan.settings) <= names
        assert len(defaults) + len(plan.settings) >= len(names) - 12  # only None defaults
        saved = dict(os.environ)
        try:
            os.environ.update(defaults)
            os.environ.update(plan.settings)
            settings = cls.load()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        assert str(settings.data_dir) == f"/var/lib/tossit/{role}"
        assert settings.host == "0.0.0.0"


def _stat(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid


@pytest.mark.skipif(os.geteuid() != 0, reason="owners can only be set as root")
def test_root_install_writes_files_with_modes_and_owners_and_refuses_to_overwrite(
        tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    root = tmp_path / "root"
    done = tossit("install", "brain", "--root", str(root), "--user", "nobody")
    assert done.returncode == 0, done.stderr
    unit = root / "etc/systemd/system/tossit-brain.service"
    env = root / "etc/tossit/brain.env"
    data = root / "var/lib/tossit/brain"
    assert _stat(unit) == ("0o644", 0, 0)
    assert _stat(env) == ("0o640", 0, nobody.pw_gid)
    assert _stat(data) == ("0o750", nobody.pw_uid, nobody.pw_gid)
    assert unit.read_text() == inst.unit_text(inst.brain_plan(inst.find_tossit(),
                                                              user="nobody"))
    # systemd-analyze's finding is passed on (running as 'nobody' is unsafe).
    if shutil.which("systemd-analyze"):
        assert "Special user nobody configured" in done.stderr
    (data / "tossit.db").write_bytes(b"precious")
    env.write_text("TOSSIT_DATABASE_URL=edited by hand\n")
    again = tossit("install", "brain", "--root", str(root), "--user", "nobody")
    assert again.returncode == 2
    assert "already exist: add --force" in again.stderr, again.stderr
    assert env.read_text() == "TOSSIT_DATABASE_URL=edited by hand\n"  # untouched
    forced = tossit("install", "brain", "--root", str(root), "--user", "nobody", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "kept the data dir" in forced.stdout
    assert "TOSSIT_DATA_DIR=/var/lib/tossit/brain" in env.read_text()
    assert _stat(env) == ("0o640", 0, nobody.pw_gid)
    assert (data / "tossit.db").read_bytes() == b"precious"  # data never touched


def test_a_real_install_as_root_makes_the_user_and_owns_the_files(tmp_path: Path) -> None:
    """The install as an admin runs it (no --root): useradd, /etc, /var/lib. Done in a
    private mount namespace with /etc and /var overlaid by folders under tmp_path, so
    this machine gets no user and no files."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (a private mount namespace)")
    t = tmp_path
    script = f"""
for d in etc var; do
  mkdir -p {t}/$d/u {t}/$d/w
  mount -t overlay overlay -o lowerdir=/$d,upperdir={t}/$d/u,workdir={t}/$d/w /$d || exit 77
done
{sys.executable} -m tossit install brain > {t}/out 2> {t}/err; echo $? > {t}/rc
getent passwd tossit > {t}/passwd
stat -c '%a %U %G %n' /etc/systemd/system/tossit-brain.service /etc/tossit/brain.env \
    /var/lib/tossit/brain > {t}/stat
{sys.executable} -m tossit install brain > /dev/null 2> {t}/err2; echo $? > {t}/rc2
"""
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           script], capture_output=True, text=True, timeout=120, cwd="/")
    if done.returncode == 77 or "unshare failed" in done.stderr:
        pytest.skip(f"no private mount namespace with overlays here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert (t / "rc").read_text().strip() == "0", (t / "err").read_text()
    out = (t / "out").read_text()
    assert "created the system user tossit" in out
    assert "systemctl daemon-reload && systemctl enable --now tossit-brain" in out
    passwd = (t / "passwd").read_text().split(":")
    assert passwd[0] == "tossit" and int(passwd[2]) < 1000  # a system user
    assert passwd[6].strip() in ("/usr/sbin/nologin", "/bin/false")
    assert (t / "stat").read_text().splitlines() == [
        "644 root root /etc/systemd/system/tossit-brain.service",
        "640 root tossit /etc/tossit/brain.env",
        "750 tossit tossit /var/lib/tossit/brain"]
    assert (t / "rc2").read_text().strip() == "2"
    assert "already exist: add --force" in (t / "err2").read_text()
    with pytest.raises(KeyError):
        pwd.getpwnam("tossit")  # this machine got no user


def test_the_unit_verifies_clean_with_systemd_analyze(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here: the unit was not verified")
    for plan in (inst.brain_plan(inst.find_tossit()),
                 inst.node_plan(inst.find_tossit(), brain="http://b:8000", join_secret="s")):
        verdict = inst.verify_text(plan)
        assert verdict.ran and verdict.ok, verdict.output
    broken = inst.brain_plan("/nonexistent/tossit")
    verdict = inst.verify_text(broken)
    assert verdict.ran and not verdict.ok and "/nonexistent/tossit" in verdict.output


def test_without_root_it_refuses_with_one_line(tmp_path: Path) -> None:
    assert inst.root_refusal(0, False, None) is None
    assert inst.root_refusal(1000, True, None) is None
    assert inst.root_refusal(1000, False, tmp_path) is None
    message = inst.root_refusal(1000, False, None)
    assert message and "must run as root" in message and "--dry-run" in message
    secret = tmp_path / "s"
    secret.write_text("x\n")
    bad = tossit("install", "node", "--brain", "not-a-url", "--join-secret-file",
                 str(secret), "--dry-run")
    assert bad.returncode == 2 and "--brain" in bad.stderr
    newline = tossit("install", "brain", "--host", "0.0.0.0\nTOSSIT_AUTH=false", "--dry-run")
    assert newline.returncode == 2 and "TOSSIT_HOST" in newline.stderr, newline.stderr
    spaced = tossit("install", "brain", "--data-dir", "/srv/my data", "--dry-run")
    assert spaced.returncode == 2 and "absolute path" in spaced.stderr, spaced.stderr


def test_the_command_refuses_a_user_who_is_not_root() -> None:
    """The refusal as a user sees it. As root here: run as nobody (uid 65534), keeping
    only the right to read files (this Python may sit in root's home folder)."""
    argv = [sys.executable, "-m", "tossit", "install", "brain"]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("as root, without setpriv to drop to another user: the refusal "
                        "is checked through inst.root_refusal only")
        caps = "+dac_read_search"  # read and traverse only: it cannot write
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                f"--inh-caps={caps}", f"--ambient-caps={caps}", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith("error: tossit install must run as root"), done.stderr
    assert done.stdout == ""


def _run_as_systemd_would(root: Path, role: str, data: Path) -> subprocess.Popen[bytes]:
    """ExecStart with the env file's variables (and the data dir under ``root``)."""
    unit = unit_lines((root / f"etc/systemd/system/tossit-{role}.service").read_text())
    env = unit_lines((root / unit["EnvironmentFile"].lstrip("/")).read_text())
    env["TOSSIT_NODE_DATA_DIR" if role == "node" else "TOSSIT_DATA_DIR"] = str(data)
    log = open(root / f"{role}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(shlex.split(unit["ExecStart"]), env={**os.environ, **env},
                            stdout=log, stderr=subprocess.STDOUT, cwd=data)
    log.close()
    return proc


def test_a_brain_and_a_node_run_from_what_install_wrote(tmp_path: Path) -> None:
    brain_port, node_port = free_port(), free_port()
    root = tmp_path / "root"
    me = pwd.getpwuid(os.geteuid()).pw_name
    done = tossit("install", "brain", "--root", str(root), "--user", me, "--host",
                  "127.0.0.1", "--port", str(brain_port))
    assert done.returncode == 0, done.stderr
    brain_data = root / "var/lib/tossit/brain"
    procs = [_run_as_systemd_would(root, "brain", brain_data)]
    try:
        wait_until(lambda: (brain_data / "cluster.secret").exists()
                   and httpx.get(f"http://127.0.0.1:{brain_port}/health").status_code == 200,
                   30, what="the brain up")
        node = tossit("install", "node", "--root", str(root), "--user", me, "--host",
                      "127.0.0.1", "--port", str(node_port), "--brain",
                      f"http://127.0.0.1:{brain_port}", "--join-secret-file",
                      str(brain_data / "cluster.secret"))
        assert node.returncode == 0, node.stderr
        node_data = root / "var/lib/tossit/node"
        procs.append(_run_as_systemd_would(root, "node", node_data))
        key = (brain_data / "admin.key").read_text().strip()

        def listed() -> bool:
            resp = httpx.get(f"http://127.0.0.1:{brain_port}/api/nodes",
                             headers={"Authorization": f"Bearer {key}"})
            return any(n["address"].endswith(f":{node_port}") and n["state"] == "online"
                       for n in resp.json())

        wait_until(listed, 30, what="the node online at the brain")
        # The node kept the secret it joined with (so a restart needs the env file only
        # for its settings).
        assert (node_data / "cluster.secret").read_text() == \
            (brain_data / "cluster.secret").read_text()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def test_the_units_in_the_docs_are_the_generators_output() -> None:
    """docs/deployment.md shows the units ``tossit install`` writes: one source of
    truth, so a change to the generator must come with the docs' copy."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "deployment.md").read_text()
    exe = "/opt/tossit/bin/tossit"
    brain = inst.unit_text(inst.brain_plan(exe))
    node = inst.unit_text(inst.node_plan(exe, brain="https://brain.lan:8000", join_secret="s",
                                         data_dir=Path("/srv/tossit/node")))
    assert f"```ini\n{brain}```" in docs
    assert f"```ini\n{node}```" in docs
    assert "tossit-node@" not in docs  # the old hand-written template is gone


def test_a_node_installs_with_a_join_token_alone(tmp_path: Path) -> None:
    """--join TOKEN is all a machine needs: the token names the brains, so no
    --brain; it goes into the env file (hidden in the dry run), never both ways."""
    from tossit.auth import jointoken

    token = jointoken.encode(jointoken.JoinToken(
        id=jointoken.new_token_id(), secret=os.urandom(32),
        brains=("http://10.1.2.3:8000",), cluster="0123456789abcdef",
        expires_at=time.time() + 3600))
    done = tossit("install", "node", "--join", token, "--dry-run")
    assert done.returncode == 0, done.stderr
    env = section(done.stdout, "/etc/tossit/node.env")
    assert "TOSSIT_NODE_JOIN=<hidden>" in env and token not in done.stdout
    assert "\nTOSSIT_NODE_BRAIN=" not in env  # the token's brains, not a setting
    assert "the brain its join token names" in done.stdout
    written = tossit("install", "node", "--join", token, "--root", str(tmp_path / "r"),
                     "--user", "nobody")
    assert written.returncode == 0, written.stderr
    text = (tmp_path / "r/etc/tossit/node.env").read_text()
    assert f"\nTOSSIT_NODE_JOIN={token}\n" in text
    secret = tmp_path / "cluster.secret"
    secret.write_text("S3cr3t-value_0123\n")
    both = tossit("install", "node", "--join", token, "--join-secret-file", str(secret),
                  "--brain", "http://10.1.2.3:8000", "--dry-run")
    neither = tossit("install", "node", "--brain", "http://10.1.2.3:8000", "--dry-run")
    bad = tossit("install", "node", "--join", "tossit-join-1.garbage", "--dry-run")
    no_brain = tossit("install", "node", "--join-secret-file", str(secret), "--dry-run")
    for run, words in ((both, "one of them"), (neither, "one of them"), (bad, "--join"),
                       (no_brain, "--brain is needed")):
        assert run.returncode == 2 and words in run.stderr, (words, run.stderr)
