"""Kernel HTML and JavaScript shown through widgets must not run in the page
that embeds the cell (someone else's site; anonymous strangers write the
kernel code).

The cell's own output runs HTML and JavaScript in sandboxed iframes; output
that reaches the page through widgets must be as contained: an ``Output``
widget's outputs (``with out:``, ``ipywidgets.interact``, the interacts'
``html()``) and the markup of ``ipywidgets.HTML`` / ``HTMLMath``.  Each
attempt below tries to set a global of the host page (``window.top``) or its
title; the page's harmless markup must still render inline as before.
"""
from __future__ import annotations

import pytest

from tests.widgets_browser.conftest import nudge, run, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.integration]

HOST_TITLE = "widgets harness"


def host_hits(page) -> dict:
    """The host page's globals the attempts would set, and its title."""
    return page.evaluate("() => ({hits: Object.keys(window).filter(k => k.startsWith('hit')),"
                         " title: document.title})")


def images_settled(locator) -> None:
    """Wait until every <img> under ``locator`` has loaded or failed (so an
    ``onerror`` left in place would have run by now)."""
    locator.page.wait_for_function(
        "el => [...el.querySelectorAll('img')].every(i => i.complete)",
        arg=locator.element_handle(), timeout=15000)


def test_output_widget_html_and_javascript_stay_out_of_the_page(harness):
    page = harness
    area = run(page, """import ipywidgets as widgets
from IPython.display import display, HTML, Javascript
out = widgets.Output()
display(out)
with out:
    display(HTML("<b class='plain'>plain markup</b><table class='tab'><tr><td>a cell</td></tr></table>"))
    display(HTML("<p class='scripted'>with a script</p><script>"
                 "try { window.top.hitScript = 1 } catch (e) {}"
                 "try { window.top.document.title = 'pwned' } catch (e) {}"
                 "document.body.classList.add('ran')</script>"))
    display(HTML("<img class='bad' src='x' onerror='window.top.hitOnerror = 1'>"))
    display(Javascript("try { window.top.hitJs = 1 } catch (e) {} document.body.classList.add('js-ran')"))
    print('all shown')
""")
    out = area.locator(".widget-output")
    wait_text(out, "all shown")
    wait_text(out.locator("b.plain"), "plain markup")
    wait_text(out.locator("table.tab td"), "a cell")
    images_settled(out)
    assert host_hits(page) == {"hits": [], "title": HOST_TITLE}
    # The script and the JavaScript ran, but in a sandboxed frame of their own.
    frames = out.locator("iframe")
    assert frames.count() == 2
    for i in range(2):
        assert frames.nth(i).get_attribute("sandbox") == "allow-scripts"
    html_frame = out.frame_locator("iframe").nth(0)
    html_frame.locator("body.ran p.scripted").wait_for(timeout=15000)
    # The frame takes its content's height (it reports it), not the default 150px.
    page.wait_for_function("f => f.style.height && parseInt(f.style.height) < 100",
                           arg=frames.nth(0).element_handle(), timeout=15000)
    out.frame_locator("iframe").nth(1).locator("body.js-ran").wait_for(state="attached", timeout=15000)
    assert host_hits(page) == {"hits": [], "title": HOST_TITLE}
    # Markup only (no script) is not framed: it sits in the page, handlers stripped.
    assert out.locator("img.bad").count() == 1
    assert out.locator("img.bad").get_attribute("onerror") is None


def test_html_widgets_markup_has_no_handlers(harness):
    page = harness
    area = run(page, """import ipywidgets as widgets
display(widgets.VBox([
    widgets.HTML("<img class='bad' src='x' onerror='window.top.hitHtmlWidget = 1'><i class='ok'>fine</i>"),
    widgets.HTMLMath("<img class='bad' src='x' onerror='window.top.hitHtmlMath = 1'><i class='ok'>math $x$</i>"),
    widgets.HTMLMath("<i class='ok'>in math</i> $<img class='bad' src='x' onerror='window.top.hitInMath = 1'>$"),
    widgets.Checkbox(description="<img class='bad' src='x' onerror='window.top.hitDesc = 1'>d"
                     " $<img class='bad' src='x' onerror='window.top.hitDescMath = 1'>$",
                     description_allow_html=True),
]))
h = widgets.HTML("<i class='ok'>first</i>")
display(h)
""")
    wait_text(area.locator(".widget-html i.ok").first, "fine")
    wait_text(area.locator(".widget-htmlmath i.ok").first, "math $x$")
    wait_text(area.locator(".widget-htmlmath").nth(1), "$<img class='bad'")
    # A later change of the value goes through the same path.
    later = run(page, "h.value = \"<img class='bad' src='y' onerror='window.top.hitUpdate = 1'>"
                      "<i class='ok'>second</i>\"\nprint('changed')")
    wait_text(later, "changed")
    wait_text(area.locator(".widget-html i.ok", has_text="second"), "second")
    images_settled(area)
    assert area.locator("img.bad").count() == 4
    assert host_hits(page) == {"hits": [], "title": HOST_TITLE}


