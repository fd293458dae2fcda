"""The edge end to end on loopback: a real ``twistd edgeproxy`` with TLS in
front of two real ``twistd cellserver`` nodes (and a plain HTTP backend for
streaming), driven by real clients."""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet import ssl as tssl

from tests.support.ports import free_port
from tests.support.procs import http_ok, kernel_runtime_dir, wait_until
from tests.support.wsclient import KernelWS, stdout_of

pytestmark = pytest.mark.integration

BIG = 40 * 1024 * 1024


def cellserver(children, tmp, name):
    port = free_port()
    child = children.twistd(name, "cellserver", [
        "--node", name, "--listen", f"tcp:{port}:interface=127.0.0.1", "--runtime-dir", kernel_runtime_dir(name),
        "--ready-kernels", "1", "--max-kernels", "6", "--trusted-proxies", "127.0.0.1", "--preload", ""])
    return port, child


@pytest.fixture(scope="module")
def cluster(module_children, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("edge")
    subprocess.run([sys.executable, "-m", "certs.devca", "--dir", str(tmp / "certs"), "--quiet"], check=True)
    p1, c1 = cellserver(module_children, tmp, "e2e1")
    p2, c2 = cellserver(module_children, tmp, "e2e2")
    (tmp / "big.bin").write_bytes(os.urandom(1024) * (BIG // 1024))
    (tmp / "healthz").write_text('{"free": 0}')   # the plain backend passes health checks
    plain = free_port()
    backend = module_children.start("plain", [sys.executable, "-c", (
        "import http.server, functools, sys\n"
        "http.server.SimpleHTTPRequestHandler.protocol_version = 'HTTP/1.1'\n"
        f"h = functools.partial(http.server.SimpleHTTPRequestHandler, directory={str(tmp)!r})\n"
        f"http.server.ThreadingHTTPServer(('127.0.0.1', {plain}), h).serve_forever()\n")])
    https, http_port = free_port(), free_port()
    static = tmp / "static"
    static.mkdir()
    (static / "app.js").write_text("console.log('cellstack');\n" * 200)
    c = tmp / "certs"
    edge = module_children.twistd("edge", "edgeproxy", [
        "--listen", f"ssl:{https}:interface=127.0.0.1:privateKey={c}/server.key:certKey={c}/server.crt"
                    f":extraCertChain={c}/chain.pem",
        "--http-listen", f"tcp:{http_port}:interface=127.0.0.1",
        "--cells", f"e2e1=http://127.0.0.1:{p1},e2e2=http://127.0.0.1:{p2},plain=http://127.0.0.1:{plain}",
        "--static-dir", str(static), "--check-interval", "0.2", "--check-timeout", "0.3",
        "--compute-rate", "0.05", "--compute-burst", "3", "--access-log", str(tmp / "access.jsonl"),
        "--metrics-from", "127.0.0.1/32"])
    ctx = ssl.create_default_context(cafile=str(c / "ca.pem"))
    info = {"https": https, "http": http_port, "ctx": ctx, "edge": edge, "c1": c1, "c2": c2, "tmp": tmp,
            "ca": str(c / "ca.pem"), "certs": c}

    def health():
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=2)
        conn.request("GET", "/healthz")
        return json.loads(conn.getresponse().read())

    info["health"] = health
    wait_until(lambda: all(health()["cells"][n]["up"] for n in ("e2e1", "e2e2", "plain")), 60,
               "both cell servers up behind the edge", child=edge)
    return info


def https_conn(cluster, source="127.0.0.1"):
    return http.client.HTTPSConnection("localhost", cluster["https"], context=cluster["ctx"], timeout=10,
                                       source_address=(source, 0))


def test_the_edge_runs_on_its_own_reactor(cluster):
    assert "reactor class: edgeproxy.reactor.EdgeReactor" in cluster["edge"].log(tail=100_000)


def test_tls_keep_alive_alpn_hsts_and_resumption(cluster):
    conn = https_conn(cluster)
    for _ in range(3):
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("strict-transport-security")
        r.read()
    sock = conn.sock
    assert sock.version() in ("TLSv1.2", "TLSv1.3")
    conn.close()
    ctx = ssl.create_default_context(cafile=cluster["ca"])
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", cluster["https"])) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.selected_alpn_protocol() == "http/1.1"
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            while s.recv(65536):
                pass
            session = s.session
    with socket.create_connection(("127.0.0.1", cluster["https"])) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            assert s.session_reused


def test_old_tls_is_refused(cluster):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cluster["ca"])
    with pytest.warns(DeprecationWarning):
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        with socket.create_connection(("127.0.0.1", cluster["https"])) as raw:
            ctx.wrap_socket(raw, server_hostname="localhost")


def test_plain_http_redirects_except_healthz(cluster):
    conn = http.client.HTTPConnection("127.0.0.1", cluster["http"], timeout=5)
    conn.request("GET", "/kernel?x=1", headers={"Host": "localhost:9"})
    r = conn.getresponse()
    assert r.status == 301 and r.getheader("location") == f"https://localhost:{cluster['https']}/kernel?x=1"
    r.read()
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200


def test_static_from_the_edge_with_etag_and_gzip(cluster):
    conn = https_conn(cluster)
    conn.request("GET", "/static/app.js", headers={"Accept-Encoding": "gzip"})
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200 and r.getheader("content-encoding") == "gzip" and len(body) < 2000
    conn.request("GET", "/static/app.js", headers={"If-None-Match": r.getheader("etag")})
    r = conn.getresponse()
    r.read()
    assert r.status == 304


def test_metrics_only_for_the_configured_networks(cluster):
    conn = https_conn(cluster)
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    assert r.status == 200 and b"edge_requests_total" in r.read()
    other = https_conn(cluster, source="127.0.0.9")
    other.request("GET", "/metrics")
    r = other.getresponse()
    assert r.status == 403 and json.loads(r.read())["error"] == "forbidden"


def test_service_through_the_edge_and_access_log(cluster):
    conn = https_conn(cluster, "127.0.0.9")
    conn.request("POST", "/service", body="code=print(6*7)",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = conn.getresponse()
    body = json.loads(r.read())
    assert r.status == 200 and body["stdout"] == "42\n", body
    lines = [json.loads(x) for x in (cluster["tmp"] / "access.jsonl").read_text().splitlines()]
    assert any(x["target"] == "/service" and x["ip"] == "127.0.0.9" and x["status"] == 200 for x in lines)


def test_per_ip_rate_limits_from_distinct_addresses(cluster):
    def post(source):
        conn = https_conn(cluster, source)
        conn.request("POST", "/kernel", body="timeout=0", headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = conn.getresponse()
        r.read()
        return r.status, r.getheader("retry-after")

    got = [post("127.0.0.2") for _ in range(4)]
    assert [s for s, _ in got[:3]] == [200, 200, 200]
    assert got[3][0] == 429 and int(got[3][1]) >= 1
    assert post("127.0.0.3")[0] == 200     # another address is not limited
    # A limited POST on a keep-alive connection: its body is not read, so the
    # answer says Connection: close (and a GET after it on a new one works).
    conn = https_conn(cluster, "127.0.0.2")
    conn.request("POST", "/kernel", body="timeout=0", headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = conn.getresponse()
    r.read()
    assert r.status == 429 and r.getheader("connection") == "close"
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200


def test_bad_requests_are_rejected_and_the_edge_survives(cluster):
    def raw(data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", cluster["https"])) as s:
            with cluster["ctx"].wrap_socket(s, server_hostname="localhost") as t:
                t.sendall(data)
                out = b""
                t.settimeout(5)
                try:
                    while chunk := t.recv(65536):
                        out += chunk
                except (TimeoutError, ssl.SSLError, ConnectionResetError):
                    pass
                return out

    assert raw(b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 20000 + b"\r\n\r\n").startswith(b"HTTP/1.1 431")
    smuggle = (b"POST /service HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    out = raw(smuggle)
    assert out.startswith(b"HTTP/1.1 400") and out.count(b"HTTP/1.1") == 1
    assert raw(b"POST /service HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").startswith(b"HTTP/1.1")
    assert raw(b"GET / HTTP/3.0\r\nHost: a\r\n\r\n").startswith(b"HTTP/1.1 505")
    t0 = time.monotonic()
    assert raw(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: x\n\r\n").startswith(b"HTTP/1.1 400")   # bare LF
    assert time.monotonic() - t0 < 4                   # at once, not after the head timeout
    assert cluster["edge"].alive()
    conn = https_conn(cluster)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200


def test_large_response_to_a_slow_reader_is_streamed_not_buffered(cluster):
    edge_pid = cluster["edge"].pid

    def rss_kb():
        with open(f"/proc/{edge_pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))

    before = rss_kb()
    with socket.create_connection(("127.0.0.1", cluster["https"])) as s:
        with cluster["ctx"].wrap_socket(s, server_hostname="localhost") as t:
            t.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\nJupyter-Kernel-ID: plain-" + b"0" * 32 + b"\r\n\r\n")
            got = t.recv(65536)
            assert got.startswith(b"HTTP/1.1 200")
            time.sleep(1.5)          # stall: the edge must pause the backend, not buffer 40 MB
            stalled = rss_kb()
            total = len(got)
            while total < BIG:
                chunk = t.recv(1 << 20)
                if not chunk:
                    break
                total += len(chunk)
    assert total >= BIG
    assert stalled - before < 16 * 1024, (before, stalled)


@pytest_twisted.ensureDeferred
async def test_websocket_through_the_edge_and_close_frame_when_its_server_dies(cluster):
    import treq
    from twisted.internet.task import deferLater
    from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

    ca = tssl.Certificate.loadPEM(open(cluster["ca"], "rb").read())
    sources = iter(f"127.0.1.{i}" for i in range(1, 250))

    def client():
        # Each request from its own loopback address: the edge limits computations per IP.
        return treq.client.HTTPClient(Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=ca),
                                            bindAddress=(next(sources), 0)))

    base = f"https://localhost:{cluster['https']}/"
    others = []
    for _ in range(10):   # new work goes to the server with most free kernels; we want one on e2e1
        resp = await client().post(base + "kernel", data={"timeout": "30"})
        info = json.loads(await resp.content())
        if resp.code == 200 and info["id"].startswith("e2e1-"):
            break
        others.append(info.get("id", "x"))   # held until e2e1 wins, so e2e2's free count stays down
        cells = cluster["health"]()["cells"]      # the edge learns free counts from its checks (0.2 s)
        deadline = time.monotonic() + 2
        while cells["e2e2"]["free"] > cells["e2e1"]["free"] and time.monotonic() < deadline:
            await deferLater(reactor, 0.1, lambda: None)
            cells = cluster["health"]()["cells"]
    for other in others:
        await client().delete(base + f"kernel/{other}")
    assert info["id"].startswith("e2e1-"), info
    assert info["ws_url"] == f"wss://localhost:{cluster['https']}/"
    ws = await _wss(info["ws_url"] + f"kernel/{info['id']}/channels", cluster)
    assert stdout_of(await ws.run("print('through the edge')")) == "through the edge\n"
    os.kill(cluster["c1"].pid, signal.SIGKILL)
    code, reason = await ws.closed(10)
    assert code in (4502, 4500), (code, reason)
    wait_until(lambda: not cluster["health"]()["cells"]["e2e1"]["up"], 5, "e2e1 marked down")
    for _ in range(3):   # new work now goes to the survivor only
        resp = await client().post(base + "kernel", data={"timeout": "0"})
        body = json.loads(await resp.content())
        assert resp.code == 200 and body["id"].startswith("e2e2-"), body


async def _wss(url, cluster):
    ws = KernelWS(reactor)
    from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
    from twisted.internet import defer

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
                opened.errback(ConnectionError(f"{code} {reason}"))
            if not ws._closed.called:
                ws._closed.callback(ws.close_info)

    factory = WebSocketClientFactory(url)
    factory.protocol = Proto
    ca = tssl.Certificate.loadPEM(open(cluster["ca"], "rb").read())
    connectWS(factory, contextFactory=tssl.optionsForClientTLS("localhost", trustRoot=ca), timeout=10)
    return await opened.addTimeout(10, reactor)


def test_stopped_server_is_caught_by_the_check_timeout(cluster):
    c2 = cluster["c2"]
    if not c2.alive():
        pytest.skip("e2e2 is not running")
    c2.signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        wait_until(lambda: not cluster["health"]()["cells"]["e2e2"]["up"], 5, "e2e2 (stopped) marked down")
        assert time.monotonic() - t0 < 2.5
    finally:
        c2.signal(signal.SIGCONT)
    wait_until(lambda: cluster["health"]()["cells"]["e2e2"]["up"], 10, "e2e2 back up after SIGCONT")


def test_certificate_reload_on_sighup_keeps_open_connections(cluster):
    conn = https_conn(cluster)
    conn.request("GET", "/healthz")
    conn.getresponse().read()
    old = conn.sock.getpeercert(binary_form=True)
    (cluster["certs"] / "server.crt").unlink()   # devca makes a new server certificate
    subprocess.run([sys.executable, "-m", "certs.devca", "--dir", str(cluster["certs"]), "--quiet"], check=True)
    cluster["edge"].popen.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    conn.request("GET", "/healthz")                # the open connection still works
    assert conn.getresponse().status == 200
    fresh = https_conn(cluster)
    fresh.request("GET", "/healthz")
    fresh.getresponse().read()
    assert fresh.sock.getpeercert(binary_form=True) != old
