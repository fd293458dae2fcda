"""The zmq.FD pump (``cellserver.zmqreactor.ZmqSocket``) against a scripted socket.

The fake socket models what matters for the edge-triggered FD: ``EVENTS``
says what can be done now, sends can hit EAGAIN, and receiving empties the
inbox.  No I/O, no global reactor (``MemoryReactorClock``).
"""
from __future__ import annotations

import zmq
from twisted.internet.testing import MemoryReactorClock

from cellserver.zmqreactor import ZmqSocket


class FakeSocket:
    def __init__(self):
        self.inbox: list[list[bytes]] = []
        self.sent: list[list[bytes]] = []
        self.writable = True
        self.closed = False
        self.event_reads = 0

    def getsockopt(self, opt):
        if opt == zmq.FD:
            return 42
        assert opt == zmq.EVENTS
        self.event_reads += 1
        return (zmq.POLLIN if self.inbox else 0) | (zmq.POLLOUT if self.writable else 0)

    def send_multipart(self, frames, flags=0):
        assert flags & zmq.NOBLOCK
        if not self.writable:
            raise zmq.Again()
        self.sent.append(list(frames))

    def recv_multipart(self, flags=0):
        assert flags & zmq.NOBLOCK
        if not self.inbox:
            raise zmq.Again()
        return self.inbox.pop(0)

    def close(self, linger=None):
        self.closed = True


def make(batch=256, on=None):
    reactor = MemoryReactorClock()
    sock = FakeSocket()
    got = []
    zs = ZmqSocket(reactor, sock, on or got.append, name="t", batch=batch)
    return reactor, sock, zs, got


def test_registers_the_fd_and_checks_for_waiting_messages_on_start():
    reactor, sock, zs, got = make()
    assert zs in reactor.getReaders() and zs.fileno() == 42
    sock.inbox.append([b"early"])
    reactor.advance(0)
    assert got == [[b"early"]]


def test_a_wakeup_drains_every_waiting_message():
    reactor, sock, zs, got = make()
    sock.inbox.extend([[b"a"], [b"b"], [b"c"]])
    zs.doRead()
    assert got == [[b"a"], [b"b"], [b"c"]] and sock.inbox == []


def test_send_also_drains_incoming_messages():
    # A send can consume the FD's notification: the pump must read what arrived.
    reactor, sock, zs, got = make()
    sock.inbox.append([b"in"])
    zs.send([b"out"])
    assert sock.sent == [[b"out"]] and got == [[b"in"]]


def test_sends_that_would_block_are_queued_in_order():
    reactor, sock, zs, got = make()
    sock.writable = False
    zs.send([b"1"])
    zs.send([b"2"])
    assert sock.sent == [] and zs.queued == 2
    sock.writable = True
    zs.doRead()                     # the FD fires when the socket becomes writable
    assert sock.sent == [[b"1"], [b"2"]] and zs.queued == 0


def test_a_handler_may_send_from_inside_the_pump():
    reactor = MemoryReactorClock()
    sock = FakeSocket()
    holder = {}

    def on(frames):
        holder["zs"].send([b"reply-to-" + frames[0]])
        if frames[0] == b"a":
            sock.inbox.append([b"b"])    # arrives while we are busy
    holder["zs"] = zs = ZmqSocket(reactor, sock, on)
    sock.inbox.append([b"a"])
    zs.doRead()
    assert sock.sent == [[b"reply-to-a"], [b"reply-to-b"]]


def test_reading_is_bounded_per_turn_and_resumes_next_turn():
    reactor, sock, zs, got = make(batch=2)
    reactor.advance(0)               # the start-up check
    sock.inbox.extend([[bytes([i])] for i in range(5)])
    zs.doRead()
    assert len(got) == 2             # the rest waits for the next reactor turn
    assert [c.getTime() for c in reactor.getDelayedCalls()] == [0]
    reactor.advance(0)
    assert len(got) == 5 and not reactor.getDelayedCalls()


def test_a_failing_handler_does_not_stop_the_socket():
    def on(frames):
        if frames == [b"bad"]:
            raise RuntimeError("boom")
        good.append(frames)
    good = []
    reactor, sock, zs, _ = make(on=on)
    sock.inbox.extend([[b"bad"], [b"ok"]])
    zs.doRead()
    assert good == [[b"ok"]]


def test_close_unregisters_and_closes():
    reactor, sock, zs, got = make()
    zs.close()
    assert zs not in reactor.getReaders() and sock.closed and zs.fileno() == -1
    zs.close()                       # idempotent
    sock.inbox.append([b"late"])
    zs.doRead()
    assert got == []
    try:
        zs.send([b"x"])
    except zmq.ZMQError:
        pass
    else:
        raise AssertionError("send on a closed socket must fail")
