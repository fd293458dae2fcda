"""The escape battery: hostile code in real sandboxed kernels (through a real
``twistd cellserver``'s /service), each attempt failing safely with the host
and the other kernels unharmed.  Needs root (accounts, cgroups), as CI has.

Since the mounts layer: a kernel sees none of the host's files (only /usr,
the interpreter, a minimal /etc, its own home and /tmp, both size-capped
tmpfs), none of its processes (/proc hidepid=invisible, per-kernel account),
and nothing of it stays mounted once it ended; a pid namespace of its own
(the kernel is PID 2 under a reaping init), so no host process can even be
named."""
from __future__ import annotations

import errno
import glob
import json
import os
import signal
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor

from cellserver.provider import samepages
from tests.support.ports import free_port
from tests.support.procs import children_of, descendants_of, host_pid, http_ok, kernel_runtime_dir, wait_until
from tests.support.service import error_of, run
from tests.support.wsclient import KernelWS, stdout_of

pytestmark = [pytest.mark.integration, pytest.mark.root]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def server(module_children):
    port = free_port()
    runtime = kernel_runtime_dir("sbx")
    child = module_children.twistd("sandboxed", "cellserver", [
        "--node", "sbx", "--listen", f"tcp:{port}:interface=127.0.0.1", "--runtime-dir", runtime,
        "--ready-kernels", "2", "--max-kernels", "8", "--kernel-cpu-seconds", "2",
        "--kernel-memory-mb", "256", "--kernel-pids", "32", "--kernel-file-size-mb", "8",
        "--service-wall", "10", "--preload", "", "--require-sandbox"])   # as root every built layer is used
    base = f"http://127.0.0.1:{port}/"
    wait_until(lambda: http_ok(base + "healthz"), 60, "sandboxed cell server", child=child)
    return {"base": base, "port": port, "child": child, "runtime": runtime}


def test_health_reports_the_layers(server):
    h = json.loads(urllib.request.urlopen(server["base"] + "healthz").read())
    layers = h["sandbox"]["layers"]
    assert all(layers[k] for k in ("net", "account", "no_new_privs", "rlimits", "cgroups", "seccomp", "mounts",
                                   "pidns"))
    assert h["sandbox"]["missing"] == [] and h["sandbox"]["not_implemented"] == []


def test_kernels_start_without_a_word_on_stderr(server):
    """A sandboxed kernel must not try what its sandbox forbids on every
    start (ipykernel's TCP pipe for subprocess output warned in each one: a
    log line per kernel, and CPU in the kernel, the provider and the server)."""
    for _ in range(3):
        assert run(server, "print(1)")["stdout"] == "1\n"
    wait_until(lambda: json.loads(urllib.request.urlopen(server["base"] + "healthz").read())["ready"] == 2,
               30, "the pool refilled")
    assert "kernel provider stderr" not in server["child"].log()


def test_own_account_no_new_privs_and_no_capabilities(server):
    out = run(server, "import os\nst = open('/proc/self/status').read()\n"
                      "print(os.getuid(), os.getgid(), os.getgroups(), st.split('NoNewPrivs:')[1].split()[0],"
                      " st.split('CapEff:')[1].split()[0])")
    fields = out["stdout"].split()        # uid gid groups NoNewPrivs CapEff
    assert int(fields[0]) >= 61000 and fields[0] == fields[1]
    assert fields[2] == "[]" and fields[3] == "1" and fields[4] == "0000000000000000"


def test_no_network_not_even_the_cell_servers_own_port(server):
    # TCP: Landlock refuses any connect (EACCES) before the empty network namespace could
    r = run(server, f"import socket\ns = socket.socket()\ns.settimeout(2)\ns.connect(('127.0.0.1', {server['port']}))")
    assert error_of(r) == ("PermissionError", "[Errno 13] Permission denied"), r
    # UDP (Landlock does not cover it): the network namespace has no route
    r = run(server, "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', 9))")
    assert error_of(r)[0] == "OSError" and "unreachable" in error_of(r)[1].lower(), r
    r = run(server, "import socket\nprint([i[1] for i in socket.if_nameindex()])")
    assert r["stdout"].strip() == "['lo']"


