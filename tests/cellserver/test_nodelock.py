"""nodelock.py: one live holder per node name, across real processes; the
lock goes with the process, however it ends."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from cellserver import nodelock

HOLD = textwrap.dedent("""
    import sys, time
    from cellserver import nodelock
    nodelock.lock_node(sys.argv[1], sys.argv[2])
    print("held", flush=True)
    time.sleep(60)
""")


def _holder(node: str, lock_dir: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, node, lock_dir], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_node_held_by_a_live_process_cannot_be_taken_and_is_free_once_it_dies(tmp_path):
    d = str(tmp_path / "locks")
    p = _holder("c1", d)
    try:
        with pytest.raises(nodelock.NodeInUse, match=rf"'c1' is in use .*\(pid {p.pid}\)"):
            nodelock.lock_node("c1", d)
        fd = nodelock.lock_node("c2", d)            # another node name: free
        assert nodelock.lock_node("c2", d) == fd    # this process asking again keeps its own lock
        nodelock.unlock_node("c2", d)
    finally:
        p.send_signal(signal.SIGKILL)               # dies without letting go itself
        p.wait(timeout=10)
    nodelock.lock_node("c1", d)
    with open(nodelock.lock_path("c1", d)) as f:
        assert f.read().strip() == str(os.getpid())
    nodelock.unlock_node("c1", d)
    q = _holder("c1", d)                            # unlocked: another process may take it
    q.send_signal(signal.SIGKILL)
    q.wait(timeout=10)
