"""The embeddable cell in a real headless Chromium (Debian's, driven by
Playwright) against a real ``twistd cellserver``, embedded in a page served
from another origin, as a teacher's course page would be."""
from __future__ import annotations

import os
import signal
import time

import pytest

from tests.support.browser import CHROMIUM, browser, page  # noqa: F401 (fixtures)
from tests.support.embedding import cell_server_and_site
from tests.support.ports import free_port
from tests.support.procs import ARTIFACTS, PRINT_PID, host_pid, http_ok, kernel_runtime_dir, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.browser]
SHOTS = ARTIFACTS / "screenshots"

EMBED = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>A course page</title>
<style>body {{ font-family: Georgia, serif; max-width: 50rem; margin: 2rem auto; color: #333; }}
h1 {{ font-weight: normal; }}</style>
<script src="{server}embedded_sagecell.js"></script></head><body>
<h1>Week 3: loops</h1>
<p>First cell:</p><div id="one"><script type="text/x-sage">print(sum(range(10)))</script></div>
<p>Second cell:</p><div id="two">1/0</div>
<p>Linked cells share a kernel:</p><div id="l1">shared = 21</div><div id="l2">print(shared * 2)</div>
<script>
  window.cells = {{
    one: sagecell.makeSagecell({{inputLocation: "#one", evalButtonText: "Run"}}),
    two: sagecell.makeSagecell({{inputLocation: "#two"}}),
    l1: sagecell.makeSagecell({{inputLocation: "#l1", linked: true}}),
    l2: sagecell.makeSagecell({{inputLocation: "#l2", linked: true}}),
  }};
</script></body></html>
"""


@pytest.fixture(scope="module")
def server(module_children, tmp_path_factory):
    s = cell_server_and_site(module_children, tmp_path_factory.mktemp("fe") / "site", "f1",
                             lambda base: {"course.html": EMBED.format(server=base)},
                             ["--ready-kernels", "3", "--max-kernels", "12", "--kernels-per-session", "4"])
    return dict(s, embed=s["embed"] + "course.html")


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def shot_of(locator, name):
    """A screenshot of one element (a cell in one state)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    locator.screenshot(path=str(SHOTS / f"{name}.png"))


def status(page, sel):
    return page.locator(f"{sel} .sagecell-status")


def wait_state(page, sel, state, timeout=20_000):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    try:
        page.wait_for_selector(f'{sel} .sagecell[data-state="{state}"]', timeout=timeout)
    except PlaywrightTimeout:
        box = page.locator(f"{sel} .sagecell").first
        raise AssertionError(f"{sel} never reached {state!r}: it is {box.get_attribute('data-state')!r}, "
                             f"status {status(page, sel).inner_text()!r}, output "
                             f"{page.locator(f'{sel} .sagecell-output').inner_text()[:300]!r}") from None


def test_cross_origin_page_with_independent_and_linked_cells(server, page):
    page.goto(server["embed"])
    page.get_by_role("button", name="Run", exact=True).click()
    page.locator("#two .sagecell-evaluate").click()
    wait_state(page, "#one", "finished")
    wait_state(page, "#two", "error")
    assert page.locator("#one .sagecell-output").inner_text().strip() == "45"
    two = page.locator("#two .sagecell-output").inner_text()
    assert "ZeroDivisionError" in two and "45" not in two
    shot_of(page.locator("#one .sagecell"), "finished")
    shot_of(page.locator("#two .sagecell"), "error-traceback")
    page.locator("#l1 .sagecell-evaluate").click()
    wait_state(page, "#l1", "finished")
    page.locator("#l2 .sagecell-evaluate").click()
    wait_state(page, "#l2", "finished")
    assert page.locator("#l2 .sagecell-output").inner_text().strip() == "42"
    shot(page, "embedded-cells")


def test_outputs_image_html_in_a_sandboxed_iframe_and_shift_enter(server, page):
    page.goto(server["embed"])
    editor = page.locator("#one .sagecell-editor")
    editor.fill("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2]); plt.show()\n"
                "from IPython.display import HTML, display\n"
                "display(HTML('<b id=\"x\" style=\"color:red\">bold</b><script>document.title=\"hacked\"</script>'))\n"
                "print('\\x1b[31mred\\x1b[0m text')")
    editor.press("Shift+Enter")
    wait_state(page, "#one", "finished")
    assert page.locator("#one img.sagecell-image").count() == 1
    shot_of(page.locator("#one .sagecell"), "image")
    frame = page.locator("#one iframe.sagecell-frame")
    assert frame.get_attribute("sandbox") == "allow-scripts"
    assert page.frame_locator("#one iframe.sagecell-frame").locator("#x").inner_text() == "bold"
    assert page.title() == "A course page"           # the output's script could not touch the page
    red = page.locator("#one .sagecell-stream span", has_text="red").first
    assert "rgb(192, 57, 43)" in red.evaluate("e => getComputedStyle(e).color")
    shot(page, "outputs")


def test_stop_interrupts_a_loop(server, page):
    page.goto(server["embed"])
    page.locator("#one .sagecell-editor").fill("while True: pass")
    page.locator("#one .sagecell-evaluate").click()
    wait_state(page, "#one", "running")
    time.sleep(0.5)
    assert "running" in status(page, "#one").inner_text()
    shot_of(page.locator("#one .sagecell"), "running")
    page.get_by_role("button", name="Stop the running computation").first.click()
    wait_state(page, "#one", "interrupted")
    assert "KeyboardInterrupt" in page.locator("#one .sagecell-output").inner_text()


def test_twenty_fast_presses_end_with_the_right_output(server, page):
    page.goto(server["embed"])
    page.locator("#one .sagecell-editor").fill("import time; time.sleep(0.1); print('last one')")
    button = page.locator("#one .sagecell-evaluate")
    for _ in range(20):
        button.click()
    wait_state(page, "#one", "finished", timeout=30_000)
    assert page.locator("#one .sagecell-output").inner_text().strip() == "last one"
    page.locator("#one .sagecell-editor").fill("print('and again')")
    button.click()
    wait_state(page, "#one", "finished")
    assert page.locator("#one .sagecell-output").inner_text().strip() == "and again"


def test_kernel_killed_server_side_shows_dead_with_reason(server, page):
    page.goto(server["embed"])
    page.locator("#l1 .sagecell-editor").fill(PRINT_PID)
    page.locator("#l1 .sagecell-evaluate").click()
    wait_state(page, "#l1", "finished")
    os.kill(host_pid(page.locator("#l1 .sagecell-output").inner_text().strip()), signal.SIGKILL)
    wait_state(page, "#l1", "dead")
    assert "SIGKILL" in status(page, "#l1").inner_text()
    shot_of(page.locator("#l1 .sagecell"), "dead-kernel")
    shot(page, "kernel-dead")


def test_the_standalone_page_preloads_and_autoevaluates(server, page):
    from cellserver.page import encode_z

    page.goto(server["base"] + "?z=" + encode_z("print('from a link')") + "&autoeval=true")
    wait_state(page, "#cell", "finished")
    assert page.locator("#cell .sagecell-output").inner_text().strip() == "from a link"
    shot(page, "standalone")
    resp = page.goto(server["base"] + "?z=notvalid!!")
    assert resp.status == 400 and "damaged" in page.locator(".notice").inner_text()


def test_no_capacity_is_shown(server, page, children, tmp_path):
    port = free_port()
    cs = children.twistd("tiny", "cellserver", [
        "--node", "f2", "--listen", f"tcp:{port}:interface=127.0.0.1", "--runtime-dir", kernel_runtime_dir("f2"),
        "--ready-kernels", "1", "--max-kernels", "1", "--take-wait", "0.2"])
    base = f"http://127.0.0.1:{port}/"
    wait_until(lambda: http_ok(base + "healthz"), 60, "tiny cell server", child=cs)
    import json
    import urllib.request

    def one_ready():    # the one kernel started (a loaded machine takes longer than --take-wait)
        with urllib.request.urlopen(base + "healthz", timeout=5) as r:
            return json.loads(r.read())["ready"] >= 1
    wait_until(one_ready, 60, "the tiny server's one kernel", child=cs)
    urllib.request.urlopen(urllib.request.Request(base + "kernel", data=b"timeout=60", method="POST")).read()
    page.goto(base + "?c=1%2B1")
    page.locator("#cell .sagecell-evaluate").click()
    wait_state(page, "#cell", "nocapacity")
    assert "no capacity" in status(page, "#cell").inner_text()
    shot(page, "no-capacity")
