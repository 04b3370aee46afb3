"""``pip install tossit`` works: the sdist and wheel ``python -m build`` makes hold
everything the product needs at run time (dashboard files, migrations, py.typed),
and a brain run from the installed wheel (not the editable checkout) serves the
dashboard and creates its database.

No network: the build runs with --no-isolation (build and setuptools are in the
[test] extra) and the wheel is installed with --no-deps next to the venv's
dependencies.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import httpx

from cluster import free_port, wait_until
from tossit import __version__

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "tossit"


def _build(tmp: Path) -> tuple[Path, Path]:
    """sdist, then the wheel from the sdist (as pip does from PyPI's sdist), built
    from a copy so the checkout gets no build/ or egg-info."""
    tree = tmp / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tree / name)
    shutil.copytree(REPO / "src", tree / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp / "dist"
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir",
                           str(out), str(tree)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sdist,) = out.glob("tossit-*.tar.gz")
    (wheel,) = out.glob("tossit-*-py3-none-any.whl")
    return sdist, wheel


def _package_files() -> set[str]:
    """Every file of the package in the checkout, as a path inside the wheel."""
    return {str(p.relative_to(SRC.parent)) for p in SRC.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def test_the_wheel_installs_and_runs_a_brain_with_its_dashboard(tmp_path: Path) -> None:
    sdist, wheel = _build(tmp_path)
    wanted = _package_files()
    assert "tossit/brain/dashboard/index.html" in wanted and "tossit/py.typed" in wanted
    assert any(f.startswith("tossit/brain/migrations/versions/0001_") for f in wanted)
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert wanted <= in_wheel, sorted(wanted - in_wheel)
    with tarfile.open(sdist) as tar:
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {f"src/{f}" for f in wanted} <= in_sdist, sorted(
        {f"src/{f}" for f in wanted} - in_sdist)
    with zipfile.ZipFile(wheel) as zf:
        meta = zf.read(f"tossit-{__version__}.dist-info/entry_points.txt").decode()
    assert "tossit = tossit.cli:main" in meta

    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--no-index", "--target", str(site), str(wheel)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # The wheel's copy comes first on the path, ahead of the editable checkout.
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONUNBUFFERED": "1"}
    where = subprocess.run([sys.executable, "-c", "import tossit; print(tossit.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert where.stdout.strip() == str(site / "tossit" / "__init__.py"), where

    port = free_port()
    data = tmp_path / "brain"
    log = open(tmp_path / "brain.log", "wb")  # noqa: SIM115
    brain = subprocess.Popen([sys.executable, "-m", "tossit", "brain", "--port", str(port),
                              "--data-dir", str(data)], env=env, cwd=tmp_path,
                             stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(url + "/health").status_code == 200, 40,
                   what="the brain from the wheel")
        page = httpx.get(url + "/")
        assert page.status_code == 200 and page.headers["content-type"].startswith(
            "text/html")
        assert page.content == (SRC / "brain/dashboard/index.html").read_bytes()
        assets = set(re.findall(r'(?:src|href)="/ui/([^"]+)"', page.text))
        assert {"app.js", "style.css", "logo.svg"} <= assets
        for name in sorted(assets):  # each byte for byte the checkout's file
            resp = httpx.get(f"{url}/ui/{name}")
            assert resp.status_code == 200, name
            assert resp.content == (SRC / "brain/dashboard" / name).read_bytes(), name
        # The migrations shipped: the brain made its database and reports itself.
        ready = httpx.get(url + "/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
        assert (data / "tossit.db").stat().st_size > 0
        assert (data / "admin.key").is_file()
    finally:
        brain.terminate()
        brain.wait(timeout=30)
    logged = (tmp_path / "brain.log").read_text()
    assert "Traceback" not in logged, logged[-3000:]
