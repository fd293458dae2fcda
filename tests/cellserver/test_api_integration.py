"""The cell server API end to end: a real ``twistd cellserver`` with real
forked kernels on 127.0.0.1, HTTP through treq, websockets through Autobahn.

One server is shared by the module (kernels are cheap, the server start is
not); tests that need other settings (terms of service) start their own.
"""
from __future__ import annotations

import json
import os
import signal

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater

from tests.support.ports import free_port
from tests.support.procs import PRINT_PID, descendants_of, host_pid, http_ok, kernel_runtime_dir, wait_until
from tests.support.wsclient import KernelWS, reply_of, stdout_of

pytestmark = pytest.mark.integration


def start_cellserver(children, tmp, name="t1", extra=()):
    port = free_port()
    runtime = kernel_runtime_dir(name)
    log = tmp / "computations.jsonl"
    child = children.twistd(f"cellserver-{name}", "cellserver", [
        "--node", name, "--listen", f"tcp:{port}:interface=127.0.0.1", "--runtime-dir", str(runtime),
        "--ready-kernels", "2", "--max-kernels", "12", "--connect-grace", "5", "--service-wall", "3",
        "--output-cap", "200000", "--unread-limit", "1000000", "--max-frame", "100000", "--idle-cap", "60", "--lifespan", "120",
        "--computation-log", str(log), "--trusted-proxies", "127.0.0.1", *extra])
    base = f"http://127.0.0.1:{port}/"
    child.kernel_dir = runtime
    wait_until(lambda: http_ok(base + "healthz"), 60, "the cell server's /healthz", child=child)
    return base, child, log


@pytest.fixture(scope="module")
def server(module_children, tmp_path_factory):
    base, child, log = start_cellserver(module_children, tmp_path_factory.mktemp("cs"))
    return {"base": base, "child": child, "log": log}


OPENED: list[tuple[str, str]] = []


@pytest.fixture(autouse=True)
def delete_kernels_after_test():
    """Kernels with timeout > 0 outlive their websocket (by design): delete them."""
    yield
    import urllib.request
    while OPENED:
        base, kid = OPENED.pop()
        try:
            urllib.request.urlopen(urllib.request.Request(base + f"kernel/{kid}", method="DELETE"), timeout=5)
        except Exception:
            pass


async def new_kernel(base, **form):
    form.setdefault("timeout", "30")
    resp = await treq.post(base + "kernel", data=form)
    body = json.loads(await resp.content())
    assert resp.code == 200, body
    assert resp.headers.getRawHeaders(b"jupyter-kernel-id") == [body["id"].encode()]
    OPENED.append((base, body["id"]))
    return body


async def open_kernel(base, **form):
    info = await new_kernel(base, **form)
    ws = await KernelWS.connect(reactor, f"{info['ws_url']}kernel/{info['id']}/channels")
    return info, ws


@pytest_twisted.ensureDeferred
async def test_execute_print_gets_stdout_reply_and_idle(server):
    info, ws = await open_kernel(server["base"])
    assert info["ws_url"] == server["base"].replace("http", "ws")
    msgs = await ws.run("print(1+1)")
    assert stdout_of(msgs) == "2\n"
    assert reply_of(msgs)["status"] == "ok"
    assert all(m["channel"] in ("shell", "iopub") for m in msgs)
    ws.close()


@pytest_twisted.ensureDeferred
async def test_image_and_error_output(server):
    info, ws = await open_kernel(server["base"])
    msgs = await ws.run("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")
    assert any("image/png" in m["content"].get("data", {}) for m in msgs if m["msg_type"] == "display_data")
    msgs = await ws.run("def f():\n    return 1/0\nf()")
    err = next(m["content"] for m in msgs if m["msg_type"] == "error")
    assert err["ename"] == "ZeroDivisionError" and any("f()" in line for line in err["traceback"])
    assert reply_of(msgs)["status"] == "error"
    ws.close()


@pytest_twisted.ensureDeferred
async def test_timeout_zero_ends_after_the_first_execution(server):
    info, ws = await open_kernel(server["base"], timeout="0")
    msgs = await ws.run("print('once')")
    assert stdout_of(msgs) == "once\n"
    dead = await ws.until(lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "dead")
    assert "finished" in dead["content"]["reason"]
    code, reason = await ws.closed()
    assert code == 1000


