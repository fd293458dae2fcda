"""Permalinks in Redis: one hash per permalink, written to the primary and
acknowledged only once ``WAIT`` says a replica has it.

Key ``permalink:<id>`` holds ``digest, code, language, interacts, created,
last_accessed, requested``.  The create script tries ever longer id
prefixes (``permalinkd.ids``) in one atomic ``EVAL``: an absent key is
written, a key holding the same digest is the same cell (an idempotent
retry), a key holding anything else is skipped.  A stored cell is never
overwritten.

The idempotent path still writes: it re-sets ``digest`` to the value it
already has.  Redis propagates that HSET (it counts as a change even when
the value is the same), and that matters because since Redis 7.2 (and in
Valkey) ``WAIT`` counts replicas that reached *this connection's* last
propagated write: a script that only read would leave that offset where it
was (an older, already replicated write, or nothing), so ``WAIT 1`` would
return at once and a retry after a ``not-replicated`` 503 -- or a second
client posting the same cell -- would get 200 for a permalink no replica
has yet.  (Redis 7.0 moves the offset after every command, so there the
read alone was enough; the write costs one small HSET in the replication
stream and the AOF per repeated POST.)

Reads go to the primary, and to the replicas when the primary is away or
fails; the access bookkeeping (last_accessed, requested) is a separate,
best-effort write whose failure never fails the read.
"""
from __future__ import annotations

from typing import Callable, Sequence

import txredisapi
from twisted.logger import Logger

from permalinkd import ids
from permalinkd.cache import SizedLRU
from permalinkd.redisnode import RedisNode, Unavailable
from permalinkd.validation import Cell

KEY_PREFIX = "permalink:"

CREATE_SCRIPT = """
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'digest', ARGV[1], 'code', ARGV[2], 'language', ARGV[3],
               'interacts', ARGV[4], 'created', ARGV[5], 'last_accessed', ARGV[5], 'requested', '0')
    return {i, 1}
  end
  if redis.call('HGET', key, 'digest') == ARGV[1] then
    -- Already stored: rewrite the digest with its own value so this script still
    -- propagates, and the WAIT that follows covers the earlier write (module docstring).
    redis.call('HSET', key, 'digest', ARGV[1])
    return {i, 0}
  end
end
return {0, 0}
"""

# KEYS: permalinks read since the last flush; ARGV: now, then one count per key.
TOUCH_SCRIPT = """
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'last_accessed', ARGV[1])
    redis.call('HINCRBY', key, 'requested', tonumber(ARGV[i + 1]))
    n = n + 1
  end
end
return n
"""
TOUCH_BATCH = 500


class NotReplicated(Exception):
    """The primary took the write but no replica confirmed it in time."""


class StoreFull(Exception):
    """Every id prefix is taken by other cells (a SHA-256 collision: never in practice)."""


