"""Random frames of every accepted message type, well shaped but with odd
values anywhere (header fields, content), against a real kernel: each is
either refused with a close code or handled, and afterwards the server is
healthy and a kernel evaluates.  Seeded, so a failure replays.

It found that a header the kernel cannot read (``version: 0``, a date that
is not one) was dropped by ipykernel without an answer, and an evaluation
that never began blocked every later one (``messages._kernel_can_read``)."""
from __future__ import annotations

import json
import random

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater

from cellserver.messages import ALLOWED
from tests.cellserver.test_api_integration import delete_kernels_after_test, open_kernel, server  # noqa: F401
from tests.support.wsclient import stdout_of

pytestmark = pytest.mark.integration

KEYS = ["code", "cursor_pos", "comm_id", "target_name", "data", "detail_level", "oname", "hist_access_type",
        "n", "silent", "store_history", "user_expressions", "stop_on_error", "x"]


def odd(rng: random.Random, depth: int = 0):
    kind = rng.choice("sifnbld" if depth < 2 else "sifnb")
    if kind == "s":
        return rng.choice(["", "x", "print(1)", "\x00", "é" * 10, "🙂", "5.3", "2026-02-30T10:00:00Z", "y" * 3000])
    if kind == "i":
        return rng.choice([0, -1, 7, 2**63, 10**30])
    if kind == "f":
        return rng.choice([0.5, -1e308, 1e308])
    if kind == "n":
        return None
    if kind == "b":
        return rng.choice([True, False])
    if kind == "l":
        return [odd(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(KEYS): odd(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def random_frame(rng: random.Random, n: int, odd_header: bool) -> dict:
    channel = rng.choice(sorted(ALLOWED))
    msg_type = rng.choice(sorted(ALLOWED[channel]))
    content = {rng.choice(KEYS): odd(rng) for _ in range(rng.randint(0, 4))}
    if msg_type == "execute_request":
        content["code"] = rng.choice(["1", "print(2)", "x = 1", "1/0", "import os", "\x00"])
    header = {"msg_id": f"fuzz-{n}", "msg_type": msg_type, "session": "s", "username": "u", "version": "5.3",
              "date": "2026-12-03T12:00:00.000000Z"}
    if odd_header:
        for key in ("session", "username", "version", "date"):
            if rng.random() < 0.5:
                header[key] = odd(rng)
    frame = {"channel": channel, "header": header, "content": content, "parent_header": {}, "metadata": {}}
    if rng.random() < 0.3:
        frame["metadata"] = {rng.choice(["cellId", "deletedCells", "recordTiming", "x"]): odd(rng)}
    if rng.random() < 0.2:
        frame["parent_header"] = {rng.choice(["msg_id", "date", "session"]): odd(rng)}
    return frame


@pytest_twisted.ensureDeferred
async def test_random_frames_never_wedge_a_kernel_or_harm_the_server(server):
    rng = random.Random(20261203)
    base = server["base"]
    refused = answered = 0
    for rnd in range(6):      # odd content in every round, odd headers too in every other one
        info, ws = await open_kernel(base)
        for i in range(40):
            if ws.close_info is not None:
                break
            ws.send_raw(json.dumps(random_frame(rng, rnd * 100 + i, odd_header=rnd % 2 == 1)).encode())
            await deferLater(reactor, 0.01, lambda: None)
        await deferLater(reactor, 0.5, lambda: None)
        if ws.close_info is not None:
            refused += 1
            assert ws.close_info[0] == 4400 and ws.close_info[1], ws.close_info     # refused, with a reason
        else:
            answered += 1
            assert stdout_of(await ws.run("print('still here')", timeout=20)) == "still here\n"
            ws.close()
        await treq.delete(base + "kernel/" + info["id"])
        resp = await treq.get(base + "healthz")
        assert resp.code == 200 and json.loads(await resp.content())["status"] == "ok"
    assert refused and answered             # both paths were exercised
    info, ws = await open_kernel(base)
    assert stdout_of(await ws.run("print(6*7)")) == "42\n"
    ws.close()
