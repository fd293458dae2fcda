"""TLS on the socket itself: OpenSSL reads and writes the connection's file
descriptor, as HAProxy's does, instead of Twisted's ``TLSMemoryBIOProtocol``.

Why: with the memory-BIO layer every received chunk took a ``recv`` into a
Python string, a write into OpenSSL's input BIO, an ``SSL_read`` and another
``SSL_read`` that ends in ``WantReadError`` (an exception per read), and
every write an ``SSL_write``, a read of the output BIO, a ``callLater(0)``
to aggregate small writes and Twisted's queued socket write.  That machinery,
not the cryptography, was most of what TLS cost the edge (about 55 us of
CPU per proxied request, against HAProxy's 6; loadtest/RESULTS-edge.md).
Here a read is one ``SSL_read`` on the descriptor and a write one
``SSL_write`` (sent at once when nothing is queued: ``send_now``).

``TLSServer`` is Twisted's ``tcp.Server`` with its reads and writes going
through a pyOpenSSL ``Connection`` bound to the socket; everything else
(producers, buffering, ``loseConnection``, ``abortConnection``, the reactor's
readiness handling) is Twisted's.  ``TLSPort`` is the listening port that
makes them, taking the context for each new connection from the edge's
``ReloadingContextFactory`` (so SIGHUP's new certificate applies to new
connections, as before).

OpenSSL without read-ahead reads one record at a time from the socket, so a
record it has not read stays in the kernel's buffer and the reactor (level
triggered) reports it again: nothing waits unseen inside OpenSSL.  A read
that needs a write first (the handshake's answer into a full socket buffer)
and a write that needs a read first (a write issued before the handshake is
done: the edge's 429 for too many connections) wait for the other direction,
as OpenSSL asks.  Renegotiation is refused by the context (``tls``).
"""
from __future__ import annotations

import socket

from OpenSSL import SSL
from twisted.internet import main, tcp
from twisted.logger import Logger

from edgeproxy.proxyheader import MAX_HEADER

_log = Logger(namespace="edgeproxy")

# A handshake that fails (a plain-HTTP client on the TLS port, a scanner, no
# common cipher) is the client's problem: logged at debug, the connection
# closed.  close_notify, or a TCP close without it (how many clients end; the
# context has OP_IGNORE_UNEXPECTED_EOF, as HTTP frames its own messages), is
# an orderly end.
_DONE = (SSL.ZeroReturnError,)

CLOSE_GRACE = 10.0      # seconds a closing connection may wait for its peer's handshake


class _Calls:
    """``SSL_read``/``SSL_write`` for one connection, straight through the
    cffi bindings pyOpenSSL itself uses, into one buffer kept per connection.

    pyOpenSSL's ``recv``/``send`` allocate a buffer and check for errors in
    Python on every call: ~2 of the ~7 us a request's read and write cost on
    CPython here, ~12 of ~16 on PyPy (``loadtest/RESULTS-edge.md``).  On a
    failed call pyOpenSSL's own error check raises what its methods would.
    Those are pyOpenSSL internals, so ``calls_for`` uses this only where they
    are all there and falls back to the public methods otherwise."""

    __slots__ = ("conn", "ssl", "buf", "size")

    def __init__(self, conn: SSL.Connection, size: int):
        self.conn, self.ssl = conn, conn._ssl
        self.buf, self.size = _ffi.new("char[]", size), size

    def recv(self, _bufsiz: int) -> bytes:
        n = _lib.SSL_read(self.ssl, self.buf, self.size)
        if n <= 0:
            self.conn._raise_ssl_error(self.ssl, n)
            raise SSL.Error(f"SSL_read returned {n}")
        return _ffi.buffer(self.buf, n)[:]

    def send(self, data) -> int:
        with _ffi.from_buffer(data) as p:
            n = _lib.SSL_write(self.ssl, p, len(data))
        if n <= 0:
            self.conn._raise_ssl_error(self.ssl, n)
            raise SSL.Error(f"SSL_write returned {n}")
        return n

    def pending(self) -> int:
        return _lib.SSL_pending(self.ssl)


try:
    from OpenSSL.SSL import _ffi, _lib
    _RAW = all(hasattr(_lib, f) for f in ("SSL_read", "SSL_write", "SSL_pending")) \
        and hasattr(SSL.Connection, "_raise_ssl_error")
except ImportError:
    _RAW = False


def calls_for(conn: SSL.Connection, size: int):
    """What ``TLSServer`` reads and writes with: ``_Calls`` or the connection."""
    if _RAW and hasattr(conn, "_ssl"):
        return _Calls(conn, size)
    return conn


