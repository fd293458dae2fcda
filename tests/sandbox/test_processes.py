"""The small processes around a sandboxed kernel, run for real: the outer
process without root mirrors how its kernel ended, and ``cellstack-init``
(PID 1 of a kernel's pid namespace) reaps orphans and dies with its parent."""
from __future__ import annotations

import os
import signal
import time

import pytest

from cellserver.sandbox import pidns, userns


def _ended(status_of_child: int) -> int:
    """How a process that calls ``_exit_like(status)`` itself ends."""
    pid = os.fork()
    if pid == 0:
        try:
            userns._exit_like(status_of_child)
        finally:
            os._exit(99)                           # not reached
    return os.waitpid(pid, 0)[1]


def test_the_outer_process_ends_the_way_its_kernel_did():
    killed = _ended(signal.SIGKILL)                # wait status: killed by SIGKILL
    assert os.WIFSIGNALED(killed) and os.WTERMSIG(killed) == signal.SIGKILL
    xcpu = _ended(signal.SIGXCPU)
    assert os.WIFSIGNALED(xcpu) and os.WTERMSIG(xcpu) == signal.SIGXCPU
    assert os.waitstatus_to_exitcode(_ended(3 << 8)) == 3


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="a pid namespace needs root (or a user namespace)")
def test_init_is_pid_1_reaps_orphans_and_dies_with_its_parent():
    init = pidns.init_path()
    assert os.access(init, os.X_OK), f"{init}: run deploy/install"
    r, w = os.pipe()
    parent = os.fork()
    if parent == 0:                                # stands in for the provider
        try:
            forker = pidns.Forker(init)
            kernel, first = forker.fork()
            if kernel == 0:                        # PID 2: leave an orphan behind, report, stay
                os.close(r)
                child = os.fork()
                if child == 0:                     # its child leaves an orphan behind and goes
                    if os.fork() == 0:
                        time.sleep(0.3)            # by now reparented to init; then a zombie unless reaped
                        os._exit(0)
                    os._exit(0)
                os.waitpid(child, 0)
                os.write(w, f"kernel {os.getpid()}\n".encode())
                time.sleep(60)
            os.write(w, f"init {first}\n".encode())
            time.sleep(60)
        finally:
            os._exit(1)
    os.close(w)
    f = os.fdopen(r)
    said = dict(f.readline().split() for _ in range(2))
    init_pid = int(said["init"])
    assert said["kernel"] == "2"
    with open(f"/proc/{init_pid}/status") as st:
        nspid = next(line for line in st if line.startswith("NSpid:")).split()
    assert nspid[-1] == "1" and len(nspid) == 3          # host pid, 1 in its own namespace
    def zombies_of(pid):
        found = []
        for name in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{name}/stat") as st:
                    fields = st.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(fields[0])
        return found
    time.sleep(0.6)                                # the orphan has ended
    assert zombies_of(init_pid) == []              # reaped, not left a zombie
    os.kill(parent, signal.SIGKILL)                # the provider dies: init (and the kernel) die with it
    os.waitpid(parent, 0)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{init_pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{init_pid}")
