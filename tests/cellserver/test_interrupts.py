"""interrupts.py: SIGINT held from an execute_request's start to its code's
start (real signals, in this process's main thread), and the wrapping of
a kernel's handler and a shell's run_code (plain objects)."""
from __future__ import annotations

import asyncio
import signal

import pytest

from cellserver.provider import interrupts


@pytest.fixture
def default_handler():
    """Python's own SIGINT handler for the test (the test run's, Twisted's
    among them, back afterwards); set in the test itself, as a plugin may set
    its own between a fixture and the test."""
    saved = signal.getsignal(signal.SIGINT)
    yield lambda: signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGINT, saved)


def test_a_sigint_while_armed_is_held_not_raised_and_the_handler_comes_back(default_handler):
    default_handler()
    latch = interrupts.Latch()
    latch.arm()
    signal.raise_signal(signal.SIGINT)          # would raise KeyboardInterrupt unarmed
    assert latch.pending
    assert latch.disarm() is True
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert latch.disarm() is False              # once
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_nothing_held_when_no_sigint_came(default_handler):
    default_handler()
    latch = interrupts.Latch()
    latch.arm()
    assert latch.disarm() is False
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_handler_someone_set_meanwhile_is_left_in_place(default_handler):
    default_handler()
    latch = interrupts.Latch()
    latch.arm()
    theirs = lambda signum, frame: None         # ipykernel's, around an async cell
    signal.signal(signal.SIGINT, theirs)
    latch.disarm()
    assert signal.getsignal(signal.SIGINT) is theirs


def _run(coro):
    """Without asyncio.run, which sets a SIGINT handler of its own."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def test_an_interrupt_before_the_code_runs_the_interrupt_in_its_place(default_handler):
    default_handler()
    latch = interrupts.Latch()
    ran = []

    class Shell:
        async def run_code(self, code_obj, result=None, *, async_=False):
            ran.append(code_obj)
            return code_obj is interrupts.RAISE
    shell = Shell()
    cell = compile("x = 1", "<cell>", "exec")
    replies = []

    class Kernel:
        def __init__(self):
            self.shell_handlers = {"execute_request": self.execute_request}

        async def execute_request(self, stream, ident, parent):
            signal.raise_signal(signal.SIGINT)          # a Stop while IPython prepares the cell
            replies.append(await shell.run_code(cell))
            replies.append(await shell.run_code(cell))  # the cell's next node (IPython stops; we would not care)
    kernel = Kernel()
    interrupts.install(kernel, shell, latch)
    _run(kernel.shell_handlers["execute_request"](None, [], {}))
    assert ran == [interrupts.RAISE, cell]             # the cell's code did not run first
    assert replies == [True, False]
    assert not latch.armed
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_an_interrupt_the_code_runs_and_the_handler_is_restored(default_handler):
    default_handler()
    ran = []

    class Shell:
        async def run_code(self, code_obj, result=None, *, async_=False):
            ran.append((code_obj, async_))
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # user code: interruptible
            return False
    shell, cell = Shell(), compile("x = 1", "<cell>", "exec")

    class Kernel:
        def __init__(self):
            self.shell_handlers = {"execute_request": self.execute_request}

        async def execute_request(self, stream, ident, parent):
            await shell.run_code(cell, async_=True)
    kernel = Kernel()
    latch = interrupts.install(kernel, shell)
    _run(kernel.shell_handlers["execute_request"](None, [], {}))
    assert ran == [(cell, True)]
    assert not latch.armed
