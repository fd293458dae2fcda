"""``ZmqKernel``: the cell server's end of one forked kernel.

Implements the ``cellserver.kernels.Kernel`` contract over three zmq sockets
connected to the kernel's ipc endpoints (``provider.layout``): shell and
control DEALERs and an iopub SUB subscribed to everything, each driven by
the reactor (``zmqreactor.ZmqSocket``).  Messages are HMAC-signed with a
per-kernel random key through jupyter_client's ``Session`` (hmac-sha256);
incoming ones with a bad signature are logged and dropped.  Incoming parts
are kept as the kernel wrote them (``KernelMessage``).

Readiness (no lost first output): the sockets connect as soon as the pool
asks the provider for the kernel.  The kernel's XPUB answers our SUB's
subscription with ``iopub_welcome``, which proves the subscription is in
place; only then do we send an internal ``kernel_info_request`` and the
kernel is ready once its reply and the matching ``status: idle`` have come
back (and the provider has reported the pid).  Messages caused by internal
requests are never shown to listeners.  Messages that arrive after hand-out
but before the first listener is added are kept (bounded) for it; once a
listener has been attached, messages arriving while none is are dropped.

Lifetime is driven by the pool: ``shutdown`` asks the provider to kill the
process group; the provider's ``exited`` event (sent once the group is gone
and the directories are removed) ends the kernel via :meth:`ended`.
"""
from __future__ import annotations

import hmac
import json
import uuid
from typing import Any, Callable

import zmq
from jupyter_client.session import DELIM, Session
from twisted.internet import defer
from twisted.logger import Logger

from cellserver.kernels import KernelGone, KernelMessage
from cellserver.provider import layout
from cellserver.zmqreactor import ZmqSocket

BACKLOG_LIMIT = 10_000
RECONNECT_MS = 10


