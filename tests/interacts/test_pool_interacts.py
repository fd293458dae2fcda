"""Interacts in the provider's forked kernels (the kernels users get).

A real ``KernelPoolService`` forks kernels from its warm template, which puts
``interact`` and the controls in the user namespace; the test plays the browser's widget
manager over ``Kernel.send`` / ``add_listener``: slider change in, Output
update out.
"""
from __future__ import annotations

import os
import tempfile

import pytest
import pytest_twisted
from jupyter_client.session import Session
from twisted.internet import defer, task

from cellserver.pool import KernelPoolService
from cellserver.provider_settings import DEFAULT_PRELOAD, ProviderSettings

pytestmark = pytest.mark.integration
CLIENT = Session(key=b"unused", username="test")


def reactor():
    from twisted.internet import reactor as r
    return r


async def wait_for(pred, timeout: float, what: str) -> None:
    for _ in range(int(timeout / 0.02)):
        if pred():
            return
        await task.deferLater(reactor(), 0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def request(kernel, msg, timeout: float = 20) -> list:
    """Send ``msg`` on shell; every message it caused, until its iopub idle."""
    mid = msg["header"]["msg_id"]
    got = []
    done = defer.Deferred()

    def listener(m):
        if m.parent_msg_id != mid:
            return
        got.append(m)
        if m.msg_type == "status" and m.content()["execution_state"] == "idle" and not done.called:
            done.callback(got)
    remove = kernel.add_listener(listener)
    try:
        kernel.send("shell", msg)
        return await done.addTimeout(timeout, reactor())
    finally:
        remove()


def execute(code):
    return CLIENT.msg("execute_request", {"code": code, "silent": False, "store_history": True,
                                          "user_expressions": {}, "allow_stdin": False})


def comm_states(msgs, comm_id):
    return [m.content()["data"].get("state", {}) for m in msgs
            if m.msg_type == "comm_msg" and m.content()["comm_id"] == comm_id]


@pytest_twisted.ensureDeferred
async def test_interact_in_a_forked_kernel():
    runtime = tempfile.mkdtemp(prefix="csi-", dir="/tmp")
    pool = KernelPoolService(reactor(), ProviderSettings(
        runtime_dir=runtime, ready_kernels=1, max_kernels=2, preload=DEFAULT_PRELOAD), "it")
    pool.startService()
    try:
        await wait_for(lambda: pool.stats().ready >= 1, 60, "a ready kernel")
        k = await pool.take()
        # No import: the template puts interact and the controls in the namespace.
        msgs = await request(k, execute(
            "@interact\ndef f(x=slider(0, 100)):\n    print('x', x)\n"))
        assert not [m for m in msgs if m.msg_type == "error"], [m.content() for m in msgs]
        opens = {m.content()["data"]["state"]["_model_name"]: m.content()["comm_id"]
                 for m in msgs if m.msg_type == "comm_open"}
        slider, output = opens["IntSliderModel"], opens["OutputModel"]
        assert comm_states(msgs, output)[-1]["outputs"][0]["text"] == "x 0\n"
        for value in (3, 99, 42):
            msgs = await request(k, CLIENT.msg("comm_msg", {"comm_id": slider, "data": {
                "method": "update", "state": {"value": value}, "buffer_paths": []}}))
            assert comm_states(msgs, output)[-1]["outputs"] == [
                {"output_type": "stream", "name": "stdout", "text": f"x {value}\n"}]
            assert not [m for m in msgs if m.msg_type in ("stream", "error")]
        msgs = await request(k, execute("f.x = 7"))
        assert {"value": 7} in comm_states(msgs, slider)
        await k.shutdown("test over")
    finally:
        await pool.stopService().addTimeout(30, reactor())
    assert not os.path.exists(runtime)