def test_host_files_are_not_there_at_all(server):
    for path in ("/etc/shadow", "/etc/gshadow", "/root", "/root/.bashrc", "/home", ROOT,
                 os.path.join(ROOT, "cellserver", "web.py"), "/work", "/proc/1/environ", "/sys", "/var",
                 "/run", "/srv", "/mnt", server["runtime"] + "/ipython-not-there"):
        r = run(server, f"import os\nos.stat({path!r})")
        assert error_of(r)[0] == "FileNotFoundError", (path, r)
    r = run(server, "import os\nprint(sorted(os.listdir('/')))")
    assert set(eval(r["stdout"])) <= {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "dev",
                                      "proc", "tmp", "opt"}, r
    r = run(server, "import os\nprint(sorted(os.listdir('/etc')))")
    etc = set(eval(r["stdout"]))
    assert {"passwd", "group", "ld.so.cache"} <= etc and not {"shadow", "gshadow", "sudoers", "ssh"} & etc
    r = run(server, "print(open('/etc/passwd').read())")
    assert [line.split(":")[0] for line in r["stdout"].split()] [0] == "root" and len(r["stdout"].split()) == 2
    # what kernels need is there: the interpreter, the virtualenv, devices, /dev/shm, fonts for matplotlib
    r = run(server, "import os, sys, multiprocessing.shared_memory as sm\n"
                    "m = sm.SharedMemory(create=True, size=4096); m.close(); m.unlink()\n"
                    "print(os.path.isfile(sys.executable), len(os.urandom(8)), open('/dev/zero', 'rb').read(2))")
    assert r["stdout"].split() == ["True", "8", "b'\\x00\\x00'"], r
    # the template's IPython directory, read-only
    r = run(server, "import os\nd = get_ipython().profile_dir.location\n"
                    "print(d.startswith(os.environ['IPYTHONDIR']), os.path.isdir(d), os.access(d, os.W_OK))")
    assert r["stdout"].split() == ["True", "True", "False"], r
    # its own UTS and IPC namespaces: a neutral host name, no System V segments of the host
    r = run(server, "import os, socket\nprint(socket.gethostname(), open('/proc/sysvipc/shm').read().count('\\n'),"
                    " os.listdir('/dev/shm'))")
    assert r["stdout"].split() == ["cell", "1", "[]"], r


def test_everything_but_home_and_tmp_is_read_only(server):
    for path in ("/etc/cellstack-escape", "/usr/cellstack-escape", "/cellstack-escape", "/dev/cellstack-escape",
                 "/opt/cellstack-escape"):
        r = run(server, f"import os\ntry:\n    open({path!r}, 'w')\nexcept OSError as e:\n    print(e.errno)")
        assert r["stdout"].strip() in (str(errno.EROFS), str(errno.EACCES)), (path, r)
        assert not os.path.exists(path)
    r = run(server, "import os, sys\ntry:\n    open(os.path.join(sys.prefix, 'escape'), 'w')\n"
                    "except OSError as e:\n    print(e.errno)")
    assert r["stdout"].strip() == str(errno.EROFS), r
    r = run(server, "import os, tempfile\nopen('in-home', 'w').write('x')\n"
                    "open('/tmp/in-tmp', 'w').write('y')\nprint(tempfile.gettempdir(), os.environ['HOME'] == os.getcwd())")
    assert r["stdout"].split() == ["/tmp", "True"], r


FILL = ("import errno, os\nn = 0\ntry:\n    for i in range(40):\n"
        "        with open(os.path.join({where!r}, f'fill{{i}}'), 'wb') as f:\n"
        "            for _ in range(4):\n                f.write(b'x' * 2**20)\n                n += 1\n"
        "except OSError as e:\n    print(errno.errorcode[e.errno], n)\nelse:\n    print('wrote all', n)\n"
        "print('alive')")


def test_tmp_and_home_are_capped_and_the_kernel_survives(server):
    # 40 x 4 MB (under the file-size limit each), 160 MB in all: the 64 MB tmpfs stops it
    for where in ("/tmp", "."):
        r = run(server, FILL.format(where=where))
        words = r["stdout"].split()
        assert words[0] == "ENOSPC" and 60 <= int(words[1]) <= 64 and words[2] == "alive", (where, r)
        assert r["success"] is True
    assert server["child"].alive()


def test_no_host_process_is_visible(server):
    r = run(server, "import os\nme = os.getuid()\nprint([p for p in os.listdir('/proc') if p.isdigit() and "
                    "os.stat('/proc/' + p).st_uid != me], len([p for p in os.listdir('/proc') if p.isdigit()]), "
                    f"os.path.exists('/proc/{server['child'].pid}'), os.path.exists('/proc/1'))")
    foreign, count, server_visible, init_visible = r["stdout"].split()
    assert foreign == "[]" and 1 <= int(count) <= 3, r                 # the kernel (and maybe a child)
    # /proc/1 is its namespace's init, hidden too: it changed credentials, so
    # it is not dumpable, and hidepid=invisible hides what one cannot ptrace.
    assert (server_visible, init_visible) == ("False", "False"), r


