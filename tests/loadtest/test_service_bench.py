"""``python -m loadtest.service_bench``: a tiny real run (its own twistd
cellserver, ab, a few /service computations) that must print its table with
CPU split by process and leave no process or directory behind.  Sanity only,
not the targets (the machine is shared)."""
from __future__ import annotations

import glob
import re
import shutil
import subprocess
import sys

import pytest

from tests.support.procs import ROOT

pytestmark = pytest.mark.integration


@pytest.mark.skipif(shutil.which("ab") is None, reason="needs ab (deploy/install installs apache2-utils)")
def test_a_small_run_prints_cpu_per_computation_by_process():
    before = set(glob.glob("/tmp/cs-sb-*"))
    out = subprocess.run([sys.executable, "-m", "loadtest.service_bench", "--requests", "8", "--rounds", "1",
                          "--concurrency", "2", "--ready-kernels", "2", "--no-sandbox"],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    figures = {m.group(1).strip(): float(m.group(2))
               for m in re.finditer(r"^(\S.*?|  \S.*?)\s{2,}([\d.]+) ", out.stdout, re.M)}
    assert figures["computations per second"] > 0
    parts = [figures["of it the cell server"], figures["the provider"], figures["the kernel"]]
    assert all(p > 0 for p in parts) and abs(sum(parts) - figures["CPU per computation, all three"]) < 0.2
    assert figures["copy-on-write faults per kernel"] > 100
    assert re.search(r"^failed or non-2xx computations\s+0$", out.stdout, re.M), out.stdout
    assert set(glob.glob("/tmp/cs-sb-*")) == before
