"""The ab/httperf driver's pure parts, on outputs the real tools printed
(tests/loadtest/data/, captured from ab 2.3 and httperf on this machine)."""
from pathlib import Path

from loadtest.http_bench import parse_ab, parse_httperf, request_counts, status_split

DATA = Path(__file__).parent / "data"


def test_ab_summary_and_percentiles_from_the_per_request_data_when_the_csv_is_garbage():
    csv = (DATA / "ab-small.csv").read_text()
    assert "95,0.257" in csv                      # ab's bug for small runs: p95 below p0
    got = parse_ab((DATA / "ab.txt").read_text(), csv, (DATA / "ab-small.tsv").read_text())
    assert (got["complete"], got["failed"], got["rps"], got["mean_ms"]) == (10, 0, 443.24, 11.280)
    totals = sorted(float(r.split("\t")[4]) for r in (DATA / "ab-small.tsv").read_text().splitlines()[1:])
    assert got["p50_ms"] == totals[4] and got["p99_ms"] == totals[-1]


def test_ab_percentiles_from_a_sane_csv():
    csv = "Percentage served,Time in ms\n" + "".join(f"{p},{1 + p / 10:.3f}\n" for p in range(101))
    got = parse_ab("Complete requests:      100\n", csv)
    assert (got["p50_ms"], got["p90_ms"], got["p99_ms"]) == (6.0, 10.0, 10.9)


def test_httperf_rate_is_replies_over_duration():
    got = parse_httperf((DATA / "httperf.txt").read_text())
    assert (got["complete"], got["failed"], got["seconds"], got["mean_ms"]) == (5, 5, 0.087, 8.8)
    assert abs(got["rps"] - 5 / 0.087) < 1e-9 and got["p99_ms"] is None


def test_status_split_from_edge_metrics():
    before = request_counts('edge_requests_total{route="permalink",status="200"} 3.0\n')
    after = request_counts('# HELP x\n'
                           'edge_requests_total{route="permalink",status="200"} 10.0\n'
                           'edge_requests_total{route="permalink",status="429"} 5.0\n'
                           'edge_requests_total{route="permalink",status="502"} 1.0\n'
                           'edge_requests_total{route="static",status="200"} 99.0\n')
    ok, limited, errors, by_status = status_split(before, after, "permalink", sent=15)
    # 7 ok, 5 limited, 1 bad gateway, and 2 the edge never counted (the client gave up)
    assert (ok, limited, errors, by_status) == (7, 5, 3, {"200": 7, "429": 5, "502": 1})


def test_cell_server_metrics_are_read_by_endpoint():
    got = request_counts('cellserver_http_requests_total{endpoint="service",status="200"} 4.0\n'
                         'cellserver_http_requests_total{endpoint="kernel",status="429"} 1.0\n')
    assert got == {("service", "200"): 4.0, ("kernel", "429"): 1.0}
