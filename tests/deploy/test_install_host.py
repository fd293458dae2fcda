"""deploy/install-host under a temporary prefix (a copy of this machine's
account files): it creates the two service accounts, /etc/cellstack with
its secrets/tls/redis directories owned as the guide says, the units and
the logrotate file; a second run changes nothing; a dry run changes nothing.
The host's own /etc is never touched."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from tests.support.procs import ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"),
                                reason="useradd --prefix needs root")
SCRIPT = str(ROOT / "deploy" / "install-host")


def prefix(tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    for name in ("passwd", "group", "shadow", "gshadow", "login.defs"):
        if os.path.exists(f"/etc/{name}"):
            shutil.copy2(f"/etc/{name}", etc / name)
    return tmp_path


def run(*args):
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=60)


def entry(path, name):
    for line in open(path):
        f = line.rstrip("\n").split(":")
        if f[0] == name:
            return f
    return None


def test_accounts_directories_units_then_nothing_to_do(tmp_path):
    root = prefix(tmp_path)
    host_passwd = open("/etc/passwd").read()
    r = run("--prefix", str(root))
    assert r.returncode == 0, r.stdout + r.stderr
    for user in ("cellstack-edge", "cellstack-permalinkd"):
        pw = entry(root / "etc" / "passwd", user)
        assert pw is not None and pw[6] == "/usr/sbin/nologin" and int(pw[2]) < 1000, pw
        assert entry(root / "etc" / "group", user) is not None
    assert open("/etc/passwd").read() == host_passwd           # the host is untouched
    gid = {g: int(entry(root / "etc" / "group", g)[2]) for g in ("cellstack-edge", "cellstack-permalinkd")}
    for path, mode, group in (("etc/cellstack", 0o755, 0), ("etc/cellstack/secrets", 0o750, gid["cellstack-permalinkd"]),
                              ("etc/cellstack/tls", 0o750, gid["cellstack-edge"])):
        st = os.stat(root / path)
        assert stat.S_IMODE(st.st_mode) == mode and st.st_gid == group and st.st_uid == 0, path
    if entry("/etc/passwd", "redis"):
        assert os.stat(root / "etc/cellstack/redis").st_uid == int(entry("/etc/passwd", "redis")[2])
    units = sorted(os.listdir(ROOT / "deploy" / "systemd"))
    assert sorted(os.listdir(root / "etc/systemd/system")) == units
    assert (root / "etc/logrotate.d/cellstack").read_bytes() == (ROOT / "deploy/logrotate/cellstack").read_bytes()

    again = run("--prefix", str(root))
    assert again.returncode == 0 and again.stdout.strip().startswith("install-host: nothing to do"), again.stdout
    os.chmod(root / "etc/cellstack/tls", 0o755)                 # drifted: put back
    fixed = run("--prefix", str(root))
    assert "tls: mode/owner" in fixed.stdout and stat.S_IMODE(os.stat(root / "etc/cellstack/tls").st_mode) == 0o750


def test_dry_run_changes_nothing(tmp_path):
    root = prefix(tmp_path)
    before = (root / "etc" / "passwd").read_text()
    r = run("--prefix", str(root), "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "would run: useradd" in r.stdout and "dry run" in r.stdout
    assert (root / "etc" / "passwd").read_text() == before and not (root / "etc" / "cellstack").exists()


def test_bad_arguments():
    assert run("--bogus").returncode == 2
    assert run("--prefix", "/nonexistent-dir-for-test").returncode != 0