@pytest_twisted.ensureDeferred
async def test_idle_timeout_ends_kernel_with_4408(server):
    info, ws = await open_kernel(server["base"], timeout="1")
    await ws.run("x = 1")
    code, reason = await ws.closed(10)
    assert code == 4408 and "idle" in reason
    dead = [m for m in ws.messages if m["msg_type"] == "status" and m["content"]["execution_state"] == "dead"]
    assert dead and dead[0]["content"]["reason"] == "idle timeout"
    resp = await treq.delete(server["base"] + f"kernel/{info['id']}")
    assert resp.code == 404


async def interrupt_a_loop_once_it_began(ws) -> None:
    """Run ``while True: pass``, interrupt it as soon as its execute_input
    arrives; it must end in a KeyboardInterrupt and the kernel go on."""
    mid = ws.execute("while True: pass")
    await ws.until(lambda m: m["parent_header"].get("msg_id") == mid and m["msg_type"] == "execute_input")
    ws.send("interrupt_request", {}, channel="control")
    msgs = await ws.finished(mid)
    assert reply_of(msgs)["status"] == "error"
    assert any(m["msg_type"] == "error" and m["content"]["ename"] == "KeyboardInterrupt" for m in msgs)
    assert stdout_of(await ws.run("print(6*7)")) == "42\n"
    ws.close()


@pytest_twisted.ensureDeferred
async def test_interrupt_stops_a_loop_and_the_kernel_stays_usable(server):
    info, ws = await open_kernel(server["base"])
    await interrupt_a_loop_once_it_began(ws)


@pytest_twisted.ensureDeferred
async def test_an_interrupt_before_the_code_starts_is_not_lost(server):
    """interrupts.py: a Stop that lands while IPython prepares the cell (here
    a slow ``pre_execute`` callback, where IPython swallows KeyboardInterrupt)
    interrupts the cell instead of letting it run to its end."""
    info, ws = await open_kernel(server["base"])
    await ws.run("import time; get_ipython().events.register('pre_execute', lambda: time.sleep(0.5))")
    await interrupt_a_loop_once_it_began(ws)


@pytest_twisted.ensureDeferred
async def test_twenty_fast_requests_all_end_and_the_last_is_right(server):
    info, ws = await open_kernel(server["base"])
    ids = [ws.execute(f"import time; time.sleep(0.2); print({i})") for i in range(20)]
    replies = {}
    for mid in ids:
        m = await ws.until(lambda m, mid=mid: m["parent_header"].get("msg_id") == mid
                           and m["msg_type"] == "execute_reply", timeout=20)
        replies[mid] = m["content"]["status"]
    assert set(replies) == set(ids)
    assert replies[ids[-1]] == "ok"
    assert stdout_of(ws.for_request(ids[-1])) == "19\n"
    assert all(s in ("ok", "error", "aborted") for s in replies.values())
    assert stdout_of(await ws.run("print('still here')", timeout=40)) == "still here\n"
    ws.close()


@pytest_twisted.ensureDeferred
async def test_a_second_request_sent_at_once_interrupts_the_first_when_it_begins(server):
    """On a fresh kernel the second request can arrive before the first has
    begun: an interrupt sent then is ignored by ipykernel (SIGINT between
    requests), and the second would wait out the whole first one.  And the
    SIGINT must reach the main thread (ipykernel's threads block it), or
    ``time.sleep`` is not broken off."""
    info, ws = await open_kernel(server["base"])
    first = ws.execute("import time; time.sleep(120)")
    second = ws.execute("print('second')")
    msgs = await ws.finished(second, timeout=60)           # not after the first's 120 s
    assert stdout_of(msgs) == "second\n"
    assert [m["content"]["status"] for m in msgs if m["msg_type"] == "execute_reply"] == ["ok"]
    assert not [m for m in ws.messages if m["parent_header"].get("msg_id") == first
                and m["msg_type"] == "execute_reply" and m["content"]["status"] == "ok"]
    ws.close()


