"""Interacts in a real Chromium against a real cell server (issue 7).

Every test drives controls the way a user does (mouse, keyboard) and checks
the interact's own output area; ``f.x = 5`` from a later evaluation must move
the slider in the page.
"""
from __future__ import annotations

import time

import pytest

from tests.widgets_browser.conftest import grid_of, nudge, run, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ALL_CONTROLS = """
from cellserver.interacts import *
@interact
def f(x=slider(0, 10), r=range_slider(0, 10, 1, default=(2, 5)), t=input_box("hi", type=str),
      e=input_box(2), c=checkbox(False), s=selector(["p", "q", "z"], buttons=True),
      d=selector(["red", "green", "blue"]), rad=selector([1, 2], selector_type="radio"),
      col=color_selector("#ff0000"), b=button("Go", value="hit", default="idle"),
      bb=button_bar([(1, "+1"), (-1, "-1")], default=0), h=text_control("<b>note</b>"),
      cs=slider(0.0, 2.5, display_value=False), cr=range_slider(0.0, 1.0)):
    print(f"x={x} r={r} t={t} e={e} c={c} s={s} d={d} rad={rad} col={col} b={b} bb={bb}"
          f" cs={cs:.3f} cr=({cr[0]:.3f}, {cr[1]:.3f})")
"""


def out(page):
    return page.locator(".interact-output").first


def start(page, code: str, shows: str):
    """Run ``code`` (which makes an interact); returns the interact's output
    area once it shows ``shows``."""
    run(page, code)
    o = out(page)
    wait_text(o, shows)
    return o


def test_each_control_renders_and_reruns(harness):
    page = harness
    o = start(page, ALL_CONTROLS,
                    "x=0 r=(2, 5) t=hi e=2 c=False s=p d=red rad=1 col=#ff0000 b=idle bb=0"
                    " cs=0.000 cr=(0.000, 1.000)")
    assert page.locator(".interact-control-h b", has_text="note").count() == 1
    # display_value=False hides the readout; the continuous range slider shows its own.
    assert not page.locator(".interact-control-cs .widget-readout").is_visible()
    assert page.locator(".interact-control-x .widget-readout").is_visible()
    cr_readout = page.locator(".interact-control-cr .widget-readout")
    assert cr_readout.is_visible() and cr_readout.inner_text().strip() == "0.000 – 1.000"

    nudge(page.locator(".interact-control-x .noUi-handle"))
    wait_text(o, "x=1 ")
    nudge(page.locator(".interact-control-r .noUi-handle").last)
    wait_text(o, "r=(2, 6)")
    box = page.locator(".interact-control-t input")
    box.fill("hello there")
    box.press("Enter")
    wait_text(o, "t=hello there")
    e = page.locator(".interact-control-e input")
    e.fill("6*7")
    e.press("Enter")
    wait_text(o, "e=42")
    page.locator(".interact-control-c input[type=checkbox]").check()
    wait_text(o, "c=True")
    page.locator(".interact-control-s button", has_text="q").click()
    wait_text(o, "s=q")
    page.locator(".interact-control-d select").select_option(label="blue")
    wait_text(o, "d=blue")
    page.locator(".interact-control-rad input[type=radio]").nth(1).check()
    wait_text(o, "rad=2")
    page.locator(".interact-control-col input[type=text]").fill("#00ff00")
    page.locator(".interact-control-col input[type=text]").press("Enter")
    wait_text(o, "col=#00ff00")
    page.locator(".interact-control-b button", has_text="Go").click()
    wait_text(o, "b=hit bb=0")
    page.locator(".interact-control-bb button", has_text="-1").click()
    wait_text(o, "b=idle bb=-1")
    # Continuous sliders move by their step (2.5 / 499, 1 / 499).
    nudge(page.locator(".interact-control-cs .noUi-handle"))
    wait_text(o, "cs=0.005 ")
    nudge(page.locator(".interact-control-cr .noUi-handle").first)
    wait_text(o, "cr=(0.002, 1.000)")
    page.screenshot(path=str(_artifact("interact-all-controls.png")), full_page=True)


def test_attribute_set_from_later_evaluation_moves_slider(harness):
    page = harness
    # No import: kernels have interact and the controls in their namespace.
    run(page, "@interact\ndef f(x=slider(0, 10)):\n    print('x is', x)\n")
    wait_text(out(page), "x is 0")
    area = run(page, "f.x = 5\nprint('done')")
    wait_text(area, "done")
    wait_text(out(page), "x is 5")
    readout = page.locator(".interact-control-x .widget-readout")
    page.wait_for_function("el => el.innerText.trim() === '5'", arg=readout.element_handle())
    assert "x is" not in area.inner_text()  # the interact's output stays in its own area


