"""The cell's Share, terms of service and rate-limited states in a real
headless Chromium, through the whole stack: a real ``twistd edgeproxy``
(TLS, dev certificate; Chromium ignores the certificate errors) in front of a
real ``twistd cellserver`` and a real ``twistd permalinkd`` on a real
``redis-server``.  Issue 6 (Share, ToS, rate limit) and issue 7 (a shared
interact keeps its control values)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.support.browser import CHROMIUM, browser  # noqa: F401 (a fixture)
from tests.support.ports import free_port
from tests.support.procs import ROOT, http_ok, kernel_runtime_dir, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.browser]
TERMS = "<h2>Terms of use</h2><p>Be kind to the servers. No mining.</p>"


def _redis_ping(port: int) -> bool:
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")


def _edge_up(http_port: int) -> bool:
    import json
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=2) as r:
        h = json.loads(r.read())
    return all(c.get("up") for c in h.get("cells", {}).values())


@pytest.fixture(scope="module")
def stack(module_children, tmp_path_factory):
    """Redis + permalinkd + cell server + three edges ("open": default limits,
    "tight": one computation per 100 s per client; "lookup": in front of a second
    cell server, one without --permalink-url)."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    from pathlib import Path
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (deploy/install installs it)")
    tmp = tmp_path_factory.mktemp("share")
    rport, pport, cport = free_port(), free_port(), free_port()
    redis = module_children.start("redis", ["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                                            "--save", "", "--appendonly", "no"])
    wait_until(lambda: _redis_ping(rport), 15, "redis up", child=redis)
    pl = module_children.twistd("permalinkd", "permalinkd", [
        "--node", "pl1", "--listen", f"tcp:{pport}:interface=127.0.0.1", "--redis", f"127.0.0.1:{rport}"])
    cs = module_children.twistd("cellserver", "cellserver", [
        "--node", "s1", "--listen", f"tcp:{cport}:interface=127.0.0.1", "--runtime-dir", kernel_runtime_dir("s1"),
        "--ready-kernels", "3", "--max-kernels", "12", "--kernels-per-session", "4",
        "--trusted-proxies", "127.0.0.1", "--permalink-url", f"http://127.0.0.1:{pport}/"])
    # a cell server without --permalink-url: its page looks ?q= links up itself, through the edge
    c2port = free_port()
    cs2 = module_children.twistd("cellserver-nolookup", "cellserver", [
        "--node", "s2", "--listen", f"tcp:{c2port}:interface=127.0.0.1", "--runtime-dir", kernel_runtime_dir("s2"),
        "--ready-kernels", "1", "--max-kernels", "4", "--trusted-proxies", "127.0.0.1"])
    wait_until(lambda: http_ok(f"http://127.0.0.1:{cport}/healthz"), 60, "cell server", child=cs)
    wait_until(lambda: http_ok(f"http://127.0.0.1:{c2port}/healthz"), 60, "cell server without lookup", child=cs2)
    wait_until(lambda: http_ok(f"http://127.0.0.1:{pport}/healthz"), 30, "permalinkd", child=pl)
    subprocess.run([sys.executable, "-m", "certs.devca", "--dir", str(tmp / "certs"), "--quiet"], check=True)
    c = tmp / "certs"
    edges = {}
    for name, cell, limits in (("open", cport, ["--compute-rate", "20", "--compute-burst", "50"]),
                               ("tight", cport, ["--compute-rate", "0.01", "--compute-burst", "1"]),
                               ("lookup", c2port, ["--compute-rate", "20", "--compute-burst", "50"])):
        https, plain = free_port(), free_port()
        edge = module_children.twistd(f"edge-{name}", "edgeproxy", [
            "--node", f"edge-{name}",
            "--listen", f"ssl:{https}:interface=127.0.0.1:privateKey={c}/server.key:certKey={c}/server.crt"
                        f":extraCertChain={c}/chain.pem",
            "--http-listen", f"tcp:{plain}:interface=127.0.0.1",
            "--cells", f"{'s2' if cell == c2port else 's1'}=http://127.0.0.1:{cell}", "--permalinks", f"pl1=http://127.0.0.1:{pport}",
            "--static-dir", str(ROOT / "cellserver" / "static"), "--check-interval", "0.2", *limits])
        wait_until(lambda: _edge_up(plain), 60, f"edge {name} sees the cell server", child=edge)
        edges[name] = f"https://localhost:{https}/"
    return {"edge": edges["open"], "tight": edges["tight"], "lookup": edges["lookup"],
            "cell": f"http://127.0.0.1:{cport}/", "tmp": tmp}


@pytest.fixture(scope="module")
def tos_server(module_children, tmp_path_factory):
    terms = tmp_path_factory.mktemp("tos") / "terms.html"
    terms.write_text(TERMS)
    port = free_port()
    cs = module_children.twistd("cellserver-tos", "cellserver", [
        "--node", "t1", "--listen", f"tcp:{port}:interface=127.0.0.1", "--runtime-dir", kernel_runtime_dir("t1"),
        "--ready-kernels", "2", "--max-kernels", "8", "--tos", str(terms)])
    base = f"http://127.0.0.1:{port}/"
    wait_until(lambda: http_ok(base + "healthz"), 60, "cell server with terms", child=cs)
    return base


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1000, "height": 800}, ignore_https_errors=True)
    errors: list[str] = []
    ctx.on("weberror", lambda e: errors.append(str(e.error)))
    yield ctx
    ctx.close()
    assert not errors, errors