@pytest_twisted.ensureDeferred
async def test_output_flood_is_truncated_with_a_notice(server):
    info, ws = await open_kernel(server["base"])
    mid = ws.execute("while True: print('x' * 100)")
    notice = await ws.until(lambda m: m["msg_type"] == "stream" and "output truncated" in m["content"]["text"])
    assert notice["parent_header"]["msg_id"] == mid
    ws.send("interrupt_request", {}, channel="control")
    await ws.finished(mid)
    flood = sum(len(m["content"].get("text", "")) for m in ws.for_request(mid) if m["msg_type"] == "stream")
    assert flood < 250_000
    assert stdout_of(await ws.run("print('ok')")) == "ok\n"
    ws.close()


@pytest_twisted.ensureDeferred
async def test_files_written_by_the_kernel_are_served_and_nothing_else(server):
    info, ws = await open_kernel(server["base"])
    await ws.run("open('out.txt', 'w').write('hello file')")
    base = server["base"] + f"kernel/{info['id']}/files/"
    resp = await treq.get(base + "out.txt")
    assert resp.code == 200 and await resp.content() == b"hello file"
    assert resp.headers.getRawHeaders(b"content-security-policy") == [b"sandbox"]
    resp = await treq.get(base + "out.txt", headers={"Range": "bytes=6-"})
    assert resp.code == 206 and await resp.content() == b"file"
    # Nothing the kernel could swap between a check and the open is followed: not a link
    # out (to the host's /etc, read by a root cell server), not even one that stays inside,
    # and a FIFO is refused at once instead of blocking the server in open().
    await ws.run("import os; os.makedirs('sub', exist_ok=True); open('sub/in.txt', 'w').write('deep');"
                 "os.symlink('/etc', 'etc'); os.symlink('out.txt', 'alias'); os.mkfifo('pipe')")
    resp = await treq.get(base + "sub/in.txt")
    assert resp.code == 200 and await resp.content() == b"deep"
    for bad in ("../../../etc/passwd", "%2e%2e/%2e%2e/etc/passwd", "nope.txt", "", "etc/passwd", "alias", "pipe",
                "sub"):
        resp = await treq.get(base + bad)
        assert resp.code in (404, 400), bad
        await resp.content()
    ws.close()


@pytest_twisted.ensureDeferred
async def test_kernel_killed_shows_dead_with_reason(server):
    info, ws = await open_kernel(server["base"])
    msgs = await ws.run(PRINT_PID)
    os.kill(host_pid(stdout_of(msgs)), signal.SIGKILL)
    dead = await ws.until(lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "dead")
    assert "SIGKILL" in dead["content"]["reason"]
    code, reason = await ws.closed()
    assert code == 4500