def test_auto_update_false_waits_for_update(harness):
    page = harness
    o = start(page, "@interact\ndef f(n=slider(0, 10), auto_update=False):\n    print('n =', n)\n",
                    "n = 0")
    nudge(page.locator(".interact-control-n .noUi-handle"), 3)
    time.sleep(0.5)
    assert o.inner_text().strip() == "n = 0"
    page.locator(".interact-control-auto_update button", has_text="Update").click()
    wait_text(o, "n = 3")


def test_selector_nrows_ncols_form_a_grid(harness):
    page = harness
    o = start(page, "@interact\ndef f(b=selector(list(range(6)), ncols=3),"
                    " r=selector(list('abcdef'), selector_type='radio', nrows=3),"
                    " w=selector([chr(97 + i) for i in range(26)], ncols=13, width='3em')):\n"
                    "    print('b', b, 'r', r, 'w', w)\n",
                    "b 0 r a w a")

    def boxes(selector):
        items = page.locator(selector)
        return [items.nth(i).bounding_box() for i in range(items.count())]
    assert grid_of(boxes(".interact-control-b button")) == (2, 3)
    assert grid_of(boxes(".interact-control-r .widget-radio-box label")) == (3, 2)
    assert grid_of(boxes(".interact-control-w button")) == (2, 13)  # beyond any fixed set of classes
    page.locator(".interact-control-b button", has_text="4").click()
    page.locator(".interact-control-r input[type=radio]").nth(5).check()
    page.locator(".interact-control-w button", has_text="z").click()
    wait_text(o, "b 4 r f w z")
    page.screenshot(path=str(_artifact("interact-selector-grids.png")), full_page=True)


def test_input_grid_submits(harness):
    page = harness
    o = start(page, "from cellserver.interacts import *\n@interact\ndef f(m=input_grid(2, 2, default=[[1, 2], [3, 4]], label='M')):\n"
                    "    print('det', m[0][0] * m[1][1] - m[0][1] * m[1][0])\n",
                    "det -2")
    cells = page.locator(".interact-control-m input")
    assert cells.count() == 4
    cells.nth(0).fill("5")
    cells.nth(3).fill("2*3")
    time.sleep(0.3)
    assert "det -2" in o.inner_text()
    page.locator(".interact-control-m button", has_text="Submit").click()
    wait_text(o, "det 24")


def test_nested_layout_and_nested_interact(harness):
    page = harness
    run(page, """from cellserver.interacts import *
@interact(layout=[["a", [["b"], ["c"]]], ["_output"], ["d"]])
def f(a=slider(1, 3), b=checkbox(True), c="cc", d=selector(["u", "v"])):
    print("outer", a, b, c, d)
    @interact
    def g(k=slider(0, a)):
        print("inner", k)
""")
    outer = page.locator(".sagecell-interact").first
    wait_text(outer, "outer 1 True cc u")
    wait_text(outer, "inner 0")
    # a and the (b, c) column share the first row; the output comes before d.
    first_row = outer.locator(":scope > .interact-row").first
    assert first_row.locator(".interact-control-a").count() == 1
    assert first_row.locator(".interact-control-b").count() == 1
    assert first_row.locator(".interact-control-c").count() == 1
    order = page.evaluate("""() => {
        const root = document.querySelector('.sagecell-interact');
        return Array.from(root.children).map(c => c.className);
    }""")
    assert "interact-output" in order[1] and "interact-control-d" in order[2]
    inner_slider = outer.locator(".interact-output .interact-control-k .noUi-handle")
    nudge(inner_slider)
    wait_text(outer.locator(".interact-output .interact-output"), "inner 1")
    nudge(page.locator(".interact-control-a .noUi-handle").first)
    wait_text(outer, "outer 2 True cc u")
    assert page.locator(".interact-control-k").count() == 1  # the old inner interact was replaced
    page.screenshot(path=str(_artifact("interact-nested-layout.png")), full_page=True)


def test_html_inside_an_interact(harness):
    page = harness
    run(page, "@interact\ndef f(n=slider(1, 3)):\n    html(f\"<b class='big'>n is {n}</b>\")\n")
    o = out(page)
    wait_text(o.locator("b.big"), "n is 1")
    nudge(page.locator(".interact-control-n .noUi-handle"))
    page.wait_for_function("el => el.querySelectorAll('b.big').length === 1 && el.innerText.trim() === 'n is 2'",
                           arg=o.element_handle())