def test_own_pid_namespace(server):
    """The kernel is PID 2 of its own pid namespace; host pids name nothing,
    and kill(-1) reaches only its own processes."""
    r = run(server, f"import os, signal\nprint(os.getpid(), os.getppid())\n"
                    f"try:\n    os.kill({server['child'].pid}, 0)\nexcept OSError as e:\n    print(type(e).__name__)\n"
                    "pid = os.fork()\nif pid == 0:\n    signal.pause()\n"
                    "os.kill(-1, signal.SIGKILL)\nprint(os.waitpid(pid, 0)[1])")
    # its parent, the provider, is outside: 0 (the namespace's PID 1 is its init)
    assert r["stdout"].split() == ["2", "0", "ProcessLookupError", str(signal.SIGKILL)], r
    assert server["child"].alive() and run(server, "print(7)")["stdout"] == "7\n"


@pytest_twisted.ensureDeferred
async def test_a_kernels_orphans_die_with_it(server):
    """A double fork in a new session (the classic daemon escape) is reparented
    to the namespace's init while the kernel lives, and killed when it ends."""
    resp = await treq.post(server["base"] + "kernel", data={"timeout": "30"})
    info = json.loads(await resp.content())
    ws = await KernelWS.connect(reactor, f"{info['ws_url']}kernel/{info['id']}/channels")
    try:
        msgs = await ws.run("import os, subprocess\n"
                            "p = subprocess.Popen(['sh', '-c', 'sleep 300 & echo $!'], stdout=subprocess.PIPE, "
                            "start_new_session=True)\n"
                            "orphan = int(p.stdout.readline()); p.wait()\n"
                            "print(orphan, os.readlink('/proc/self/ns/pid'))")
        out = stdout_of(msgs).split()
        orphan = host_pid(" ".join(out[:2]))
        init = host_pid(f"1 {out[1]}")            # PID 1 of the kernel's namespace
        with open(f"/proc/{orphan}/stat") as f:
            assert int(f.read().rsplit(")", 1)[1].split()[1]) == init      # init took it in
    finally:
        ws.close()
        resp = await treq.delete(server["base"] + f"kernel/{info['id']}")
        await resp.content()
    wait_until(lambda: not os.path.exists(f"/proc/{orphan}"), 10, "the orphan killed with its kernel's namespace")


def test_other_kernels_directories_are_not_visible(server):
    wait_until(lambda: len(glob.glob(server["runtime"] + "/work/*")) >= 2, 20, "ready kernels")
    others = glob.glob(server["runtime"] + "/work/*") + glob.glob(server["runtime"] + "/sock/*")
    r = run(server, f"import os\nme = os.getcwd()\nothers = {others!r}\n"
                    "print([p for p in others if os.path.exists(p) and not me.endswith(p[-8:])], "
                    "os.listdir(os.path.dirname(me)) == [os.path.basename(me)])")
    assert r["stdout"].strip() == "[] True", r


def host_mounts() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()


def test_nothing_of_a_kernel_stays_mounted_after_it_ended(server):
    r = run(server, "import os\nopen('f', 'w').write('x')\nprint(os.getcwd())")
    home = r["stdout"].strip()
    assert home.startswith(server["runtime"] + "/work/")
    wait_until(lambda: f" {home} " not in host_mounts() and not os.path.exists(home), 10,
               "the kernel's home tmpfs unmounted and removed")
    # the kernels' roots, /tmp, /proc, /dev live only in their own mount namespaces
    assert "/.root " not in host_mounts() and "cellstack-tmp" not in host_mounts()
    live = [line.split()[4] for line in host_mounts().splitlines() if server["runtime"] in line]
    assert all(p.startswith(server["runtime"] + "/work/") for p in live), live
    h = json.loads(urllib.request.urlopen(server["base"] + "healthz").read())
    assert len(live) <= h["ready"] + h["starting"] + h["running"]


@pytest_twisted.ensureDeferred
async def test_files_in_home_are_served(server):
    resp = await treq.post(server["base"] + "kernel", data={"timeout": "30"})
    info = json.loads(await resp.content())
    ws = await KernelWS.connect(reactor, f"{info['ws_url']}kernel/{info['id']}/channels")
    try:
        await ws.run("import os\nos.makedirs('sub', exist_ok=True)\nopen('sub/out.txt', 'w').write('hello home')\n"
                     "os.symlink('/etc/passwd', 'link')")
        base = server["base"] + f"kernel/{info['id']}/files/"
        resp = await treq.get(base + "sub/out.txt")
        assert resp.code == 200 and await resp.content() == b"hello home"
        resp = await treq.get(base + "link")          # points out of home: never followed
        assert resp.code == 404
        await resp.content()
    finally:
        ws.close()
        resp = await treq.delete(server["base"] + f"kernel/{info['id']}")
        await resp.content()