@pytest_twisted.ensureDeferred
async def test_service_runs_and_respects_the_wall_limit(server):
    resp = await treq.post(server["base"] + "service", data={"code": "print(2**10)",
                                                             "user_expressions": json.dumps({"a": "3*3"})})
    body = json.loads(await resp.content())
    assert resp.code == 200 and body["success"] is True and body["stdout"] == "1024\n"
    assert body["execute_reply"]["user_expressions"]["a"]["data"]["text/plain"] == "9"
    resp = await treq.post(server["base"] + "service", data={"code": "import time; time.sleep(30)"})
    body = json.loads(await resp.content())
    assert body["success"] is False and "wall time limit" in body["stderr"]
    resp = await treq.post(server["base"] + "service", data={"code": "1/0"})
    body = json.loads(await resp.content())
    assert body["success"] is False and body["execute_reply"]["ename"] == "ZeroDivisionError"
    # a raw form, as `curl -d` sends it: ";" inside a field is the code's, not a separator
    resp = await treq.post(server["base"] + "service", data=b"code=x = 6; print(x * 7)",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    body = json.loads(await resp.content())
    assert body["stdout"] == "42\n", body


@pytest_twisted.ensureDeferred
async def test_kernels_per_cell_session_are_capped(server):
    a = await new_kernel(server["base"], CellSessionID="cap-test")
    b = await new_kernel(server["base"], CellSessionID="cap-test")
    resp = await treq.post(server["base"] + "kernel", data={"CellSessionID": "cap-test"})
    body = json.loads(await resp.content())
    assert resp.code == 429 and body["error"] == "too_many_kernels"
    assert resp.headers.getRawHeaders(b"retry-after")
    for k in (a, b):
        assert (await treq.delete(server["base"] + f"kernel/{k['id']}")).code == 200


@pytest_twisted.ensureDeferred
async def test_bad_http_input_gets_clear_errors(server):
    base = server["base"]

    async def post(path, **kw):
        resp = await treq.post(base + path, **kw)
        return resp.code, json.loads(await resp.content())

    assert await post("kernel", data={"timeout": "-3"}) == (400, {"error": "bad_timeout",
                                                                  "message": "timeout must be 0 or more seconds, not '-3'"})
    code, body = await post("service", data={"code": "x" * 65_001})
    assert code == 413 and body["error"] == "code_too_long"
    code, body = await post("service", data={})
    assert code == 400 and body["error"] == "missing_code"
    code, body = await post("service", data={"code": "1", "user_expressions": "{nope"})
    assert code == 400 and body["error"] == "bad_user_expressions"
    code, body = await post("kernel/not-an-id")
    assert code == 400 and body["error"] == "bad_kernel_id"
    resp = await treq.delete(base + "kernel/t1-" + "0" * 32)
    assert resp.code == 404 and json.loads(await resp.content())["error"] == "unknown_kernel"
    code, body = await post("service", data={"code": "x" * 3_000_000})
    assert code == 413 and body["error"] == "body_too_large"
    resp = await treq.get(base + "no/such/thing")
    assert resp.code == 404 and json.loads(await resp.content())["error"] == "not_found"
    resp = await treq.request("OPTIONS", base + "kernel", headers={"Origin": "https://example.org"})
    assert resp.code == 204
    assert resp.headers.getRawHeaders(b"access-control-allow-origin") == [b"https://example.org"]
    assert resp.headers.getRawHeaders(b"access-control-allow-credentials") == [b"true"]
    # a multipart form works; a multipart body that is not one is a JSON 400 (twisted.web: a bare 400)
    resp = await treq.post(base + "service", data={"code": "print(6*7)"}, files={"f": ("a.txt", b"x")})
    assert resp.code == 200 and json.loads(await resp.content())["stdout"] == "42\n"
    code, body = await post("service", data=b"not multipart", headers={"Content-Type": "multipart/form-data; boundary=z"})
    assert code == 400 and body["error"] == "bad_body"
    # a method a resource does not take: a JSON 405 naming the ones it does (twisted.web's own
    # answers were an HTML 501 "Huh?" for PUT or DELETE, and a 500 for HEAD without GET)
    for method, path, allow in (("PUT", "kernel", b"GET, HEAD, OPTIONS, POST"), ("HEAD", "service", b"OPTIONS, POST"),
                                ("DELETE", "healthz", b"GET, HEAD"), ("PATCH", "tos.html", b"GET, HEAD, OPTIONS, POST"),
                                ("PUT", "", None), ("DELETE", "embedded_sagecell.js", b"GET, HEAD")):
        resp = await treq.request(method, base + path)
        body = await resp.content()
        assert resp.code == 405 and (allow is None or resp.headers.getRawHeaders(b"allow") == [allow]), \
            (method, path, resp.code, body)
        if method != "HEAD":
            assert json.loads(body)["error"] == "method-not-allowed"


@pytest_twisted.ensureDeferred
async def test_bad_websocket_input_closes_with_reasons_and_harms_nothing(server):
    base = server["base"]
    ws_base = base.replace("http", "ws")
    for kid, words in (("t1-" + "0" * 32, "unknown"), ("other-" + "1" * 32, "another cell server"),
                       ("garbage", "not a kernel id")):
        ws = await KernelWS.connect(reactor, f"{ws_base}kernel/{kid}/channels")
        code, reason = await ws.closed()
        assert code == 4004 and words in reason
    survivor, good = await open_kernel(base)
    await good.run("keep = 'me'")
    cases = [(b"{nope", False, 4400, "JSON"), (b'{"channel": "shell"}', False, 4400, "header"),
             (b'{"channel": "stdin", "header": {"msg_id": "a", "msg_type": "input_reply"}}', False, 4400, "channel"),
             (json.dumps({"channel": "shell", "header": {"msg_id": "a", "msg_type": "shutdown_request"}}).encode(),
              False, 4400, "not accepted"),
             (json.dumps({"channel": "shell", "header": {"msg_id": "a", "msg_type": "execute_request", "version": 0},
                         "content": {"code": "1"}}).encode(), False, 4400, "header.version"),
             (b"\x00\x01", True, 4400, "binary"),
             (b'{"channel": "shell", "pad": "' + b"x" * 200_000 + b'"}', False, 1009, "")]
    for payload, binary, want, words in cases:
        info, ws = await open_kernel(base)
        ws.send_raw(payload, binary=binary)
        code, reason = await ws.closed()
        assert code == want and words in (reason or ""), (payload[:40], code, reason)
    # abrupt disconnect mid-execution
    info, ws = await open_kernel(base)
    ws.execute("import time; time.sleep(1)")
    ws.proto.transport.abortConnection()
    await deferLater(reactor, 0.2, lambda: None)
    assert stdout_of(await good.run("print(keep)")) == "me\n"
    resp = await treq.get(base + "healthz")
    health = json.loads(await resp.content())
    assert resp.code == 200 and health["status"] == "ok" and health["node"] == "t1"
    good.close()


@pytest_twisted.ensureDeferred
async def test_healthz_metrics_tos_and_computation_log(server):
    base = server["base"]
    resp = await treq.get(base + "healthz")
    h = json.loads(await resp.content())
    assert set(h) >= {"status", "node", "ready", "starting", "running", "capacity", "free"}
    assert h["free"] == h["capacity"] - h["running"]
    resp = await treq.get(base + "metrics")
    text = (await resp.content()).decode()
    assert "cellserver_kernels_handed_out_total" in text and 'cellserver_kernels{state="capacity"} 12.0' in text
    resp = await treq.get(base + "tos.html")
    assert resp.code == 204  # no terms configured
    await resp.content()
    info, ws = await open_kernel(base, referer_unused="1")
    await ws.run("print('logged')")
    ws.close()
    lines = [json.loads(x) for x in server["log"].read_text().splitlines()]
    mine = [x for x in lines if x["kernel"] == info["id"]]
    assert [x["kind"] for x in mine] == ["kernel", "execute"]
    assert mine[1]["code"] == "print('logged')" and mine[1]["node"] == "t1" and mine[1]["ip"] == "127.0.0.1"


@pytest_twisted.ensureDeferred
async def test_forwarded_for_is_believed_only_from_trusted_proxies(server):
    await treq.post(server["base"] + "service", data={"code": "'xff'"},
                    headers={"X-Forwarded-For": "198.51.100.7", "Referer": "https://course.example/page"})
    last = json.loads(server["log"].read_text().splitlines()[-1])
    assert last["ip"] == "198.51.100.7" and last["referer"] == "https://course.example/page"


@pytest_twisted.ensureDeferred
async def test_terms_of_service_when_configured(children, tmp_path):
    tos = tmp_path / "tos.html"
    tos.write_text("<p>Be nice.</p>")
    base, child, _ = start_cellserver(children, tmp_path, name="tos", extra=["--tos", str(tos),
                                                                               "--ready-kernels", "1"])
    resp = await treq.get(base + "tos.html")
    assert resp.code == 200 and b"Be nice" in await resp.content()
    resp = await treq.post(base + "kernel", data={})
    assert resp.code == 403 and json.loads(await resp.content())["error"] == "tos_not_accepted"
    resp = await treq.post(base + "service", data={"code": "1"})
    assert resp.code == 403
    await resp.content()
    info = await new_kernel(base, accepted_tos="true")
    assert info["id"].startswith("tos-")


def test_stopping_the_server_leaves_no_kernel_behind(children, tmp_path):
    import urllib.request

    base, child, _ = start_cellserver(children, tmp_path, name="stop")
    kernel_dir = child.kernel_dir
    for _ in range(2):
        urllib.request.urlopen(urllib.request.Request(base + "service", data=b"code=1", method="POST")).read()
    wait_until(lambda: json.loads(urllib.request.urlopen(base + "healthz").read())["ready"] >= 1, 20,
               "a ready kernel (so there is one to clean up too)")
    pids = descendants_of(child.pid)          # the provider, the kernels (and their inits)
    assert len(pids) >= 2
    child.popen.send_signal(signal.SIGTERM)
    child.popen.wait(20)

    def gone(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"

    wait_until(lambda: all(gone(p) for p in set(pids)), 10, "kernels and provider to exit")
    import glob
    assert not glob.glob(os.path.join(kernel_dir, "sock/*")) and not glob.glob(os.path.join(kernel_dir, "work/*"))


def _raw_ws(base: str, kid: str):
    """A websocket that reads nothing after the handshake (a page that stopped reading)."""
    import base64
    import socket
    import time
    host, port = base.split("//")[1].rstrip("/").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /kernel/{kid}/channels HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    deadline = time.monotonic() + 10
    head = b""
    while b"\r\n\r\n" not in head and time.monotonic() < deadline:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def _masked(payload: bytes) -> bytes:
    mask = os.urandom(4)
    size = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big"))
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


@pytest_twisted.ensureDeferred
async def test_a_page_that_stops_reading_is_cut_off_not_buffered(server):
    """Each execution's output is capped, but a page that keeps evaluating and reads
    nothing had the server queue all of it; past --unread-limit (1 MB here) its
    websocket is closed, and the kernel stays for a page that reads."""
    import time
    info = await new_kernel(server["base"], timeout="60")
    s = _raw_ws(server["base"], info["id"])
    closed = False
    t0 = time.monotonic()
    for i in range(200):                         # 200 x ~190 kB would be ~38 MB queued
        msg = {"channel": "shell", "header": {"msg_id": f"m{i}", "msg_type": "execute_request", "session": "s",
                                               "username": "u", "version": "5.3"},
               "content": {"code": "print('x' * 190_000)"}, "parent_header": {}, "metadata": {}}
        try:
            s.sendall(_masked(json.dumps(msg).encode()))
        except OSError:
            closed = True
            break
        await deferLater(reactor, 0.1, lambda: None)
        if time.monotonic() - t0 > 60:
            break
    s.close()
    assert closed, ("the server kept queueing output for a page that reads nothing", i,
                    [l for l in server["child"].log(tail=200_000).splitlines() if "relay" in l or "not reading" in l][-5:])
    assert "is not reading its output" in server["child"].log(tail=200_000)
    metrics = (await (await treq.get(server["base"] + "metrics")).content()).decode()
    assert "cellserver_unread_closes_total 1.0" in metrics
    ws = await KernelWS.connect(reactor, f"{info['ws_url']}kernel/{info['id']}/channels")
    assert stdout_of(await ws.run("print('still here')", timeout=30)) == "still here\n"
    ws.close()


@pytest_twisted.ensureDeferred
async def test_kernel_messages_larger_than_the_clients_frame_limit_reach_the_page(server):
    """--max-frame (100 kB here) limits what a page sends; Autobahn applied it to what
    we send as well, and a 150 kB print (under --output-cap, 200 kB) was lost."""
    info, ws = await open_kernel(server["base"])
    assert stdout_of(await ws.run("print('y' * 150_000)")) == "y" * 150_000 + "\n"
    ws.close()


@pytest_twisted.ensureDeferred
async def test_silent_http_connections_are_closed_but_websockets_stay(module_children, tmp_path):
    """--http-idle-timeout (1 s here; Twisted's own default is 12 hours): a
    connection that sends half a request head, or an idle keep-alive, is
    closed once silent that long; an open websocket is not."""
    import socket
    import time
    base, child, _ = start_cellserver(module_children, tmp_path, name="t3", extra=["--http-idle-timeout", "1"])
    port = int(base.rsplit(":", 1)[1].strip("/"))

    def closed_after(first: bytes) -> tuple[float, bytes]:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        t0 = time.monotonic()
        s.sendall(first)
        data = b""
        while True:
            chunk = s.recv(65536)        # blocking, in the test's thread: the server is another process
            if not chunk:
                break
            data += chunk
        s.close()
        return time.monotonic() - t0, data

    took, data = closed_after(b"POST /service HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
    assert data == b"" and 0.8 < took < 6, (took, data)
    took, data = closed_after(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200") and 0.8 < took < 6, (took, data[:100])
    info, ws = await open_kernel(base)
    await deferLater(reactor, 2.5, lambda: None)
    assert stdout_of(await ws.run("print(1)")) == "1\n"
    ws.close()
