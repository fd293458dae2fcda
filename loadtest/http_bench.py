"""ab and httperf against the edge: the page, a static asset, ``/service``
and permalink GET/POST, the way operators hammer the front.

For each target it runs ApacheBench (keep-alive, ``-c`` concurrent) and,
for the GET targets, httperf (a fixed request rate over fresh connections:
what many distinct browsers do), then prints one table: requests/s, latency
p50/p90/p99 (ab's percentile table; httperf reports only the mean), and how
the answers split into 2xx, 429 (rate limited, by design) and errors
(anything else, or a failed connection).  The status split comes from the
edge's own ``/metrics`` (``edge_requests_total`` by route and status), read
before and after each run, because ab counts only "non-2xx" and httperf only
"4xx".  Pointed at a cell server instead (``--url http://127.0.0.1:8101/``),
it measures ``/service`` there, split by ``cellserver_http_requests_total``.

The edge's rate limits apply: from one address, ``/service`` and permalink
runs are mostly 429 with the default limits.  That is the point of the 429
column; to measure throughput instead, run against a cluster file with high
``compute-rate``/``permalink-rate`` (see ``tests/deploy/test_cluster_e2e.py``).

    python -m loadtest.http_bench --url https://localhost:8443/ --requests 2000 --concurrency 50
    python -m loadtest.http_bench --targets page,static --tools ab --json var/http_bench.json

Traffic goes only to loopback (the tool refuses anything else); every run is
bounded by ``--requests`` and ab's/httperf's own ``--timeout``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

from loadtest.sessions import check_loopback
from loadtest.stats import percentile


@dataclass(frozen=True)
class Target:
    name: str
    route: str             # the edge's route label in edge_requests_total
    path: str
    body: str | None = None    # form body: POST when set
    share: float = 1.0         # fraction of --requests (computations are expensive)
    cell_endpoint: str | None = None   # the cell server's endpoint label, where it serves this


def targets(permalink_id: str) -> dict[str, Target]:
    form = urllib.parse.urlencode
    return {t.name: t for t in (
        Target("page", "new", "/"),
        Target("static", "static", "/static/cell.css"),
        Target("service", "new", "/service", form({"code": "print(1+1)", "accepted_tos": "true"}), share=0.05,
               cell_endpoint="service"),
        Target("permalink-get", "permalink", f"/permalink?q={permalink_id}"),
        Target("permalink-post", "permalink", "/permalink",
               form({"code": "print('http_bench')", "language": "python", "n": "1"}), share=0.25),
    )}


@dataclass
class Result:
    target: str
    tool: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    ok: int                  # 2xx/3xx as the edge counted them
    limited: int             # 429
    errors: int              # other statuses, plus requests the edge never answered
    tool_failures: int       # what the tool itself counted as failed (connect/receive/length)
    statuses: dict[str, int] = field(default_factory=dict)


# -- parsing (pure) ---------------------------------------------------------------------------

def parse_ab(text: str, percentiles_csv: str, gnuplot_tsv: str = "") -> dict:
    """ab's summary, its ``-e`` CSV (percent, ms) and ``-g`` data -> figures.

    The CSV has microseconds but is garbage for small runs (ab reads past its
    table: p95 below p0), so it is used only when it is non-decreasing;
    otherwise the percentiles come from the per-request ``-g`` data (whole ms)."""
    def num(pattern, cast=float, default=0):
        m = re.search(pattern, text, re.M)
        return cast(m.group(1)) if m else default
    pct = {}
    for line in percentiles_csv.splitlines()[1:]:
        p, _, ms = line.partition(",")
        try:
            pct[int(float(p))] = float(ms)
        except ValueError:
            continue
    values = [pct[k] for k in sorted(pct)]
    if not values or any(b < a for a, b in zip(values, values[1:])):
        totals = sorted(float(row.split("\t")[4]) for row in gnuplot_tsv.splitlines()[1:]
                        if row.count("\t") >= 5)
        pct = {p: percentile(totals, p) for p in (50, 90, 99)} if totals else {}
    return {
        "complete": num(r"^Complete requests:\s+(\d+)", int),
        "failed": num(r"^Failed requests:\s+(\d+)", int),
        "seconds": num(r"^Time taken for tests:\s+([\d.]+)"),
        "rps": num(r"^Requests per second:\s+([\d.]+)"),
        "mean_ms": num(r"^Time per request:\s+([\d.]+) \[ms\] \(mean\)$"),
        "p50_ms": pct.get(50), "p90_ms": pct.get(90), "p99_ms": pct.get(99),
    }


def parse_httperf(text: str) -> dict:
    """httperf's summary -> figures; req/s is replies over the test's duration
    (its own "reply rate" needs runs of 5 s or more to have samples)."""
    def num(pattern, cast=float, default=0):
        m = re.search(pattern, text, re.M)
        return cast(m.group(1)) if m else default
    replies = num(r"^Total: connections \d+ requests \d+ replies (\d+)", int)
    seconds = num(r"^Total: .* test-duration ([\d.]+) s")
    return {
        "complete": replies,
        "failed": num(r"^Errors: total (\d+)", int),
        "seconds": seconds,
        "rps": replies / seconds if seconds else 0.0,
        "mean_ms": num(r"^Reply time \[ms\]: response ([\d.]+)"),
        "p50_ms": None, "p90_ms": None, "p99_ms": None,
    }


_METRIC = re.compile(r'^(?:edge_requests_total\{route|cellserver_http_requests_total\{endpoint)'
                     r'="([^"]*)",status="(\d+)"\} ([\d.e+]+)$', re.M)


def request_counts(metrics_text: str) -> dict[tuple[str, str], float]:
    """``edge_requests_total`` (or a cell server's ``cellserver_http_requests_total``)
    samples -> {(route or endpoint, status): count}."""
    return {(r, s): float(v) for r, s, v in _METRIC.findall(metrics_text)}


def status_split(before: dict, after: dict, route: str, sent: int) -> tuple[int, int, int, dict[str, int]]:
    """(ok, 429, errors, by status) for one route between two metric reads;
    requests the edge never answered (sent - counted) count as errors."""
    by_status = {}
    for (r, s), v in after.items():
        d = int(round(v - before.get((r, s), 0.0)))
        if r == route and d > 0:
            by_status[s] = d
    ok = sum(n for s, n in by_status.items() if s[0] in "23")
    limited = by_status.get("429", 0)
    other = sum(by_status.values()) - ok - limited
    return ok, limited, other + max(0, sent - sum(by_status.values())), by_status


# -- running ----------------------------------------------------------------------------------

class Bench:
    def __init__(self, url: str, cafile: str | None, timeout: float):
        check_loopback(url)
        self.url = url.rstrip("/")
        u = urlsplit(url)
        self.https = u.scheme == "https"
        self.host, self.port = u.hostname, u.port or (443 if self.https else 80)
        self.ctx = ssl.create_default_context(cafile=cafile) if self.https else None
        self.timeout = timeout
        self.cell_server = "cellserver_" in self.fetch("/metrics").decode()

    def fetch(self, path: str, data: bytes | None = None) -> bytes:
        req = urllib.request.Request(self.url + path, data=data)
        with urllib.request.urlopen(req, timeout=10, context=self.ctx) as r:
            return r.read()

    def metrics(self) -> dict:
        return request_counts(self.fetch("/metrics").decode())

    def make_permalink(self) -> str:
        body = urllib.parse.urlencode({"code": "print('a permalink to read')", "language": "python"}).encode()
        return json.loads(self.fetch("/permalink", body))["query"]

    def ab(self, t: Target, n: int, c: int) -> tuple[dict, int]:
        with tempfile.TemporaryDirectory() as d:
            csv, tsv = os.path.join(d, "pct.csv"), os.path.join(d, "requests.tsv")
            cmd = ["ab", "-q", "-k", "-n", str(n), "-c", str(min(c, n)), "-s", str(int(self.timeout)),
                   "-e", csv, "-g", tsv, "-r", "-H", "Accept-Encoding: gzip"]
            if self.https:
                cmd += ["-f", "TLS1.2"]
            if t.body is not None:
                post = os.path.join(d, "body")
                with open(post, "w") as f:
                    f.write(t.body)
                cmd += ["-p", post, "-T", "application/x-www-form-urlencoded"]
            cmd.append(self.url + t.path)
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout + n)
            if out.returncode != 0 and "Complete requests" not in out.stdout:
                raise RuntimeError(f"ab failed: {out.stderr.strip() or out.stdout[-500:]}")
            def read(path):
                return open(path).read() if os.path.exists(path) else ""
            return parse_ab(out.stdout, read(csv), read(tsv)), n

    def httperf(self, t: Target, n: int, rate: float) -> tuple[dict, int]:
        calls = 10                       # requests per connection
        conns = max(1, n // calls)
        # Accept-Encoding as every browser sends it.  It also keeps httperf clear of
        # its TLS bug: it reads 8 KB at a time and waits on select(), so the rest
        # of a larger last TLS record stays in OpenSSL's buffer and the reply
        # never completes (seen with a 9.5 KB stylesheet sent uncompressed).
        cmd = ["httperf", "--hog", "--server", self.host, "--port", str(self.port), "--uri", t.path,
               "--num-conns", str(conns), "--num-calls", str(calls), "--rate", str(rate),
               "--timeout", str(self.timeout), "--add-header", "Accept-Encoding: gzip\\n"]
        if self.https:
            cmd.append("--ssl")
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout + conns / rate + 30)
        if "Total: connections" not in out.stdout:
            raise RuntimeError(f"httperf failed: {out.stderr.strip()[-500:]}")
        return parse_httperf(out.stdout), conns * calls

    def run(self, t: Target, tool: str, n: int, c: int, rate: float) -> Result:
        before = self.metrics()
        figures, sent = self.ab(t, n, c) if tool == "ab" else self.httperf(t, n, rate)
        time.sleep(0.2)                  # the edge counts a request when its exchange finishes
        route = t.cell_endpoint if self.cell_server else t.route
        ok, limited, errors, statuses = status_split(before, self.metrics(), route, sent)
        return Result(t.name, tool, sent, figures["seconds"], figures["rps"], figures["p50_ms"],
                      figures["p90_ms"], figures["p99_ms"], figures["mean_ms"], ok, limited, errors,
                      figures["failed"], statuses)


def _ms(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def table(results: list[Result]) -> str:
    head = (f"{'target':16}{'tool':9}{'requests':>9}{'req/s':>10}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}"
            f"{'mean ms':>9}{'ok':>7}{'429':>7}{'errors':>7}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r.target:16}{r.tool:9}{r.requests:>9}{r.rps:>10.1f}{_ms(r.p50_ms):>8}{_ms(r.p90_ms):>8}"
                     f"{_ms(r.p99_ms):>8}{_ms(r.mean_ms):>9}{r.ok:>7}{r.limited:>7}{r.errors:>7}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="https://localhost:8443/")
    ap.add_argument("--cafile", help="CA of the edge's certificate (default: var/certs/ca.pem if present)")
    ap.add_argument("--requests", type=int, default=2000, help="per target (computations get a share of it)")
    ap.add_argument("--concurrency", type=int, default=50, help="ab -c")
    ap.add_argument("--rate", type=float, default=200.0, help="httperf connections per second")
    ap.add_argument("--targets", default="page,static,service,permalink-get,permalink-post")
    ap.add_argument("--tools", default="ab,httperf")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per request, and bound per run")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cafile = args.cafile or next((p for p in [os.path.join(root, "var", "certs", "ca.pem")] if os.path.exists(p)),
                                 None)
    bench = Bench(args.url, cafile, args.timeout)
    chosen = [x.strip() for x in args.targets.split(",") if x.strip()]
    if bench.cell_server:
        all_targets = {n: t for n, t in targets("-").items() if t.cell_endpoint}
        if args.targets == ap.get_default("targets"):
            chosen = list(all_targets)
    else:
        all_targets = targets(bench.make_permalink())
    unknown = [x for x in chosen if x not in all_targets]
    if unknown:
        ap.error(f"unknown targets {unknown} for this server; it has: {', '.join(all_targets)}")
    tools = [x.strip() for x in args.tools.split(",") if x.strip()]
    results = []
    for name in chosen:
        t = all_targets[name]
        n = max(10, int(args.requests * t.share))
        for tool in tools:
            if tool == "httperf" and t.body is not None:
                continue                 # httperf sends no form bodies without a session log: ab covers POSTs
            results.append(bench.run(t, tool, n, args.concurrency, args.rate))
            print(table(results[-1:]).splitlines()[-1], flush=True)
    print()
    print(f"{len(results)} runs against {args.url} (ab: keep-alive, c={args.concurrency}; "
          f"httperf: {args.rate:g} conn/s, 10 requests each)")
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in results], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