def test_cannot_signal_host_processes(server):
    r = run(server, f"import os\nos.kill({server['child'].pid}, 9)")
    assert error_of(r)[0] == "ProcessLookupError"           # no such pid in its namespace
    assert server["child"].alive()


def test_privilege_escalation_calls_are_refused(server):
    checks = {
        "ptrace": "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                  "print(libc.ptrace(16, 1, 0, 0), ctypes.get_errno())",          # PTRACE_ATTACH to pid 1
        "unshare-user": "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                        "print(libc.unshare(0x10000000), ctypes.get_errno())",
        "mount": "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                 "print(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None), ctypes.get_errno())",
    }
    for name, code in checks.items():
        assert run(server, code)["stdout"].split() == ["-1", "1"], name     # -1, EPERM
    r = run(server, "import socket\nsocket.socket(socket.AF_PACKET, socket.SOCK_RAW)")
    assert error_of(r)[0] == "PermissionError"
    r = run(server, "import subprocess\nprint(subprocess.run(['unshare', '-U', 'true']).returncode)")
    assert r["stdout"].strip() not in ("0", "")


def _mergeable_kernels(server) -> list[int]:
    found = []
    for pid in descendants_of(server["child"].pid):
        try:
            with open(f"/proc/{pid}/ksm_stat") as f:
                if "ksm_mergeable: yes" in f.read():
                    found.append(pid)
        except OSError:
            pass
    return found


def test_a_kernel_cannot_opt_in_to_samepage_merging(server):
    """samepages.py: merging across kernels is a side channel, so user code
    may neither mark its memory nor its process for it; a sandboxed ready
    kernel that had opted in runs code like any other (it opted out first)."""
    code = ("import ctypes, mmap\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "print(libc.prctl(67, 1, 0, 0, 0), ctypes.get_errno())\n"          # PR_SET_MEMORY_MERGE
            "m = mmap.mmap(-1, 1 << 20)\n"
            "addr = ctypes.addressof(ctypes.c_char.from_buffer(m))\n"
            "libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]\n"
            "print(libc.madvise(addr, 1 << 20, 12), ctypes.get_errno())\n"   # MADV_MERGEABLE
            "print(libc.madvise(addr, 1 << 20, 13))\n")                      # MADV_UNMERGEABLE: allowed
    if samepages.read_merge_state() == "on":     # of the 2 ready kernels, one opted in
        wait_until(lambda: len(_mergeable_kernels(server)) == 1, 30, "a ready kernel that opted in")
    with ThreadPoolExecutor(2) as ex:   # two at once: both ready kernels are used
        results = list(ex.map(lambda _: run(server, code), range(2)))
    for r in results:
        assert r["stdout"].split() == ["-1", "1", "-1", "1", "0"], r


def test_resource_exhaustion_fails_safely(server):
    r = run(server, "x = bytearray(6 * 1024**3)")
    assert error_of(r)[0] == "MemoryError"
    r = run(server, "open('big', 'wb').write(b'x' * (20 * 2**20))")
    assert error_of(r) == ("OSError", "[Errno 27] File too large")
    r = run(server, "while True: pass")
    assert r["success"] is False and "killed" in r["stderr"]
    # a (bounded) fork bomb meets the pids cgroup
    r = run(server, "import os, time\nok = err = 0\nfor i in range(200):\n"
                    "    try:\n        pid = os.fork()\n    except OSError:\n        err += 1\n        continue\n"
                    "    if pid == 0:\n        time.sleep(3)\n        os._exit(0)\n    ok += 1\nprint(ok, err)")
    ok, err = map(int, r["stdout"].split())
    assert ok < 32 and err > 150


def test_nothing_of_a_hostile_kernel_remains(server):
    r = run(server, "import os, subprocess\nsubprocess.Popen(['sleep', '300'], start_new_session=True)\n"
                    "print(os.getuid())")
    uid = int(r["stdout"])

    def leftovers():
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                st = open(f"/proc/{pid}/status").read()
            except OSError:
                continue
            if f"Uid:\t{uid}\t" in st:
                found.append(pid)
        return found

    wait_until(lambda: not leftovers(), 10, f"no process of account {uid} left (setsid escape included)")
    groups = [d for c in ("memory", "pids", "cpu") for d in
              (os.listdir(f"/sys/fs/cgroup/{c}/cellstack") if os.path.isdir(f"/sys/fs/cgroup/{c}/cellstack") else [])
              if d.startswith("sbx-")]
    running = json.loads(urllib.request.urlopen(server["base"] + "healthz").read())
    assert len(groups) <= 3 * (running["ready"] + running["starting"] + running["running"])


