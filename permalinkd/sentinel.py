"""Following the Redis primary through Sentinel.

``SentinelWatcher`` keeps a connection to every Sentinel.  It asks them
(first that answers wins) for the primary and its replicas at start and
every ``refresh`` seconds, and it subscribes to ``+switch-master`` on each:
when Sentinel announces a failover, permalinkd points writes at the new
primary at once instead of waiting for a reconnect to time out (txredisapi's
own Sentinel support took 13.6 s here; ARCHITECTURE section 6).

``parse_switch_master`` and ``parse_replicas`` are the pure parts.
"""
from __future__ import annotations

from typing import Callable, Sequence

import txredisapi
from twisted.internet import task
from twisted.logger import Logger

from permalinkd.redisnode import RedisNode, Unavailable

Address = tuple[str, int]


def parse_switch_master(message: str, master_name: str) -> Address | None:
    """``<name> <old-ip> <old-port> <new-ip> <new-port>`` -> new address (ours only)."""
    parts = message.split()
    if len(parts) != 5 or parts[0] != master_name:
        return None
    try:
        return parts[3], int(parts[4])
    except ValueError:
        return None


def parse_replicas(reply) -> list[Address]:
    """Reachable replicas from ``SENTINEL REPLICAS <name>`` (flat key/value lists).

    A replica whose link to a dead primary is down still serves reads (that
    is the point during a failover), so only Sentinel's down flags count.
    """
    out = []
    for entry in reply or []:
        it = iter(_text(x) for x in entry)
        info = dict(zip(it, it))
        flags = set(info.get("flags", "").split(","))
        if flags & {"s_down", "o_down", "disconnected"}:
            continue
        try:
            out.append((info["ip"], int(info["port"])))
        except (KeyError, ValueError):
            continue
    return out


def _text(v):
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


class _SwitchSubscriber(txredisapi.SubscriberProtocol):
    watcher: "SentinelWatcher"

    def connectionMade(self):
        d = super().connectionMade()
        self.whenConnected().addCallback(lambda p: p.subscribe("+switch-master")).addErrback(
            lambda f: self.factory.watcher._log.warn("cannot subscribe: {error}", error=f.getErrorMessage()))
        return d

    def messageReceived(self, pattern, channel, message):
        self.factory.watcher.switch_message(_text(message))


class _SubscriberFactory(txredisapi.SubscriberFactory):
    protocol = _SwitchSubscriber


class SentinelWatcher:
    _log = Logger()
    RETRY = 0.2

    def __init__(self, reactor, sentinels: Sequence[Address], master_name: str, password: str | None,
                 on_primary: Callable[[str, int], None], on_replicas: Callable[[list[Address]], None],
                 refresh: float = 2.0, on_switch: Callable[[], None] | None = None):
        self.reactor = reactor
        self.master_name = master_name
        self.on_primary = on_primary
        self.on_replicas = on_replicas
        self.on_switch = on_switch or (lambda: None)
        self.queries = [RedisNode(reactor, h, p, password, poolsize=1, reply_timeout=1.0) for h, p in sentinels]
        self.subscribers = []
        for h, p in sentinels:
            node = RedisNode(reactor, h, p, password, factory_class=_SubscriberFactory)
            node.factory.watcher = self
            self.subscribers.append(node)
        self._loop = task.LoopingCall(self.refresh_now)
        self._loop.clock = reactor
        self.refresh = refresh
        self.known = False
        self._retry = None

    def start(self):
        self._loop.start(self.refresh, now=True)

    def stop(self):
        if self._loop.running:
            self._loop.stop()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        from twisted.internet import defer
        return defer.DeferredList([n.close() for n in self.queries + self.subscribers], consumeErrors=True)

    def switch_message(self, message: str) -> None:
        new = parse_switch_master(message, self.master_name)
        if new is None:
            return
        self._log.info("Sentinel: +switch-master to {host}:{port}", host=new[0], port=new[1])
        self.on_switch()
        self.on_primary(*new)
        self.refresh_now()

    def refresh_now(self):
        from twisted.internet import defer
        return defer.Deferred.fromCoroutine(self.refresh_once()).addErrback(self._refresh_failed).addCallback(
            self._retry_until_known)

    def _refresh_failed(self, failure) -> bool:
        """A refresh that raised counts as unanswered: logged, and (until a Sentinel
        has answered once) retried like one, not left to the next ``refresh``."""
        self._log.failure("Sentinel refresh failed", failure)
        return False

    def _retry_until_known(self, answered: bool) -> None:
        """Until a Sentinel has named the primary once, ask again every RETRY seconds.

        The first refresh runs before the connections to the Sentinels are up,
        so without this a long ``refresh`` would leave permalinkd without a
        primary (writes 503) for that long after it starts.
        """
        if answered or self.known or not self._loop.running:
            return
        if self._retry is None or not self._retry.active():
            self._retry = self.reactor.callLater(self.RETRY, self.refresh_now)

    async def refresh_once(self) -> bool:
        for node in self.queries:
            try:
                addr = await node.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
                if not addr:
                    continue
                replicas = await node.command("SENTINEL", "REPLICAS", self.master_name)
            except (Unavailable, txredisapi.RedisError) as e:
                self._log.debug("Sentinel {address}: {error}", address=node.address, error=str(e))
                continue
            self.on_primary(_text(addr[0]), int(_text(addr[1])))
            self.on_replicas(parse_replicas(replicas))
            self.known = True
            return True
        return False
