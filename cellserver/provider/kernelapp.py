"""The warm kernel template and what a forked kernel runs.

The provider calls :func:`warm_template` once: it imports IPython, ipykernel
and the preload list, warms matplotlib (fonts, the Agg renderer, the inline
backend) and builds an ``IPKernelApp`` as far as it can go without a zmq
context or a thread (config, profile, the pieces of ``initialize`` that do no
I/O to sockets).  Then ``gc.freeze()`` keeps those objects out of the cyclic
collector so forked kernels keep sharing the template's pages.

After each fork the child (once confined, see ``confine.py``) calls
:func:`run_kernel`, which finishes ``IPKernelApp.initialize`` -- sockets,
heartbeat, I/O capture, the kernel and its shell -- with the kernel's own
HMAC key and ipc socket directory, and runs its event loop until it exits.

``ForkedKernelApp.finish`` mirrors the second half of
``IPKernelApp.initialize`` of ipykernel 7 step by step (the split point is
the whole trick).  Another major version of ipykernel is reported in the
provider's ``hello`` (``failed["ipykernel"]``) and logged by the cell server;
the integration tests are what proves a version works.
"""
from __future__ import annotations

import gc
import importlib
import io
import itertools
import logging
import os
import signal
import sys
import time
import uuid

from cellserver import filewatch
from cellserver.provider import hugepages, interrupts, layout, samepages
from cellserver.sandbox.libc import libc

MPL_INLINE = "module://matplotlib_inline.backend_inline"
TESTED_IPYKERNEL_MAJOR = 7
_app = None


def warm_template(preload: tuple[str, ...], ipython_dir: str) -> tuple[list[str], dict[str, str], float, int]:
    """Import and build everything kernels share.  Returns (preloaded,
    failed, ms, bytes of the template in huge pages)."""
    global _app
    t0 = time.perf_counter()
    os.makedirs(ipython_dir, mode=0o755, exist_ok=True)
    os.environ["IPYTHONDIR"] = ipython_dir
    os.environ["MPLBACKEND"] = MPL_INLINE
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    # No thread may exist before fork: OpenBLAS (numpy) starts a pool at import
    # otherwise.  One BLAS thread per kernel also suits a shared cell server.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.pop("JPY_PARENT_PID", None)

    import ipykernel
    import ipykernel.debugger
    # No debugger in public kernels: a client could make debugpy listen on TCP,
    # and building it costs start-up time.
    ipykernel.debugger._is_debugpy_available = False
    import ipykernel.ipkernel  # noqa: F401
    import ipykernel.kernelapp
    import ipykernel.zmqshell  # noqa: F401
    from traitlets.config import Config

    preloaded, failed = [], {}
    if ipykernel.version_info[0] != TESTED_IPYKERNEL_MAJOR:
        failed["ipykernel"] = (f"version {ipykernel.__version__} is untested here "
                               f"(written for {TESTED_IPYKERNEL_MAJOR}.x)")
    for name in preload:
        try:
            importlib.import_module(name)
            preloaded.append(name)
        except Exception as e:          # a missing optional module must not stop kernels
            failed[name] = f"{type(e).__name__}: {e}"
    if "matplotlib" in sys.modules:
        try:
            _warm_matplotlib()
        except Exception as e:
            failed["matplotlib-warmup"] = f"{type(e).__name__}: {e}"

    config = Config()
    config.HistoryManager.enabled = False          # no sqlite file, no saving thread
    config.IPKernelApp.transport = "ipc"
    config.IPKernelApp.quiet = True
    config.IPKernelApp.parent_handle = 0
    config.InteractiveShellApp.matplotlib = None
    # The template's Session (built here, shared) signs nothing: every kernel
    # sets its own key, session id and pid right after the fork.
    config.Session.key = b"template-" + os.urandom(16).hex().encode()
    for name, port in layout.PORTS.items():
        setattr(config.IPKernelApp, f"{name}_port", port)
    app = _make_app_class().instance(config=config)
    app.warm(matplotlib="matplotlib" in sys.modules)
    _quiet_below_handlers(app.log)
    _app = app
    gc.collect()
    gc.freeze()
    _trim_heap()
    huge, _refused = hugepages.collapse(libc)     # last: after the trim, nothing more to touch
    return preloaded, failed, (time.perf_counter() - t0) * 1000, huge


def _quiet_below_handlers(log) -> None:
    """traitlets leaves an application's logger at DEBUG and filters in its
    handler (at ``log_level``), so every ``log.debug`` in ipykernel -- two or
    more per message a kernel handles -- builds a LogRecord (a stack walk,
    a clock and thread lookups) only to drop it.  The logger itself now lets
    through only what some handler would write: the same output."""
    if log.handlers and all(h.level > logging.NOTSET for h in log.handlers):
        log.setLevel(max(log.level, min(h.level for h in log.handlers)))


