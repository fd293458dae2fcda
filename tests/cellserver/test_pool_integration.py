"""The kernel side for real: provider process, forked ipykernels, zmq over ipc.

Each test starts its own ``KernelPoolService`` (runtime dir under /tmp,
removed at the end) on the real reactor (pytest-twisted) with bounded waits.
"""
from __future__ import annotations

import os
import signal
import tempfile

import pytest
import pytest_twisted
from jupyter_client.session import Session
from twisted.internet import defer, task

from cellserver.kernels import KernelGone, NoCapacity
from cellserver.pool import KernelPoolService
from cellserver.provider import samepages
from cellserver.provider_settings import ProviderSettings

pytestmark = pytest.mark.integration
CLIENT = Session(key=b"unused", username="test")   # only builds client messages


def reactor():
    from twisted.internet import reactor as r
    return r


async def wait_for(pred, timeout: float, what: str) -> None:
    for _ in range(int(timeout / 0.02)):
        if pred():
            return
        await task.deferLater(reactor(), 0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def start_pool(**kw) -> KernelPoolService:
    runtime = tempfile.mkdtemp(prefix="cst-", dir="/tmp")
    kw.setdefault("ready_kernels", 2)
    pool = KernelPoolService(reactor(), ProviderSettings(runtime_dir=runtime, **kw), "it")
    pool.startService()
    try:
        await wait_for(lambda: pool.stats().ready >= min(1, kw["ready_kernels"]), 30, "a ready kernel")
    except BaseException:
        await stop_pool(pool)
        raise
    return pool


async def stop_pool(pool: KernelPoolService) -> None:
    await pool.stopService().addTimeout(30, reactor())
    assert not os.path.exists(pool.runtime_dir)


async def execute(kernel, code: str, timeout: float = 20, on_sent=None) -> list:
    """Run ``code``; all messages with its msg_id as parent, until reply and idle."""
    msg = CLIENT.msg("execute_request", {"code": code, "silent": False, "store_history": True,
                                         "user_expressions": {}, "allow_stdin": False})
    mid = msg["header"]["msg_id"]
    got, seen = [], set()
    done = defer.Deferred()

    def listener(m):
        if m.parent_msg_id != mid:
            return
        got.append(m)
        if m.msg_type == "execute_reply":
            seen.add("reply")
        if m.msg_type == "status" and m.content()["execution_state"] == "idle":
            seen.add("idle")
        if seen == {"reply", "idle"} and not done.called:
            done.callback(got)
    remove = kernel.add_listener(listener)
    try:
        kernel.send("shell", msg)
        if on_sent:
            await on_sent(got)
        return await done.addTimeout(timeout, reactor())
    finally:
        remove()


def kinds(msgs):
    return [(m.channel, m.msg_type) for m in msgs]


def reply(msgs):
    return next(m.content() for m in msgs if m.msg_type == "execute_reply")


def proc_children(pid: int) -> list[int]:
    kids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:          # ppid
                kids.append(int(name))
    return kids


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest_twisted.ensureDeferred
async def test_print_then_idle_then_ok_reply():
    pool = await start_pool()
    try:
        k = await pool.take()
        assert k.id.startswith("it-") and pool.get(k.id) is k and alive(k.pid)
        assert os.getpgid(k.pid) == k.pid                       # own process group
        msgs = await execute(k, "print(1+1)")
        iopub = [(m.msg_type, m.content()) for m in msgs if m.channel == "iopub"]
        assert iopub[0] == ("status", {"execution_state": "busy"})
        streams = [c for t, c in iopub if t == "stream"]
        assert streams == [{"name": "stdout", "text": "2\n"}]
        assert iopub[-1] == ("status", {"execution_state": "idle"})
        assert reply(msgs)["status"] == "ok"
        assert all(m.parent_header["msg_id"] == msgs[0].parent_msg_id for m in msgs)
    finally:
        await stop_pool(pool)


@pytest_twisted.ensureDeferred
async def test_matplotlib_figure_comes_back_as_png_and_errors_carry_a_traceback():
    pool = await start_pool()
    try:
        k = await pool.take()
        msgs = await execute(k, "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()")
        images = [m.content()["data"] for m in msgs if m.msg_type == "display_data"]
        assert images and "image/png" in images[0] and images[0]["image/png"].startswith("iVBOR")
        msgs = await execute(k, "def f():\n    return 1/0\nf()")
        err = next(m.content() for m in msgs if m.msg_type == "error")
        assert err["ename"] == "ZeroDivisionError" and any("f()" in line for line in err["traceback"])
        assert reply(msgs)["status"] == "error"
    finally:
        await stop_pool(pool)


@pytest_twisted.ensureDeferred
async def test_interrupt_stops_a_busy_loop_and_the_kernel_stays_usable():
    pool = await start_pool()
    try:
        k = await pool.take()

        async def interrupt_when_running(got):
            await wait_for(lambda: any(m.msg_type == "execute_input" for m in got), 20, "busy")
            await task.deferLater(reactor(), 0.3)
            k.send("control", CLIENT.msg("interrupt_request", {}))
        msgs = await execute(k, "while True: pass", on_sent=interrupt_when_running)
        assert reply(msgs)["status"] == "error" and reply(msgs)["ename"] == "KeyboardInterrupt"
        msgs = await execute(k, "print('still here')")
        assert [m.content()["text"] for m in msgs if m.msg_type == "stream"] == ["still here\n"]
    finally:
        await stop_pool(pool)


@pytest_twisted.ensureDeferred
async def test_killed_kernel_ends_with_the_signal_as_reason_and_is_replaced():
    pool = await start_pool(ready_kernels=1)
    try:
        k = await pool.take()
        ended = k.when_ended()
        os.kill(k.pid, signal.SIGKILL)
        reason = await ended.addTimeout(20, reactor())
        assert reason == "killed by signal 9 (SIGKILL)"
        assert await k.when_ended() == reason and pool.get(k.id) is None
        assert not os.path.exists(k.files_path())
        with pytest.raises(KernelGone):
            k.send("shell", CLIENT.msg("kernel_info_request", {}))
        await wait_for(lambda: pool.stats().ready == 1 and pool.stats().running == 0, 20, "a replacement")
        await k.shutdown("again")                                # safe after the end
    finally:
        await stop_pool(pool)


@pytest_twisted.ensureDeferred
async def test_kernels_do_not_share_state_files_or_randomness():
    pool = await start_pool()
    try:
        a, b = await pool.take(), await pool.take()
        assert a.files_path() != b.files_path() and a.pid != b.pid
        await execute(a, "secret = 42\nopen('out.txt', 'w').write('hello')")
        assert open(os.path.join(a.files_path(), "out.txt")).read() == "hello"
        code = "import os, numpy\nprint('secret' in globals(), os.getcwd(), numpy.random.randint(1 << 30))"
        out_a = [m.content()["text"] for m in await execute(a, code) if m.msg_type == "stream"]
        out_b = [m.content()["text"] for m in await execute(b, code) if m.msg_type == "stream"]
        sa, cwd_a, ra = out_a[0].split()
        sb, cwd_b, rb = out_b[0].split()
        assert (sa, sb) == ("True", "False")
        assert (cwd_a, cwd_b) == (a.files_path(), b.files_path())
        assert ra != rb
        await a.shutdown("done")
        assert not os.path.exists(a.files_path()) and not alive(a.pid)
        assert await a.when_ended() == "done"
    finally:
        await stop_pool(pool)


@pytest_twisted.ensureDeferred
async def test_capacity_is_enforced():
    pool = await start_pool(ready_kernels=1, max_kernels=1, take_wait=0.5)
    try:
        k = await pool.take()
        with pytest.raises(NoCapacity, match="all 1 kernels are in use"):
            await pool.take()
        await k.shutdown("free the slot")
        await wait_for(lambda: pool.stats().ready == 1, 20, "a kernel after the slot freed")
        assert pool.stats().running == 0
    finally:
        await stop_pool(pool)


@pytest_twisted.ensureDeferred
async def test_200_kernels_leave_no_process_or_directory_behind():
    pool = await start_pool(ready_kernels=4, max_kernels=16, preload=())
    try:
        provider, template = pool.provider_pid, pool.template_pid
        assert proc_children(provider) == [template]        # the logic's one child; kernels are the template's
        pids = set()
        for _ in range(200):
            k = await pool.take().addTimeout(30, reactor())
            pids.add(k.pid)
            await k.shutdown("next").addTimeout(30, reactor())
        assert len(pids) == 200
        s = pool.stats()
        assert s.running == 0
        kids = set(proc_children(template))
        assert all(not alive(p) for p in pids - kids)
        assert len(kids) <= s.ready + s.starting
        assert len(os.listdir(pool.sock_root)) == len(os.listdir(pool.work_root)) <= s.ready + s.starting
    finally:
        await stop_pool(pool)
    assert not alive(provider) and not alive(template) and proc_children(template) == []
    assert not any(alive(p) for p in pids)


@pytest_twisted.ensureDeferred
async def test_provider_death_ends_its_kernels_and_it_is_restarted():
    pool = await start_pool(ready_kernels=1)
    try:
        k = await pool.take()
        await execute(k, "import subprocess; p = subprocess.Popen(['sleep', '60'])")
        old = pool.provider_pid
        os.kill(old, signal.SIGKILL)
        reason = await k.when_ended().addTimeout(20, reactor())
        assert reason == "kernel provider died"
        await wait_for(lambda: not alive(k.pid), 10, "the kernel to die")
        assert not os.path.exists(k.files_path())
        with pytest.raises(NoCapacity):
            await pool.take()                                   # no provider during back-off
        await wait_for(lambda: pool.stats().ready == 1, 30, "the restarted provider's kernel")
        assert pool.provider_pid not in (None, old) and pool.provider_restarts == 1
        k2 = await pool.take()
        msgs = await execute(k2, "print(6*7)")
        assert [m.content()["text"] for m in msgs if m.msg_type == "stream"] == ["42\n"]
    finally:
        await stop_pool(pool)


@pytest_twisted.ensureDeferred
async def test_kernels_that_never_get_ready_are_killed_with_back_off_not_a_fork_loop():
    pool = await start_pool(ready_kernels=0, start_timeout=0.001, take_wait=0.5)
    try:
        await wait_for(lambda: pool.provider_up, 30, "the provider")
        with pytest.raises(NoCapacity, match="no kernel became ready"):
            await pool.take()
        await task.deferLater(reactor(), 1.5)
        # back-off 0.1, 0.2, 0.4, 0.8 s...: a handful of attempts, not hundreds
        assert 1 <= len(pool.fork_times) <= 8 and pool.start_failures >= 1
        assert pool.stats().running == 0
    finally:
        await stop_pool(pool)


@pytest_twisted.ensureDeferred
async def test_output_sent_before_the_first_listener_is_kept_for_it():
    pool = await start_pool(ready_kernels=1)
    try:
        k = await pool.take()
        msg = CLIENT.msg("execute_request", {"code": "print('early')", "silent": False,
                                             "store_history": True, "user_expressions": {},
                                             "allow_stdin": False})
        k.send("shell", msg)                     # no listener yet
        await task.deferLater(reactor(), 0.5)
        got = []
        remove = k.add_listener(got.append)
        assert [m.content()["text"] for m in got if m.msg_type == "stream"] == ["early\n"]
        assert got[-1].msg_type in ("status", "execute_reply")
        remove()
        # control replies come back on the control channel
        got2 = []
        k.add_listener(got2.append)
        k.send("control", CLIENT.msg("kernel_info_request", {}))
        await wait_for(lambda: any(m.msg_type == "kernel_info_reply" for m in got2), 10, "control reply")
        assert next(m.channel for m in got2 if m.msg_type == "kernel_info_reply") == "control"
    finally:
        await stop_pool(pool)


@pytest_twisted.ensureDeferred
async def test_forked_kernel_is_a_whole_ipython():
    """What the template does once for every kernel (extensions, the module
    snapshot, no heartbeat) still gives each kernel what IPython gives: the
    default extension's ``%store``, ``%reset --aggressive`` dropping the
    modules the user imported (and only those), and no heartbeat thread."""
    pool = await start_pool()
    try:
        k = await pool.take()
        msgs = await execute(k, "ip = get_ipython()\n"
                                "print('store' in ip.magics_manager.magics['line'])\n"
                                "import colorsys, threading\n"
                                "print(sorted(t.name for t in threading.enumerate() if 'eartbeat' in t.name))\n"
                                "x = 1")
        assert [m.content()["text"] for m in msgs if m.msg_type == "stream"] == ["True\n[]\n"]
        msgs = await execute(k, "%reset -f --aggressive\nimport sys\n"
                                "print('colorsys' in sys.modules, 'x' in dir(), 'ipywidgets' in sys.modules,"
                                " 'zmq' in sys.modules)")
        # the template's modules (ipywidgets and the interacts among them) and
        # those the kernel's own start imported stay; the user's go
        assert "".join(m.content()["text"] for m in msgs if m.msg_type == "stream").endswith("False False True True\n")
        assert reply(msgs)["status"] == "ok"
    finally:
        await stop_pool(pool)


@pytest_twisted.ensureDeferred
async def test_output_of_a_forked_subprocess_reaches_the_page_unsandboxed():
    """Outside the sandbox a kernel keeps ipykernel's pipe for the output of
    the processes it forks (a multiprocessing child prints through it); the
    sandbox forbids the TCP listener it needs (tests/sandbox/test_escape.py)."""
    pool = await start_pool(ready_kernels=1)
    try:
        k = await pool.take()
        msgs = await execute(k, "import multiprocessing as mp\n"
                                "ctx = mp.get_context('fork')\n"
                                "p = ctx.Process(target=lambda: print('from the child', flush=True))\n"
                                "p.start(); p.join(); print('exit', p.exitcode)", timeout=30)
        text = "".join(m.content()["text"] for m in msgs if m.msg_type == "stream")
        assert "from the child\n" in text and text.endswith("exit 0\n"), text
    finally:
        await stop_pool(pool)


def _thp_mode() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read()
    except OSError:
        return "[never]"


@pytest_twisted.ensureDeferred
async def test_template_death_ends_its_kernels_and_the_provider_is_restarted():
    """The kernels' parent is the template (forkserver.py): killed, its
    kernels die with it, the provider says so and exits, and is restarted."""
    pool = await start_pool(ready_kernels=1)
    try:
        k = await pool.take()
        await execute(k, "print(1)")
        old, template = pool.provider_pid, pool.template_pid
        os.kill(template, signal.SIGKILL)
        reason = await k.when_ended().addTimeout(20, reactor())
        assert reason in ("the kernel template died", "kernel provider died")
        await wait_for(lambda: not alive(k.pid) and not alive(old), 10, "the kernel and the provider to end")
        assert not os.path.exists(k.files_path())
        await wait_for(lambda: pool.stats().ready == 1, 30, "the restarted provider's kernel")
        assert pool.template_pid not in (None, template) and pool.provider_restarts == 1
        msgs = await execute(await pool.take(), "print(6*7)")
        assert [m.content()["text"] for m in msgs if m.msg_type == "stream"] == ["42\n"]
    finally:
        await stop_pool(pool)


@pytest.mark.skipif("[never]" in _thp_mode() or tuple(map(int, os.uname().release.split(".")[:2])) < (6, 1),
                    reason="needs transparent huge pages and MADV_COLLAPSE (Linux 6.1)")
@pytest_twisted.ensureDeferred
async def test_the_template_is_forked_from_huge_pages_and_kernels_still_work():
    """hugepages.py: the provider reports the template memory it collapsed,
    the template really holds it as huge pages, and the kernels forked from
    it run code (a write into a huge page copies only what it writes).
    forkserver.py: the template keeps them while it forks kernel after
    kernel (a template that ran Python between forks split most of them)."""
    pool = await start_pool(ready_kernels=2)
    try:
        info = pool.provider_info
        assert info.huge_mb >= 8 and info.fork_loop == "c"

        def huge_kb():
            with open(f"/proc/{info.template_pid}/smaps_rollup") as f:
                return int(next(line for line in f if line.startswith("AnonHugePages:")).split()[1])
        at_start = huge_kb()
        assert at_start >= 8 * 1024
        k = await pool.take()
        msgs = await execute(k, "x = list(range(100000)); print(sum(x))")
        assert [m.content()["text"] for m in msgs if m.msg_type == "stream"] == ["4999950000\n"]
        await k.shutdown("next")
        for _ in range(30):
            k = await pool.take().addTimeout(30, reactor())
            await execute(k, "1 + 1")
            await k.shutdown("next").addTimeout(30, reactor())
        assert huge_kb() >= 0.9 * at_start
    finally:
        await stop_pool(pool)


def _says_mergeable() -> bool:
    try:
        with open("/proc/self/ksm_stat") as f:
            return "ksm_mergeable:" in f.read()
    except OSError:
        return False


def _mergeable(pid: int) -> bool:
    with open(f"/proc/{pid}/ksm_stat") as f:
        return "ksm_mergeable: yes" in f.read()


@pytest.mark.skipif(samepages.read_merge_state() != "on",
                    reason="needs ksmd running (deploy/install) and a Linux that says whether a process is mergeable")
@pytest_twisted.ensureDeferred
async def test_idle_kernels_but_one_may_merge_and_each_opts_out_before_its_first_execution():
    """samepages.py: of the ready kernels one stays unmerged (handed out
    first), the others opt in; a kernel that opted in is no longer mergeable
    once its first execution starts, so no user code runs on shared pages.
    (Whether ksmd then merges is the kernel's side: loadtest/kernels_bench
    measures the PSS it saves.)"""
    pool = await start_pool(ready_kernels=3, merge_rest=3.0)
    try:
        await wait_for(lambda: pool.stats().ready == 3, 30, "3 ready kernels")
        ready = list(pool._ready.values())
        assert sorted(_mergeable(k.pid) for k in ready) == [False, True, True]
        assert [k.mergeable for k in ready] == [_mergeable(k.pid) for k in ready]
        first = await pool.take()
        assert not first.mergeable                         # the unmerged one goes first
        second = await pool.take()
        assert second.mergeable and _mergeable(second.pid)
        # a busy pool starts its kernels unmerged (plan.busy): the two refills
        assert [k.mergeable for k in pool._starting.values()] == [False, False]
        msgs = await execute(second, "print(open('/proc/self/ksm_stat').read().split('ksm_mergeable:')[1].split()[0])")
        assert [m.content()["text"] for m in msgs if m.msg_type == "stream"] == ["no\n"]
        assert not _mergeable(second.pid)
        msgs = await execute(second, "print(6 * 7)")               # and it goes on working
        assert [m.content()["text"] for m in msgs if m.msg_type == "stream"] == ["42\n"]
        # at rest (3 s without a take) the spare unmerged refill is replaced
        # by one that merges: one unmerged kernel again, the newest
        await wait_for(lambda: pool.stats().ready == 3 and not pool._retiring
                       and sorted(k.mergeable for k in pool._ready.values()) == [False, True, True],
                       30, "the pool at rest with one unmerged kernel")
        ready = list(pool._ready.values())
        assert [k.mergeable for k in ready] == [_mergeable(k.pid) for k in ready]
    finally:
        await stop_pool(pool)


@pytest.mark.skipif(not _says_mergeable(), reason="needs KSM and a Linux that says whether a process is mergeable")
@pytest_twisted.ensureDeferred
async def test_with_merging_off_no_kernel_opts_in():
    pool = await start_pool(ready_kernels=2, merge_idle=False)
    try:
        await wait_for(lambda: pool.stats().ready == 2, 30, "2 ready kernels")
        assert [_mergeable(k.pid) for k in pool._ready.values()] == [False, False]
        assert pool.provider_info.merge == samepages.read_merge_state()     # the host's state, said as is
    finally:
        await stop_pool(pool)
