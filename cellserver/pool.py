"""``KernelPoolService``: the cell server's pool of forked kernels.

A Twisted ``Service`` that spawns the kernel provider
(``python -m cellserver.provider`` on ``ProviderSettings.kernel_python``:
its logic, and as its child the warm template that forks the kernels,
``provider/forkserver.py``), talks to it over pipes (``provider.protocol``), keeps
``ready_kernels`` kernels ready and hands them out (``KernelPool``
contract in ``cellserver.kernels``).  Each kernel is a ``ZmqKernel``
connected over ipc with one zmq context per pool.

Failure handling: a kernel that does not become ready within
``start_timeout`` is killed; a kernel whose process ends is reported by the
provider (``exited``, after its process group is gone and its directories
removed) and its ``when_ended()`` fires; if the provider itself dies, every
kernel it had is killed by process group, its directories removed, its
``when_ended()`` fired with "kernel provider died", and the provider is
restarted with back-off (``provider.plan.restart_delay``).  ``stopService``
ends all kernels and the provider and removes the runtime directory.
"""
from __future__ import annotations

import errno
import os
import secrets
import shutil
import signal
from collections import OrderedDict, deque

import zmq
from twisted.application import service
from twisted.internet import defer, protocol
from twisted.logger import Logger

import cellserver
from cellserver import nodelock
from cellserver.kernelconn import ZmqKernel
from cellserver.kernelid import new_kernel_id
from cellserver.kernels import NoCapacity, PoolStats
from cellserver.provider import layout
from cellserver.provider import protocol as P
from cellserver.provider.plan import busy, kernels_to_start, may_merge, pick_ready, restart_delay, to_replace
from cellserver.provider_settings import ProviderSettings
from cellserver.sandbox.apply import cleanup as sandbox_cleanup, cgroup_dirs, stale_cgroups
from cellserver.sandbox.mounts import unmount_home, unmount_under

QUICK_DEATH = 10.0      # a provider that dies sooner than this after start counts as failing
STOP_GRACE = 15.0       # seconds stopService waits for the provider before SIGKILL
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(cellserver.__file__)))


def remove_runtime_dir(runtime_dir: str) -> None:
    """Remove what a pool makes in its runtime directory (sockets, kernels' work
    and IPython dirs), then the directory if that leaves it empty: runtime-dir
    may be a directory the operator owns.  Also used by ``deploy/cluster down``
    for a cell server that was SIGKILLed before it could do this itself."""
    for d in ("sock", "work", "ipython"):
        path = os.path.join(runtime_dir, d)
        unmount_under(path)
        shutil.rmtree(path, ignore_errors=True)
    try:
        os.rmdir(runtime_dir)
    except OSError:
        pass


class ProviderProcess(protocol.ProcessProtocol):
    """Pipes to one provider process: commands out, events in, stderr to the log."""

    _log = Logger()

    def __init__(self, pool: "KernelPoolService"):
        self.pool = pool
        self.lines = P.LineBuffer()
        self.ended = defer.Deferred()
        self.alive = True

    def send(self, command) -> None:
        if self.alive and self.transport is not None:
            self.transport.write(P.encode(command))

    def _close_pipes(self) -> None:
        try:
            self.transport.loseConnection()
        except Exception:
            self._log.failure("closing the kernel provider's pipes")

    def outReceived(self, data: bytes) -> None:
        try:
            lines = self.lines.feed(data)
        except P.ProtocolError as e:
            self._log.error("kernel provider sent a bad line: {why}", why=str(e))
            return
        for line in lines:
            try:
                event = P.decode_event(line)
            except P.ProtocolError as e:
                self._log.error("kernel provider sent a bad event: {why}", why=str(e))
                continue
            self.pool._event(self, event)

    def errReceived(self, data: bytes) -> None:
        text = data.decode("utf-8", "replace").rstrip()
        if text:
            self._log.warn("kernel provider stderr: {text}", text=text[:4000])

    def processExited(self, reason) -> None:
        # Not processEnded: that also waits for every copy of the pipes to close,
        # and a process a kernel left behind may hold one.
        self.alive = False
        # Read what is still in the pipes (a dying provider's last words) for a
        # moment, then close them.
        self.pool.reactor.callLater(1.0, self._close_pipes)
        self.pool._provider_ended(self, reason.value)
        self.ended.callback(None)