def test_dict_layout_places_controls_around_the_output(harness):
    page = harness
    o = start(page, "@interact(layout=dict(top=[['a', 'b']], left=[['c']], right=[['d']], bottom=[['e']]))\n"
                    "def f(a=1, b=2, c=3, d=4, e=5):\n    print('sum', a + b + c + d + e)\n",
                    "sum 15")

    def box(name):
        return page.locator(f".interact-control-{name}").bounding_box()
    a, b, c, d, e, mid = box("a"), box("b"), box("c"), box("d"), box("e"), o.bounding_box()
    assert round(a["y"]) == round(b["y"]) and a["x"] + a["width"] <= b["x"] + 1  # one row: a, b
    for side in (c, d, mid):                                   # the middle row, below a and b
        assert side["y"] >= a["y"] + a["height"] - 1
    assert c["x"] + c["width"] <= mid["x"] + 1 and mid["x"] + mid["width"] <= d["x"] + 1  # c | output | d
    assert e["y"] >= max(c["y"] + c["height"], mid["y"] + mid["height"], d["y"] + d["height"]) - 1
    nudge(page.locator(".interact-control-e .noUi-handle"))
    wait_text(o, "sum 16")
    page.screenshot(path=str(_artifact("interact-dict-layout.png")), full_page=True)


@pytest.mark.parametrize("crash", ["import os\nos._exit(1)",
                                   "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"],
                         ids=["exit", "sigkill"])
def test_crashed_kernel_shows_disconnected_and_disables_controls(harness, crash):
    page = harness
    o = start(page, "@interact\ndef f(x=slider(0, 10), c=checkbox(False)):\n    print('x', x, c)\n",
                    "x 0 False")
    page.evaluate("c => { window.run(c); }", crash)   # never answers: the kernel is gone
    note = page.locator(".cellstack-widgets-note")
    note.wait_for(timeout=20000)
    assert note.inner_text().startswith("Disconnected")
    page.wait_for_function("() => document.querySelector('.interact-control-c input').disabled"
                           " && document.querySelector('.interact-control-x .slider').hasAttribute('disabled')",
                           timeout=10000)
    sent = page.evaluate("() => window.mgr.sent")
    nudge(page.locator(".interact-control-x .noUi-handle"))
    time.sleep(0.3)
    assert page.evaluate("() => window.mgr.sent") == sent, "a dead kernel's control still sent messages"
    assert o.inner_text().strip() == "x 0 False"


def test_survives_fifty_quick_moves(harness):
    page = harness
    o = start(page, "from cellserver.interacts import *\nimport time\n@interact\ndef f(x=slider(0, 100)):\n"
                    "    time.sleep(0.005)\n    print('value', x)\n",
                    "value 0")
    nudge(page.locator(".interact-control-x .noUi-handle"), 50)
    page.wait_for_function("el => el.innerText.trim() === 'value 50'", arg=o.element_handle(), timeout=20000)
    time.sleep(0.3)
    assert o.inner_text().strip() == "value 50"


def test_errors_shown_and_cleared(harness):
    page = harness
    o = start(page, "from cellserver.interacts import *\n@interact\ndef f(x=slider(0, 3)):\n    print('inv', 1 / x)\n",
                    "ZeroDivisionError")
    nudge(page.locator(".interact-control-x .noUi-handle"))
    wait_text(o, "inv 1.0")
    assert "ZeroDivisionError" not in o.inner_text()


# Samples the output area on every mutation, resize and animation frame: its
# smallest height, and how often it showed no drawn image (once it had one).
WATCH_OUTPUT = """el => {
    const w = window.watch = {min: Infinity, max: 0, bare: 0, samples: 0, stop: false};
    const sample = () => {
        const h = el.getBoundingClientRect().height;
        const img = el.querySelector('img');
        w.min = Math.min(w.min, h); w.max = Math.max(w.max, h); w.samples++;
        if (!(img && img.complete && img.naturalHeight > 0 && img.getBoundingClientRect().height > 0)) w.bare++;
    };
    new MutationObserver(sample).observe(el, {childList: true, subtree: true, attributes: true, characterData: true});
    new ResizeObserver(sample).observe(el);
    const frame = () => { sample(); if (!w.stop) requestAnimationFrame(frame); };
    frame();
}"""


