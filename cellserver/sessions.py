"""Kernels handed out to clients, and everything that happens to them.

A ``KernelSession`` owns one kernel from ``POST /kernel`` to its end: it
relays client messages to the kernel (through the evaluate-while-busy
``Scheduler``), fans kernel messages out to the connected websockets
(through the per-execution ``OutputCap``), keeps the ``Lifetime`` rules
with one timer, logs every computation, and when the kernel ends for any
reason tells each websocket why (a ``dead`` status, then a close code).

``KernelRegistry`` holds the live sessions of this node, by id and by the
client's ``CellSessionID`` (the per-session kernel cap).
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

from twisted.logger import Logger

from cellserver import filewatch, messages as M
from cellserver.kernels import Kernel, KernelGone, KernelMessage
from cellserver.lifetimes import (REASON_FINISHED, REASON_IDLE, REASON_LIFESPAN, Lifetime)
from cellserver.outputcap import OutputCap, Verdict
from cellserver.scheduler import Abort, Interrupt, Scheduler, Send


FILES_MIME = filewatch.MIME.encode()      # the list of files an execution wrote
# An interrupted request still running this long after its interrupt is
# interrupted again (the SIGINT can miss a blocking call; scheduler.py).
INTERRUPT_AGAIN_AFTER = 2.0


class ClientSocket(Protocol):
    def send_frame(self, data: bytes) -> None: ...
    def close(self, code: int, reason: str) -> None: ...


def close_code_for(reason: str) -> int:
    if reason == REASON_FINISHED:
        return M.CLOSE_NORMAL
    if reason in (REASON_IDLE, REASON_LIFESPAN):
        return M.CLOSE_TIMEOUT
    return M.CLOSE_KERNEL_DIED


class KernelSession:
    _log = Logger()

    def __init__(self, reactor, kernel: Kernel, lifetime: Lifetime, *, output_cap: int,
                 log_computation: Callable[..., None], on_end: Callable[["KernelSession", str], None],
                 cell_session_id: str = "", client: dict | None = None):
        self.reactor = reactor
        self.kernel = kernel
        self.id = kernel.id
        self.lifetime = lifetime
        self.cell_session_id = cell_session_id
        self.client = client or {}
        self.scheduler = Scheduler()
        self.cap = OutputCap(output_cap)
        self.sockets: list[ClientSocket] = []
        self.ended: str | None = None
        self._log_computation = log_computation
        self._on_end = on_end
        self._timer = None
        self._interrupt_again = None     # the next look at an interrupted request (IDelayedCall)
        # Executions sent to the kernel and which of their two ends arrived:
        # the shell ``execute_reply`` and the iopub ``idle`` travel on different
        # sockets in no set order, and a plain cell's kernel must not end (and
        # drop the reply, with its payload and status) after only one of them.
        self._executions: dict[str, set[str]] = {}
        self._remove_listener = kernel.add_listener(self._from_kernel)
        kernel.when_ended().addCallback(self._kernel_ended)
        self._schedule()

    # client side -------------------------------------------------------------
    def attach(self, sock: ClientSocket) -> None:
        self.sockets.append(sock)
        self.lifetime.connected(self.reactor.seconds())
        self._schedule()

    def detach(self, sock: ClientSocket) -> None:
        if sock in self.sockets:
            self.sockets.remove(sock)
            self.lifetime.disconnected(self.reactor.seconds())
            self._check()

    def from_client(self, channel: str, message: dict[str, Any], client: dict | None = None) -> None:
        """A validated client message (``messages.parse_client_frame``)."""
        if self.ended:
            return
        now = self.reactor.seconds()
        self.lifetime.activity(now)
        msg_type = message["header"].get("msg_type")
        if channel == "shell" and msg_type == "execute_request":
            self._log_computation("execute", self.id, message["content"].get("code", ""), client or self.client)
            for action in self.scheduler.execute(message):
                self._carry_out(action)
        else:
            self._send(channel, message)
        self._schedule()

    def _carry_out(self, action) -> None:
        if isinstance(action, Send):
            self._executions[action.message["header"]["msg_id"]] = set()
            self.lifetime.execution_started(self.reactor.seconds())
            self._send("shell", action.message)
        elif isinstance(action, Interrupt):
            self._send("control", M.interrupt_request())
            if self._interrupt_again is not None and self._interrupt_again.active():
                self._interrupt_again.cancel()
            self._interrupt_again = self.reactor.callLater(INTERRUPT_AGAIN_AFTER, self._still_running,
                                                           self.scheduler.running)
        elif isinstance(action, Abort):
            self._broadcast(M.aborted_reply(action.message["header"],
                                            "superseded by a newer evaluation"))

    def _still_running(self, msg_id: str | None) -> None:
        self._interrupt_again = None
        if not self.ended:
            for action in self.scheduler.still_running(msg_id):
                self._carry_out(action)

    def _send(self, channel: str, message: dict) -> None:
        try:
            self.kernel.send(channel, message)
        except KernelGone:
            pass
        except (TypeError, ValueError) as e:
            self._log.warn("kernel {kid}: unsendable client message: {err}", kid=self.id, err=str(e))

    # kernel side ---------------------------------------------------------------
    def _from_kernel(self, msg: KernelMessage) -> None:
        if self.ended:
            return
        now = self.reactor.seconds()
        mtype = msg.msg_type
        if msg.channel == "iopub":
            if mtype == "status":
                state = msg.content().get("execution_state")
                if state == "idle":
                    self._went_idle(msg.parent_msg_id, now)
            elif mtype == "comm_open":
                self.lifetime.comm_opened()
            elif mtype == "comm_close":
                self.lifetime.comm_closed()
            elif mtype == "execute_input":
                for action in self.scheduler.began(msg.parent_msg_id):
                    self._carry_out(action)
            elif mtype == "execute_result":
                self.scheduler.result(msg.parent_msg_id)
            elif mtype == "display_data" and FILES_MIME in msg.raw_content:
                self.lifetime.files_reported()
        elif msg.channel == "shell" and mtype == "execute_reply":
            self.scheduler.result(msg.parent_msg_id)
            self._execution_part(msg.parent_msg_id, "reply", now)
        verdict = self.cap.account(msg.channel, mtype, msg.parent_msg_id, msg.size)
        if verdict is Verdict.PASS:
            self._broadcast(M.kernel_frame(msg))
        elif verdict is Verdict.NOTICE:
            self._broadcast(M.truncation_notice(msg.parent_header, self.cap.limit))
        if (msg.channel, mtype) in (("iopub", "status"), ("shell", "execute_reply")):
            self._check()        # after the broadcast: the client has this message even if the kernel ends

    def _went_idle(self, parent_id: str | None, now: float) -> None:
        self.cap.finished(parent_id)
        actions = self.scheduler.idle(parent_id)
        if not self._execution_part(parent_id, "idle", now):
            self.lifetime.activity(now)
        for action in actions:
            self._carry_out(action)

    def _execution_part(self, msg_id: str | None, part: str, now: float) -> bool:
        """Record the reply or the idle of an execution we sent; it is finished
        with both.  False if ``msg_id`` is no such execution."""
        parts = self._executions.get(msg_id) if msg_id is not None else None
        if parts is None:
            return False
        parts.add(part)
        if len(parts) == 2:
            del self._executions[msg_id]
            if self._executions:
                self.lifetime.activity(now)      # an earlier one still waits for its other end
            else:
                self.lifetime.execution_finished(now)
        return True

    def _broadcast(self, data: bytes) -> None:
        for sock in list(self.sockets):
            sock.send_frame(data)

    # lifetime -------------------------------------------------------------------
    def _schedule(self) -> None:
        if self.ended:
            return
        now = self.reactor.seconds()
        when = self.lifetime.next_check(now)
        if self._timer is not None and self._timer.active():
            if abs(self._timer.getTime() - when) < 0.001:
                return
            self._timer.cancel()
        self._timer = self.reactor.callLater(max(0.0, when - now), self._check)

    def _check(self) -> None:
        if self.ended:
            return
        reason = self.lifetime.check(self.reactor.seconds())
        if reason is not None:
            self.end(reason, close_code_for(reason))
        else:
            self._schedule()

    def _kernel_ended(self, reason: str) -> None:
        if not self.ended:
            self.end(f"kernel died: {reason}", M.CLOSE_KERNEL_DIED, kill=False)

    def end(self, reason: str, code: int, kill: bool = True):
        """End the session: tell every websocket why, then stop the kernel."""
        if self.ended:
            return None
        self.ended = reason
        for timer in (self._timer, self._interrupt_again):
            if timer is not None and timer.active():
                timer.cancel()
        for action in self.scheduler.abandon():
            self._carry_out(action)
        for sock in list(self.sockets):
            sock.send_frame(M.dead_status(reason))
            sock.close(code, reason[:120])
        self.sockets.clear()
        self._remove_listener()
        self._on_end(self, reason)
        self._log.info("kernel {kid} ended: {reason}", kid=self.id, reason=reason)
        return self.kernel.shutdown(reason) if kill else None


class KernelRegistry:
    def __init__(self) -> None:
        self.sessions: dict[str, KernelSession] = {}
        self.by_cell_session: dict[str, set[str]] = {}

    def add(self, session: KernelSession) -> None:
        self.sessions[session.id] = session
        if session.cell_session_id:
            self.by_cell_session.setdefault(session.cell_session_id, set()).add(session.id)

    def remove(self, session: KernelSession) -> None:
        self.sessions.pop(session.id, None)
        ids = self.by_cell_session.get(session.cell_session_id)
        if ids is not None:
            ids.discard(session.id)
            if not ids:
                del self.by_cell_session[session.cell_session_id]

    def count_for(self, cell_session_id: str) -> int:
        return len(self.by_cell_session.get(cell_session_id, ()))

    def get(self, kid: str) -> KernelSession | None:
        return self.sessions.get(kid)
