"""The template's fork loop (``forkserver``), both of them (the C library
the install command builds, and the Python fallback), run for real in a
throw-away template process; and the logic side's reading of the reports."""
from __future__ import annotations

import os
import signal
import time

import pytest

from cellserver.provider import forkserver as F


def test_a_start_answered_between_two_exits_loses_neither_exit():
    """One read can bring exits before and after the start's answer: the
    start returns its pid and both exits are kept for ``poll``."""
    cmd_r, cmd_w = os.pipe()
    rep_r, rep_w = os.pipe()
    client = F.TemplateClient(cmd_w, rep_r)
    try:
        os.write(rep_w, F.RECORD.pack(F.EXITED, 11, 0, 9) + F.RECORD.pack(F.STARTED, 12, 3, 0)
                 + F.RECORD.pack(F.EXITED, 13, 0, 0))
        assert client.start(b"params", new_pid_ns=True) == (12, 3)
        op, flags, length = F.HEAD.unpack(os.read(cmd_r, F.HEAD.size))
        assert (op, flags, os.read(cmd_r, length)) == (F.OP_START, F.FLAG_NEWPID, b"params")
        assert client.poll() == [(11, 9), (13, 0)]
        assert client.poll() == []
        os.write(rep_w, F.RECORD.pack(F.START_FAILED, 0, 0, 11))
        with pytest.raises(OSError) as failed:
            client.start(b"", new_pid_ns=False)
        assert failed.value.errno == 11
        os.close(rep_w)
        with pytest.raises(F.TemplateLost):
            client.poll()
    finally:
        client.close()
        os.close(cmd_r)


def _loops() -> list:
    return [pytest.param("python", id="python"),
            pytest.param("c", id="c", marks=pytest.mark.skipif(
                not os.path.exists(F.library_path()), reason=f"{F.library_path()}: run deploy/install"))]


def _template(loop: str, child, init_path: str | None = None) -> tuple[int, F.TemplateClient]:
    """A template process running ``loop``; each child it forks calls
    ``child(payload)`` and exits."""
    cmd_r, cmd_w = os.pipe2(os.O_CLOEXEC)
    rep_r, rep_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(cmd_w)
            os.close(rep_r)
            payload = F.serve(cmd_r, rep_w, init_path, F.load_library() if loop == "c" else None)
            if payload is None:
                os._exit(0)
            child(payload)
        finally:
            os._exit(99)
    os.close(cmd_r)
    os.close(rep_w)
    return pid, F.TemplateClient(cmd_w, rep_r)


def _write_and_act(payload: bytes) -> None:
    """Write our pid and our parent's to the file the payload names, then
    wait for SIGKILL (``wait``) or exit with the code it says."""
    path, action = payload.decode().split("\n")
    with open(path, "w") as f:
        f.write(f"{os.getpid()} {os.getppid()}")
    if action == "wait":
        time.sleep(60)
    os._exit(int(action))


def _exits(client: F.TemplateClient, n: int, timeout: float = 10.0) -> list[tuple[int, int]]:
    got, deadline = [], time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += client.poll()
        time.sleep(0.005)
    return got


@pytest.mark.parametrize("loop", _loops())
def test_the_loop_forks_reports_exits_kills_and_ends(loop, tmp_path):
    template, client = _template(loop, _write_and_act)
    try:
        # children with their payload, their exit status reported
        started = {}
        for code in range(5):
            path = tmp_path / f"out{code}"
            pid, init = client.start(f"{path}\n{code}".encode(), new_pid_ns=False)
            started[pid] = (path, code)
            assert init == 0
        exits = dict(_exits(client, 5))
        assert set(exits) == set(started)
        for pid, (path, code) in started.items():
            assert os.waitstatus_to_exitcode(exits[pid]) == code
            assert path.read_text() == f"{pid} {template}"      # the template's child
        # a kill reaches a waiting child; one for a pid that is not its child does nothing
        path = tmp_path / "waiter"
        waiter, _ = client.start(f"{path}\nwait".encode(), new_pid_ns=False)
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        client.kill(os.getpid())
        client.kill(waiter)
        [(pid, status)] = _exits(client, 1)
        assert pid == waiter and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        # an oversized or unknown command is refused; the loop goes on
        os.write(client.cmd_fd, F.HEAD.pack(7, 0, 0))
        with pytest.raises(OSError):
            client.start(b"", new_pid_ns=False)
        # closing the command pipe: the children left are killed, the template ends
        last, _ = client.start(f"{tmp_path / 'last'}\nwait".encode(), new_pid_ns=False)
        client.close()
        _, status = os.waitpid(template, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        with pytest.raises(ProcessLookupError):
            os.kill(last, 0)
    finally:
        client.close()
        try:
            os.kill(template, signal.SIGKILL)
            os.waitpid(template, 0)
        except (ChildProcessError, ProcessLookupError):
            pass


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="a pid namespace needs root")
@pytest.mark.parametrize("loop", _loops())
def test_a_child_in_a_new_pid_namespace_is_pid_2_beside_its_init(loop, tmp_path):
    from cellserver.sandbox import pidns
    init_path = pidns.init_path()
    assert os.access(init_path, os.X_OK), f"{init_path}: run deploy/install"
    def write_pid(payload: bytes) -> None:
        with open(payload.decode(), "w") as f:
            f.write(str(os.getpid()))
        time.sleep(60)
    template, client = _template(loop, write_pid, init_path)
    try:
        out = tmp_path / "pid"
        pid, init = client.start(str(out).encode(), new_pid_ns=True)
        assert init > 0 and pid != init
        deadline = time.monotonic() + 10
        while not (out.exists() and out.read_text()) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert out.read_text() == "2"
        client.kill(pid)
        [(gone, _)] = _exits(client, 1)
        assert gone == pid
        deadline = time.monotonic() + 10            # its init killed with it, then reaped by the template
        while os.path.exists(f"/proc/{init}") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not os.path.exists(f"/proc/{init}")
    finally:
        client.close()
        os.waitpid(template, 0)