def _trim_heap() -> None:
    """Give the free pages inside the C heap back to the kernel before any
    fork: a kernel's ``malloc`` then fills fresh zero pages instead of copying
    the template's (a cheaper fault), and those pages stop counting in the
    template's (shared) resident set."""
    try:
        libc.malloc_trim(0)
    except AttributeError:                  # not glibc
        pass


# Imported lazily by IPKernelApp's second half, a kernel's first execution or
# numpy's first random number: imported in every child they would each cost
# private memory (measured: numpy.random alone dirties ~6 MB per kernel).
LAZY_MODULES = ("IPython.core.debugger", "IPython.extensions.storemagic", "pdb", "faulthandler",
                "tornado.platform.asyncio", "numpy.random")


def _warm_lazy_paths(shell) -> None:
    for name in LAZY_MODULES:
        if name.startswith("numpy.") and "numpy" not in sys.modules:
            continue                        # only when numpy is preloaded
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    # The first traceback imports stack_data, pygments formatters, ... and fills caches.
    try:
        exec(compile("def _f():\n    return 1/0\n_f()\n", "<warm>", "exec"), {})
    except ZeroDivisionError:
        etype, value, tb = sys.exc_info()
        try:
            shell.InteractiveTB.structured_traceback(etype, value, tb)
        except Exception:
            pass
        del etype, value, tb


WARM_RUNS = 10          # CPython 3.11 quickens a code object at its 8th call


def _warm_execution(shell) -> None:
    """Run a statement through IPython's ``run_cell`` a few times in the
    template, so a kernel's first cell finds that path already run: code
    objects quickened (before that, CPython 3.11 writes a counter into a
    code object at each call, and in a fork each such write copies a page)
    and first-use caches filled, here once instead of in every kernel."""
    for _ in range(WARM_RUNS):
        shell.run_cell("__cellstack_warm__ = 1 + 1", store_history=False, silent=False)
        # what the display hook does with a value (the template has no socket to send it on)
        shell.display_formatter.format(2)
        shell.displayhook.semicolon_at_end_of_expression("1 + 1")
    shell.user_ns.pop("__cellstack_warm__", None)
    # Each kernel makes three event loops (main, control, iopub): make, run
    # and close some here (no fd and no thread outlives them).
    try:
        from ipykernel.thread import make_selector_io_loop
    except ImportError:                 # another ipykernel (its version is reported in the hello)
        return
    for _ in range(WARM_RUNS):
        loop = make_selector_io_loop()
        loop.add_callback(loop.stop)
        loop.start()
        loop.close(all_fds=True)


def _warm_matplotlib() -> None:
    import matplotlib
    matplotlib.use(MPL_INLINE)
    import matplotlib.pyplot as plt
    import matplotlib_inline.backend_inline  # noqa: F401
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    ax.set_title("warm")
    fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)
    # matplotlib empties its font cache in every forked child (its fonts read
    # through file offsets a fork would share); emptied here, each kernel's
    # fork has no font objects to free (~140 copied pages a kernel).
    clear = getattr(getattr(sys.modules.get("matplotlib.font_manager"), "_get_font", None), "cache_clear", None)
    if clear is not None:
        clear()


class _SysWithoutModules:
    """``sys`` as ``ipykernel.ipkernel`` sees it while a kernel is built: all
    of it but an empty ``modules``.

    ``IPythonKernel.__init__`` lists the ``__file__`` of every loaded module
    for the debugger, which public kernels do not have
    (``ipykernel.debugger._is_debugpy_available`` is off).  That walk touches
    ~1,200 module objects and keeps a reference to each path string: the
    reference counts alone copied ~940 of the template's pages (3.7 MB) into
    every kernel and cost ~5 ms of CPU (measured with the page-fault count of
    a forked child, loadtest/RESULTS-provider.md)."""

    modules: dict = {}

    def __getattr__(self, name):
        return getattr(sys, name)


def _modules_added_since(snapshot: frozenset) -> set[str]:
    """Names of the modules imported after ``snapshot`` was taken, read from
    the end of ``sys.modules`` (a dict keeps insertion order): walking all of
    it would touch every template key string in the child.  A few more than
    the difference, in case some were removed meanwhile."""
    count = max(0, len(sys.modules) - len(snapshot)) + 16
    return set(itertools.islice(reversed(sys.modules), count)) - snapshot


