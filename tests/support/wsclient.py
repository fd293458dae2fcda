"""A Jupyter-over-websocket test client on Autobahn (real reactor, bounded waits).

    ws = await KernelWS.connect(reactor, url)
    msgs = await ws.run("print(1+1)")          # everything for that request, through reply + idle
    code, reason = await ws.closed(10)
"""
from __future__ import annotations

import json
import uuid

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import defer


class KernelWS:
    def __init__(self, reactor):
        self.reactor = reactor
        self.messages: list[dict] = []
        self.proto = None
        self.close_info: tuple[int, str] | None = None
        self._waiters: list[tuple] = []
        self._closed = defer.Deferred()

    @classmethod
    async def connect(cls, reactor, url: str, timeout: float = 10) -> "KernelWS":
        ws = cls(reactor)
        opened = defer.Deferred()

        class Proto(WebSocketClientProtocol):
            def onOpen(self):
                ws.proto = self
                opened.callback(ws)

            def onMessage(self, payload, isBinary):
                ws._received(json.loads(payload))

            def onClose(self, wasClean, code, reason):
                ws.close_info = (code, reason)
                if not opened.called:
                    opened.errback(ConnectionError(f"websocket failed: {code} {reason}"))
                if not ws._closed.called:
                    ws._closed.callback(ws.close_info)
                for pred, d in ws._waiters:
                    if not d.called:
                        d.errback(ConnectionError(f"closed {code} {reason} while waiting"))
                ws._waiters = []

        factory = WebSocketClientFactory(url)
        factory.protocol = Proto
        connectWS(factory, timeout=timeout)
        return await opened.addTimeout(timeout, reactor)

    def _received(self, msg: dict) -> None:
        self.messages.append(msg)
        for item in list(self._waiters):
            pred, d = item
            if pred(msg):
                self._waiters.remove(item)
                d.callback(msg)

    def send_raw(self, data: bytes, binary: bool = False) -> None:
        self.proto.sendMessage(data, isBinary=binary)

    def send(self, msg_type: str, content: dict, channel: str = "shell") -> str:
        msg_id = uuid.uuid4().hex
        self.send_raw(json.dumps({
            "channel": channel,
            "header": {"msg_id": msg_id, "msg_type": msg_type, "session": "test", "username": "t", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "content": content}).encode())
        return msg_id

    def execute(self, code: str) -> str:
        return self.send("execute_request", {"code": code, "silent": False, "store_history": False,
                                             "user_expressions": {}, "allow_stdin": False})

    def until(self, pred, timeout: float = 15, seen: bool = True) -> defer.Deferred:
        """The first message (already received if ``seen``) matching ``pred``."""
        if seen:
            for m in self.messages:
                if pred(m):
                    return defer.succeed(m)
        if self.close_info is not None:
            return defer.fail(ConnectionError(f"closed {self.close_info}"))
        d = defer.Deferred()
        self._waiters.append((pred, d))
        return d.addTimeout(timeout, self.reactor)

    def for_request(self, msg_id: str) -> list[dict]:
        return [m for m in self.messages if m.get("parent_header", {}).get("msg_id") == msg_id]

    async def finished(self, msg_id: str, timeout: float = 15) -> list[dict]:
        """Wait for the reply and the idle status of ``msg_id``; return its messages."""
        await self.until(lambda m: m["parent_header"].get("msg_id") == msg_id and m["msg_type"].endswith("_reply"),
                         timeout)
        await self.until(lambda m: m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status"
                         and m["content"].get("execution_state") == "idle", timeout)
        return self.for_request(msg_id)

    async def run(self, code: str, timeout: float = 15) -> list[dict]:
        return await self.finished(self.execute(code), timeout)

    def closed(self, timeout: float = 15) -> defer.Deferred:
        if self._closed.called:
            return defer.succeed(self.close_info)
        d = defer.Deferred()
        self._closed.addCallback(lambda info: (d.called or d.callback(info), info)[1])
        return d.addTimeout(timeout, self.reactor)

    def close(self) -> None:
        if self.proto is not None and self.close_info is None:
            self.proto.sendClose(1000)


def stdout_of(msgs: list[dict]) -> str:
    return "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")


def reply_of(msgs: list[dict]) -> dict:
    return next(m["content"] for m in msgs if m["msg_type"] == "execute_reply")