def shot(page, name):
    from tests.frontend.test_cell_browser import shot as _shot
    _shot(page, name)


def wait_state(page, state, timeout=30_000, sel="#cell"):
    from tests.frontend.test_cell_browser import wait_state as _wait
    _wait(page, sel, state, timeout)


def requests_log(page):
    log: list[tuple[str, str]] = []
    page.on("request", lambda r: log.append((r.method, r.url)))
    return log


def responses_log(page):
    log: list[tuple[str, str, int]] = []
    page.on("response", lambda r: log.append((r.request.method, r.url, r.status)))
    return log


def permalink_posts(log):
    return [u for m, u in log if m == "POST" and u.split("?")[0].endswith("/permalink")]


def test_share_makes_links_only_when_pressed_and_both_open_the_same_code(stack, context):
    page = context.new_page()
    sent = requests_log(page)
    code = "print('shared', 6 * 7)"
    page.goto(stack["edge"] + "?c=" + urllib.request.quote(code))
    page.wait_for_selector("#cell .sagecell-share")
    page.locator("#cell .sagecell-evaluate").click()
    wait_state(page, "finished")
    assert page.locator("#cell .sagecell-output").inner_text().strip() == "shared 42"
    time.sleep(0.3)
    assert permalink_posts(sent) == []                 # nothing asked before the press
    page.get_by_role("button", name="Share").click()
    links = page.locator("#cell .sagecell-links a.sagecell-link")
    links.first.wait_for(timeout=15_000)
    assert len(permalink_posts(sent)) == 1
    short, long = links.nth(0).get_attribute("href"), links.nth(1).get_attribute("href")
    assert "?q=" in short and "?z=" in long and "interacts=" not in long
    assert page.locator("#cell .sagecell-links .sagecell-copy").count() == 2
    assert page.get_by_role("button", name="Copy the short link").is_visible()
    shot(page, "share-links")

    # the short link, in a new page: the same code, evaluated at once
    other = context.new_page()
    other.goto(short)
    wait_state(other, "finished")
    assert other.locator("#cell .sagecell-output").inner_text().strip() == "shared 42"
    assert code in other.evaluate("() => sagecell.cells[0].getCode()")
    # the long link holds the code itself
    third = context.new_page()
    third.goto(long)
    wait_state(third, "finished")
    assert third.evaluate("() => sagecell.cells[0].getCode()") == code
    assert third.locator("#cell .sagecell-output").inner_text().strip() == "shared 42"
    # autoeval=false: the code only
    fourth = context.new_page()
    fourth.goto(short + "&autoeval=false")
    fourth.wait_for_selector("#cell .sagecell-evaluate")
    time.sleep(1)
    assert fourth.evaluate("() => sagecell.cells[0].getCode()") == code
    assert fourth.locator("#cell .sagecell-output").inner_text().strip() == ""
    # the same cell gives the same short link (content-derived id)
    page.get_by_role("button", name="Share").click()
    page.wait_for_function("() => document.querySelector('#cell .sagecell-link') &&"
                           " document.querySelector('#cell .sagecell-link').href === " + repr(short))