class ZmqKernel:
    _log = Logger()

    def __init__(self, reactor, context: zmq.Context, kid: str, key: str, sock_dir: str,
                 work_dir: str, kill: Callable[["ZmqKernel"], None],
                 on_ready: Callable[["ZmqKernel"], None]):
        self.id = kid
        self.pid = 0
        self.key = key
        self.sock_dir = sock_dir
        self.work_dir = work_dir
        self.mergeable = False          # its pages may be merged while it waits (provider/samepages.py)
        self._reactor = reactor
        self._kill = kill
        self._on_ready = on_ready
        self.session = Session(key=key.encode("ascii"), signature_scheme="hmac-sha256",
                               username="cellserver", session=str(uuid.uuid4()))
        self._listeners: list[Callable[[KernelMessage], None]] = []
        self._backlog: list[KernelMessage] = []
        self._had_listener = False
        self._internal: set[str] = set()
        self._welcomed = False
        self._info_id: str | None = None
        self._info_replied = False
        self._info_idle = False
        self.ready = False
        self.ended_reason: str | None = None
        self._end_waiters: list[defer.Deferred] = []
        self._shutdown_waiters: list[defer.Deferred] = []
        self._shutdown_reason: str | None = None
        self.created_at = reactor.seconds()
        self.ready_at: float | None = None
        self._socks: dict[str, ZmqSocket] = {}
        for channel, kind in (("shell", zmq.DEALER), ("control", zmq.DEALER), ("iopub", zmq.SUB)):
            s = context.socket(kind)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
            if kind == zmq.SUB:
                s.setsockopt(zmq.SUBSCRIBE, b"")
            s.connect(layout.endpoint(sock_dir, channel))
            self._socks[channel] = ZmqSocket(reactor, s, self._receiver(channel),
                                             name=f"{channel}:{kid[-8:]}")

    # -- Kernel contract ------------------------------------------------------
    def send(self, channel: str, message: dict[str, Any]) -> None:
        if self.ended_reason is not None or self._shutdown_reason is not None:
            raise KernelGone(self.ended_reason or self._shutdown_reason)
        if channel not in ("shell", "control"):
            raise ValueError(f"cannot send on channel {channel!r}")
        header = message["header"]
        if not isinstance(header, dict):
            raise ValueError("message header must be an object")
        parts = [self.session.pack(header),
                 self.session.pack(message.get("parent_header") or {}),
                 self.session.pack(message.get("metadata") or {}),
                 self.session.pack(message.get("content") or {})]
        buffers = [bytes(b) for b in message.get("buffers") or ()]
        self._socks[channel].send([DELIM, self.session.sign(parts), *parts, *buffers])

    def add_listener(self, listener: Callable[[KernelMessage], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        self._had_listener = True
        backlog, self._backlog = self._backlog, []
        for msg in backlog:
            self._deliver_one(listener, msg)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
        return remove

    def files_path(self) -> str:
        return self.work_dir

    def when_ended(self) -> defer.Deferred:
        if self.ended_reason is not None:
            return defer.succeed(self.ended_reason)
        d = defer.Deferred()
        self._end_waiters.append(d)
        return d

    def shutdown(self, reason: str) -> defer.Deferred:
        if self.ended_reason is not None:
            return defer.succeed(None)
        d = defer.Deferred()
        self._shutdown_waiters.append(d)
        if self._shutdown_reason is None:
            self._shutdown_reason = reason
            self._kill(self)
        return d

    # -- driven by the pool ---------------------------------------------------
    def started(self, pid: int) -> None:
        self.pid = pid
        self._check_ready()

    def ended(self, reason: str) -> None:
        """The process group is gone and the directories removed."""
        if self.ended_reason is not None:
            return
        for s in self._socks.values():
            s.pump()                # best effort: deliver what the kernel sent before it died
        self.ended_reason = self._shutdown_reason or reason
        for s in self._socks.values():
            s.close()
        self._listeners.clear()
        self._backlog.clear()
        waiters, self._end_waiters = self._end_waiters, []
        for d in waiters:
            d.callback(self.ended_reason)
        done, self._shutdown_waiters = self._shutdown_waiters, []
        for d in done:
            d.callback(None)

    # -- incoming -------------------------------------------------------------
    def _receiver(self, channel: str) -> Callable[[list[bytes]], None]:
        return lambda frames: self._on_frames(channel, frames)

    def _on_frames(self, channel: str, frames: list[bytes]) -> None:
        msg = parse_frames(self.session, channel, frames)
        if isinstance(msg, str):
            self._log.warn("kernel {kid}: dropped a message on {channel}: {why}",
                           kid=self.id, channel=channel, why=msg)
            return
        if msg.msg_type == "iopub_welcome":
            if not self._welcomed:
                self._welcomed = True
                self._send_info_request()
            return
        if msg.parent_msg_id in self._internal:
            if msg.parent_msg_id == self._info_id:
                if msg.msg_type == "kernel_info_reply":
                    self._info_replied = True
                elif msg.msg_type == "status" and msg.content().get("execution_state") == "idle":
                    self._info_idle = True
                self._check_ready()
            return
        if not self.ready:
            return                         # start-up chatter (status: starting)
        if not self._listeners:
            if not self._had_listener and len(self._backlog) < BACKLOG_LIMIT:
                self._backlog.append(msg)
            return
        for listener in list(self._listeners):
            self._deliver_one(listener, msg)

    def _deliver_one(self, listener, msg: KernelMessage) -> None:
        try:
            listener(msg)
        except Exception:
            self._log.failure("kernel {kid}: listener failed", kid=self.id)

    def _send_info_request(self) -> None:
        msg = self.session.msg("kernel_info_request", {})
        self._info_id = msg["header"]["msg_id"]
        self._internal.add(self._info_id)
        self.send("shell", msg)

    def _check_ready(self) -> None:
        if (not self.ready and self.pid and self._info_replied and self._info_idle
                and self.ended_reason is None and self._shutdown_reason is None):
            self.ready = True
            self.ready_at = self._reactor.seconds()
            self._on_ready(self)


def parse_frames(session: Session, channel: str, frames: list[bytes]) -> KernelMessage | str:
    """Verify and split one multipart message; a reason string when it is bad."""
    try:
        i = frames.index(DELIM)
    except ValueError:
        return "no delimiter"
    parts = frames[i + 1:]
    if len(parts) < 5:
        return f"{len(parts)} parts after the delimiter, expected at least 5"
    sig, h, p, m, c = (bytes(x) for x in parts[:5])
    if not session.auth or not hmac.compare_digest(sig, session.sign([h, p, m, c])):
        return "bad signature"
    try:
        header = json.loads(h)
        parent = json.loads(p)
    except ValueError:
        return "header or parent header is not JSON"
    if not isinstance(header, dict) or not isinstance(parent, dict):
        return "header or parent header is not an object"
    return KernelMessage(channel=channel, header=header, parent_header=parent, raw_header=h,
                         raw_parent_header=p, raw_metadata=m, raw_content=c,
                         buffers=tuple(bytes(b) for b in parts[5:]))
