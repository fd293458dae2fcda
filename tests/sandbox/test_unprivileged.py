"""The sandbox without root (a developer's machine): a real ``twistd
cellserver`` run as an unprivileged user (``nobody`` through setpriv when the
tests run as root, as CI does; else the tests' own user).  Every kernel gets
a user namespace with network, mount, IPC, UTS and pid namespaces made in it,
then rlimits (its process count per user namespace) and seccomp; there is no
per-kernel account and no cgroup, and /healthz says so."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request

import pytest

from tests.support.ports import free_port
from tests.support.procs import ROOT, VENV_BIN, descendants_of, http_ok, kernel_runtime_dir, wait_until

pytestmark = [pytest.mark.integration]
NOBODY = 65534


@pytest.fixture(scope="module")
def server(module_children):
    as_root = os.geteuid() == 0
    if as_root and not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is needed to run the cell server as an unprivileged user")
    port = free_port()
    runtime = os.path.join(kernel_runtime_dir("unpriv"), "rt")
    home = os.path.dirname(runtime)
    if as_root:
        os.chown(home, NOBODY, NOBODY)
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if as_root else []
    if subprocess.run([*drop, "unshare", "--user", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("this machine gives unprivileged users no user namespaces (unshare --user --net fails)")
    child = module_children.start("unprivileged", [
        *drop, str(VENV_BIN / "twistd"), "-n", "--pidfile=", "cellserver", "--node", "up",
        "--listen", f"tcp:{port}:interface=127.0.0.1", "--runtime-dir", runtime,
        "--ready-kernels", "1", "--max-kernels", "4", "--kernel-cpu-seconds", "2", "--kernel-pids", "32",
        "--kernel-file-size-mb", "8", "--service-wall", "10", "--preload", ""], env={"HOME": home})
    base = f"http://127.0.0.1:{port}/"
    wait_until(lambda: http_ok(base + "healthz"), 60, "unprivileged cell server", child=child)
    health = json.loads(urllib.request.urlopen(base + "healthz").read())
    assert health["sandbox"]["user_namespace"], health["sandbox"]
    return {"base": base, "child": child, "runtime": runtime, "health": health}


def run(server, code: str) -> dict:
    data = urllib.parse.urlencode({"code": code}).encode()
    with urllib.request.urlopen(urllib.request.Request(server["base"] + "service", data=data), timeout=30) as r:
        return json.loads(r.read())


def error_of(result: dict) -> tuple[str, str]:
    reply = result["execute_reply"]
    return reply.get("ename", ""), reply.get("evalue", "")


def test_health_reports_namespaces_without_account_or_cgroups(server):
    sb = server["health"]["sandbox"]
    assert all(sb["layers"][k] for k in ("ipc", "net", "mounts", "pidns", "no_new_privs", "rlimits", "seccomp"))
    assert sb["missing"] == ["account", "cgroups"]
    assert "root" in sb["why"]["account"] and "root" in sb["why"]["cgroups"]
    assert "size-capped" in sb["why"]["mounts"]        # what the home lacks without root


def test_own_namespaces_and_no_capabilities(server):
    r = run(server, "import os\nst = open('/proc/self/status').read()\n"
                    "print(os.getpid(), os.getppid(), st.split('CapEff:')[1].split()[0], "
                    "st.split('NoNewPrivs:')[1].split()[0], sorted(p for p in os.listdir('/proc') if p.isdigit()))")
    pid, ppid, cap_eff, nnp, procs = r["stdout"].strip().split(maxsplit=4)
    assert (pid, ppid, cap_eff, nnp) == ("2", "1", "0000000000000000", "1"), r
    assert procs == "['1', '2']", r                     # its init and itself: nothing of the host


def test_no_network(server):
    port = urllib.parse.urlparse(server["base"]).port
    for target in (f"('127.0.0.1', {port})", "('192.0.2.1', 80)"):
        r = run(server, f"import socket\nsocket.create_connection({target}, timeout=2)")
        assert error_of(r)[0] in ("OSError", "ConnectionRefusedError") and "unreachable" in error_of(r)[1], r
    r = run(server, "import socket\nsocket.getaddrinfo('example.com', 80)")
    assert error_of(r)[0] == "gaierror", r


def test_host_files_are_not_visible_and_only_home_and_tmp_are_writable(server):
    paths = [str(ROOT), "/root", "/etc/shadow", "/home", "/var", "/sys"]
    r = run(server, f"import os\nprint([p for p in {paths!r} if os.path.exists(p)])\nprint(sorted(os.listdir('/')))")
    visible, root = r["stdout"].splitlines()
    assert visible == "[]" and set(eval(root)) <= {"bin", "dev", "etc", "lib", "lib64", "opt", "proc", "sbin", "tmp",
                                                   "usr"}, r
    for target in ("/usr/evil", "/etc/evil", "/evil"):
        r = run(server, f"open({target!r}, 'w')")
        assert error_of(r)[0] in ("OSError", "PermissionError"), (target, r)
    r = run(server, "open('in-home', 'w').write('x')\nopen('/tmp/in-tmp', 'w').write('y')\nprint('ok')")
    assert r["stdout"] == "ok\n", r


def test_host_processes_cannot_be_signalled(server):
    r = run(server, f"import os\nos.kill({server['child'].pid}, 9)")
    assert error_of(r)[0] == "ProcessLookupError", r
    assert server["child"].alive()


def test_privilege_calls_are_refused(server):
    for code in ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                 "print(libc.unshare(0x10000000), ctypes.get_errno())",
                 "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                 "print(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None), ctypes.get_errno())"):
        assert run(server, code)["stdout"].split() == ["-1", "1"], code      # -1, EPERM


def test_limits_hold_without_cgroups(server):
    r = run(server, "import os, time\nok = err = 0\nfor i in range(200):\n"
                    "    try:\n        pid = os.fork()\n    except OSError:\n        err += 1\n        continue\n"
                    "    if pid == 0:\n        time.sleep(3)\n        os._exit(0)\n    ok += 1\nprint(ok, err)")
    ok, err = map(int, r["stdout"].split())
    assert ok < 32 and err > 150, r                     # RLIMIT_NPROC, counted in its own user namespace
    r = run(server, "open('big', 'wb').write(b'x' * (20 * 2**20))")
    assert error_of(r) == ("OSError", "[Errno 27] File too large"), r
    r = run(server, "while True: pass")
    assert r["success"] is False and "killed" in r["stderr"], r


def test_stopping_leaves_nothing_behind(server):
    child = server["child"]
    pids = descendants_of(child.pid)
    assert len(pids) >= 4                               # provider; per kernel: outer, init, kernel
    child.popen.send_signal(signal.SIGTERM)
    child.popen.wait(20)
    wait_until(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids), 10, "every process of it gone")
    assert not os.path.exists(server["runtime"])
