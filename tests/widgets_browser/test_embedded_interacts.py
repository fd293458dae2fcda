"""Interacts in the real embeddable cell (``embedded_sagecell.js``), on a
page of another origin, as a course page would use them (issue 7 through
issue 6's front end): the cell loads the widget bundle when the first widget
appears; a plain (non-linked) cell with an interact keeps its kernel; a
linked cell's ``f.x = 5`` moves the slider of the interact in its partner.
"""
from __future__ import annotations

import sys
import time

import pytest

from tests.support.ports import free_port
from tests.support.procs import http_ok, wait_until
from tests.widgets_browser.conftest import nudge, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Interacts</title>
<script src="{server}embedded_sagecell.js"></script></head><body>
<h1>Interacts</h1>
<div id="plain"><script type="text/x-sage">
@interact
def g(n=slider(1, 9), color=selector(["red", "blue"], buttons=True)):
    print("n", n, color)
</script></div>
<div id="a"><script type="text/x-sage">
@interact
def f(x=slider(0, 10)):
    print("x is", x)
</script></div>
<div id="b"><script type="text/x-sage">f.x = 5
print("moved")</script></div>
<div id="ipw"><script type="text/x-sage">import ipywidgets as widgets
out = widgets.Output()
s = widgets.IntSlider(value=3)
display(widgets.VBox([s, out, widgets.interactive_output(lambda v: print("square", v * v), dict(v=s))]))
with out:
    print("inside the widget")
print("in the cell")</script></div>
<script>
  sagecell.makeSagecell({{inputLocation: "#ipw"}});
  window.plain = sagecell.makeSagecell({{inputLocation: "#plain"}});
  sagecell.makeSagecell({{inputLocation: "#a", linked: true}});
  sagecell.makeSagecell({{inputLocation: "#b", linked: true}});
</script></body></html>
"""


@pytest.fixture(scope="module")
def embed(module_children, cellserver, tmp_path_factory):
    site = tmp_path_factory.mktemp("embed-site")
    (site / "interacts.html").write_text(PAGE.format(server=cellserver))
    port = free_port()
    module_children.start("embed-site", [sys.executable, "-m", "http.server", str(port),
                                         "--bind", "127.0.0.2", "--directory", str(site)])
    url = f"http://127.0.0.2:{port}/interacts.html"
    wait_until(lambda: http_ok(url), 20, "the embedding page's server")
    return url


@pytest.fixture
def page(browser, embed):
    ctx = browser.new_context(viewport={"width": 1000, "height": 900})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(embed)
    yield pg
    ctx.close()
    assert not errors, errors


def evaluate(page, sel):
    page.locator(f"{sel} .sagecell-evaluate").click()
    page.wait_for_selector(f'{sel} .sagecell[data-state="finished"]', timeout=30000)


def test_interact_in_an_embedded_cell_keeps_its_kernel(page):
    evaluate(page, "#plain")
    out = page.locator("#plain .interact-output")
    wait_text(out, "n 1 red")
    time.sleep(1.5)   # a plain cell's kernel would end after its first execution: not with widgets
    nudge(page.locator("#plain .interact-control-n .noUi-handle"))
    wait_text(out, "n 2 red")
    page.locator("#plain .interact-control-color button", has_text="blue").click()
    wait_text(out, "n 2 blue")
    from tests.widgets_browser.test_interacts_browser import _artifact
    page.screenshot(path=str(_artifact("embedded-interact.png")), full_page=True)


def test_linked_cell_moves_the_slider(page):
    evaluate(page, "#a")
    out = page.locator("#a .interact-output")
    wait_text(out, "x is 0")
    evaluate(page, "#b")
    wait_text(page.locator("#b .sagecell-output"), "moved")
    wait_text(out, "x is 5")
    readout = page.locator("#a .interact-control-x .widget-readout")
    page.wait_for_function("el => el.innerText.trim() === '5'", arg=readout.element_handle())
    assert "x is" not in page.locator("#b .sagecell-output").inner_text()


def test_plain_ipywidgets_output_in_the_first_widget_cell(page):
    """The cell loads the widget bundle on its first comm_open; the output
    that ``with out:`` and ``interactive_output`` produce right after must
    still reach the widgets, not the cell."""
    evaluate(page, "#ipw")
    outs = page.locator("#ipw .widget-output")
    wait_text(outs.nth(0), "inside the widget")
    wait_text(outs.nth(1), "square 9")
    wait_text(page.locator("#ipw .sagecell-output"), "in the cell")
    text = page.locator("#ipw .sagecell-output").inner_text()
    assert text.count("inside the widget") == 1 and text.count("square 9") == 1, text
    nudge(page.locator("#ipw .widget-slider .noUi-handle"))
    page.wait_for_function("el => el.innerText.trim() === 'square 16'", arg=outs.nth(1).element_handle())


def test_a_widget_cell_without_the_bundle_still_shows_its_text(browser, embed):
    """If the widget bundle cannot load, the messages held while it loaded
    still reach the cell."""
    ctx = browser.new_context(viewport={"width": 1000, "height": 900})
    try:
        pg = ctx.new_page()
        pg.route("**/static/build/widgets.js", lambda route: route.abort())
        pg.goto(embed)
        evaluate(pg, "#ipw")
        wait_text(pg.locator("#ipw .sagecell-output"), "in the cell")
    finally:
        ctx.close()


def test_an_interact_whose_kernel_dies_says_disconnected_and_disables_its_controls(page, cellserver):
    evaluate(page, "#plain")
    wait_text(page.locator("#plain .interact-output"), "n 1 red")
    kid = page.evaluate("window.plain.kernelOf().id")
    assert page.request.delete(f"{cellserver}kernel/{kid}").status in (200, 204)
    note = page.locator("#plain .cellstack-widgets-note")
    note.wait_for(timeout=15_000)
    assert note.inner_text().startswith("Disconnected")
    page.wait_for_function("() => [...document.querySelectorAll('#plain .interact-control-color button')]"
                           ".every(b => b.disabled)", timeout=10_000)
    from tests.widgets_browser.test_interacts_browser import _artifact
    page.screenshot(path=str(_artifact("embedded-interact-disconnected.png")), full_page=True)