class TLSServer(tcp.Server):
    """A server connection whose bytes are TLS, done by OpenSSL on the descriptor.

    Its ``TLS`` attribute stays False: Twisted's mixins read it as "startTLS
    was called" and would route ``write`` and ``loseConnection`` through a
    TLS protocol that is not there."""

    # One TLS record's plaintext at most: SSL_read returns no more than a
    # record, and pyOpenSSL allocates the whole buffer for every read.
    bufferSize = 16 * 1024

    def __init__(self, sock, protocol, client, server, sessionno, reactor):
        tls = SSL.Connection(server.context_factory.getContext(), sock)
        tls.set_accept_state()
        self._tls = tls
        self._io = calls_for(tls, self.bufferSize)
        self._read_wants_write = False      # SSL_read said WANT_WRITE: retry it when writable
        self._write_wants_read = False      # SSL_write said WANT_READ: retry it when readable
        self._closed_tls = False
        self._close_deadline = None
        # A PROXY header before the handshake (``listeners``): read raw, first.
        self._before_tls = getattr(protocol, "header_before_tls", None)
        super().__init__(sock, protocol, client, server, sessionno, reactor)

    def getHandle(self):
        return self._tls

    # reading ------------------------------------------------------------------------
    def _read_header(self):
        """Peek at what came, take out only the header's bytes (the protocol,
        ``listeners._HeaderReader``, says how many), then hand over to TLS."""
        try:
            pending = self.socket.recv(MAX_HEADER, socket.MSG_PEEK)
        except BlockingIOError:
            return None
        except OSError:
            return main.CONNECTION_LOST
        if not pending:
            return main.CONNECTION_DONE
        take, hand_over = self._before_tls(pending)
        if take:
            self.socket.recv(take)          # peeked: they are there
        if hand_over is not None:
            self._before_tls = None
            hand_over()
        return None

    def doRead(self):
        if self._before_tls is not None:
            why = self._read_header()
            if why is not None or self._before_tls is not None or not self.connected:
                return why
        if self._write_wants_read:
            self._write_wants_read = False
            self.startWriting()             # the write OpenSSL held back can go on now
        tls = self._io
        try:
            data = tls.recv(self.bufferSize)
            pending = tls.pending()
            while pending:                  # plaintext OpenSSL decrypted but did not return
                data += tls.recv(pending)
                pending = tls.pending()
        except SSL.WantReadError:
            return None
        except SSL.WantWriteError:
            self._read_wants_write = True
            self.startWriting()
            return None
        except _DONE:
            return main.CONNECTION_DONE
        except SSL.SysCallError:
            return main.CONNECTION_LOST
        except SSL.Error as e:
            self._closed_tls = True         # no close_notify after a failed handshake or a bad record
            _log.debug("TLS error from {peer}: {err}", peer=self.hostname, err=str(e))
            return main.CONNECTION_LOST
        self.protocol.dataReceived(data)
        return None

    # writing ------------------------------------------------------------------------
    def writeSomeData(self, data):
        """Write what OpenSSL takes of ``data`` (one or more whole records).

        After WANT_WRITE OpenSSL holds the record it began and wants the same
        bytes offered again: Twisted does that, since it keeps ``data`` queued
        from the first byte not counted as written (the context allows a
        moved buffer)."""
        tls = self._io
        view = memoryview(data)[:self.SEND_LIMIT]
        sent = 0
        try:
            while sent < len(view):
                sent += tls.send(view[sent:])
        except SSL.WantWriteError:
            pass
        except SSL.WantReadError:
            self._write_wants_read = True
        except _DONE:
            return sent or main.CONNECTION_DONE
        except SSL.Error:
            self._closed_tls = True
            return sent or main.CONNECTION_LOST
        return sent

    def doWrite(self):
        if self._read_wants_write:
            self._read_wants_write = False
            why = self.doRead()
            if why is not None:
                return why
        result = super().doWrite()
        if self._write_wants_read and result is None:
            self._wait_for_read()
        return result

    def _wait_for_read(self) -> None:
        """OpenSSL needs the peer's bytes before it can write: stop polling for
        writability (the socket is writable: it would spin) and read, even
        after ``loseConnection`` stopped reading (a 429 written before the
        handshake is done still has to get out)."""
        self.stopWriting()
        self.startReading()

    def loseConnection(self):
        super().loseConnection()
        if self._write_wants_read:
            self._wait_for_read()
            # A peer that never finishes its handshake would hold this
            # connection open for good (the edge's 429 for too many
            # connections arms no timer of its own): abort it after a while.
            if self._close_deadline is None:
                self._close_deadline = self.reactor.callLater(CLOSE_GRACE, self.abortConnection)

    def connectionLost(self, reason):
        deadline, self._close_deadline = self._close_deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()
        super().connectionLost(reason)

    def send_now(self, data: bytes) -> None:
        """``write(data)``, encrypted and sent at once when nothing is queued
        (the edge's ``proxy.send`` for TLS); the rest, if the socket or
        OpenSSL would block, queued for Twisted's writer."""
        if (self.connected and not self.disconnecting and not self._writeDisconnected
                and not self._tempDataBuffer and not self.dataBuffer
                and not self._write_wants_read and not self._read_wants_write):
            sent = 0
            tls = self._io
            try:
                sent = tls.send(data)
                if sent < len(data):            # a record at a time: slice a view, not the bytes
                    view = memoryview(data)
                    while sent < len(data):
                        sent += tls.send(view[sent:])
                return
            except SSL.WantReadError:
                self._write_wants_read = True
            except SSL.Error:               # WantWriteError too: the writer retries (and finds any error)
                pass
            if sent:
                data = data[sent:]
        self.write(data)
        if self._write_wants_read:
            self._wait_for_read()

    # closing ------------------------------------------------------------------------
    def _send_close_notify(self) -> None:
        if self._closed_tls:
            return
        self._closed_tls = True
        try:
            self._tls.shutdown()            # one non-blocking attempt; the peer may be gone
        except SSL.Error:
            pass

    def _closeWriteConnection(self):
        self._send_close_notify()
        super()._closeWriteConnection()

    def _closeSocket(self, orderly):
        if orderly:
            self._send_close_notify()
        super()._closeSocket(orderly)


class TLSPort(tcp.Port):
    """A TCP listening port whose connections are ``TLSServer``s."""

    transport = TLSServer

    def __init__(self, port: int, factory, context_factory, backlog: int = 511, interface: str = "",
                 reactor=None):
        super().__init__(port, factory, backlog, interface, reactor)
        self.context_factory = context_factory
