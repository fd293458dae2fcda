"""KernelSession on a task.Clock with an in-memory kernel (the real one is
exercised by test_api_integration): when a plain cell's kernel may end."""
import json

from twisted.internet import defer, task

from cellserver.kernels import KernelMessage
from cellserver.lifetimes import REASON_FINISHED, Lifetime
from cellserver.sessions import KernelSession


class MemoryKernel:
    id = "c1-0123456789abcdef0123456789abcdef"
    pid = 0

    def __init__(self):
        self.sent, self.listeners, self.shut = [], [], None

    def send(self, channel, message):
        self.sent.append((channel, message))

    def add_listener(self, listener):
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def when_ended(self):
        return defer.Deferred()

    def shutdown(self, reason):
        self.shut = reason
        return defer.succeed(None)

    def emit(self, channel, msg_type, parent_id, content):
        header = {"msg_id": f"k-{msg_type}", "msg_type": msg_type}
        parent = {"msg_id": parent_id}
        m = KernelMessage(channel, header, parent, json.dumps(header).encode(), json.dumps(parent).encode(),
                          b"{}", json.dumps(content).encode())
        for listener in list(self.listeners):
            listener(m)


class Socket:
    def __init__(self):
        self.frames, self.closed = [], None

    def send_frame(self, data):
        self.frames.append(json.loads(data))

    def close(self, code, reason):
        self.closed = (code, reason)


def plain_cell():
    clock, kernel, sock = task.Clock(), MemoryKernel(), Socket()
    session = KernelSession(clock, kernel, Lifetime(created=0, timeout=0, idle_cap=900, lifespan=1800),
                            output_cap=10**6, log_computation=lambda *a: None, on_end=lambda s, r: None)
    session.attach(sock)
    session.from_client("shell", {"header": {"msg_id": "run1", "msg_type": "execute_request"},
                                  "parent_header": {}, "metadata": {}, "content": {"code": "len?"}})
    return kernel, sock, session


def types(sock):
    return [f.get("header", {}).get("msg_type") for f in sock.frames]


def test_idle_before_the_reply_waits_for_the_reply():
    kernel, sock, session = plain_cell()
    kernel.emit("iopub", "status", "run1", {"execution_state": "busy"})
    kernel.emit("iopub", "status", "run1", {"execution_state": "idle"})
    assert session.ended is None and kernel.shut is None          # the reply is still on its way
    kernel.emit("shell", "execute_reply", "run1", {"status": "ok", "payload": [{"source": "page"}]})
    assert session.ended == REASON_FINISHED and kernel.shut == REASON_FINISHED
    assert types(sock)[:3] == ["status", "status", "execute_reply"] and sock.closed[0] == 1000


def test_reply_before_the_idle_waits_for_the_idle():
    kernel, sock, session = plain_cell()
    kernel.emit("iopub", "status", "run1", {"execution_state": "busy"})
    kernel.emit("shell", "execute_reply", "run1", {"status": "ok"})
    kernel.emit("iopub", "stream", "run1", {"name": "stdout", "text": "late output\n"})
    assert session.ended is None
    kernel.emit("iopub", "status", "run1", {"execution_state": "idle"})
    assert session.ended == REASON_FINISHED
    assert types(sock)[:4] == ["status", "execute_reply", "stream", "status"]


def test_an_unrelated_idle_does_not_finish_a_plain_cell():
    kernel, sock, session = plain_cell()
    kernel.emit("iopub", "status", "someone-else", {"execution_state": "idle"})
    kernel.emit("shell", "execute_reply", "run1", {"status": "ok"})
    assert session.ended is None