def test_unknown_short_link_says_so(stack, context):
    page = context.new_page()
    resp = page.goto(stack["edge"] + "?q=nosuchlink1")
    assert resp.status == 404
    assert "No cell is stored" in page.locator(".notice").inner_text()


INTERACT = """@interact
def f(x=slider(0, 100, 1, default=10)):
    print("square of", x, "is", x * x)
"""


def test_a_link_in_a_language_this_server_does_not_run_falls_back_to_python(stack, context):
    page = context.new_page()
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.post_data or "") if r.method == "POST" and
            r.url.split("?")[0].endswith("/permalink") else None)
    page.goto(stack["edge"] + "?c=" + urllib.request.quote("print('as python')") + "&lang=sage&autoeval=true")
    note = page.get_by_role("status").filter(has_text="sage")
    assert note.is_visible() and "Python" in note.inner_text()
    wait_state(page, "finished")
    assert page.locator("#cell .sagecell-output").inner_text().strip() == "as python"
    page.get_by_role("button", name="Share").click()
    links = page.locator("#cell .sagecell-links a.sagecell-link")
    links.first.wait_for(timeout=15_000)
    assert len(posts) == 1 and "language=python" in posts[0].split("&"), posts
    assert links.nth(1).get_attribute("href").endswith("&lang=python")
    shot(page, "lang-fallback")


def test_the_page_looks_up_a_short_link_itself_without_a_permalink_url(stack, context):
    made = context.request.post(stack["lookup"] + "permalink", form={
        "code": "print('looked up by the page')", "language": "python", "interacts": "[]", "n": "1"})
    assert made.ok, made.text()
    query = made.json()["query"]
    page = context.new_page()
    sent = requests_log(page)
    resp = page.goto(stack["lookup"] + "?q=" + query)
    assert resp.status == 200
    wait_state(page, "finished")
    assert page.locator("#cell .sagecell-output").inner_text().strip() == "looked up by the page"
    assert page.evaluate("() => sagecell.cells[0].getCode()") == "print('looked up by the page')"
    assert ("GET", stack["lookup"] + "permalink?q=" + query) in sent      # the page asked, not the server
    # an unknown id: the page says so, an empty cell, nothing evaluated
    other = context.new_page()
    other.goto(stack["lookup"] + "?q=nosuchlink2")
    alert = other.get_by_role("alert")
    alert.wait_for(timeout=15_000)
    assert "This link does not work: no cell is stored under this link" in alert.inner_text()
    other.wait_for_selector("#cell .sagecell-evaluate")
    assert other.evaluate("() => sagecell.cells[0].getCode()") == ""


def test_shared_interact_keeps_its_control_values(stack, context):
    page = context.new_page()
    sent = requests_log(page)
    page.goto(stack["edge"] + "?c=" + urllib.request.quote(INTERACT))
    page.locator("#cell .sagecell-evaluate").click()
    out = page.locator("#cell .interact-output")
    page.wait_for_function("el => el && el.innerText.includes('square of 10 is 100')",
                           arg=out.element_handle(timeout=30_000), timeout=30_000)
    # move the slider: focus its handle and press keys, as a user would
    page.locator("#cell .interact-control-x .noUi-handle").focus()
    for _ in range(27):
        page.keyboard.press("ArrowRight")
    page.wait_for_function("el => el.innerText.includes('square of 37 is 1369')", arg=out.element_handle(),
                           timeout=15_000)
    page.get_by_role("button", name="Share").click()
    links = page.locator("#cell .sagecell-links a.sagecell-link")
    links.first.wait_for(timeout=15_000)
    short, long = links.nth(0).get_attribute("href"), links.nth(1).get_attribute("href")
    assert "&interacts=" in long
    posts = permalink_posts(sent)
    assert len(posts) == 1
    shot(page, "share-interact")

    for link in (short, long):
        other = context.new_page()
        other.goto(link)
        o = other.locator("#cell .interact-output")
        other.wait_for_function("el => el && el.innerText.includes('square of 37 is 1369')",
                                arg=o.element_handle(timeout=30_000), timeout=30_000)
        readout = other.locator("#cell .interact-control-x .widget-readout")
        other.wait_for_function("el => el.innerText.trim() === '37'", arg=readout.element_handle())
        assert "square of 10" not in o.inner_text()
        # the restoring execution is silent: only the interact is in the output
        assert other.locator("#cell .sagecell-output .sagecell-stream").count() == 0
        if link.startswith(short):
            shot(other, "interact-restored")
        other.close()
    # a plain page without interacts still ends its kernel after the run
    plain = context.new_page()
    plain.goto(stack["edge"] + "?c=1%2B1&autoeval=true")   # (c= does not autoevaluate unless asked)
    wait_state(plain, "finished")
    assert plain.locator("#cell .sagecell-output").inner_text().strip() == "2"


