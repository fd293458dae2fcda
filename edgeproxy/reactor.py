"""The edge's reactor: Twisted's epoll reactor without the legacy log
context around every I/O event.

Why: ``EPollReactor.doPoll`` calls each ready connection through
``log.callWithLogger``, which builds a context dict (the legacy "system"
prefix) and a try/except per event.  Under load that was ~11% of the edge's
samples (py-spy), and leaving it out cut the plain edge's CPU per request by
~23% (127-132 -> 98-102 µs, loadtest/RESULTS-edge.md).  The edge logs with
``twisted.logger``, whose events do not take that prefix.  What stays the
same: ``_doReadOrWrite`` (which already turns a failing read or write into
``connectionLost``), and anything escaping it is logged, not raised.

Chosen with ``twistd --reactor=cellstack-edge edgeproxy ...`` (the reactor
plugin in ``twisted/plugins/cellstack_reactors.py``); every launcher of the
edge in this tree passes it.
"""
from __future__ import annotations

import errno

from twisted.internet.epollreactor import EPollReactor
from twisted.logger import Logger

_log = Logger()
TWISTD_OPTION = "--reactor=cellstack-edge"       # what launchers put before the ``edgeproxy`` plugin name


class EdgeReactor(EPollReactor):
    def doPoll(self, timeout):
        if timeout is None:
            timeout = -1
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        drdw, selectables = self._doReadOrWrite, self._selectables
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            try:
                drdw(selectable, fd, event)
            except Exception:
                _log.failure("I/O event of {selectable!r}", selectable=selectable)

    doIteration = doPoll


def install() -> EdgeReactor:
    reactor = EdgeReactor()
    from twisted.internet.main import installReactor

    installReactor(reactor)
    return reactor
