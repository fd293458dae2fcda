"""``python -m loadtest.interact_bench``: its pure helpers, and tiny real runs
(``--pool``: one kernel of an in-process pool; ``--url``: a real cell
server's websocket) that must print the table, write every sample to the
JSON file and exit 0.  Sanity only, not the timing targets (the machine is
shared)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from loadtest.interact_bench import PHASE, _output_text, parse_args
from tests.support.ports import free_port
from tests.support.procs import ROOT, http_ok, wait_until


def _update(comm_id, state):
    return {"header": {"msg_type": "comm_msg"},
            "content": {"comm_id": comm_id, "data": {"method": "update", "state": state}}}


def test_output_text_reads_only_the_output_widgets_outputs():
    outs = {"outputs": [{"output_type": "stream", "name": "stdout", "text": "41"},
                        {"output_type": "stream", "name": "stdout", "text": "\n"}]}
    assert _output_text(_update("out", outs), "out") == "41\n"
    assert _output_text(_update("out", {"outputs": []}), "out") == ""
    assert _output_text(_update("other", outs), "out") is None        # another widget
    assert _output_text(_update("out", {"value": 3}), "out") is None  # not its outputs
    assert _output_text({"header": {"msg_type": "stream"}, "content": {"text": "41\n"}}, "out") is None
    assert _output_text({}, "out") is None


def test_parse_args():
    a = parse_args(["--pool", "--moves", "5", "--users", "9"])
    assert (a.url, a.users, a.moves) == ("pool:", 1, 5)   # --pool: one user, no server
    b = parse_args(["--url", "http://127.0.0.1:1", "--users", "3", "--interval", "0.5"])
    assert (b.url, b.users, b.interval, b.moves) == ("http://127.0.0.1:1/", 3, 0.5, 200)


@pytest.mark.parametrize("argv", [[], ["--pool", "--moves", "0"], ["--url", "http://127.0.0.1:1/", "--users", "501"]])
def test_parse_args_refuses(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2 and "error:" in capsys.readouterr().err


def _bench(argv: list[str], tmp_path) -> tuple[dict[str, list[str]], list[dict]]:
    """Run the bench; returns its table's rows by phase and the JSON samples."""
    samples = tmp_path / "samples.json"
    p = subprocess.run([sys.executable, "-m", "loadtest.interact_bench", *argv, "--json", str(samples),
                        "--timeout", "20"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("interact_bench: "), p.stdout
    rows = {}
    for line in p.stdout.splitlines():
        m = re.match(r"^(kernel start|interact created|interact update)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)",
                     line)
        if m:
            rows[m.group(1)] = m.groups()[1:]
    return rows, json.loads(samples.read_text())


def _check(rows, samples, users: int, moves: int) -> None:
    assert set(rows) == {"kernel start", "interact created", PHASE}, rows
    count, errors, p50, p90, p99 = rows[PHASE]
    assert (int(count), int(errors)) == (users * moves, 0)
    assert 0 < float(p50) <= float(p90) <= float(p99)
    updates = [s for s in samples if s["phase"] == PHASE]
    assert len(updates) == users * moves and all(s["ok"] and s["latency"] > 0 for s in updates)
    assert sum(s["phase"] == "kernel start" and s["ok"] for s in samples) == users


@pytest.mark.integration
def test_pool_run(tmp_path):
    rows, samples = _bench(["--pool", "--moves", "5"], tmp_path)
    _check(rows, samples, users=1, moves=5)


@pytest.mark.integration
def test_run_through_a_cell_server(tmp_path, children):
    port = free_port()
    runtime = tempfile.mkdtemp(prefix="csib-", dir="/tmp")   # short: socket paths < 107 bytes
    try:
        os.chmod(runtime, 0o711)     # sandboxed kernels (their own accounts) must reach their sockets
        child = children.twistd("cellserver", "cellserver", [
            "--node", "ib1", "--listen", f"tcp:{port}:interface=127.0.0.1",
            "--ready-kernels", "2", "--max-kernels", "4", "--runtime-dir", runtime])
        url = f"http://127.0.0.1:{port}/"
        wait_until(lambda: http_ok(url + "healthz"), 60, "cell server", child=child)
        rows, samples = _bench(["--url", url, "--users", "2", "--moves", "5"], tmp_path)
        _check(rows, samples, users=2, moves=5)
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