def test_second_evaluation_through_a_tight_edge_is_rate_limited(stack, context):
    page = context.new_page()
    page.goto(stack["tight"] + "?c=print(1)")
    page.locator("#cell .sagecell-evaluate").click()
    wait_state(page, "finished")
    got = responses_log(page)
    page.locator("#cell .sagecell-evaluate").click()
    wait_state(page, "ratelimited")
    text = page.locator("#cell .sagecell-status").inner_text()
    kernel_posts = [(u, s) for m, u, s in got if m == "POST" and u.endswith("/kernel")]
    assert kernel_posts and kernel_posts[-1][1] == 429
    # N is the edge's Retry-After (about 100 s at 0.01 per second)
    import re
    m = re.fullmatch(r"rate limited: try again in (\d+) s", text.strip())
    assert m, text
    assert 50 <= int(m.group(1)) <= 101
    shot(page, "rate-limited")


def test_terms_of_service_accept_then_decline_in_a_fresh_context(tos_server, browser):
    ctx = browser.new_context(viewport={"width": 1000, "height": 800})
    page = ctx.new_page()
    got = responses_log(page)
    page.goto(tos_server + "?c=print('accepted and ran')")
    page.locator("#cell .sagecell-evaluate").click()
    dialog = page.get_by_role("dialog", name="Terms of service")
    dialog.wait_for(timeout=15_000)
    assert "Be kind to the servers" in page.frame_locator(".sagecell-terms iframe").locator("body").inner_text()
    assert not [u for m, u, s in got if m == "POST" and u.endswith("/kernel")]   # nothing asked yet
    shot(page, "tos-dialog")
    page.get_by_role("button", name="Accept").click()
    wait_state(page, "finished")
    assert page.locator("#cell .sagecell-output").inner_text().strip() == "accepted and ran"
    assert any(c["name"] == "cellstack_tos_accepted" for c in ctx.cookies())
    # a second evaluation does not ask again
    page.locator("#cell .sagecell-evaluate").click()
    wait_state(page, "finished")
    assert page.get_by_role("dialog", name="Terms of service").count() == 0
    ctx.close()

    ctx = browser.new_context(viewport={"width": 1000, "height": 800})
    page = ctx.new_page()
    got = responses_log(page)
    page.goto(tos_server + "?c=print('never')")
    page.locator("#cell .sagecell-evaluate").click()
    page.get_by_role("button", name="Decline").click()
    wait_state(page, "declined")
    assert "declined" in page.locator("#cell .sagecell-status").inner_text()
    assert page.get_by_role("dialog", name="Terms of service").count() == 0
    assert page.locator("#cell .sagecell-output").inner_text().strip() == ""
    time.sleep(0.5)
    assert not [(u, s) for m, u, s in got if m == "POST" and u.endswith("/kernel") and s == 200]
    shot(page, "tos-declined")
    ctx.close()


# ---- accessibility: 200% zoom, keyboard only, the clipboard ---------------------------

# For each selector: how far its content overflows it horizontally, and how far it
# sticks out of the viewport on the right (both 0 when it fits).
OVERFLOW = """sels => sels.map(sel => [...document.querySelectorAll(sel)].map(e => {
  const r = e.getBoundingClientRect();
  return [sel, Math.max(0, e.scrollWidth - e.clientWidth),
          Math.max(0, Math.round(r.right - document.documentElement.clientWidth))];
})).flat()"""


def fits(page, sels):
    got = page.evaluate(OVERFLOW, sels)
    assert {s for s, _, _ in got} == set(sels), got                  # every part is there
    assert all(over <= 1 and out <= 1 for _, over, out in got), got
    doc = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert doc[0] <= doc[1], doc                                     # no sideways scrolling of the page


def zoomed(browser):
    """200% zoom: half the CSS pixels of a 1000 px window, each drawn twice as large."""
    return browser.new_context(viewport={"width": 500, "height": 700}, device_scale_factor=2,
                               ignore_https_errors=True)


