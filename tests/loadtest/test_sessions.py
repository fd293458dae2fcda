"""Pure parts of the session load tester: the loopback guard and what a
failure is recorded as (what it was told, not just its type)."""
from __future__ import annotations

import pytest
from twisted.internet import defer, error

from loadtest.sessions import check_loopback, parse_args, reason


@pytest.mark.parametrize("url", ["http://127.0.0.1:8101/", "https://localhost:8443/", "http://127.3.4.5/",
                                 "http://[::1]:80/"])
def test_loopback_targets_are_allowed(url):
    check_loopback(url)


@pytest.mark.parametrize("url", ["http://10.0.0.1/", "http://192.168.1.2:8080/", "https://8.8.8.8/",
                                 "http://[2001:db8::1]/", "http://0.0.0.0/"])
def test_anything_else_is_refused(url):
    with pytest.raises(SystemExit, match="refusing"):
        check_loopback(url)


def test_reasons_say_what_happened():
    assert reason(ConnectionError("websocket closed 1001: the kernel's server c1 is down"), 30) \
        == "websocket closed 1001: the kernel's server c1 is down"
    assert reason(defer.TimeoutError(), 30) == "no answer within 30 s"
    assert reason(error.TimeoutError(), 2.5) == "no answer within 2.5 s"
    assert reason(error.ConnectionRefusedError("111: Connection refused"), 30).startswith(
        "ConnectionRefusedError: Connection was refused")
    assert reason(RuntimeError(), 30) == "RuntimeError"


def test_bounded_runs_only():
    assert parse_args(["--url", "http://127.0.0.1:1"]).url == "http://127.0.0.1:1/"
    for bad in (["--users", "0"], ["--users", "5000"], ["--duration", "0"], ["--duration", "7200"]):
        with pytest.raises(SystemExit):
            parse_args(["--url", "http://127.0.0.1:1/", *bad])
    assert parse_args(["--url", "http://127.0.0.1:1/"]).interact == "ours"
