"""``deploy/cluster down`` removing what SIGKILLed cell servers left in their
runtime directories, and only that: the directories ``up`` recorded, never
through a symlink, never one of another user, never one a live process
works in (a cell server started by hand on the default ``/tmp/cs-<name>``).
Real directories and real processes; no cluster is started."""
from __future__ import annotations

import os
import subprocess

import pytest

from deploy import cluster as launcher
from deploy.clusterspec import load_cluster
from tests.support.procs import ROOT


def leftovers(rt):
    """What a SIGKILLed cell server leaves: sockets, kernels' work and IPython dirs."""
    for d in ("sock/ab", "work/k1", "ipython/profile_default"):
        (rt / d).mkdir(parents=True)
    (rt / "sock" / "ab" / "shell").write_text("")
    return rt


def spec_for(tmp_path, rt):
    path = tmp_path / "c.toml"
    path.write_text(f'[cluster]\nvar = "{tmp_path}/var"\n[cellserver.nodes.k1]\nruntime-dir = "{rt}"\n'
                    f'listen = ["tcp:1:interface=127.0.0.1"]\n')
    spec = load_cluster(str(path), str(ROOT), "/venv/bin")
    launcher.prepare(spec)
    return spec


@pytest.fixture
def sleeper():
    """Start `sleep` in a directory, like a cell server's provider in its runtime dir; killed by PID after."""
    started = []

    def start(cwd):
        p = subprocess.Popen(["sleep", "60"], cwd=str(cwd))
        started.append(p)
        return p
    yield start
    for p in started:
        p.kill()
        p.wait()


def test_down_sweeps_what_a_killed_cell_server_left(tmp_path, capsys):
    """A cell server SIGKILLed leaves its runtime directory: down removes it
    (the directory up recorded), then drops the record: a second down sweeps nothing."""
    rt = leftovers(tmp_path / "rt")
    spec = spec_for(tmp_path, rt)
    launcher.record_runtime_dirs(spec)
    assert launcher.down(spec, 5) == 0
    assert not rt.exists()
    assert "removed what killed cell servers left" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(spec.run_dir, "runtime-dirs.json"))
    leftovers(rt)                                  # say, a cell server started by hand since
    assert launcher.down(spec, 5) == 0
    assert (rt / "sock" / "ab" / "shell").exists() and (rt / "work" / "k1").is_dir()


def test_a_directory_up_did_not_record_survives_down(tmp_path):
    rt = leftovers(tmp_path / "rt")
    spec = spec_for(tmp_path, rt)
    assert launcher.down(spec, 5) == 0
    assert (rt / "sock" / "ab" / "shell").exists() and (rt / "ipython" / "profile_default").is_dir()


def test_a_directory_a_live_process_works_in_survives_down(tmp_path, capsys, sleeper):
    """The cell server started by hand on the same directory: its provider's cwd is inside."""
    rt = leftovers(tmp_path / "rt")
    spec = spec_for(tmp_path, rt)
    launcher.record_runtime_dirs(spec)
    p = sleeper(rt / "work" / "k1")
    assert launcher.down(spec, 5) == 0
    assert (rt / "sock" / "ab" / "shell").exists() and (rt / "work" / "k1").is_dir()
    assert f"{rt} (in use by pids [{p.pid}])" in capsys.readouterr().out


def test_a_symlink_planted_at_the_path_is_not_followed(tmp_path, capsys):
    victim = leftovers(tmp_path / "victim")
    rt = tmp_path / "rt"
    rt.symlink_to(victim)
    spec = spec_for(tmp_path, rt)
    launcher.record_runtime_dirs(spec)
    assert launcher.down(spec, 5) == 0
    assert rt.is_symlink() and (victim / "sock" / "ab" / "shell").exists() and (victim / "work" / "k1").is_dir()
    assert f"{rt} (a symlink)" in capsys.readouterr().out


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another uid needs root")
def test_a_directory_of_another_user_survives_down(tmp_path, capsys):
    rt = leftovers(tmp_path / "rt")
    os.chown(rt, 65534, 65534)
    spec = spec_for(tmp_path, rt)
    launcher.record_runtime_dirs(spec)
    assert launcher.down(spec, 5) == 0
    assert (rt / "sock" / "ab" / "shell").exists()
    assert "owned by uid 65534" in capsys.readouterr().out


def test_up_refuses_a_runtime_directory_another_process_works_in(tmp_path, capsys, sleeper):
    """Started on it, this cluster's cell server would share (and on its stop remove) the other's directory."""
    rt = leftovers(tmp_path / "rt")
    spec = spec_for(tmp_path, rt)
    p = sleeper(rt)
    assert launcher.up(spec, 5) == 1
    assert f"{rt} (pids [{p.pid}])" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(spec.run_dir, "runtime-dirs.json"))
    assert not os.path.exists(os.path.join(spec.run_dir, "supervisor.pid"))
