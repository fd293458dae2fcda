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


def test_setgid_directories_and_secret_files_are_put_back_once(tmp_path):
    """A setgid bit on a directory (GNU chmod with a plain numeric mode keeps it)
    is cleared, and the files under secrets/ and tls/ get 0640 root:<group>:
    one run fixes them, the next has nothing to do.  A symlink (say into
    /etc/letsencrypt) is not followed."""
    root = prefix(tmp_path)
    assert run("--prefix", str(root)).returncode == 0
    gid = {g: int(entry(root / "etc" / "group", g)[2]) for g in ("cellstack-edge", "cellstack-permalinkd")}
    secrets, tls = root / "etc/cellstack/secrets", root / "etc/cellstack/tls"
    os.chmod(secrets, 0o2750)
    (secrets / "redis-password").write_text("pw\n")
    os.chmod(secrets / "redis-password", 0o644)                 # world-readable: drifted
    (tls / "privkey.pem").write_text("key\n")
    os.chmod(tls / "privkey.pem", 0o600)                         # root:root 0600: the edge cannot read it
    elsewhere = tmp_path / "live-privkey.pem"
    elsewhere.write_text("linked\n")
    os.chmod(elsewhere, 0o644)
    os.symlink(elsewhere, tls / "chain.pem")

    fixed = run("--prefix", str(root))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "secrets: mode/owner" in fixed.stdout and "secrets/redis-password: mode/owner" in fixed.stdout
    assert "tls/privkey.pem: mode/owner" in fixed.stdout and "chain.pem" not in fixed.stdout, fixed.stdout
    assert stat.S_IMODE(os.stat(secrets).st_mode) == 0o750
    for f, group in ((secrets / "redis-password", "cellstack-permalinkd"), (tls / "privkey.pem", "cellstack-edge")):
        st = os.stat(f)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, gid[group]), f
    st = os.stat(elsewhere)
    assert stat.S_IMODE(st.st_mode) == 0o644 and st.st_gid == 0       # the link's target untouched
    again = run("--prefix", str(root))
    assert again.returncode == 0 and again.stdout.strip().startswith("install-host: nothing to do"), again.stdout


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
