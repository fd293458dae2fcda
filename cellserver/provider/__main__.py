"""``python -m cellserver.provider``: the provider's two processes.

This process (the logic) speaks the protocol with the cell server: commands
arrive as JSON lines on fd 0, events leave on fd 1 (see ``protocol``).  It
prepares each kernel's directories, cgroups and account, and cleans them up.
Its child, the template, imports and warms everything kernels share and then
only forks them, on the logic's command (``forkserver``: why two processes,
and the template's loop).  Both are single-threaded on purpose (a fork from a
multi-threaded process would copy locks held by other threads, and the
sandbox needs the child single-threaded).  The template is a child
subreaper, so processes a kernel leaves behind are reparented to it and
reaped; it reports each kernel's exit.  It dies with the logic (SIGKILL, its
parent-death signal) and kernels die with it.  On EOF, ``quit`` or SIGTERM
(the logic's parent-death signal: the cell server died) the logic kills
every kernel's process group, waits for them, unmounts and removes their
directories, removes their cgroups, ends the template and exits.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import pickle
import selectors
import signal
import sys
import time
import traceback

from cellserver.provider import forkserver, protocol as P, samepages
from cellserver.provider.confine import Confinement, confine
from cellserver.provider.kernelapp import run_kernel, warm_template
from cellserver.sandbox import apply as sandbox, landlock, pidns, userns
from cellserver.sandbox.libc import PR_SET_CHILD_SUBREAPER, PR_SET_NAME, PR_SET_PDEATHSIG, libc
from cellserver.sandbox.settings import SandboxSettings, SlotAllocator, plan as sandbox_plan


def _prctl(option: int, arg: int) -> None:
    libc.prctl(option, arg, 0, 0, 0)      # a failure leaves the default (no subreaper, no death signal)


class Provider:
    def __init__(self, proto_in: int, proto_out: int, preload: tuple[str, ...], ipython_dir: str,
                 sandbox_settings: SandboxSettings | None = None):
        self.sandbox = sandbox_settings or SandboxSettings(enabled=False)
        self.plan = sandbox_plan(self.sandbox, sandbox.detect(self.sandbox)) if self.sandbox.enabled else \
            sandbox_plan(self.sandbox, None)
        self.slots = SlotAllocator(self.sandbox.slots)
        self.confined: dict[int, tuple[int | None, list[str]]] = {}   # pid -> (slot, cgroups)
        self.proto_in = proto_in
        self.proto_out = proto_out
        self.preload = preload
        self.ipython_dir = ipython_dir
        self.kernels: dict[int, P.Start] = {}      # pid -> start command
        self.by_kid: dict[str, int] = {}
        self.lines = P.LineBuffer()
        self.quitting = False
        self.cell_server_gone = False
        self.init = pidns.init_path()
        # as root the pid namespace is made by the template's fork (without
        # root: by the child, in its user namespace)
        self.new_pid_ns = bool(self.plan.layers.get("pidns") and not self.plan.userns)
        self.template: forkserver.TemplateClient | None = None
        self.template_pid = 0
        self.pid = os.getpid()          # in the template: the template (the kernels' parent)
        self._root_spec = None          # the kernels' root file system (mounts layer), made once
        self._host_spec = None          # the same paths on the host's tree (landlock without mounts)
        self.marks: samepages.Marks | None = None    # what kernels mark for merging (warm)
        if self.plan.layers.get("seccomp"):
            sandbox.seccomp_program()   # compiled once here, before the template is forked; kernels only load it

    def root_spec(self, sock_dir: str):
        """What every kernel's root holds; its tmpfs goes on ``<sock root>/.root``
        (an empty directory of ours, in each kernel's own mount namespace)."""
        if not self.plan.layers.get("mounts"):
            return None
        mountpoint = os.path.join(os.path.dirname(sock_dir.rstrip("/")), ".root")
        if self._root_spec is None or self._root_spec.mountpoint != mountpoint:
            os.makedirs(mountpoint, mode=0o700, exist_ok=True)
            sb = self.sandbox
            self._root_spec = sandbox.mounts.root_spec(mountpoint, sb.home_mb, sb.tmp_mb, sb.shm_mb,
                                                       extra_ro=(self.ipython_dir,))
        return self._root_spec

    def landlock_rules(self, cmd: P.Start) -> list[tuple[str, int]] | None:
        """What the kernel may touch (``landlock`` layer): the same paths its own
        root holds (the mounts layer), or the host's where there is none."""
        if not self.plan.layers.get("landlock"):
            return None
        own_root = bool(self.plan.layers.get("mounts"))
        if own_root:
            spec = self.root_spec(cmd.sock_dir)
        else:
            if self._host_spec is None:
                self._host_spec = sandbox.mounts.root_spec("", extra_ro=(self.ipython_dir,))
            spec = self._host_spec
        etc = [*spec.etc_files, *("/etc/" + n for n in landlock.ETC_NEEDED)]
        return landlock.rules(spec.ro_dirs, etc, [cmd.work_dir, cmd.sock_dir], own_root)

    def emit(self, event) -> None:
        """Tell the cell server; once it is gone (EPIPE), nobody is left to
        tell, and the provider stops (its clean-up must not stop halfway
        at the first event it cannot send)."""
        if self.cell_server_gone:
            return
        try:
            forkserver.write_all(self.proto_out, P.encode(event))
        except BrokenPipeError:
            self.cell_server_gone = self.quitting = True

    def error(self, message: str) -> None:
        self.emit(P.ProviderError(message=message[:4000]))

    # -- start-up -------------------------------------------------------------
    def spawn_template(self) -> bool:
        """Fork the template, which warms up and reports; the hello (or the
        warm-up's failure) goes on to the cell server.  True once it is ready."""
        cmd_r, cmd_w = os.pipe2(os.O_CLOEXEC)
        rep_r, rep_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            code = 2
            try:
                os.close(cmd_w)
                os.close(rep_r)
                code = self._template_main(cmd_r, rep_w)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(cmd_r)
        os.close(rep_w)
        self.template_pid = pid
        self.template = forkserver.TemplateClient(cmd_w, rep_r)
        line = forkserver.read_message(rep_r)
        if line is None:
            self.error("the kernel template ended during its warm-up")
            return False
        event = P.decode_event(line)
        if isinstance(event, P.Hello):
            event = dataclasses.replace(event, pid=self.pid, template_pid=pid)
        self.emit(event)
        return isinstance(event, P.Hello)

    def _template_main(self, cmd_fd: int, report_fd: int) -> int:
        """The template: warm, say hello, fork kernels until the logic
        closes the command pipe.  In each kernel this goes on into
        ``_child`` (never returns)."""
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        libc.prctl(PR_SET_NAME, b"cs-template", 0, 0, 0)
        for fd in (self.proto_in, self.proto_out):      # the cell server's pipes are the logic's
            if fd >= 0:
                os.close(fd)
        self.pid = os.getpid()
        loop = forkserver.load_library()
        try:
            event = self.warm(fork_loop="c" if loop else "python")
        except Exception:
            event = P.ProviderError(message=("warm-up failed:\n" + traceback.format_exc())[:4000])
        forkserver.write_message(report_fd, P.encode(event))
        if not isinstance(event, P.Hello):
            return 2
        payload = forkserver.serve(cmd_fd, report_fd, self.init if self.new_pid_ns else None, loop)
        if payload is None:
            return 0                        # the logic closed the pipe: every kernel was killed
        self._child(*pickle.loads(payload))     # a kernel now; never returns

    def warm(self, fork_loop: str = "") -> P.Hello:
        preloaded, failed, ms, huge = warm_template(self.preload, self.ipython_dir)
        self.marks = samepages.template_marks()     # last: what every kernel marks for merging
        return P.Hello(pid=os.getpid(), python=sys.executable, warm_ms=round(ms, 1),
                       preloaded=tuple(preloaded), failed=failed, huge_mb=round(huge / 2**20, 1),
                       merge=samepages.read_merge_state(),
                       fork_loop=fork_loop)

    # -- commands -------------------------------------------------------------
    def start(self, cmd: P.Start) -> None:
        if cmd.kid in self.by_kid:
            self.emit(P.StartFailed(kid=cmd.kid, error="kernel id already running"))
            return
        made = []
        try:
            if len(bytes.fromhex(cmd.key)) < 16:       # must be hex, and a real key
                raise ValueError("key must be at least 32 hex digits")
            key = cmd.key.encode("ascii")              # used as text, like a connection file's key
            for d in (cmd.sock_dir, cmd.work_dir):
                os.makedirs(d, mode=0o700)
                made.append(d)
            slot, uid, cgroups, root, rules = None, None, [], None, None
            if self.sandbox.enabled:
                if self.plan.layers.get("account"):
                    slot = self.slots.take(busy=sandbox.busy_slots(self.sandbox))
                    uid = self.sandbox.uid_base + slot
                root = self.root_spec(cmd.sock_dir)
                rules = self.landlock_rules(cmd)
                cgroups = sandbox.prepare(self.sandbox, self.plan, cmd.kid, uid, [cmd.sock_dir, cmd.work_dir],
                                          home=cmd.work_dir)
            t0 = time.perf_counter()
            if self.template is None:
                raise RuntimeError("no kernel template")
            pid, _init = self.template.start(pickle.dumps((cmd, key, uid, cgroups, root, rules)),
                                             self.new_pid_ns)
        except (OSError, ValueError, RuntimeError) as e:
            sandbox.release_dirs(made)
            if "cgroups" in locals():
                sandbox.cleanup(cgroups)
            if locals().get("slot") is not None:
                self.slots.release(slot)
            if isinstance(e, forkserver.TemplateLost):
                raise                       # nothing more can start: run() ends the provider
            self.emit(P.StartFailed(kid=cmd.kid, error=f"{type(e).__name__}: {e}"))
            return
        self.confined[pid] = (slot, cgroups)
        fork_ms = (time.perf_counter() - t0) * 1000
        self.kernels[pid] = cmd
        self.by_kid[cmd.kid] = pid
        self.emit(P.Started(kid=cmd.kid, pid=pid, fork_ms=round(fork_ms, 3)))

    def _child(self, cmd: P.Start, key: bytes, uid: int | None = None, cgroups: list[str] = (),
               root=None, rules=None) -> None:
        code = 1
        try:
            parent = self.pid
            if self.sandbox.enabled and self.plan.userns:
                # without root: the namespaces, made in a user namespace; the
                # process outside the pid namespace stays there and waits
                parent = userns.enter_and_fork(sandbox.namespace_flags(self.plan, root is not None), parent,
                                               self.init)
            confine(Confinement(work_dir=cmd.work_dir, sock_dir=cmd.sock_dir, parent_pid=parent))
            # before the sandbox's seccomp filter, which forbids it; not while
            # ksmd is off (nothing would merge, the opt-out would be work for nothing)
            pages = samepages.SamePages(libc, self.marks) if cmd.mergeable and samepages.read_merge_state() == "on" else None
            if pages is not None and not pages.opt_in():
                pages = None
            if self.sandbox.enabled:
                sandbox.confine_child(self.sandbox, self.plan, list(cgroups), uid, root,
                                      cmd.work_dir, cmd.sock_dir, rules)
            run_kernel(key, cmd.sock_dir, cmd.work_dir, pages, subprocess_pipe=self.tcp_bind_allowed())
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 0
        except BaseException:
            try:
                os.write(2, f"kernel {cmd.kid} failed:\n{traceback.format_exc()}".encode())
            except OSError:
                pass
        finally:
            os._exit(code)

    def tcp_bind_allowed(self) -> bool:
        """Whether a kernel may listen on TCP (for ipykernel's pipe from the
        kernel's forked subprocesses): not under Landlock's network rules."""
        return not (self.sandbox.enabled and self.plan.layers.get("landlock") and self.plan.landlock_abi >= 4)

    def kill(self, kid: str) -> None:
        pid = self.by_kid.get(kid)
        if pid is None:
            return                          # already gone (its exited event is on its way)
        # the template kills it, its group and its pid namespace's init, if
        # not reaped yet (it is their parent: no pid of another process is hit)
        self.template.kill(pid)

    def handle_line(self, line: bytes) -> None:
        try:
            cmd = P.decode_command(line)
        except P.ProtocolError as e:
            self.error(f"bad command: {e}")
            return
        if isinstance(cmd, P.Start):
            self.start(cmd)
        elif isinstance(cmd, P.Kill):
            self.kill(cmd.kid)
        else:
            self.quitting = True

    # -- children -------------------------------------------------------------
    def reap(self) -> None:
        """The exits the template reported (it reaped the kernel and killed
        what was left of its group and pid namespace), and our own children
        (the template, or a kernel it left behind when it died)."""
        self.reap_reported()
        for pid, status in forkserver.reaped():
            if pid == self.template_pid:
                raise forkserver.TemplateLost(errno.ECHILD, f"the kernel template ended ({P.describe_status(status)[2]})")

    def reap_reported(self) -> None:
        for pid, status in self.template.poll() if self.template is not None else ():
            self._ended(pid, status)

    def _ended(self, pid: int, status: int, why: str = "") -> None:
        cmd = self.kernels.pop(pid, None)
        if cmd is not None:
            self.by_kid.pop(cmd.kid, None)
            slot, cgroups = self.confined.pop(pid, (None, []))
            sandbox.cleanup(cgroups)        # and of its cgroups (setsid() escapes included)
            if slot is not None:
                self.slots.release(slot)    # free only now: nothing of that account is left
            self._remove_dirs(cmd)
            code, sig, reason = P.describe_status(status)
            self.emit(P.Exited(kid=cmd.kid, pid=pid, code=code, signal=sig, reason=why or reason))

    @staticmethod
    def _remove_dirs(cmd: P.Start) -> None:
        sandbox.release_dirs((cmd.sock_dir, cmd.work_dir))     # the home tmpfs unmounted first

    # -- loop -----------------------------------------------------------------
    def run(self) -> int:
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *a: None)
        signal.signal(signal.SIGTERM, lambda *a: setattr(self, "quitting", True))
        sel = selectors.DefaultSelector()
        sel.register(self.proto_in, selectors.EVENT_READ, "cmd")
        sel.register(rfd, selectors.EVENT_READ, "sig")
        sel.register(self.template.report_fd, selectors.EVENT_READ, "template")
        try:
            self._serve(sel, rfd)
        except forkserver.TemplateLost as e:
            self.error(f"{e.strerror}: every kernel is lost")
            self.lost_template("the kernel template died")
            return 3
        self.stop_all()
        return 0

    def _serve(self, sel, rfd: int) -> None:
        self.reap()
        while not self.quitting:
            for key, _ in sel.select():
                if key.data != "cmd":
                    if key.data == "sig":
                        _drain(rfd)
                    self.reap()
                    continue
                try:
                    data = os.read(self.proto_in, 65536)
                except InterruptedError:
                    continue
                if not data:
                    self.quitting = True
                    break
                try:
                    lines = self.lines.feed(data)
                except P.ProtocolError as e:
                    self.error(str(e))
                    continue
                for line in lines:
                    self.handle_line(line)
                # exits that arrived while a start waited for its answer
                # were read then: the pipe will not wake us for them
                self.reap()

    def stop_all(self, timeout: float = 10.0) -> None:
        try:
            for cmd in list(self.kernels.values()):
                self.kill(cmd.kid)
            deadline = time.monotonic() + timeout
            while self.kernels and time.monotonic() < deadline:
                try:
                    self.reap()
                except forkserver.TemplateLost:
                    raise
                except OSError:
                    pass                    # the cell server may be gone (EPIPE)
                if self.kernels:
                    time.sleep(0.01)
        except forkserver.TemplateLost:
            pass
        self.lost_template("the kernel provider stopped")

    def lost_template(self, why: str) -> None:
        """End the template (closing its command pipe: it kills what is left
        and exits) and release what its kernels held."""
        if self.template is not None:
            self.template.close()
            self.template = None
        for pid in list(self.kernels):
            _killpg(pid)                    # they die with the template; their groups too
            self._ended(pid, signal.SIGKILL, why)
        forkserver.reap_for(5.0)


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError as e:
        if e.errno != errno.ESRCH:
            raise


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cellserver.provider",
                                 description="Fork warm ipykernels on request (JSON lines on stdin/stdout).")
    ap.add_argument("--preload", default="", help="comma-separated modules to import in the template")
    ap.add_argument("--ipython-dir", required=True, help="IPYTHONDIR shared by the kernels")
    ap.add_argument("--sandbox", default="", help="SandboxSettings as JSON (empty: no sandbox)")
    args = ap.parse_args(argv)
    # The cell server died (even by SIGKILL): SIGTERM ends the loop like EOF on
    # fd 0 does, so kernels are killed and their home tmpfs, directories and
    # cgroups removed; kernels themselves die with us (their own PDEATHSIG).
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    # Keep the protocol away from fds 0/1: imported libraries may print.
    proto_in, proto_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    sys.stdout = sys.stderr
    provider = Provider(proto_in, proto_out,
                        tuple(m for m in args.preload.split(",") if m), args.ipython_dir,
                        SandboxSettings.from_json(args.sandbox))
    if not provider.spawn_template():
        return 2
    return provider.run()


if __name__ == "__main__":
    sys.exit(main())