def test_kernel_markup_cannot_clobber_page_globals_or_cover_the_page(harness):
    """An element id is a global of the page (``window.hostConfig``, named
    access): JupyterLab's sanitizer turns ids into ``data-jupyter-id``.
    Absolute positions pass it: every Lumino widget is ``position: relative;
    overflow: hidden``, so a page-sized cover stays inside the widget.  A
    guard for both, should either library change."""
    page = harness
    area = run(page, """import ipywidgets as widgets
from IPython.display import display, HTML
display(widgets.HTML("<b id='hostConfig' class='idd'>named</b>"
                     "<div class='cover' style='position: absolute; top: 0; left: 0; width: 3000px;"
                     " height: 3000px; background: red'>cover</div>"))
out = widgets.Output()
display(out)
with out:
    display(HTML("<i id='hostSettings' class='idd'>in output</i>"))
""")
    wait_text(area.locator(".widget-html b.idd"), "named")
    wait_text(area.locator(".widget-output i.idd"), "in output")
    assert area.locator(".idd[id]").count() == 0
    assert area.locator(".idd[data-jupyter-id='hostConfig']").count() == 1
    assert page.evaluate("() => [typeof window.hostConfig, typeof window.hostSettings]") == ["undefined"] * 2
    # the page's own status line, above the cell, is still what is at its place
    assert page.evaluate("""() => { const s = document.getElementById('state').getBoundingClientRect();
        const hit = document.elementFromPoint(s.left + 2, s.top + 2);
        return hit && hit.id; }""") == "state"
    box = area.locator(".cellstack-widget-area").first.bounding_box()
    inside = page.evaluate("([x, y]) => document.elementFromPoint(x, y).className",
                           [box["x"] + 5, box["y"] + 5])
    assert "cover" in inside


def test_interact_html_and_ipywidgets_interact_stay_out_of_the_page(harness):
    page = harness
    area = run(page, """from cellserver.interacts import *
import ipywidgets
from IPython.display import display, HTML, Javascript
@interact
def f(n=slider(1, 3)):
    html(f"<b class='big'>n is {n}</b><img class='bad' src='x' onerror='window.top.hitInteract{n} = 1'>")
def g(k):
    display(HTML(f"<i class='k'>k is {k}</i><script>try {{ window.top.hitIpyInteract = 1 }} catch (e) {{}}</script>"))
    display(Javascript("try { window.top.hitIpyJs = 1 } catch (e) {}"))
ipywidgets.interact(g, k=(0, 4))
""")
    o = area.locator(".interact-output").first
    wait_text(o.locator("b.big"), "n is 1")
    nudge(area.locator(".interact-control-n .noUi-handle"))
    page.wait_for_function("el => [...el.querySelectorAll('b.big')].map(b => b.innerText).join() === 'n is 2'",
                           arg=o.element_handle(), timeout=15000)
    images_settled(o)
    ipy = area.locator(".widget-interact .widget-output")
    page.wait_for_function("el => el.querySelector('iframe, i.k')", arg=ipy.element_handle(),
                           timeout=15000)
    assert host_hits(page) == {"hits": [], "title": HOST_TITLE}
    # Its HTML (with a script) and JavaScript are shown, each in a sandboxed frame.
    ipy.frame_locator("iframe").first.locator("i.k", has_text="k is 2").wait_for(timeout=15000)
    assert ipy.locator("iframe").count() == 2
    assert host_hits(page) == {"hits": [], "title": HOST_TITLE}


def test_error_widget_shows_kernel_names_as_text(harness):
    # A widget whose class cannot load becomes an error widget; a click shows
    # its message, which quotes the kernel's (here hostile) names, as HTML.
    page = harness
    area = run(page, """import ipywidgets as widgets
from traitlets import Unicode
class Odd(widgets.DOMWidget):
    _model_name = Unicode("<img class='bad' src='x' onerror='window.top.hitErrorWidget = 1'>").tag(sync=True)
    _model_module = Unicode("nowhere").tag(sync=True)
    _view_name = Unicode("OddView").tag(sync=True)
    _view_module = Unicode("nowhere").tag(sync=True)
display(Odd())
""")
    box = area.locator(".jupyter-widgets-error-widget")
    box.click(timeout=15000)
    wait_text(box, "<img class='bad'")
    images_settled(area)
    assert area.locator("img.bad").count() == 0
    assert host_hits(page) == {"hits": [], "title": HOST_TITLE}
