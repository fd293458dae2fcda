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
import urllib.request

import pytest

from tests.support.ports import free_port
from tests.support.procs import ROOT, VENV_BIN, descendants_of, http_ok, kernel_runtime_dir, wait_until
from tests.support.service import error_of, run

pytestmark = [pytest.mark.integration]
NOBODY = 65534


def _start(module_children, name: str, skip: str = "") -> dict:
    as_root = os.geteuid() == 0
    if as_root and not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is needed to run the cell server as an unprivileged user")
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if as_root else []
    port = free_port()
    runtime = os.path.join(kernel_runtime_dir("unpriv"), "rt")
    home = os.path.dirname(runtime)
    if as_root:
        os.chown(home, NOBODY, NOBODY)
    child = module_children.start(name, [
        *drop, str(VENV_BIN / "twistd"), "-n", "--pidfile=", "cellserver", "--node", name,
        "--listen", f"tcp:{port}:interface=127.0.0.1", "--runtime-dir", runtime,
        "--ready-kernels", "2", "--max-kernels", "4", "--kernel-cpu-seconds", "2", "--kernel-pids", "32",
        "--kernel-file-size-mb", "8", "--service-wall", "10", "--preload", "", "--sandbox-skip", skip],
        env={"HOME": home})
    base = f"http://127.0.0.1:{port}/"
    wait_until(lambda: http_ok(base + "healthz"), 60, f"unprivileged cell server {name}", child=child)
    health = json.loads(urllib.request.urlopen(base + "healthz").read())
    return {"base": base, "port": port, "child": child, "runtime": runtime, "health": health, "drop": drop}


@pytest.fixture(scope="module")
def server(module_children):
    s = _start(module_children, "up")
    if subprocess.run([*s["drop"], "unshare", "--user", "--net", "true"], capture_output=True).returncode != 0:
        pytest.skip("this machine gives unprivileged users no user namespaces (unshare --user --net fails)")
    assert s["health"]["sandbox"]["user_namespace"], s["health"]["sandbox"]
    return s


@pytest.fixture(scope="module")
def fallback(module_children):
    """As where user namespaces are forbidden: Landlock, seccomp and rlimits only."""
    s = _start(module_children, "upll", skip="userns")
    if s["health"]["sandbox"]["landlock_abi"] < 1:
        pytest.skip(f"this kernel has no Landlock: {s['health']['sandbox']['why']}")
    return s


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
    assert (pid, ppid, cap_eff, nnp) == ("2", "0", "0000000000000000", "1"), r     # its parent is outside
    assert procs == "['2']", r           # only itself: its init keeps the capabilities it dropped, so is hidden


def test_no_network(server):
    for target in (f"('127.0.0.1', {server['port']})", "('192.0.2.1', 80)"):
        r = run(server, f"import socket\nsocket.create_connection({target}, timeout=2)")
        assert error_of(r)[0] == "PermissionError", r          # Landlock: no TCP connect at all
    r = run(server, "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', 9))")
    assert error_of(r)[0] == "OSError" and "unreachable" in error_of(r)[1], r     # no route: own netns
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
    assert len(pids) >= 7                               # provider; per ready kernel: outer, init, kernel
    child.popen.send_signal(signal.SIGTERM)
    child.popen.wait(20)
    wait_until(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids), 10, "every process of it gone")
    assert not os.path.exists(server["runtime"])


# --- the Landlock fallback: no namespaces at all ------------------------------------------


def test_fallback_reports_what_it_lacks(fallback):
    sb = fallback["health"]["sandbox"]
    assert sb["user_namespace"] is False
    assert all(sb["layers"][k] for k in ("landlock", "seccomp", "rlimits", "no_new_privs"))
    assert sb["missing"] == ["net", "mounts", "pidns", "account", "cgroups"]


def test_fallback_files_outside_home_are_out_of_reach(fallback):
    work = os.path.join(fallback["runtime"], "work")
    others = [os.path.join(work, d) for d in os.listdir(work)]
    assert others                                       # ready kernels of the same user
    targets = [str(ROOT / "cellserver" / "web.py"), str(ROOT), "/etc/shadow", "/root", "/", "/tmp", work, *others]
    r = run(fallback, f"import os\nfor p in sorted(set({targets!r}) - {{os.getcwd()}}):\n"
                      "    try:\n        (os.listdir if os.path.isdir(p) else open)(p)\n        print(p, 'read')\n"
                      "    except PermissionError:\n        print(p, 'denied')\n"
                      "    except FileNotFoundError:\n        print(p, 'gone')")   # a kernel that just ended
    outcome = dict(line.rsplit(" ", 1) for line in r["stdout"].splitlines())
    assert "read" not in outcome.values(), r
    assert [p for p in others if outcome.get(p) == "denied"], r     # another kernel's home, same uid
    for target in ("/tmp/evil", "/usr/evil", os.path.join(work, "evil")):
        r = run(fallback, f"open({target!r}, 'w')")
        assert error_of(r)[0] == "PermissionError", (target, r)
    r = run(fallback, "open('in-home', 'w').write('x')\nimport wave, colorsys\nprint('ok')")   # stdlib: readable
    assert r["stdout"] == "ok\n", r


def test_fallback_no_tcp_and_no_signal_to_the_server(fallback):
    r = run(fallback, f"import socket\nsocket.create_connection(('127.0.0.1', {fallback['port']}), timeout=2)")
    assert error_of(r)[0] == "PermissionError", r
    if fallback["health"]["sandbox"]["landlock_abi"] < 6:
        pytest.skip("Landlock signal scoping needs ABI 6 (Linux 6.12)")
    r = run(fallback, f"import os\nos.kill({fallback['child'].pid}, 9)")
    assert error_of(r)[0] == "PermissionError", r           # same user, but outside its Landlock domain
    assert fallback["child"].alive()
