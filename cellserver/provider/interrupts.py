"""An interrupt that arrives before a cell's code runs is kept for it.

Why: an interrupt is SIGINT to the kernel, and between the moment a client
can see that a request is executing (``status: busy``, ``execute_input``)
and the moment its code starts, the kernel's main thread runs ipykernel's
and IPython's own code: the ``pre_execute`` / ``pre_run_cell`` callbacks
(IPython's ``EventManager.trigger`` catches ``KeyboardInterrupt`` there and
prints it), the cell's parsing and transformation.  A ``KeyboardInterrupt``
raised there is swallowed or breaks the request instead of the code, and
the code then runs to its end: ``while True: pass`` interrupted right
after its ``execute_input`` went on running, 3 times in 26 runs here
(the opt-out of samepage merging in ``pre_execute`` widens the window).

So while an ``execute_request`` is handled and until its code starts,
SIGINT only sets a flag (``Latch``); when the first code object of the
cell is about to run, the usual handler is back and a latched interrupt
runs ``raise KeyboardInterrupt`` in its place, through IPython's own
``run_code``: the reply is the usual error, with the usual traceback, and
none of the cell's code runs.  A SIGINT after the code has ended and before
the request's end is dropped, as ipykernel drops one between requests (the
cell server's scheduler interrupts again when it still needs to).
"""
from __future__ import annotations

import signal
import threading

RAISE = compile("raise KeyboardInterrupt", "<interrupted before the cell began>", "exec")


class Latch:
    """SIGINT held as a flag between ``arm`` and ``disarm`` (main thread only)."""

    def __init__(self, signals=signal):
        self.signals = signals
        self.armed = False
        self.pending = False
        self._saved = None

    def _hold(self, signum, frame) -> None:
        self.pending = True

    def arm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return                      # handlers are the main thread's (no subshells here)
        self.pending = False
        self._saved = self.signals.signal(signal.SIGINT, self._hold)
        self.armed = True

    def disarm(self) -> bool:
        """Back to the handler from before ``arm`` (unless someone replaced
        ours meanwhile: ipykernel does around async cells, and restores
        ours after).  Returns whether an interrupt was held."""
        if not self.armed:
            return False
        self.armed = False
        if self.signals.getsignal(signal.SIGINT) == self._hold:
            self.signals.signal(signal.SIGINT, self._saved)
        held, self.pending = self.pending, False
        return held


def install(kernel, shell, latch: Latch | None = None) -> Latch:
    """Hold interrupts from the start of each ``execute_request`` to its
    code's start, on this kernel and shell."""
    latch = latch or Latch()
    handle = kernel.shell_handlers["execute_request"]
    run_code = shell.run_code

    async def execute_request(*args, **kwargs):
        latch.arm()
        try:
            return await handle(*args, **kwargs)
        finally:
            latch.disarm()

    async def run_code_or_interrupt(code_obj, result=None, *, async_=False):
        if latch.armed and latch.disarm():
            return await run_code(RAISE, result)
        return await run_code(code_obj, result, async_=async_)

    kernel.shell_handlers["execute_request"] = execute_request
    shell.run_code = run_code_or_interrupt
    return latch
