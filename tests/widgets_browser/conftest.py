"""Fixtures for the widget browser tests: a real ``twistd cellserver``, a
headless Debian Chromium driven by Playwright, and a page.

``harness``: a bare cell page (``harness.html``, served by a plain static
HTTP server on another loopback port, as an embedding page would be) that
creates a kernel through the public API and hands widget messages to the
real bundle the cell server serves (``/static/build/widgets.js``).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from tests.support.browser import CHROMIUM, browser  # noqa: F401 (a fixture)
from tests.support.ports import free_port
from tests.support.procs import ROOT, http_ok, wait_until

HERE = Path(__file__).parent
BUNDLE = ROOT / "cellserver" / "static" / "build" / "widgets.js"


def _healthz(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url + "healthz", timeout=2) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read() or b"{}")
    except Exception:
        return None


@pytest.fixture(scope="module")
def cellserver(module_children):
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (deploy/install)")
    if not BUNDLE.exists():
        if shutil.which("npm") is None:
            pytest.skip("needs the widgets bundle (deploy/install.d/20-frontend.sh)")
        subprocess.run(["bash", str(ROOT / "deploy/install.d/20-frontend.sh")], check=True,
                       env={"HERE": str(ROOT), "QUIET": "1", "PATH": "/usr/bin:/bin:/usr/local/bin"})
    if os.environ.get("WIDGETS_TEST_URL"):  # an already running cell server
        yield os.environ["WIDGETS_TEST_URL"]
        return
    port = free_port()
    runtime = tempfile.mkdtemp(prefix="csw-", dir="/tmp")   # short: socket paths < 107 bytes
    os.chmod(runtime, 0o711)       # sandboxed kernels (their own accounts) must reach their sockets
    child = module_children.twistd("cellserver", "cellserver", [
        "--node", "w1", "--listen", f"tcp:{port}:interface=127.0.0.1",
        "--ready-kernels", "2", "--max-kernels", "12", "--runtime-dir", runtime,
    ])
    url = f"http://127.0.0.1:{port}/"
    wait_until(lambda: (_healthz(url) or {}).get("ready", 0) >= 1, 60, "cell server with a ready kernel",
               child=child)
    yield url
    child.stop()
    shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture(scope="module")
def harness_site(module_children):
    port = free_port()
    child = module_children.start("harness-http", [sys.executable, "-m", "http.server", str(port),
                                                   "--bind", "127.0.0.1", "--directory", str(HERE)])
    url = f"http://127.0.0.1:{port}/harness.html"
    wait_until(lambda: http_ok(url), 15, "harness http server", child=child)
    return url


@pytest.fixture
def harness(browser, cellserver, harness_site):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{harness_site}?server={cellserver}")
    page.wait_for_function("document.getElementById('state').textContent === 'ready'", timeout=30000)
    page.errors = errors
    yield page
    # End the kernel now: a kernel with widgets would otherwise live to its idle limit.
    page.evaluate("() => window.kernelId && fetch(window.SERVER + 'kernel/' + window.kernelId,"
                  " {method: 'DELETE'}).then(r => r.status)")
    page.close()
    assert not errors, errors


def run(page, code: str, timeout: float = 30000):
    """Evaluate ``code`` in the harness cell; returns its output area locator."""
    mid = page.evaluate("c => window.run(c)", code)
    page.wait_for_function(f"window.idle.has('{mid}')", timeout=timeout)
    return page.locator(f"#req-{mid}")


def wait_text(locator, text: str, timeout: float = 15000):
    """Wait until ``locator``'s text contains ``text``."""
    locator.page.wait_for_function(
        "([el, t]) => el && el.innerText.includes(t)", arg=[locator.element_handle(), text],
        timeout=timeout)


def grid_of(boxes) -> tuple[int, int]:
    """(rows, columns) the bounding boxes form, checking that they are a full
    grid: each row the same number of boxes, the columns aligned."""
    rows: dict[int, list[int]] = {}
    for b in boxes:
        rows.setdefault(round(b["y"]), []).append(round(b["x"]))
    xs = [sorted(r) for _, r in sorted(rows.items())]
    assert all(r == xs[0] for r in xs), f"the rows' columns are not aligned: {xs}"
    return len(xs), len(xs[0])


def nudge(handle, presses: int = 1, key: str = "ArrowRight") -> None:
    """Move a slider as a keyboard user does: focus its handle, press ``key``."""
    handle.focus()
    for _ in range(presses):
        handle.page.keyboard.press(key)
