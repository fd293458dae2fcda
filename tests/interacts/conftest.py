"""In-process widget setup for the interact unit tests.

The widgets get a recording comm (``comm.create_comm`` is the documented
hook for that) instead of a kernel's, so a test sees every message the kernel
would send to the browser; ``browser_set``/``browser_click`` feed messages
in exactly as the kernel's comm would on a ``comm_msg`` from the page.
An in-process IPython shell (no kernel, no I/O) provides ``display``.
"""
from __future__ import annotations

import comm
import pytest
from comm.base_comm import BaseComm
from IPython.core.interactiveshell import InteractiveShell


class RecordingComm(BaseComm):
    sent: list = []

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        RecordingComm.sent.append((msg_type, self.comm_id, data))


@pytest.fixture
def wire(monkeypatch):
    """The list of (msg_type, comm_id, data) the widgets sent."""
    InteractiveShell.instance()
    sent: list = []
    monkeypatch.setattr(RecordingComm, "sent", sent)
    monkeypatch.setattr(comm, "create_comm", lambda *a, **kw: RecordingComm(*a, **kw))
    yield sent


def browser_set(widget, **state):
    widget._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
                        "buffers": []})


def browser_click(button):
    button._handle_msg({"content": {"data": {"method": "custom", "content": {"event": "click"}}},
                        "buffers": []})


def text_of(f) -> str:
    """Everything the interact's output area shows, as text."""
    parts = []
    for out in f._interact.output.outputs:
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] == "error":
            parts.append(f"{out['ename']}: {out['evalue']}")
        else:
            parts.append(out["data"].get("text/plain", ""))
    return "".join(parts)


def updates_of(sent, widget) -> list[dict]:
    return [d["state"] for (t, cid, d) in sent
            if t == "comm_msg" and cid == widget.comm.comm_id and d.get("method") == "update"]