def test_kernels_die_with_a_killed_provider(server):
    """Last: it makes the pool restart its provider.  The kernels' parent-death
    signal must survive their switch to their own account."""

    wait_until(lambda: len(glob.glob(server["runtime"] + "/work/*")) >= 2, 20, "ready kernels")
    providers = [p for p in children_of(server["child"].pid)
                 if b"cellserver.provider" in open(f"/proc/{p}/cmdline", "rb").read()]
    assert len(providers) == 1
    [template] = children_of(providers[0])          # the kernels' parent (forkserver.py)
    assert open(f"/proc/{template}/comm").read().strip() == "cs-template"

    def settled():
        """The kernels and their pid namespaces' inits, once none is half-started."""
        children = children_of(template)
        inits = [k for k in children if open(f"/proc/{k}/comm").read().strip() == "cellstack-init"]
        kernels = [k for k in children if k not in inits]
        if kernels and len(inits) == len(kernels) and all(os.stat(f"/proc/{k}").st_uid >= 61000 for k in kernels):
            return kernels + inits + [template]
        return None
    kernels = wait_until(settled, 10, "ready kernels, each on its own account beside its init")
    os.kill(providers[0], signal.SIGKILL)

    def gone(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True
    wait_until(lambda: all(gone(k) for k in kernels), 10, "the killed provider's kernels to die with it")
    wait_until(lambda: run(server, "print(1)")["stdout"] == "1\n", 30, "a restarted provider's kernel")


def test_a_killed_cell_server_leaves_no_kernel_mount_or_cgroup(module_children):
    """kill -9 of the cell server: its provider gets SIGTERM (parent-death
    signal) and cleans up like on a normal stop.  Cgroups a provider killed
    before its clean-up left (planted here, one with a process in it) are
    removed when that node starts again; another node's are not touched."""
    import subprocess

    pids_root = "/sys/fs/cgroup/pids/cellstack"
    controllers = ("memory", "pids", "cpu")
    stale, other = "sbk-" + "0" * 32, "sbkx-" + "0" * 32
    for name in (stale, other):
        for c in controllers:
            os.makedirs(f"/sys/fs/cgroup/{c}/cellstack/{name}", exist_ok=True)
    left = subprocess.Popen(["sleep", "120"])
    try:
        with open(f"{pids_root}/{stale}/cgroup.procs", "w") as f:
            f.write(str(left.pid))
        port = free_port()
        runtime = kernel_runtime_dir("sbk")
        child = module_children.twistd("sandboxed-killed", "cellserver", [
            "--node", "sbk", "--listen", f"tcp:{port}:interface=127.0.0.1", "--runtime-dir", runtime,
            "--ready-kernels", "2", "--max-kernels", "4", "--preload", ""])
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 60, "sandboxed cell server", child=child)
        assert left.wait(10) == -signal.SIGKILL
        assert not any(os.path.exists(f"/sys/fs/cgroup/{c}/cellstack/{stale}") for c in controllers)
        assert all(os.path.isdir(f"/sys/fs/cgroup/{c}/cellstack/{other}") for c in controllers)

        wait_until(lambda: host_mounts().count(f" {runtime}/work/") >= 2, 20, "two ready kernels' homes")
        def kernel_cgroups():
            found = [d for d in os.listdir(pids_root) if d.startswith("sbk-")]
            return found if len(found) >= 2 else None
        kernels = wait_until(kernel_cgroups, 10, "two ready kernels' cgroups (made just after their homes)")
        os.kill(child.pid, signal.SIGKILL)
        wait_until(lambda: f" {runtime}/" not in host_mounts(), 15, "the kernels' home tmpfs unmounted")
        wait_until(lambda: not glob.glob(runtime + "/work/*") and not glob.glob(runtime + "/sock/*"), 10,
                   "the kernels' directories removed")
        wait_until(lambda: not any(os.path.exists(f"/sys/fs/cgroup/{c}/cellstack/{k}")
                                   for c in controllers for k in kernels), 10, "the kernels' cgroups removed")
    finally:
        if left.poll() is None:
            left.kill()
            left.wait()
        for name in (stale, other):
            for c in controllers:
                try:
                    os.rmdir(f"/sys/fs/cgroup/{c}/cellstack/{name}")
                except OSError:
                    pass