def test_slider_redraws_plot_without_flicker(harness):
    page = harness
    o = start(page, "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\n"
                    "import matplotlib.pyplot as plt\n@interact\ndef f(a=slider(1, 10)):\n"
                    "    fig, ax = plt.subplots(figsize=(4, 3))\n"
                    "    ax.plot([i ** (a / 3) for i in range(20)])\n    ax.set_title(f'a = {a}')\n"
                    "    print('a =', a)\n",
                    "a = 1")
    page.wait_for_function("el => { const i = el.querySelector('img'); return i && i.complete && i.naturalHeight > 0; }",
                           arg=o.element_handle(), timeout=15000)
    first = o.locator("img").get_attribute("src")
    height = o.bounding_box()["height"]
    o.evaluate(WATCH_OUTPUT)
    for a in range(2, 10):
        nudge(page.locator(".interact-control-a .noUi-handle"))
        wait_text(o, f"a = {a}\n")
        page.wait_for_function("el => { const i = el.querySelector('img'); return i && i.complete; }",
                               arg=o.element_handle(), timeout=15000)
    time.sleep(0.3)
    watch = page.evaluate("() => { window.watch.stop = true; return window.watch; }")
    assert o.locator("img").count() == 1 and o.locator("img").get_attribute("src") != first
    assert watch["samples"] > 20, watch
    assert watch["bare"] == 0, f"the output showed no image during an update: {watch}"
    assert watch["min"] >= height - 2, f"the output area collapsed during an update ({height}px before): {watch}"


CANVAS_PIXELS = """el => {
    const c = el.getContext('2d');
    const d = c.getImageData(0, 0, el.width, el.height).data;
    let ink = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] < 200 || d[i + 1] < 200 || d[i + 2] < 200) ink++;
    return [ink, el.toDataURL()];
}"""


def _drag(page, tool: str, dx: float, dy: float):
    """Make an ipympl figure and drag across it with the toolbar's ``tool``
    (a button title's start).  Returns the kernel's xlim before and after,
    and the figure canvas's (ink, pixels) before the drag."""
    run(page, "%matplotlib widget\nimport matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(4, 3))\n"
              "ax.plot(range(10), [i * i for i in range(10)])\nplt.show()\n")
    canvas = page.locator(".jupyter-matplotlib-canvas-div canvas").last
    canvas.wait_for(timeout=15000)
    figure = page.locator(".jupyter-matplotlib-canvas-div canvas").first
    time.sleep(0.5)
    drawn = figure.evaluate(CANVAS_PIXELS)
    before = _xlim(page)
    canvas.hover()
    page.locator(f".jupyter-matplotlib-toolbar button[title^='{tool}']").click()
    bb = canvas.bounding_box()
    x0, y0 = bb["x"] + bb["width"] * 0.3, bb["y"] + bb["height"] * 0.3
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + dx, y0 + dy, steps=5)
    page.mouse.up()
    deadline = time.monotonic() + 10
    while True:
        after = _xlim(page)
        if after != before or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    return before, after, drawn


def _xlim(page) -> tuple[float, float]:
    area = run(page, "print('XLIM', *ax.get_xlim())")
    wait_text(area, "XLIM")
    lo, hi = area.inner_text().split("XLIM", 1)[1].split()[:2]
    return float(lo), float(hi)


def _zoom(page):
    return _drag(page, "Zoom to rectangle", 60, 40)


def test_ipympl_pan_moves_the_axes(harness):
    (lo0, hi0), (lo1, hi1), _ = _drag(harness, "Left button pans", 80, 0)
    assert (lo1, hi1) != (lo0, hi0), "the pan did not reach the kernel"
    # Dragging right moves the view left by the same amount at both ends: a pan, not a zoom.
    assert lo1 < lo0 and hi1 < hi0
    assert hi1 - lo1 == pytest.approx(hi0 - lo0, rel=1e-6)


def test_ipympl_zoom_reaches_the_kernel(harness):
    before, after, _ = _zoom(harness)
    assert after != before, "the zoom did not reach the kernel"


def test_ipympl_figure_is_drawn_and_redrawn_after_zoom(harness):
    page = harness
    before, after, (ink, pixels) = _zoom(page)
    assert after != before
    assert ink > 500, "the figure was never drawn"
    figure = page.locator(".jupyter-matplotlib-canvas-div canvas").first
    deadline = time.monotonic() + 8
    while figure.evaluate(CANVAS_PIXELS)[1] == pixels:
        assert time.monotonic() < deadline, "the figure was not redrawn after the zoom"
        time.sleep(0.3)


def _artifact(name):
    from tests.support.procs import ARTIFACTS
    d = ARTIFACTS / "widgets"
    d.mkdir(parents=True, exist_ok=True)
    return d / name
