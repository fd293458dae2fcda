"""Plain ipywidgets code in a real Chromium against a real cell server
(issue 7: "any ipywidgets code renders and works").

ipywidgets' ``Output`` widget does not send its output over its comm: the
kernel only sets the widget's ``msg_id`` and the page must route that
request's iopub output into it.  So ``ipywidgets.interact``,
``interactive_output`` and ``with out:`` each need the page's manager to
capture output; without it the output is lost (a slider change) or lands in
the cell (``with out:`` in a later cell).
"""
from __future__ import annotations

import time

import pytest

from tests.widgets_browser.conftest import grid_of, nudge, run, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_ipywidgets_interact_output_follows_the_slider(harness):
    page = harness
    area = run(page, "import ipywidgets\n"
                     "w = ipywidgets.interact(lambda k: print('k is', k), k=(0, 10))\n")
    out = area.locator(".widget-output")
    wait_text(out, "k is 5")
    nudge(area.locator(".widget-slider .noUi-handle").first)
    page.wait_for_function("el => el.innerText.includes('k is 6') && !el.innerText.includes('k is 5')",
                           arg=out.element_handle(), timeout=15000)
    assert area.locator("pre.stream").count() == 0, "the interact's output landed in the cell"


def test_interactive_output_in_a_vbox(harness):
    page = harness
    area = run(page, """import ipywidgets as widgets
from IPython.display import display
s = widgets.IntSlider(value=2, min=0, max=10, description='n')
def show(n):
    print('square', n * n)
display(widgets.VBox([s, widgets.interactive_output(show, {'n': s})]))
""")
    out = area.locator(".widget-vbox .widget-output")
    wait_text(out, "square 4")
    nudge(area.locator(".widget-slider .noUi-handle").first, 2)
    page.wait_for_function("el => el.innerText.trim() === 'square 16'", arg=out.element_handle(),
                           timeout=15000)
    # Moved from a later evaluation: the kernel changes the value, the output follows.
    later = run(page, "s.value = 7\nprint('set')")
    wait_text(later, "set")
    page.wait_for_function("el => el.innerText.trim() === 'square 49'", arg=out.element_handle(),
                           timeout=15000)
    assert area.locator("pre.stream").count() == 0


def test_with_output_from_a_later_cell_lands_in_the_widget(harness):
    page = harness
    area = run(page, "import ipywidgets as widgets\nout = widgets.Output()\ndisplay(out)\n")
    area.locator(".widget-output").wait_for(state="attached", timeout=15000)
    later = run(page, "with out:\n    print('hello from out')\n"
                      "    display(widgets.HTML('<i>shown</i>'))\nprint('cell text')")
    out = area.locator(".widget-output")
    wait_text(out, "hello from out")
    wait_text(out, "shown")
    wait_text(later, "cell text")
    assert "hello from out" not in later.inner_text()
    clear = run(page, "out.clear_output()\nwith out:\n    print('second')\n")
    page.wait_for_function("el => el.innerText.trim() === 'second'", arg=out.element_handle(),
                           timeout=15000)
    assert "second" not in clear.inner_text()
    # The kernel's side follows what the page shows: the page syncs `outputs`
    # back, one update in flight per widget, so the last one may come after a
    # cell sent now; asked again until it has (bounded).
    deadline = time.monotonic() + 20
    while True:
        check = run(page, "print('OUTS', [o.get('text') for o in out.outputs])")
        wait_text(check, "OUTS")
        if "OUTS ['second\\n']" in check.inner_text() or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "OUTS ['second\\n']" in check.inner_text()


def test_gridbox_lays_buttons_in_a_grid(harness):
    page = harness
    area = run(page, """import ipywidgets as widgets
b = [widgets.Button(description=f'b{i}', layout=widgets.Layout(width='80px')) for i in range(6)]
g = widgets.GridBox(b, layout=widgets.Layout(grid_template_columns='repeat(3, 90px)'))
out = widgets.Output()
def clicked(btn):
    with out:
        print('clicked', btn.description)
for x in b:
    x.on_click(clicked)
display(widgets.VBox([g, out]))
""")
    buttons = area.locator(".widget-gridbox button")
    buttons.nth(5).wait_for(timeout=15000)
    boxes = [buttons.nth(i).bounding_box() for i in range(6)]
    assert grid_of(boxes) == (2, 3), boxes
    buttons.nth(4).click()
    wait_text(area.locator(".widget-output"), "clicked b4")
    assert area.locator("pre.stream").count() == 0

