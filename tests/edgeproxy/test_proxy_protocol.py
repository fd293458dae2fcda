"""The PROXY protocol end to end: a real ``twistd edgeproxy --proxy-protocol``
trusting 127.0.0.1 only, in front of a backend that echoes the
``X-Forwarded-For`` it got, with clients bound to other loopback addresses
playing the untrusted internet."""
from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import sys

import pytest

from edgeproxy import proxyheader as PH
from tests.support.ports import free_port
from tests.support.procs import http_ok, wait_until

pytestmark = pytest.mark.integration

ECHO = """
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def _answer(self):
        n = int(self.headers.get('content-length') or 0)
        self.rfile.read(n)
        body = json.dumps({'free': 1} if self.path == '/healthz'
                          else {'xff': self.headers.get_all('x-forwarded-for'),
                                'xfp': self.headers.get_all('x-forwarded-proto')}).encode()
        self.send_response(200)
        self.send_header('content-type', 'application/json')
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = _answer
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
"""


@pytest.fixture(scope="module")
def edge(module_children, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("proxyproto")
    subprocess.run([sys.executable, "-m", "certs.devca", "--dir", str(tmp / "certs"), "--quiet"], check=True)
    backend = free_port()
    module_children.start("echo", [sys.executable, "-c", ECHO, str(backend)])
    https, plain, https6, redirect = free_port(), free_port(), free_port(), free_port()
    c = tmp / "certs"
    child = module_children.twistd("edge-pp", "edgeproxy", [
        "--listen", f"ssl:{https}:interface=127.0.0.1:privateKey={c}/server.key:certKey={c}/server.crt",
        "--listen", f"tcp:{plain}:interface=127.0.0.1",
        "--listen", rf"ssl:{https6}:interface=\:\:1:privateKey={c}/server.key:certKey={c}/server.crt",
        "--http-listen", f"tcp:{redirect}:interface=127.0.0.1",
        "--cells", f"echo=http://127.0.0.1:{backend}", "--proxy-protocol", "--trusted-proxies", "127.0.0.1/32,::1",
        "--compute-rate", "0.05", "--compute-burst", "2", "--head-timeout", "2",
        "--access-log", str(tmp / "access.jsonl")])
    wait_until(lambda: http_ok(f"http://127.0.0.1:{plain}/healthz") and b'"up": true' in _get_raw(plain),
               60, "the edge and its backend up", child=child)
    return {"https": https, "plain": plain, "https6": https6, "redirect": redirect, "child": child, "ca": str(c / "ca.pem"), "tmp": tmp}


def _get_raw(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        return _read_all(s)


def _read_all(s) -> bytes:
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except (TimeoutError, ConnectionResetError, ssl.SSLError):
        pass
    return out


def exchange(edge, header: bytes, request: bytes, source="127.0.0.1", tls=False) -> bytes:
    """Send ``header`` on a fresh connection from ``source``, then ``request`` (over TLS if asked;
    from ``::1`` to the edge's IPv6 TLS listener)."""
    host, port = ("::1", edge["https6"]) if source == "::1" else ("127.0.0.1", edge["https"] if tls else edge["plain"])
    with socket.create_connection((host, port), timeout=5, source_address=(source, 0)) as raw:
        if not tls:
            raw.sendall(header + request)     # one write: an aborted connection cannot reset a second one
            return _read_all(raw)
        raw.sendall(header)
        ctx = ssl.create_default_context(cafile=edge["ca"])
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(request)
            return _read_all(s)


def request(method="GET", path="/echo", body=b"", extra="") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def answer(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body or b"{}")


def hsts(raw: bytes) -> bool:
    return b"\r\nstrict-transport-security:" in raw.partition(b"\r\n\r\n")[0].lower()


def test_a_trusted_balancer_names_the_client_in_v1_and_v2_plain_and_tls(edge):
    status, body = answer(exchange(edge, PH.encode_v1(("203.0.113.7", 5555), ("127.0.0.1", 443)), request()))
    assert status == 200 and body["xff"] == ["203.0.113.7"]
    status, body = answer(exchange(edge, PH.encode_v2(("2001:db8::42", 7000), ("2001:db8::1", 443)), request(),
                                   tls=True))
    assert status == 200 and body["xff"] == ["2001:db8::42"]
    status, body = answer(exchange(edge, PH.encode_v1(("198.51.100.3", 1), ("127.0.0.1", 443)), request(), tls=True))
    assert status == 200 and body["xff"] == ["198.51.100.3"]
    lines = [json.loads(x) for x in (edge["tmp"] / "access.jsonl").read_text().splitlines()]
    assert {"203.0.113.7", "2001:db8::42", "198.51.100.3"} <= {x["ip"] for x in lines}


def test_an_ipv6_listener_and_balancer(edge):
    status, body = answer(exchange(edge, PH.encode_v2(("203.0.113.70", 1), ("192.0.2.1", 443)), request(), source="::1",
                                   tls=True))
    assert status == 200 and body["xff"] == ["203.0.113.70"]
    assert answer(exchange(edge, b"", request(), source="::1", tls=True))[1]["xff"] == ["::1"]


def test_the_scheme_the_browser_used_comes_from_trusted_peers_only(edge):
    """A balancer that terminated TLS says so (X-Forwarded-Proto, or PROXY v2's
    SSL TLV): the cell server must hand out wss:// URLs, and answers get HSTS."""
    out = exchange(edge, b"", request(extra="X-Forwarded-Proto: https\r\n"))
    assert answer(out)[1]["xfp"] == ["https"] and hsts(out)
    out = exchange(edge, PH.encode_v2(("203.0.113.5", 1), ("192.0.2.1", 443), tls=True), request())
    assert answer(out)[1] == {"xff": ["203.0.113.5"], "xfp": ["https"]} and hsts(out)
    out = exchange(edge, PH.encode_v2(("203.0.113.5", 1), ("192.0.2.1", 80)), request())
    assert answer(out)[1]["xfp"] == ["http"] and not hsts(out)
    out = exchange(edge, b"", request(extra="X-Forwarded-Proto: https\r\n"), source="127.0.0.2")
    assert answer(out)[1]["xfp"] == ["http"] and not hsts(out)          # not believed from anyone else
    out = exchange(edge, b"", request(), tls=True)
    assert answer(out)[1]["xfp"] == ["https"] and hsts(out)
    # the redirecting listener sends plain http to https, but not what a trusted balancer says was https
    to_redirect = dict(edge, plain=edge["redirect"])
    assert exchange(to_redirect, b"", request(), source="127.0.0.2").startswith(b"HTTP/1.1 301")
    assert exchange(to_redirect, b"", request(extra="X-Forwarded-Proto: https\r\n"),
                    source="127.0.0.2").startswith(b"HTTP/1.1 301")
    assert answer(exchange(to_redirect, b"", request(extra="X-Forwarded-Proto: https\r\n")))[1]["xfp"] == ["https"]


def test_a_trusted_peer_may_also_send_no_header_or_local(edge):
    assert answer(exchange(edge, b"", request()))[1]["xff"] == ["127.0.0.1"]
    assert answer(exchange(edge, b"", request(), tls=True))[1]["xff"] == ["127.0.0.1"]
    assert answer(exchange(edge, PH.encode_v2(None), request(), tls=True))[1]["xff"] == ["127.0.0.1"]


def test_an_untrusted_peer_cannot_name_a_client(edge):
    out = exchange(edge, PH.encode_v1(("203.0.113.7", 5555), ("127.0.0.1", 443)), request(), source="127.0.0.2")
    assert out.startswith(b"HTTP/1.1 400")
    # From an untrusted peer the header is the start of the TLS stream, which
    # OpenSSL rejects at its first record: a TLS error, or the connection
    # already gone when the client writes (reset, broken pipe).
    with pytest.raises((ssl.SSLError, ConnectionError)):
        exchange(edge, PH.encode_v2(("203.0.113.7", 5555), ("127.0.0.1", 443)), request(), source="127.0.0.2",
                 tls=True)
    assert answer(exchange(edge, b"", request(), source="127.0.0.2"))[1]["xff"] == ["127.0.0.2"]


def test_rate_limits_count_the_named_clients_not_the_balancer(edge):
    def post(client):
        return answer(exchange(edge, PH.encode_v1((client, 1000), ("127.0.0.1", 443)),
                               request("POST", "/service", b"code=1"), tls=True))[0]

    assert [post("192.0.2.10") for _ in range(3)] == [200, 200, 429]
    assert post("192.0.2.11") == 200               # another client behind the same balancer


def test_a_bad_or_missing_header_closes_that_connection_only(edge):
    assert exchange(edge, b"PROXY TCP4 1.2.3.4 nonsense\r\n", request()) == b""
    assert exchange(edge, b"PROXY TCP4 1.2.3.4 ", b"") == b""          # never finished: closed at the timeout
    assert exchange(edge, PH.V2_SIGNATURE + b"\x21\x11\xff\xff", b"") == b""
    assert edge["child"].alive()
    assert "bad PROXY header from 127.0.0.1" in edge["child"].log(tail=100_000)
    with socket.create_connection(("127.0.0.1", edge["plain"]), timeout=5, source_address=("127.0.0.3", 0)) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        metrics = _read_all(s).decode()
    assert 'edge_rejected_total{what="proxy_header"} 3.0' in metrics
    assert answer(exchange(edge, PH.encode_v1(("203.0.113.8", 1), ("127.0.0.1", 1)), request()))[0] == 200


HAPROXY_TCP = """
global
    nbthread 1
defaults
    mode tcp
    timeout connect 3s
    timeout client 30s
    timeout server 30s
listen tls_v2
    bind 127.0.0.1:{tls_in}
    server edge 127.0.0.1:{https} send-proxy-v2
listen plain_v1
    bind 127.0.0.1:{plain_in}
    server edge 127.0.0.1:{plain} send-proxy
listen tls_terminated
    bind 127.0.0.1:{term_in} ssl crt {pem}
    server edge 127.0.0.1:{plain} send-proxy-v2-ssl
"""


def test_real_haproxy_in_tcp_mode_passes_the_client_through(edge, children, tmp_path):
    tls_in, plain_in, term_in = free_port(), free_port(), free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(HAPROXY_TCP.format(tls_in=tls_in, plain_in=plain_in, term_in=term_in, https=edge["https"],
                                      plain=edge["plain"], pem=edge["tmp"] / "certs" / "server.pem"))
    children.start("haproxy", [shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", str(cfg)])
    via = dict(edge, https=tls_in, plain=plain_in)

    def up():
        try:
            return answer(exchange(via, b"", request(), source="127.0.0.6"))[0] == 200
        except OSError:
            return False

    wait_until(up, 20, "haproxy in front of the edge")
    assert answer(exchange(via, b"", request(), source="127.0.0.6"))[1]["xff"] == ["127.0.0.6"]       # v1
    assert answer(exchange(via, b"", request(), source="127.0.0.7", tls=True))[1]["xff"] == ["127.0.0.7"]  # v2
    out = exchange(dict(via, https=term_in), b"", request(), source="127.0.0.8", tls=True)   # v2 with the SSL TLV
    assert answer(out)[1] == {"xff": ["127.0.0.8"], "xfp": ["https"]} and hsts(out)
