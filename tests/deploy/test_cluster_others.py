"""``deploy/cluster down``/``status`` that find no cluster of their own file
name the clusters running from another one (a bench cluster is stopped with
its own ``--config``).  The command-line reading is pure; the discovery runs
against a real process whose command line looks like a supervisor's."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from deploy import cluster as launcher
from deploy.clusterspec import load_cluster
from tests.support.procs import ROOT


def test_the_config_of_a_supervisor_command_line():
    py = "/opt/cellstack/venv/bin/python"
    assert launcher.supervised_config([py, "-m", "deploy.cluster", "supervise", "--config", "/a/b.toml"]) == "/a/b.toml"
    assert launcher.supervised_config([py, "-m", "deploy.cluster", "supervise"]) == launcher.DEFAULT_CONFIG
    assert launcher.supervised_config([py, "-m", "deploy.cluster", "down", "--config", "/a/b.toml"]) is None
    assert launcher.supervised_config([py, "-m", "deploy.cluster", "supervise", "--config"]) == launcher.DEFAULT_CONFIG
    assert launcher.supervised_config(["sleep", "60"]) is None


@pytest.fixture
def fake_supervisor(tmp_path):
    other = tmp_path / "other.toml"
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                          "-m", "deploy.cluster", "supervise", "--config", str(other)])
    yield p, str(other)
    p.kill()
    p.wait()


def test_down_and_status_without_a_cluster_name_the_one_that_runs(tmp_path, capsys, fake_supervisor):
    proc, other = fake_supervisor
    path = tmp_path / "mine.toml"
    path.write_text(f'[cluster]\nvar = "{tmp_path}/var"\n')
    spec = load_cluster(str(path), str(ROOT), "/venv/bin")
    launcher.prepare(spec)
    deadline = time.monotonic() + 10       # bounded: its command line is there once it runs
    while (proc.pid, other) not in launcher.other_clusters(spec) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (proc.pid, other) in launcher.other_clusters(spec), open(f"/proc/{proc.pid}/cmdline", "rb").read()
    assert launcher.status(spec) == 3
    assert launcher.down(spec, 5) == 0
    out = capsys.readouterr().out
    assert out.count(f"cluster: not running ({path})") == 2
    assert out.count(f"stop it with: deploy/cluster down --config {other}") == 2
    assert "cluster: stopped" not in out          # nothing of its own was running
    proc.kill()
    proc.wait()
    assert not [c for c in launcher.other_clusters(spec) if c[1] == other]
