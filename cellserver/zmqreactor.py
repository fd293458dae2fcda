"""pyzmq sockets driven by the Twisted reactor, without a thread per socket.

A zmq socket exposes ``zmq.FD``: a file descriptor that becomes readable when
the socket's state *may* have changed.  It is edge-triggered in spirit: zmq
clears it whenever ``zmq.EVENTS`` is read, and a send can consume the
notification of a message that arrived meanwhile.  So :class:`ZmqSocket`
registers the FD as an ``IReadDescriptor`` and, after every wake-up and
every send, runs :meth:`ZmqSocket.pump`: read ``EVENTS``, send what is
queued while ``POLLOUT``, receive while ``POLLIN``, until neither moves.
Sends that would block (``zmq.Again``) stay queued in order.

Receiving is bounded per pump (``batch``) so one chatty kernel cannot starve
the reactor; the rest is picked up on the next reactor turn.  Callbacks may
send on the same socket (re-entrant calls only mark the pump to run again).
The reactor is passed in (anything with addReader/removeReader/callLater), so
the pump logic is unit-tested with a fake socket and ``MemoryReactorClock``.
"""
from __future__ import annotations

from collections import deque
from typing import Callable, Sequence

import zmq
from twisted.logger import Logger
from zope.interface import implementer
from twisted.internet.interfaces import IReadDescriptor

# pyzmq's constants are enum.IntFlag members: each ``events & zmq.POLLIN``
# builds a new member through enum's machinery (~150 per /service request
# in a profile of the cell server).  The pump works on plain ints.
_EVENTS, _POLLIN, _POLLOUT, _NOBLOCK = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.POLLOUT), int(zmq.NOBLOCK)


@implementer(IReadDescriptor)
class ZmqSocket:
    _log = Logger()

    def __init__(self, reactor, socket, on_message: Callable[[list[bytes]], None],
                 name: str = "zmq", batch: int = 256):
        self._reactor = reactor
        self._sock = socket
        self._on_message = on_message
        self._name = name
        self._batch = batch
        self._fd = socket.getsockopt(zmq.FD)
        self._queue: deque[Sequence[bytes]] = deque()
        self._pumping = False
        self._again = False
        self._later = None
        self.closed = False
        reactor.addReader(self)
        self._schedule()            # messages may be waiting already

    # IReadDescriptor / ILoggingContext
    def fileno(self) -> int:
        return -1 if self.closed else self._fd

    def logPrefix(self) -> str:
        return self._name

    def doRead(self) -> None:
        self.pump()

    def connectionLost(self, reason) -> None:
        self.close()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def send(self, frames: Sequence[bytes]) -> None:
        """Queue a multipart message and send what the socket accepts now."""
        if self.closed:
            raise zmq.ZMQError(zmq.ENOTSOCK, "socket closed")
        self._queue.append(frames)
        self.pump()

    def pump(self) -> None:
        if self.closed:
            return
        if self._pumping:
            self._again = True
            return
        self._pumping = True
        received = 0
        try:
            while not self.closed:
                self._again = False
                events = self._sock.getsockopt(_EVENTS)
                moved = False
                while self._queue and events & _POLLOUT:
                    try:
                        self._sock.send_multipart(self._queue[0], _NOBLOCK)
                    except zmq.Again:
                        break
                    self._queue.popleft()
                    moved = True
                    events = self._sock.getsockopt(_EVENTS)
                if events & _POLLIN:
                    if received >= self._batch:
                        self._schedule()    # let other sockets and timers run first
                        break
                    try:
                        frames = self._sock.recv_multipart(_NOBLOCK)
                    except zmq.Again:
                        frames = None
                    if frames is not None:
                        received += 1
                        moved = True
                        try:
                            self._on_message(frames)
                        except Exception:
                            self._log.failure("zmq message handler failed on {name}", name=self._name)
                if not moved and not self._again:
                    break
        except zmq.ZMQError:
            if not self.closed:
                self._log.failure("zmq socket {name} failed", name=self._name)
                self.close()
        finally:
            self._pumping = False

    def _schedule(self) -> None:
        if self._later is None or not self._later.active():
            self._later = self._reactor.callLater(0, self._run_later)

    def _run_later(self) -> None:
        self._later = None
        self.pump()

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._reactor.removeReader(self)
        finally:
            self.closed = True
            if self._later is not None and self._later.active():
                self._later.cancel()
            self._queue.clear()
            self._sock.close(linger=0)