class RedisStore:
    _log = Logger()

    def __init__(self, reactor, password: str | None, wait_replicas: int = 1, wait_timeout_ms: int = 1000,
                 reply_timeout: float = 2.0, poolsize: int = 4,
                 digest: Callable[[str, str, str], str] = ids.digest, on_change=None, cache_size: int = 0):
        self.reactor = reactor
        self.password = password
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.reply_timeout = reply_timeout
        self.poolsize = poolsize
        self.digest = digest
        self.primary: RedisNode | None = None
        self.replicas: dict[tuple[str, int], RedisNode] = {}
        self.on_change = on_change or (lambda event, **kw: None)
        # Reads are counted here and written in batches (flush_touches), so a
        # read costs no Redis write of its own.
        self._touches: dict[str, int] = {}
        self.cache: SizedLRU[Cell] | None = SizedLRU(cache_size) if cache_size > 0 else None
        # Called (at most every 0.5 s) when the primary fails a write: with
        # Sentinel, ask it again at once instead of waiting for the next refresh.
        self.on_trouble: Callable[[], object] | None = None
        self._last_trouble = float("-inf")

    # --- topology ------------------------------------------------------------

    def _node(self, host: str, port: int) -> RedisNode:
        return RedisNode(self.reactor, host, port, self.password, poolsize=self.poolsize,
                         reply_timeout=self.reply_timeout)

    def set_primary(self, host: str, port: int) -> bool:
        """Point writes at ``host:port``; True if that changed anything."""
        if self.primary is not None and (self.primary.host, self.primary.port) == (host, port):
            return False
        old = self.primary
        # The new primary may be one of our replica connections: reuse it.
        self.primary = self.replicas.pop((host, port), None) or self._node(host, port)
        if old is not None:
            old.close()
        self._log.info("primary is now {address}", address=self.primary.address)
        self.on_change("primary", address=self.primary.address)
        return True

    def set_replicas(self, addresses: Sequence[tuple[str, int]]) -> None:
        wanted = {a for a in addresses if self.primary is None or a != (self.primary.host, self.primary.port)}
        for addr in list(self.replicas):
            if addr not in wanted:
                self.replicas.pop(addr).close()
        for addr in wanted:
            if addr not in self.replicas:
                self.replicas[addr] = self._node(*addr)

    def status(self) -> dict:
        return {
            "primary": self.primary.address if self.primary else None,
            "primary_connected": bool(self.primary and self.primary.connected),
            "replicas": sorted(n.address for n in self.replicas.values()),
            "replicas_connected": sum(1 for n in self.replicas.values() if n.connected),
        }

    def close(self):
        nodes = ([self.primary] if self.primary else []) + list(self.replicas.values())
        self.primary, self.replicas = None, {}
        from twisted.internet import defer
        return defer.DeferredList([n.close() for n in nodes], consumeErrors=True)

    # --- permalinks ----------------------------------------------------------

    async def create(self, cell: Cell, now: float) -> tuple[str, bool]:
        """Store ``cell``; ``(id, created)`` once a replica has it (see WAIT)."""
        try:
            return await self._create(cell, now)
        except Unavailable:
            self._trouble(now)
            raise

    def _trouble(self, now: float) -> None:
        if self.on_trouble is not None and now - self._last_trouble >= 0.5:
            self._last_trouble = now
            self.on_trouble()

    async def _create(self, cell: Cell, now: float) -> tuple[str, bool]:
        if self.primary is None:
            raise Unavailable("no primary known yet")
        full = self.digest(cell.code, cell.language, cell.interacts)
        keys = [KEY_PREFIX + c for c in ids.candidates(full)]
        conn = self.primary.protocol(write=True)
        # EVAL and WAIT back to back on one connection: WAIT then covers the write.
        try:
            d_eval = conn.execute_command("EVAL", CREATE_SCRIPT, len(keys), *keys, full, cell.code,
                                          cell.language, cell.interacts, repr(now))
            d_wait = None
            if self.wait_replicas > 0:
                d_wait = conn.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms, apply_timeout=False)
            result = await d_eval
            acked = await d_wait if d_wait is not None else None
        except txredisapi.ConnectionError as e:
            raise Unavailable(f"Redis primary {self.primary.address}: {e}") from e
        except txredisapi.ResponseError as e:
            text = str(e)
            if text.startswith(("NOREPLICAS", "READONLY", "LOADING", "MASTERDOWN")):
                raise Unavailable(f"Redis primary {self.primary.address}: {text}") from e
            raise
        index, created = int(result[0]), bool(int(result[1]))
        if index == 0:
            raise StoreFull("every id prefix of this cell's digest is taken by another cell")
        if acked is not None and int(acked) < self.wait_replicas:
            raise NotReplicated(f"no replica confirmed the write within {self.wait_timeout_ms} ms")
        return keys[index - 1][len(KEY_PREFIX):], created

    async def lookup(self, pid: str, now: float) -> tuple[Cell | None, str]:
        """The cell stored under ``pid`` (or None) and which server answered."""
        key = KEY_PREFIX + pid
        if self.cache is not None:
            cached = self.cache.get(pid)
            if cached is not None:
                self._touch(key, now)
                return cached, "cache"
        last_error: Exception | None = None
        missing = False
        for node in self._read_order():
            try:
                values = await node.command("HMGET", key, "code", "language", "interacts")
            except (Unavailable, txredisapi.RedisError) as e:
                self._log.warn("read of {key} from {address} failed: {error}", key=key, address=node.address,
                               error=str(e))
                last_error = e
                continue
            fields = dict(zip(("code", "language", "interacts"), map(_text, values or ())))
            if fields.get("code") is None:
                # A replica may lag behind the primary: only the primary's "no" is final.
                missing = True
                if node is self.primary:
                    return None, node.address
                continue
            cell = Cell(code=fields["code"], language=fields.get("language") or "sage",
                        interacts=fields.get("interacts") or "[]")
            self._touch(key, now)
            if self.cache is not None:
                self.cache.put(pid, cell, 100 + len(cell.code) + len(cell.interacts) + len(cell.language))
            return cell, node.address
        if missing:
            return None, "replicas"
        raise Unavailable(f"no Redis server could be read ({last_error or 'none connected'})")

    def _read_order(self):
        """The primary, then the replicas, those connected (lazily: a read the primary
        answers looks at no replica)."""
        if self.primary is not None and self.primary.connected:
            yield self.primary
        for node in list(self.replicas.values()):
            if node.connected:
                yield node

    def _touch(self, key: str, now: float) -> None:
        self._touches[key] = self._touches.get(key, 0) + 1

    def flush_touches(self, now: float):
        """Best effort: write last_accessed and the read counts gathered since the
        last flush to the primary.  Failures are logged and the counts dropped:
        they never fail a read.  Returns a Deferred (or None if nothing to do)."""
        if not self._touches:
            return None
        primary = self.primary
        if primary is None or not primary.connected:
            if len(self._touches) > 100_000:
                self._touches.clear()   # primary away for long: forget rather than grow
            return None
        pending, self._touches = self._touches, {}
        items = list(pending.items())
        ds = []
        for start in range(0, len(items), TOUCH_BATCH):
            chunk = items[start:start + TOUCH_BATCH]
            try:
                d = primary.protocol(write=True).execute_command(
                    "EVAL", TOUCH_SCRIPT, len(chunk), *[k for k, _ in chunk], repr(now), *[c for _, c in chunk])
            except Exception as e:  # noqa: BLE001 - never fails a read
                self._log.warn("access counts not written: {error}", error=str(e))
                continue
            d.addErrback(lambda f: self._log.warn("access counts not written: {error}",
                                                  error=f.getErrorMessage()))
            ds.append(d)
        from twisted.internet import defer
        return defer.DeferredList(ds) if ds else None


def _text(v):
    return v.decode("utf-8") if isinstance(v, bytes) else v
