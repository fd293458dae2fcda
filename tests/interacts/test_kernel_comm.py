"""Interacts in a real ipykernel, driven over the Jupyter protocol.

A kernel subprocess (jupyter_client) runs an interact; the test plays the
browser's widget manager: it reads the comm_open messages, sends a
``comm_msg`` update for the slider, and waits for the Output widget's new
``outputs``; then ``f.x = 5`` from a later execution must send the slider's
new value.  No cell server involved: this is the kernel half of issue 7.
"""
from __future__ import annotations

import queue
import time
import uuid

import pytest
from jupyter_client.manager import start_new_kernel

pytestmark = pytest.mark.integration

CODE = """
from cellserver.interacts import *
@interact
def f(x=slider(0, 10), name="abc"):
    print("x =", x, name)
"""


@pytest.fixture(scope="module")
def kernel():
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=60)
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def drain(kc, until, timeout=20.0):
    """iopub messages until ``until(msg)`` is true; returns them all."""
    msgs = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=0.5)
        except queue.Empty:
            continue
        msgs.append(msg)
        if until(msg):
            return msgs
    raise AssertionError(f"timed out; got {[m['msg_type'] for m in msgs]}")


def idle_for(msg_id):
    return lambda m: (m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                      and m["parent_header"].get("msg_id") == msg_id)


def comm_msg(kc, comm_id, data):
    msg = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
    kc.shell_channel.send(msg)
    return msg["header"]["msg_id"]


def test_slider_change_and_attribute_set_over_comms(kernel):
    kc = kernel
    msgs = drain(kc, idle_for(kc.execute(CODE)))
    opens = {m["content"]["comm_id"]: m["content"]["data"]["state"]
             for m in msgs if m["msg_type"] == "comm_open"}
    displays = [m for m in msgs if m["msg_type"] == "display_data"]
    assert displays and "application/vnd.jupyter.widget-view+json" in displays[0]["content"]["data"]
    slider_id = next(cid for cid, st in opens.items() if st["_model_name"] == "IntSliderModel")
    output_id = next(cid for cid, st in opens.items() if st["_model_name"] == "OutputModel")
    first = [m for m in msgs if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == output_id]
    assert first[-1]["content"]["data"]["state"]["outputs"][0]["text"] == "x = 0 abc\n"
    # No output leaked into the executing cell:
    assert not [m for m in msgs if m["msg_type"] == "stream"]

    # The browser moves the slider.
    mid = comm_msg(kc, slider_id, {"method": "update", "state": {"value": 7}, "buffer_paths": []})
    msgs = drain(kc, idle_for(mid))
    outs = [m["content"]["data"]["state"]["outputs"] for m in msgs
            if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == output_id]
    assert outs == [[{"output_type": "stream", "name": "stdout", "text": "x = 7 abc\n"}]]
    assert not [m for m in msgs if m["msg_type"] in ("stream", "error")]

    # A later evaluation sets the control: the slider moves in the page at once.
    msgs = drain(kc, idle_for(kc.execute("f.x = 5; print('set')")))
    slider_updates = [m["content"]["data"]["state"] for m in msgs
                      if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == slider_id]
    assert {"value": 5} in slider_updates
    outs = [m["content"]["data"]["state"]["outputs"] for m in msgs
            if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == output_id]
    assert outs[-1][0]["text"] == "x = 5 abc\n"
    streams = [m["content"]["text"] for m in msgs if m["msg_type"] == "stream"]
    assert streams == ["set\n"]  # the cell's own print stays in the cell


def test_comm_info_lists_widget_comms(kernel):
    kc = kernel
    msg = kc.session.msg("comm_info_request", {"target_name": "jupyter.widget"})
    kc.shell_channel.send(msg)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reply = kc.get_shell_msg(timeout=5)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            break
    assert reply["msg_type"] == "comm_info_reply" and len(reply["content"]["comms"]) >= 3


PLOT = """
import matplotlib.pyplot as plt
@interact
def g(a=(1, 3, 1)):
    plt.plot([0, 1], [0, a])   # no plt.show(): the interact shows drawn figures
    print("a", a)
"""


def test_matplotlib_figure_lands_in_the_interact_output(kernel):
    kc = kernel
    msgs = drain(kc, idle_for(kc.execute(PLOT)))
    outputs = [m["content"]["data"]["state"]["outputs"] for m in msgs
               if m["msg_type"] == "comm_msg" and "outputs" in m["content"]["data"].get("state", {})]
    assert outputs, [m["msg_type"] for m in msgs]
    last = outputs[-1]
    assert last[0]["text"] == "a 1\n" and "image/png" in last[1]["data"]
    assert not [m for m in msgs if m["msg_type"] == "display_data"
                and "image/png" in m["content"]["data"]]  # not in the cell itself