class ModuleSnapshot:
    """The module names ``%reset --aggressive`` keeps: the template's (shared,
    built once) and those the kernel's own start added.  IPython only ever
    computes ``set(sys.modules) - shell._sys_modules_keys``, which this
    answers (``set.__sub__`` defers to ``__rsub__``) without ever joining the
    two: a union made at each kernel's start takes a reference to each of the
    ~1,300 template strings, and each reference count written copies the
    page that string is on (a few hundred pages per kernel)."""

    def __init__(self, template: frozenset, added: set[str]):
        self.template = template
        self.added = frozenset(added)

    def __contains__(self, name: object) -> bool:
        return name in self.template or name in self.added

    def __rsub__(self, names):
        return {n for n in names if n not in self}

    def __len__(self) -> int:
        return len(self.template) + len(self.added - self.template)


def _make_app_class():
    from ipykernel.kernelapp import IPKernelApp
    from IPython.core.application import BaseIPythonApplication

    class ForkedKernelApp(IPKernelApp):
        """An IPKernelApp initialised in two halves: before and after fork."""

        def warm(self, matplotlib: bool):
            # The config / profile half of IPKernelApp.initialize: no zmq, no thread.
            BaseIPythonApplication.initialize(self, argv=[])
            # The shell is a singleton: IPythonKernel.__init__ picks this instance
            # up with ``shell_class.instance(...)``.  Built here, its magics, hooks,
            # builtins and inline-figure hooks are shared pages in every kernel.
            from ipykernel.compiler import XCachingCompiler
            from ipykernel.zmqshell import ZMQInteractiveShell
            shell = ZMQInteractiveShell.instance(
                parent=self, profile_dir=self.profile_dir, user_module=None, user_ns=None,
                kernel=None, compiler_class=XCachingCompiler)
            if matplotlib:
                # What shell.enable_matplotlib("inline") does, minus enable_gui
                # (which wants a running kernel; "inline" needs no event loop).
                from IPython.core import pylabtools
                from matplotlib_inline.backend_inline import configure_inline_support
                pylabtools.activate_matplotlib(MPL_INLINE)
                configure_inline_support(shell, MPL_INLINE)
            self.warm_shell = shell
            _warm_lazy_paths(shell)
            # Issue 6: after each execution, links to the files it wrote (filewatch.py).
            filewatch.install(shell)
            # Sessions, extensions, the startup-file search and the list of
            # loaded modules, once here instead of in every kernel (each of
            # them copies template pages into the child: every object a kernel
            # touches after the fork costs it a private page).
            _ = self.session
            self.init_pdb()
            self.shell = shell                  # what init_extensions loads into (the child sets it again)
            self.init_extensions()
            self.warm_extensions = True
            self.warm_startup_files = self._startup_files()
            # Interacts (issue 7): SageMathCell's interact and controls in every
            # kernel's namespace, imported once here and shared by the forks.
            try:
                from cellserver.interacts import imports as interact_names
                shell.user_ns.update(interact_names)
                shell.user_ns_hidden.update(interact_names)
            except Exception:                   # no ipywidgets: kernels still start
                pass
            _warm_execution(shell)
            self.warm_module_keys = frozenset(sys.modules)    # last: ipywidgets and the interacts included

        def _startup_files(self) -> bool:
            """Whether any startup file or PYTHONSTARTUP would run (the search
            globs several directories; the template does it once)."""
            import glob
            from itertools import chain

            from IPython.core.application import ENV_CONFIG_DIRS, SYSTEM_CONFIG_DIRS
            dirs = [self.profile_dir.startup_dir] + [
                os.path.join(p, "startup") for p in chain(ENV_CONFIG_DIRS, SYSTEM_CONFIG_DIRS)]
            return bool((self.exec_PYTHONSTARTUP and os.environ.get("PYTHONSTARTUP"))
                        or any(glob.glob(os.path.join(d, pattern)) for d in dirs for pattern in ("*.py", "*.ipy")))

        def init_pdb(self):
            """Done once by the template (it only swaps module globals of
            pdb and IPython's debugger for the interruptible Pdb)."""
            if not getattr(self, "warm_pdb", False):
                super().init_pdb()
                self.warm_pdb = True

        def init_extensions(self):
            if not getattr(self, "warm_extensions", False):    # loaded by the template
                super().init_extensions()

        def init_code(self):
            """``InteractiveShellApp.init_code`` without the template's work:
            the startup search only when the template found a file, the
            module-name snapshot (for ``%reset -f aggressive``) taken there."""
            if self.warm_startup_files:
                self._run_startup_files()
            self._run_exec_lines()
            self._run_exec_files()
            if self.hide_initial_ns:
                self.shell.user_ns_hidden.update(self.shell.user_ns)
            self._run_cmd_line_code()
            self._run_module()
            sys.stdout.flush()
            sys.stderr.flush()
            self.shell._sys_modules_keys = ModuleSnapshot(self.warm_module_keys,
                                                          _modules_added_since(self.warm_module_keys))

        def init_kernel(self):
            ipkernel = sys.modules["ipykernel.ipkernel"]
            ipkernel.sys = _SysWithoutModules()
            try:
                super().init_kernel()
            finally:
                ipkernel.sys = sys

        def init_control(self, context):
            """ipykernel's, less two things public kernels never use: the
            subshells' thread (SageMathCell's protocol has no subshells;
            without the thread, ipykernel 7 reads shell messages on the main
            thread's loop, as ipykernel 6 did: one thread and one hop per
            message less) and the debugger's shell connection (no debugger
            here).  The debugger's STREAM socket stays, unbound:
            ``init_kernel`` wraps it in a stream."""
            import zmq
            from ipykernel.control import ControlThread
            self.control_socket = context.socket(zmq.ROUTER)
            self.control_socket.linger = 1000
            self.control_port = self._bind_socket(self.control_socket, self.control_port)
            self.control_socket.router_handover = 1
            self.debugpy_socket = context.socket(zmq.STREAM)
            self.debugpy_socket.linger = 1000
            self.debug_shell_socket = None
            self.control_thread = ControlThread(daemon=True)
            self.shell_channel_thread = None

        def init_iopub(self, context):
            """ipykernel's, with its pipe from forked subprocesses only
            where the kernel may listen on TCP (``run_kernel``)."""
            import zmq
            from ipykernel.iostream import IOPubThread
            self.iopub_socket = context.socket(zmq.XPUB)
            self.iopub_socket.linger = 1000
            self.iopub_port = self._bind_socket(self.iopub_socket, self.iopub_port)
            self.configure_tornado_logger()
            self.iopub_thread = IOPubThread(self.iopub_socket, pipe=getattr(self, "subprocess_pipe", True),
                                            session=self.session)
            self.iopub_thread.start()
            self.iopub_socket = self.iopub_thread.background_socket

        def init_heartbeat(self):
            """No heartbeat: nothing pings it.  The provider learns of a
            kernel's death from SIGCHLD at once, and a heartbeat costs every
            kernel a zmq context, three threads and a socket."""

        def init_connection_file(self):
            pass                          # both sides know the ipc paths (layout.py)

        def write_connection_file(self):
            pass

        def log_connection_info(self):
            pass

        def finish(self, key: bytes, sock_dir: str):
            """The rest of IPKernelApp.initialize, with this kernel's key and sockets."""
            self.session.pid = os.getpid()            # Session refuses to send from a fork otherwise
            self.session.session = str(uuid.uuid4())
            self.session.signature_scheme = "hmac-sha256"
            self.session.key = key
            self.ip = layout.ipc_prefix(sock_dir)
            self.init_pdb()
            self.init_sockets()
            self.init_heartbeat()
            self.init_io()
            self.init_signal()
            self.init_kernel()
            assert self.kernel.shell is self.warm_shell
            self.warm_shell.kernel = self.kernel
            interrupts.install(self.kernel, self.warm_shell)     # an early interrupt waits for the code
            self.init_path()
            self.init_shell()
            if self.shell:
                self.init_gui_pylab()
                self.init_extensions()
                self.init_code()
            sys.stdout.flush()
            sys.stderr.flush()

    return ForkedKernelApp


def run_kernel(key: bytes, sock_dir: str, work_dir: str, pages: "samepages.SamePages | None" = None,
               subprocess_pipe: bool = True) -> None:
    """In the forked, confined child: finish the app and serve until exit.
    ``pages``: the kernel opted in to samepage merging, and opts out before
    its first execution (samepages.py).  ``subprocess_pipe``: the kernel may
    listen on loopback TCP, where ipykernel takes the output of the kernel's
    forked subprocesses (without, ipykernel would try, fail, and warn in
    every kernel)."""
    app = _app
    filewatch.set_root(work_dir)
    # An interrupt is SIGINT to the kernel's process group, and Linux hands a
    # process-directed signal to any thread that does not block it.  Caught by
    # one of ipykernel's threads, it cannot break the main thread out of a
    # blocking call (``time.sleep(120)`` ran to its end, 1 time in 4 here).
    # Threads inherit the mask: ipykernel's, all started by ``finish``, block
    # SIGINT; the main thread, the one that runs user code, takes it again.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    app.subprocess_pipe = subprocess_pipe
    try:
        app.finish(key, sock_dir)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if pages is not None:
        samepages.opt_out_before_first_execution(app.shell, pages)
    app.start()
