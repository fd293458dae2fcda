"""Evaluating again while the kernel is busy.  Pure.

The plans: "pressing evaluate multiple times really fast hangs things".
ipykernel aborts requests queued behind one that failed (an interrupted
execution is a failure), so simply forwarding a second ``execute_request``
while the first runs loses it.  Instead, per kernel:

- nothing running: send the request;
- one running: interrupt it (control ``interrupt_request``) and hold the
  new request; a request already held is superseded and answered with an
  explicit ``aborted`` reply;
- the running one finished (its ``status: idle``): send the held one.

A running request whose user code is over (its ``execute_result`` or
``execute_reply`` arrived, only ``idle`` is still to come) is not
interrupted: the new request just waits for that idle.  Interrupting it
there would be worse than useless: ipykernel delivers the interrupt as
SIGINT, which then lands in the *next* execution as a KeyboardInterrupt
(seen under load: a page that evaluates again as soon as a result shows).

Nor is a running request interrupted before the kernel has begun it (its
``execute_input`` not yet published): ipykernel ignores SIGINT between
requests, so that interrupt would be lost and the new request would wait
for the whole old one.  It is sent as soon as the ``execute_input`` comes.

An interrupt can still be lost: a SIGINT that arrives between Python's last
check for signals and a blocking call (``time.sleep``) waits for that call
to end.  So while the interrupted request still runs, the adapter asks
:meth:`Scheduler.still_running` again after a while, and it interrupts once
more, up to ``MAX_INTERRUPTS`` in all.

So any number of fast presses ends with every request answered (a reply or
an explicit abort) and the last one run.  ``Scheduler`` returns actions for
the adapter to carry out; it never touches a socket.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Send:
    message: dict[str, Any]


@dataclass(frozen=True)
class Interrupt:
    pass


@dataclass(frozen=True)
class Abort:
    message: dict[str, Any]     # the superseded request (its header is the reply's parent)


MAX_INTERRUPTS = 3           # per running request: the first and two more if it goes on


@dataclass
class Scheduler:
    running: str | None = None              # msg_id of the execute_request in the kernel
    held: dict[str, Any] | None = None
    finishing: bool = False                 # the running request's user code is over
    begun: bool = False                     # the kernel published the running one's execute_input
    interrupt_on_begin: bool = False        # interrupt it as soon as it has begun
    interrupts: int = 0                     # sent for the running request
    executions: int = field(default=0)

    @property
    def interrupting(self) -> bool:
        return self.interrupts > 0

    def _interrupt(self) -> list:
        self.interrupts += 1
        return [Interrupt()]

    def _forget_running(self) -> None:
        self.running = None
        self.finishing = self.begun = self.interrupt_on_begin = False
        self.interrupts = 0

    def execute(self, message: dict[str, Any]) -> list:
        """A client's execute_request arrived."""
        if self.running is None:
            self._run(message)
            return [Send(message)]
        actions: list = []
        if self.held is not None:
            actions.append(Abort(self.held))
        self.held = message
        if not self.interrupting and not self.finishing:
            if self.begun:
                actions += self._interrupt()
            else:
                self.interrupt_on_begin = True
        return actions

    def began(self, parent_msg_id: str | None) -> list:
        """The kernel published ``execute_input`` for ``parent_msg_id``: it runs it now."""
        if parent_msg_id is None or parent_msg_id != self.running:
            return []
        self.begun = True
        if self.interrupt_on_begin and not self.interrupting and not self.finishing:
            self.interrupt_on_begin = False
            return self._interrupt()
        return []

    def still_running(self, msg_id: str | None) -> list:
        """Some time after an interrupt: ``msg_id`` has not gone idle."""
        if (msg_id is None or msg_id != self.running or not self.interrupting or self.finishing
                or self.interrupts >= MAX_INTERRUPTS):
            return []
        return self._interrupt()

    def result(self, parent_msg_id: str | None) -> None:
        """The kernel sent ``execute_result`` or ``execute_reply`` for ``parent_msg_id``."""
        if parent_msg_id is not None and parent_msg_id == self.running:
            self.finishing = True

    def idle(self, parent_msg_id: str | None) -> list:
        """The kernel published ``status: idle`` for ``parent_msg_id``."""
        if parent_msg_id is None or parent_msg_id != self.running:
            return []
        self._forget_running()
        if self.held is None:
            return []
        message, self.held = self.held, None
        self._run(message)
        return [Send(message)]

    def _run(self, message: dict[str, Any]) -> None:
        self.running = message["header"]["msg_id"]
        self.executions += 1
        # A silent request publishes no execute_input: interrupt it at once, as before.
        self.begun = bool((message.get("content") or {}).get("silent"))

    def abandon(self) -> list:
        """The kernel ended: the held request (if any) gets an explicit abort."""
        actions = [Abort(self.held)] if self.held is not None else []
        self.held = None
        self._forget_running()
        return actions

    @property
    def busy(self) -> bool:
        return self.running is not None
