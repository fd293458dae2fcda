"""One Redis server as permalinkd sees it: a small pool of authenticated
txredisapi connections that reconnect on their own.

Commands go straight to one connected protocol, so a caller can send two
commands on the *same* connection back to back (a write and its
``WAIT``), and a server that is down fails at once with ``Unavailable``
instead of queueing until it comes back.  Reads share the first live
connection and writes take turns on the others: a ``WAIT`` holds its
connection in Redis until a replica answers (up to ``--wait-timeout``), so
a read behind it would wait as long; and the reads of one reactor turn go
out in one ``send``.  Every command has
a reply timeout: a hung server aborts the connection instead of stalling
requests.
"""
from __future__ import annotations

import itertools

import txredisapi
from twisted.internet import endpoints
from twisted.logger import Logger


class Unavailable(Exception):
    """No usable connection to this Redis server right now."""


class RedisNode:
    _log = Logger()

    def __init__(self, reactor, host: str, port: int, password: str | None, poolsize: int = 4,
                 reply_timeout: float = 2.0, connect_timeout: float = 1.0, factory_class=None):
        self.reactor = reactor
        self.host, self.port = host, port
        cls = factory_class or txredisapi.RedisFactory
        if cls is txredisapi.RedisFactory:
            self.factory = cls(f"{host}:{port}", None, poolsize, isLazy=True, password=password,
                               replyTimeout=reply_timeout, convertNumbers=False)
        else:
            self.factory = cls(isLazy=True)
            self.factory.password = password
        # Quick reconnects: a restarted server is back in use within a second.
        self.factory.initialDelay = 0.1
        self.factory.maxDelay = 1.0
        self.factory.startConnecting(endpoints.TCP4ClientEndpoint(reactor, host, port, timeout=connect_timeout))
        self._rr = itertools.count()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return any(c.connected for c in self.factory.pool)

    def protocol(self, write: bool = False):
        """A connected protocol, or ``Unavailable``: for a read the first live
        one, for a write the others in turn (all of them share one when only
        one is up)."""
        live = [c for c in self.factory.pool if c.connected]
        if not live:
            raise Unavailable(f"not connected to Redis at {self.address}")
        if not write or len(live) == 1:
            return live[0]
        return live[1 + next(self._rr) % (len(live) - 1)]

    async def command(self, *args, **kwargs):
        """A read (see ``protocol``)."""
        try:
            return await self.protocol().execute_command(*args, **kwargs)
        except (txredisapi.ConnectionError, ConnectionError) as e:
            raise Unavailable(f"Redis at {self.address}: {e}") from e

    def close(self):
        return self.factory.disconnect()
