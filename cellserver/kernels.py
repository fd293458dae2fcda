"""The contract between the kernel side and the API side of a cell server.

The kernel side (``cellserver.provider`` and its Twisted adapter) keeps
pre-started kernels ready, hands them out, relays signed zmq messages and
reports when a kernel ends.  The API side (HTTP, websocket, ``/service``,
lifetimes, logs) only ever sees the two protocols below, so it can be
unit-tested with an in-memory kernel and run against real ones unchanged.

Messages are relayed as the kernel wrote them: ``KernelMessage`` keeps the
raw JSON of each part (parent headers untouched, no date re-formatting) and
parses only what routing needs (header, parent header).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from twisted.internet.defer import Deferred

CHANNELS_FROM_CLIENT = ("shell", "control")
CHANNELS_FROM_KERNEL = ("shell", "iopub", "control")


class NoCapacity(Exception):
    """No kernel can be handed out now (pool empty and at capacity, or provider down)."""


class KernelGone(Exception):
    """The kernel has ended; nothing more can be sent to it."""


@dataclass(frozen=True)
class KernelMessage:
    """One HMAC-verified message from a kernel, with its parts' raw JSON."""

    channel: str
    header: dict[str, Any]
    parent_header: dict[str, Any]
    raw_header: bytes
    raw_parent_header: bytes
    raw_metadata: bytes
    raw_content: bytes
    buffers: tuple[bytes, ...] = field(default=())

    @property
    def msg_type(self) -> str:
        return self.header.get("msg_type", "")

    @property
    def parent_msg_id(self) -> str | None:
        return self.parent_header.get("msg_id")

    def content(self) -> dict[str, Any]:
        return json.loads(self.raw_content)

    @property
    def size(self) -> int:
        """Bytes this message would put on the wire (for output caps)."""
        return (len(self.raw_header) + len(self.raw_parent_header) + len(self.raw_metadata)
                + len(self.raw_content) + sum(len(b) for b in self.buffers))


@dataclass(frozen=True)
class PoolStats:
    ready: int      # started, waiting to be handed out
    starting: int   # being forked / initialised
    running: int    # handed out and alive
    capacity: int   # the most kernels (ready + starting + running) this node runs


class Kernel(Protocol):
    """A kernel handed out by the pool.  Owned by one API-side session."""

    id: str          # cellserver.kernelid format: names this node
    pid: int         # the kernel's process (leader of its own process group)

    def send(self, channel: str, message: dict[str, Any]) -> None:
        """Sign and send a client's message on ``shell`` or ``control``.

        ``message`` has ``header``, ``parent_header``, ``metadata``,
        ``content`` (and optional ``buffers``), sent as given: the header's
        ``msg_id`` is the client's, so replies carry it as parent.  Raises
        ``KernelGone`` after the kernel ended.
        """

    def add_listener(self, listener: Callable[[KernelMessage], None]) -> Callable[[], None]:
        """Call ``listener`` with every message from the kernel (shell, iopub,
        control), in order.  Returns a function that removes the listener."""

    def files_path(self) -> str:
        """A host path through which the kernel's working directory can be
        read (to serve ``/kernel/<id>/files/<path>``)."""

    def when_ended(self) -> Deferred[str]:
        """A new Deferred firing with the reason once the kernel has ended
        (process exited, was killed, limit hit, shutdown asked)."""

    def shutdown(self, reason: str) -> Deferred[None]:
        """Kill the kernel's whole process group and remove its files; fires
        once nothing of it is left.  Safe to call more than once."""


class KernelPool(Protocol):
    def take(self) -> Deferred[Kernel]:
        """A ready kernel (waiting briefly for one being started); fails with
        ``NoCapacity`` when none can be had."""

    def stats(self) -> PoolStats: ...

    def get(self, kernel_id: str) -> Kernel | None:
        """A running kernel of this node by id."""