def test_output_toolbar_share_links_and_terms_fit_at_200_percent_zoom(stack, tos_server, browser):
    ctx = zoomed(browser)
    try:
        page = ctx.new_page()
        code = ("print('a_long_identifier_without_spaces_' * 12)\nprint(list(range(80)))\n"
                "def deeply_nested_function_name(argument_one, argument_two):\n    return argument_one / argument_two\n"
                "deeply_nested_function_name(1, 0)")
        page.goto(stack["edge"] + "?c=" + urllib.request.quote(code))
        page.locator("#cell .sagecell-evaluate").click()
        wait_state(page, "error")
        page.get_by_role("button", name="Share").click()
        page.locator("#cell .sagecell-links a.sagecell-link").first.wait_for(timeout=15_000)
        fits(page, [".sagecell", ".sagecell-toolbar", ".sagecell-output", ".sagecell-output pre",
                    ".sagecell-error", ".sagecell-links", ".sagecell-linkrow"])
        # each link row keeps its Copy button in view (the link itself is cut short)
        for row in page.locator(".sagecell-linkrow").all():
            copy, links = row.locator(".sagecell-copy").bounding_box(), page.locator(".sagecell-links").bounding_box()
            assert copy["x"] + copy["width"] <= links["x"] + links["width"] + 1
        shot(page, "zoom-200-output-share")

        page.goto(tos_server + "?c=print(1)")
        page.locator("#cell .sagecell-evaluate").click()
        page.get_by_role("dialog", name="Terms of service").wait_for(timeout=15_000)
        fits(page, [".sagecell", ".sagecell-terms", ".sagecell-terms-text", ".sagecell-terms-buttons",
                    ".sagecell-terms iframe"])
        assert page.get_by_role("button", name="Accept").is_visible()
        assert page.get_by_role("button", name="Decline").is_visible()
        shot(page, "zoom-200-terms")
    finally:
        ctx.close()


def tab_to(page, selector, limit=12):
    """Press Tab until the focus is on ``selector`` (bounded), as a keyboard user would."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}: focus is on "
                         f"{page.evaluate('document.activeElement.outerHTML.slice(0, 120)')}")


def test_keyboard_only_evaluate_stop_share_and_copy(stack, browser):
    ctx = browser.new_context(viewport={"width": 1000, "height": 800}, ignore_https_errors=True,
                              permissions=["clipboard-read", "clipboard-write"])
    try:
        page = ctx.new_page()
        page.goto(stack["edge"] + "?c=" + urllib.request.quote("import time\nwhile True: time.sleep(0.05)"))
        page.wait_for_selector("#cell .cm-editor")
        tab_to(page, "#cell .cm-content")                       # into the editor
        page.keyboard.press("Control+End")
        page.keyboard.press("Tab")                              # Tab in the editor: its own (indent)
        assert page.evaluate("document.activeElement.matches('#cell .cm-content')")
        page.keyboard.press("Escape")                           # Escape, then Tab leaves it
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.matches('#cell .sagecell-evaluate')")
        page.keyboard.press("Enter")                            # Enter on Evaluate
        wait_state(page, "running")
        tab_to(page, "#cell .sagecell-stop")
        page.keyboard.press(" ")                                # Space on Stop
        wait_state(page, "interrupted")
        tab_to(page, "#cell .sagecell-share")
        page.keyboard.press("Enter")                            # Enter on Share
        links = page.locator("#cell .sagecell-links a.sagecell-link")
        links.first.wait_for(timeout=15_000)
        short, long = links.nth(0).get_attribute("href"), links.nth(1).get_attribute("href")
        tab_to(page, "#cell .sagecell-copy")                    # the short link's Copy
        page.keyboard.press(" ")
        copy = page.get_by_role("button", name="Copy the short link")
        page.wait_for_function("b => b.textContent === 'Copied'", arg=copy.element_handle(), timeout=5_000)
        assert page.evaluate("navigator.clipboard.readText()") == short
        # and with the mouse: the long link's Copy
        page.get_by_role("button", name="Copy the long link").click()
        page.wait_for_function("() => navigator.clipboard.readText().then(t => t.includes('?z='))", timeout=5_000)
        assert page.evaluate("navigator.clipboard.readText()") == long
        assert page.get_by_role("button", name="Copy the long link").inner_text() == "Copied"
    finally:
        ctx.close()
