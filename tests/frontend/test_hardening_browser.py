"""What the library does when its parts fail or the page holds strangers' markup, in a
real headless Chromium against a real ``twistd cellserver``, the cell on a page of
another origin: a widget bundle that loads but is broken (defines nothing, throws,
a manager or handlers that throw) or never loads must not hold the cell's messages
forever, nor its kernel's death; and a
``sagecell-root`` link in the page's body (user content) must not choose the server."""
from __future__ import annotations

import os
import signal

import pytest

from tests.frontend.test_cell_browser import EMBED, server, status, wait_state  # noqa: F401 (fixture)
from tests.support.browser import browser, page  # noqa: F401 (fixtures)
from tests.support.embedding import cell_server_and_site
from tests.support.procs import PRINT_PID, host_pid

pytestmark = [pytest.mark.integration, pytest.mark.browser]

# widgets.js as a broken deploy or a bug could leave it
BROKEN_WIDGETS = {
    "defines-nothing": "/* an empty bundle */",
    "throws": "throw new Error('the bundle is broken');",
    "manager-throws": "window.cellstackWidgets = {createManager: function () { throw new Error('no manager'); }};",
    "handlers-throw": ("window.cellstackWidgets = {createManager: function () { return {"
                       " handleMessage: function (m) { if (/^comm_/.test(m.header.msg_type)) throw new Error('bad');"
                       " return false; },"
                       " renderOutput: function () { throw new Error('bad render'); }, disconnect: function () {} }; }};"),
}

WIDGET_CODE = ("import ipywidgets\nfrom IPython.display import display\n"
               "display(ipywidgets.IntSlider(value=3, description='n'))\n"
               "print('after the widget', flush=True)\n")


def output(page, sel):
    return page.locator(f"{sel} .sagecell-output").inner_text().strip()


@pytest.mark.parametrize("kind", sorted(BROKEN_WIDGETS))
def test_a_broken_widget_bundle_holds_no_output_and_death_still_shows(server, page, kind):
    page.route("**/static/build/widgets.js", lambda route: route.fulfill(
        body=BROKEN_WIDGETS[kind], content_type="application/javascript"))
    page.goto(server["embed"])
    page.wait_for_selector("#l1 .sagecell-evaluate")
    page.evaluate("c => { cells.l1.setCode(c); cells.l1.evaluate(); }", WIDGET_CODE + PRINT_PID)
    wait_state(page, "#l1", "finished")
    text = output(page, "#l1")
    assert "after the widget" in text, text
    # the widget itself: its plain text when there is no manager (a manager that draws
    # nothing leaves an empty box)
    if kind != "handlers-throw":
        assert "IntSlider" in page.locator("#l1 .sagecell-widget-missing").inner_text()
    # later messages of the same kernel go on: another run, then its death
    page.evaluate("c => { cells.l2.setCode(c); cells.l2.evaluate(); }", "print('still here')")
    wait_state(page, "#l2", "finished")
    assert output(page, "#l2") == "still here"
    os.kill(host_pid(text.splitlines()[-1]), signal.SIGKILL)
    wait_state(page, "#l1", "dead")
    assert "SIGKILL" in status(page, "#l1").inner_text()


def test_a_stalled_widget_bundle_holds_output_only_until_its_timeout(server, page):
    """widgets.js never answers: the kernel's death shows at once (never held), and the
    held output comes once the load gives up (loadScript's 30 s)."""
    stalled = []
    page.route("**/static/build/widgets.js", lambda route: stalled.append(route))      # never answered
    page.goto(server["embed"])
    page.wait_for_selector("#l1 .sagecell-evaluate")
    page.evaluate("c => { cells.l1.setCode(c); cells.l1.evaluate(); }",
                  WIDGET_CODE + "import os, signal, time\ntime.sleep(0.5)\nos.kill(os.getpid(), signal.SIGKILL)")
    wait_state(page, "#l1", "dead")
    assert stalled and output(page, "#l1") == ""                  # still loading: the output is held
    page.wait_for_function("() => document.querySelector('#l1 .sagecell-output').innerText.includes('after the widget')",
                           timeout=45_000)
    assert "IntSlider" in page.locator("#l1 .sagecell-widget-missing").inner_text()


ELSEWHERE = "http://127.0.0.3:9/"


@pytest.fixture(scope="module")
def rooted(module_children, tmp_path_factory):
    """The course page twice more: with a sagecell-root link in its body (naming a
    server that is not there), and with one in its head after the script (naming
    our server by another spelling of its address)."""
    def pages(base):
        course = EMBED.format(server=base)
        other_name = base.replace("127.0.0.1", "localhost")
        return {"body-link.html": course.replace("<h1>", f'<link property="sagecell-root" href="{ELSEWHERE}"><h1>', 1),
                "head-link.html": course.replace("</head>", f'<link property="sagecell-root" href="{other_name}"></head>', 1)}
    return cell_server_and_site(module_children, tmp_path_factory.mktemp("fe-rooted") / "site", "f4", pages,
                                ["--ready-kernels", "1", "--max-kernels", "4"])


def test_a_sagecell_root_link_in_the_body_is_ignored(rooted, page):
    """The body is the page's content (a forum post may hold any markup): a link there
    naming another server is not followed; one in <head>, after the script, still is."""
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if r.url.startswith(ELSEWHERE) else None)
    page.goto(rooted["embed"] + "body-link.html")
    page.wait_for_selector("#one .sagecell-evaluate")
    assert page.evaluate("document.querySelector('body > link[property=\"sagecell-root\"]') !== null")
    assert page.evaluate("sagecell.root") == rooted["base"]
    page.locator("#one .sagecell-evaluate").click()
    wait_state(page, "#one", "finished")
    assert output(page, "#one") == "45"
    assert asked == []
    page.goto(rooted["embed"] + "head-link.html")
    page.wait_for_selector("#one .sagecell-evaluate")
    assert page.evaluate("sagecell.root") == rooted["base"].replace("127.0.0.1", "localhost")