class KernelPoolService(service.Service):
    """The ``KernelPool`` implementation (see ``cellserver.kernels``)."""

    _log = Logger()

    def __init__(self, reactor, settings: ProviderSettings, node: str):
        self.reactor = reactor
        self.settings = settings
        self.node = node
        self.runtime_dir = settings.runtime_dir_for(node)
        self.sock_root = os.path.join(self.runtime_dir, "sock")
        self.work_root = os.path.join(self.runtime_dir, "work")
        layout.check_sock_dir(os.path.join(self.sock_root, "01234567"))
        self._ctx: zmq.Context | None = None
        self._provider: ProviderProcess | None = None
        self._provider_up = False
        self._spawned_at = 0.0
        self._failures = 0
        self._restart_call = None
        self._stopping = False
        self._starting: dict[str, ZmqKernel] = {}
        self._ready: OrderedDict[str, ZmqKernel] = OrderedDict()
        self._running: dict[str, ZmqKernel] = {}
        self._retiring: dict[str, ZmqKernel] = {}     # ready kernels being replaced (at rest, to merge)
        self._last_take: float | None = None
        self._rest_call = None
        self._timers: dict[str, object] = {}
        self._waiters: deque[tuple[defer.Deferred, object]] = deque()
        self.provider_info: P.Hello | None = None
        self.ready_times: deque[float] = deque(maxlen=1000)   # seconds, start command -> ready
        self.fork_times: deque[float] = deque(maxlen=1000)    # ms, fork() in the provider
        self.provider_restarts = 0
        self.start_failures = 0         # kernels in a row that died before they were ready
        self._fill_after = 0.0
        self._fill_call = None

    # -- KernelPool -------------------------------------------------------------
    def take(self) -> defer.Deferred:
        if self._stopping:
            return defer.fail(NoCapacity("the server is shutting down"))
        if self._provider is None:
            return defer.fail(NoCapacity("the kernel provider is not running (restarting)"))
        if len(self._running) >= self.settings.max_kernels:
            return defer.fail(NoCapacity(f"all {self.settings.max_kernels} kernels are in use"))
        if self._ready:
            kernel = self._ready.pop(pick_ready([(k.id, k.mergeable) for k in self._ready.values()]))
            self._running[kernel.id] = kernel
            self._taken()
            self._fill()
            return defer.succeed(kernel)
        self._taken()
        d = defer.Deferred(lambda d: self._drop_waiter(d))
        timer = self.reactor.callLater(self.settings.take_wait, self._waiter_timeout, d)
        self._waiters.append((d, timer))
        self._fill()
        return d

    def stats(self) -> PoolStats:
        return PoolStats(ready=len(self._ready), starting=len(self._starting),
                         running=len(self._running), capacity=self.settings.max_kernels)

    def get(self, kernel_id: str):
        return self._running.get(kernel_id)

    @property
    def provider_up(self) -> bool:
        return self._provider_up

    @property
    def provider_pid(self) -> int | None:
        pp = self._provider
        return pp.transport.pid if pp is not None and pp.alive and pp.transport else None

    @property
    def template_pid(self) -> int | None:
        """The provider's warm template: the kernels' parent (0 or None: not up)."""
        info = self.provider_info
        return info.template_pid if info is not None and self.provider_pid else None

    # -- service ------------------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        self._stopping = False
        if self._clears_cgroups():
            nodelock.lock_node(self.node)      # before clearing "leftovers": they must be a dead run's
        if not os.path.isdir(self.runtime_dir):
            os.makedirs(self.runtime_dir)
            os.chmod(self.runtime_dir, 0o711)   # kernels (later: other accounts) only traverse it
        for d in (self.sock_root, self.work_root):
            unmount_under(d)                            # home tmpfs a killed provider left mounted
            shutil.rmtree(d, ignore_errors=True)        # leftovers of a crashed run of this node
            os.makedirs(d, mode=0o711)
        if self._clears_cgroups():
            sandbox_cleanup(stale_cgroups(self.settings.sandbox, self.node))   # and its cgroups
        self._ctx = zmq.Context()
        self._ctx.set(zmq.MAX_SOCKETS, max(1024, 4 * self.settings.max_kernels + 64))
        self._spawn()

    def stopService(self) -> defer.Deferred:
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        super().stopService()
        self._stopping = True
        for call in (self._restart_call, self._fill_call, self._rest_call):
            if call is not None and call.active():
                call.cancel()
        self._fail_waiters("the server is shutting down")
        for kernel in self._all():
            kernel.shutdown("server shutting down")
        pp = self._provider
        if pp is not None and pp.alive:
            pp.send(P.Quit())
            pp.transport.closeStdin()
            kill = self.reactor.callLater(STOP_GRACE, self._kill_provider, pp)
            await pp.ended
            if kill.active():
                kill.cancel()
        for kernel in self._all():                 # provider gone without reporting them
            self._forget(kernel, "server shutting down", kill_group=True)
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None
        remove_runtime_dir(self.runtime_dir)
        if self._clears_cgroups():
            nodelock.unlock_node(self.node)

    def _clears_cgroups(self) -> bool:
        """As root with the sandbox: kernels get cgroups, and a start clears
        the node's leftover ones (nodelock.py)."""
        return self.settings.sandbox.enabled and os.geteuid() == 0

    def _kill_provider(self, pp: ProviderProcess) -> None:
        if not pp.alive:
            return
        self._log.warn("kernel provider did not stop within {s} s; killing it", s=STOP_GRACE)
        try:
            pp.transport.signalProcess("KILL")
        except Exception:
            self._log.failure("could not kill the kernel provider")

    # -- provider process -----------------------------------------------------------
    def _spawn(self) -> None:
        self._restart_call = None
        if self._stopping:
            return
        python = self.settings.kernel_python
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PROJECT_ROOT, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        args = [python, "-m", "cellserver.provider", "--preload", ",".join(self.settings.preload),
                "--ipython-dir", os.path.join(self.runtime_dir, "ipython")]
        if self.settings.sandbox.enabled:
            args += ["--sandbox", self.settings.sandbox.to_json()]
        pp = ProviderProcess(self)
        self._provider = pp
        self._provider_up = False
        self._spawned_at = self.reactor.seconds()
        self.reactor.spawnProcess(pp, python, args, env=env, path=self.runtime_dir)
        self._log.info("kernel provider spawned (pid {pid}) on {python}", pid=pp.transport.pid,
                       python=python)

    def _provider_ended(self, pp: ProviderProcess, reason) -> None:
        if pp is not self._provider:
            return
        self._provider = None
        self._provider_up = False
        why = "kernel provider stopped" if self._stopping else f"kernel provider died ({reason})"
        if not self._stopping:
            self._log.error("kernel provider ended: {reason}", reason=str(reason))
        for kernel in self._all():
            self._forget(kernel, "server shutting down" if self._stopping else "kernel provider died",
                         kill_group=True)
        self._fail_waiters(why)
        if self._stopping:
            return
        uptime = self.reactor.seconds() - self._spawned_at
        self._failures = self._failures + 1 if uptime < QUICK_DEATH else 1
        delay = restart_delay(self._failures, self.settings.restart_delay_max)
        self.provider_restarts += 1
        self._log.info("restarting the kernel provider in {delay} s", delay=delay)
        self._restart_call = self.reactor.callLater(delay, self._spawn)

    def _event(self, pp: ProviderProcess, event) -> None:
        if pp is not self._provider:
            return
        if isinstance(event, P.Hello):
            self._provider_up = True
            self.provider_info = event
            self._log.info("kernel provider {pid} ready (template {template}, fork loop in {loop}) in {ms} ms;"
                           " preloaded {mods}; failed {failed};"
                           " {huge_mb} MB of it in huge pages; idle kernels' pages merged: {merge}",
                           pid=event.pid, template=event.template_pid, loop=event.fork_loop or "?",
                           ms=event.warm_ms, mods=list(event.preloaded),
                           failed=event.failed, huge_mb=event.huge_mb,
                           merge=event.merge if self.settings.merge_idle else "off: --no-merge-idle-kernels")
            if event.failed:
                self._log.warn("kernel provider could not preload {failed}", failed=event.failed)
            self._fill()
        elif isinstance(event, P.Started):
            self.fork_times.append(event.fork_ms)
            kernel = self._starting.get(event.kid) or self._find(event.kid)
            if kernel is not None:
                kernel.started(event.pid)
        elif isinstance(event, P.StartFailed):
            self._log.error("kernel {kid} could not start: {error}", kid=event.kid, error=event.error)
            kernel = self._find(event.kid)
            if kernel is not None:
                self._forget(kernel, f"kernel could not start: {event.error}")
            self._start_failed()
        elif isinstance(event, P.Exited):
            kernel = self._find(event.kid)
            if kernel is None:
                return
            never_ready = event.kid in self._starting
            if not self._stopping and (never_ready or event.kid in self._ready):
                self._log.warn("kernel {kid} ended before it was used: {reason}",
                               kid=event.kid, reason=event.reason)
            self._forget(kernel, event.reason)
            if never_ready and not self._stopping:
                self._start_failed()
            else:
                self._fill()
        elif isinstance(event, P.ProviderError):
            self._log.error("kernel provider error: {message}", message=event.message)

    # -- kernels --------------------------------------------------------------------------
    def _all(self) -> list[ZmqKernel]:
        return [*self._starting.values(), *self._ready.values(), *self._running.values(),
                *self._retiring.values()]

    def _find(self, kid: str) -> ZmqKernel | None:
        return (self._starting.get(kid) or self._ready.get(kid) or self._running.get(kid)
                or self._retiring.get(kid))

    # -- merging at rest (plan.busy) -------------------------------------------------------
    def _busy(self) -> bool:
        return busy(now=self.reactor.seconds(), last_take=self._last_take, rest=self.settings.merge_rest)

    def _taken(self) -> None:
        self._last_take = self.reactor.seconds()
        if self.settings.merge_idle and (self._rest_call is None or not self._rest_call.active()):
            self._rest_call = self.reactor.callLater(self.settings.merge_rest, self._at_rest)

    def _at_rest(self) -> None:
        """``merge_rest`` after a take: if none came since, replace the ready
        kernels the busy spell left unmerged (all but one) with ones that may
        merge; else look again ``merge_rest`` after the latest take."""
        self._rest_call = None
        if self._stopping or not self._provider_up:
            return
        if self._busy():
            self._rest_call = self.reactor.callLater(
                self._last_take + self.settings.merge_rest - self.reactor.seconds(), self._at_rest)
            return
        unmerged_starting = sum(not k.mergeable for k in self._starting.values())
        for kid in to_replace([(k.id, k.mergeable) for k in self._ready.values()],
                              unmerged_starting=unmerged_starting, enabled=self.settings.merge_idle):
            kernel = self._retiring[kid] = self._ready.pop(kid)
            kernel.shutdown("replaced by a kernel that may merge while it waits")
        self._fill()

    def _start_failed(self) -> None:
        """A kernel died or failed before it was ready: back off before starting
        more, so a broken kernel environment cannot make a fork loop."""
        self.start_failures += 1
        delay = restart_delay(self.start_failures, self.settings.restart_delay_max, first=0.1)
        self._fill_after = self.reactor.seconds() + delay
        if self._fill_call is None or not self._fill_call.active():
            self._fill_call = self.reactor.callLater(delay, self._fill)

    def _fill(self) -> None:
        if not self._provider_up or self._stopping:
            return
        wait = self._fill_after - self.reactor.seconds()
        if wait > 0:                                # backing off after failed starts
            if self._fill_call is None or not self._fill_call.active():
                self._fill_call = self.reactor.callLater(wait, self._fill)
            return
        n = kernels_to_start(ready=len(self._ready), starting=len(self._starting),
                             running=len(self._running) + len(self._retiring), waiting=len(self._waiters),
                             ready_target=self.settings.ready_kernels,
                             capacity=self.settings.max_kernels)
        for _ in range(n):
            self._start_one()

    def _start_one(self) -> None:
        kid = new_kernel_id(self.node)
        while True:
            tag = secrets.token_hex(4)
            sock_dir = os.path.join(self.sock_root, tag)
            work_dir = os.path.join(self.work_root, tag)
            if not os.path.exists(sock_dir) and not os.path.exists(work_dir):
                break
        key = secrets.token_hex(32)
        kernel = ZmqKernel(self.reactor, self._ctx, kid, key, sock_dir, work_dir,
                           kill=self._kill, on_ready=self._on_ready)
        unmerged = sum(not k.mergeable for k in (*self._ready.values(), *self._starting.values()))
        kernel.mergeable = may_merge(unmerged=unmerged, enabled=self.settings.merge_idle, busy=self._busy())
        self._starting[kid] = kernel
        self._timers[kid] = self.reactor.callLater(self.settings.start_timeout, self._start_timeout, kid)
        self._provider.send(P.Start(kid=kid, key=key, sock_dir=sock_dir, work_dir=work_dir,
                                    mergeable=kernel.mergeable))

    def _start_timeout(self, kid: str) -> None:
        self._timers.pop(kid, None)
        kernel = self._starting.get(kid)
        if kernel is not None:
            self._log.error("kernel {kid} did not become ready within {s} s; killing it",
                            kid=kid, s=self.settings.start_timeout)
            kernel.shutdown(f"kernel did not start within {self.settings.start_timeout} s")

    def _on_ready(self, kernel: ZmqKernel) -> None:
        if self._starting.pop(kernel.id, None) is None:
            return
        timer = self._timers.pop(kernel.id, None)
        if timer is not None and timer.active():
            timer.cancel()
        self.ready_times.append(kernel.ready_at - kernel.created_at)
        self.start_failures = 0
        if self._waiters:
            d, wtimer = self._waiters.popleft()
            if wtimer.active():
                wtimer.cancel()
            self._running[kernel.id] = kernel
            d.callback(kernel)
            self._fill()
        else:
            self._ready[kernel.id] = kernel

    def _kill(self, kernel: ZmqKernel) -> None:
        """Asked by ``kernel.shutdown``: the provider kills the group and reports ``exited``."""
        if self._provider is not None and self._provider.alive:
            self._provider.send(P.Kill(kid=kernel.id))
        else:
            self._forget(kernel, "shutdown", kill_group=True)

    def _forget(self, kernel: ZmqKernel, reason: str, kill_group: bool = False) -> None:
        for table in (self._starting, self._ready, self._running, self._retiring):
            table.pop(kernel.id, None)
        timer = self._timers.pop(kernel.id, None)
        if timer is not None and timer.active():
            timer.cancel()
        if kill_group:
            if kernel.pid:
                _killpg(kernel.pid)
                _kill(kernel.pid)         # in case it died before it made its group
            for d in (kernel.sock_dir, kernel.work_dir):
                try:
                    unmount_home(d)       # the provider died: its home tmpfs is still mounted
                except OSError:
                    pass
                shutil.rmtree(d, ignore_errors=True)
            if self.settings.sandbox.enabled:     # and its cgroups (processes left in them killed)
                sandbox_cleanup(cgroup_dirs(self.settings.sandbox, kernel.id))
        kernel.ended(reason)

    # -- waiters ----------------------------------------------------------------------------
    def _waiter_timeout(self, d: defer.Deferred) -> None:
        for i, (wd, _) in enumerate(self._waiters):
            if wd is d:
                del self._waiters[i]
                d.errback(NoCapacity(f"no kernel became ready within {self.settings.take_wait} s"))
                return

    def _drop_waiter(self, d: defer.Deferred) -> None:
        for i, (wd, timer) in enumerate(self._waiters):
            if wd is d:
                del self._waiters[i]
                if timer.active():
                    timer.cancel()
                return

    def _fail_waiters(self, why: str) -> None:
        waiters, self._waiters = self._waiters, deque()
        for d, timer in waiters:
            if timer.active():
                timer.cancel()
            d.errback(NoCapacity(why))


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError as e:
        if e.errno not in (errno.ESRCH, errno.EPERM):
            raise
