"""The websocket ``/kernel/<id>/channels``: an Autobahn protocol per page.

It checks each client frame (``messages.parse_client_frame``) and hands it
to the kernel's ``KernelSession``; frames from the kernel come back through
``send_frame``.  An unknown or foreign kernel id is accepted and then closed
with 4004 and a reason, because a refused handshake would reach the page as
a bare 1006 with no reason to show.  Bad frames close with 4400 (1009 for a
frame over the size limit, set in the factory).
"""
from __future__ import annotations

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.logger import Logger
from twisted.web.http import HTTPChannel

from cellserver import messages as M
from cellserver.kernelid import InvalidKernelId, parse_kernel_id


class ChannelsProtocol(WebSocketServerProtocol):
    _log = Logger()

    session = None
    _close_on_open: tuple[int, str] | None = None
    client: dict = {}
    _paused = False          # the transport's buffer is full: the page is not reading (IPushProducer)
    _backlog = 0             # bytes handed to the transport since it said so

    def onConnect(self, request):
        app = self.factory.app
        parts = [p for p in request.path.split("/") if p]
        kid = parts[1] if len(parts) >= 3 and parts[0] == "kernel" and parts[2] == "channels" else ""
        self.client = app.client_from_ws(request, self.transport)
        try:
            node, _ = parse_kernel_id(kid)
        except InvalidKernelId:
            self._close_on_open = (M.CLOSE_UNKNOWN_KERNEL, "not a kernel id")
            return None
        session = app.registry.get(kid)
        if session is None or session.ended:
            where = "another cell server's" if node != app.settings.node else "an unknown or ended"
            self._close_on_open = (M.CLOSE_UNKNOWN_KERNEL, f"{where} kernel")
            return None
        self.session = session
        return None

    def onOpen(self):
        if self._close_on_open is not None:
            code, reason = self._close_on_open
            self._log.info("websocket refused: {reason}", reason=reason, code=code)
            self.sendClose(code, reason)
            return
        self.factory.app.metrics.websockets.inc()
        # Told when the page stops reading.  The HTTP channel that did the upgrade
        # is still registered as the transport's producer: it has nothing to
        # produce any more.
        if isinstance(getattr(self.transport, "producer", None), HTTPChannel):
            self.transport.unregisterProducer()
        try:
            self.transport.registerProducer(self, True)
        except RuntimeError:
            self._log.warn("kernel {kid}: no slow-page limit on this websocket (its transport has a producer)",
                           kid=self.session.id)
        self.session.attach(self)

    def onMessage(self, payload, isBinary):
        if self.session is None:
            return
        if isBinary:
            self._reject(M.CLOSE_BAD_FRAME, "binary frames are not accepted: send JSON text")
            return
        try:
            channel, message = M.parse_client_frame(payload, self.factory.app.settings.max_code)
        except M.FrameError as e:
            self._reject(e.code, e.reason)
            return
        self.factory.app.metrics.client_messages.labels(message["header"]["msg_type"]).inc()
        self.session.from_client(channel, message, self.client)

    def _reject(self, code: int, reason: str) -> None:
        self._log.warn("bad frame on kernel {kid} from {ip}: {reason}",
                       kid=self.session.id if self.session else None, ip=self.client.get("ip"), reason=reason)
        self.factory.app.metrics.bad_frames.inc()
        self.sendClose(code, reason[:120])

    def onClose(self, wasClean, code, reason):
        if self.session is not None:
            self.factory.app.metrics.websockets.dec()
            session, self.session = self.session, None
            session.detach(self)

    # IPushProducer: the transport pauses us when its buffer is full ------------
    def pauseProducing(self):
        if not self._paused:
            self._paused, self._backlog = True, 0

    def resumeProducing(self):
        self._paused = False

    def stopProducing(self):
        self._paused = False

    # ClientSocket ----------------------------------------------------------------
    def send_frame(self, data: bytes) -> None:
        if self.state != self.STATE_OPEN:
            return
        if self._paused:
            self._backlog += len(data)
            # What may wait for a page that stopped reading (``--unread-limit``).
            # Each execution's output is capped (``--output-cap``), but a page
            # that sends evaluation after evaluation and reads nothing had the
            # server queue all their output (measured: ~0.85 MB per evaluation,
            # 66 -> 154 MB of the server in 15 s, until the 60 s ping timeout).
            if self._backlog > self.factory.app.settings.unread_limit:
                self._log.warn("kernel {kid}: the page at {ip} is not reading its output: closing its websocket",
                               kid=self.session.id if self.session else None, ip=self.client.get("ip"))
                self.factory.app.metrics.unread_closes.inc()
                self.sendClose(M.CLOSE_LIMIT, "the page is not reading its output")
                return
        # Autobahn holds messages we send to the limit set for the client's
        # (``--max-frame``), and raised for a kernel's larger ones, which were
        # lost: the limit is for what the page sends, so lift it while we send.
        limit, self.maxMessagePayloadSize = self.maxMessagePayloadSize, 0
        try:
            self.sendMessage(data, isBinary=False)
        finally:
            self.maxMessagePayloadSize = limit

    def close(self, code: int, reason: str) -> None:
        # The session is ending us: no detach callback needed.
        self.session = None
        self.factory.app.metrics.websockets.dec()
        if self.state == self.STATE_OPEN:
            self.sendClose(code, reason)


def channels_factory(app, max_frame: int) -> WebSocketServerFactory:
    factory = WebSocketServerFactory()
    factory.protocol = ChannelsProtocol
    factory.app = app
    factory.setProtocolOptions(
        maxMessagePayloadSize=max_frame, maxFramePayloadSize=max_frame,
        failByDrop=False, autoPingInterval=30, autoPingTimeout=30, openHandshakeTimeout=10, closeHandshakeTimeout=5,
        perMessageCompressionAccept=lambda offers: None,
    )
    return factory
