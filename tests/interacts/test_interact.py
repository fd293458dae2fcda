"""The interact API on real ipywidgets with a recording comm."""
import ipywidgets as W
import pytest

from cellserver.interacts import (Color, button, button_bar, checkbox, color_selector, input_box,
                                  input_grid, interact, range_slider, selector, slider, text_control)
from tests.interacts.conftest import browser_click, browser_set, text_of, updates_of


def widget(f, name):
    return f._interact.controls[name]._w


def test_decorator_runs_once_and_browser_change_reruns(wire):
    @interact
    def f(x=(0, 10, 1), s="hi"):
        print("x =", x, s)
    assert text_of(f) == "x = 0 hi\n"
    browser_set(widget(f, "x"), value=7)
    assert text_of(f) == "x = 7 hi\n"
    browser_set(widget(f, "s"), value="yo")
    assert text_of(f) == "x = 7 yo\n" and f._interact.runs == 3


def test_decorator_with_arguments_and_controls_list(wire):
    @interact(layout=[["b", "a"]], controls=[("c", 3)])
    def f(a=1, b=True, **kw):
        print(a, b, kw)
    assert text_of(f) == "1 True {'c': 3}\n"
    row = f._widget.children[0]
    assert [c._dom_classes[-1] for c in row.children] == ["interact-control-b", "interact-control-a"]


def test_output_swapped_in_one_update(wire):
    @interact
    def f(n=(1, 5, 1)):
        for i in range(n):
            print(i)
    out = f._interact.output
    before = len(updates_of(wire, out))
    browser_set(widget(f, "n"), value=3)
    new = updates_of(wire, out)[before:]
    assert len(new) == 1 and list(new[0]["outputs"]) == [{"output_type": "stream", "name": "stdout", "text": "0\n1\n2\n"}]


def test_attribute_sets_control_and_syncs_at_once(wire):
    @interact
    def f(x=slider(0, 10)):
        print("x is", x)
    w = widget(f, "x")
    f.x = 5
    assert w.value == 5 and f.x == 5 and text_of(f) == "x is 5\n"
    assert {"value": 5} in updates_of(wire, w)
    f.x = 100  # clamped to the closest value
    assert f.x == 10
    with pytest.raises(AttributeError):
        f.nope
    with pytest.raises(AttributeError):
        f._state({"nope": 1})


def test_state_sets_several_with_one_rerun(wire):
    @interact
    def f(a=1, b=2):
        print(a + b)
    runs = f._interact.runs
    f._state({"a": 3, "b": 4})
    assert f._interact.runs == runs + 1 and text_of(f) == "7\n"
    assert f._state() == {"a": 3, "b": 4}


def test_add_and_remove_controls(wire):
    @interact
    def f(a=1, **kw):
        print(a, sorted(kw.items()))
    f.b = 2
    assert isinstance(widget(f, "b"), W.IntSlider) and text_of(f) == "1 [('b', 2)]\n"
    root = f._widget
    assert any("interact-control-b" in c._dom_classes for c in root.children)
    assert "interact-output" in root.children[-1]._dom_classes
    b_widget = widget(f, "b")
    del f.b
    assert text_of(f) == "1 []\n" and "b" not in dir(f)
    assert b_widget.comm is None or not b_widget.comm  # closed
    with pytest.raises(AttributeError):
        del f.b


def test_added_control_not_in_signature_is_not_passed(wire):
    @interact
    def f(a=1):
        print(a)
    f.z = "text"
    assert text_of(f) == "1\n" and f.z == "text"


def test_auto_update_false_waits_for_update(wire):
    @interact
    def f(x=(0, 10, 1), auto_update=False):
        print("x", x)
    assert text_of(f) == "x 0\n"
    browser_set(widget(f, "x"), value=4)
    assert text_of(f) == "x 0\n"
    f.x = 6
    assert text_of(f) == "x 0\n" and widget(f, "x").value == 6
    browser_click(widget(f, "auto_update"))
    assert text_of(f) == "x 6\n"


def test_auto_update_decorator_option(wire):
    @interact(auto_update=False)
    def f(x=checkbox(False)):
        print(x)
    browser_set(widget(f, "x"), value=True)
    assert text_of(f) == "False\n"
    browser_click(widget(f, "auto_update"))
    assert text_of(f) == "True\n"


def test_update_list_limits_triggers(wire):
    @interact(update=["a"])
    def f(a=1, b=1):
        print(a, b)
    browser_set(widget(f, "b"), value=2)
    assert text_of(f) == "1 1\n"
    browser_set(widget(f, "a"), value=3)
    assert text_of(f) == "3 2\n"


def test_errors_shown_and_cleared(wire):
    @interact
    def f(x=(0, 3, 1)):
        print("before")
        1 / x
        print("ok", x)
    outs = f._interact.output.outputs
    assert outs[0]["text"] == "before\n" and outs[1]["output_type"] == "error"
    assert outs[1]["ename"] == "ZeroDivisionError" and outs[1]["traceback"]
    browser_set(widget(f, "x"), value=2)
    assert text_of(f) == "before\nok 2\n"


def test_output_confined_and_display_captured(wire, capsys):
    from IPython.display import HTML, display

    @interact
    def f(x=1):
        display(HTML("<b>%d</b>" % x))
        return x * 10
    outs = f._interact.output.outputs
    assert outs[0]["data"]["text/html"] == "<b>1</b>" and outs[1]["data"]["text/plain"] == "10"
    assert "<b>1</b>" not in capsys.readouterr().out


def test_html_shows_in_the_interacts_output(wire):
    from cellserver.interacts import html

    @interact
    def f(n=1):
        html(f"<u>{n}</u>")
    outs = f._interact.output.outputs
    assert len(outs) == 1 and outs[0]["data"]["text/html"] == "<u>1</u>"


def test_every_control_kind(wire):
    @interact
    def f(a=slider(0, 1, 0.25, default=0.5), r=range_slider(0, 10, 1, default=(2, 5)),
          t=input_box("x", type=str), e=input_box(2), c=checkbox(False),
          s=selector(["p", "q"], buttons=True), d=selector(list("abcdef")),
          rad=selector([1, 2], selector_type="radio"), col=color_selector((1, 0, 0)),
          g=input_grid(2, 2, default=[[1, 2], [3, 4]]), b=button("Go", value="hit", default="idle"),
          bb=button_bar([(1, "+1"), (-1, "-1")], default=0), h=text_control("<i>note</i>"),
          cs=slider(0.0, 2.5, display_value=False), cr=range_slider(0.0, 1.0)):
        print(a, r, t, e, c, s, d, rad, col, g, b, bb, h, cs, cr)
    assert text_of(f) == ("0.5 (2, 5) x 2 False p a 1 #ff0000 [[1, 2], [3, 4]] idle 0 <i>note</i>"
                          " 0.0 (0.0, 1.0)\n")
    # Continuous sliders: float widgets over the interval, the readout as asked.
    cs, cr = widget(f, "cs"), widget(f, "cr")
    assert isinstance(cs, W.FloatSlider) and (cs.min, cs.max, cs.readout) == (0.0, 2.5, False)
    assert isinstance(cr, W.FloatRangeSlider) and (cr.min, cr.max, cr.readout) == (0.0, 1.0, True)
    assert cs.step == pytest.approx(2.5 / 499) and cr.step == pytest.approx(1 / 499)
    browser_set(cs, value=1.25)
    browser_set(cr, value=[0.25, 0.75])
    assert text_of(f).endswith(" 1.25 (0.25, 0.75)\n")
    assert isinstance(widget(f, "a"), W.SelectionSlider)
    assert isinstance(widget(f, "r"), W.IntRangeSlider)
    assert isinstance(widget(f, "s"), W.ToggleButtons)
    assert isinstance(widget(f, "d"), W.Dropdown)
    assert isinstance(widget(f, "rad"), W.RadioButtons)
    assert isinstance(widget(f, "col"), W.ColorPicker)
    browser_set(widget(f, "e"), value="3*7")
    browser_set(widget(f, "s"), index=1)  # selections sync their index
    browser_set(widget(f, "col"), value="#00ff00")
    assert text_of(f).startswith("0.5 (2, 5) x 21 False q a 1 #00ff00")
    browser_click(f._interact.controls["b"]._w)
    assert " hit 0 " in text_of(f)
    browser_set(widget(f, "c"), value=True)
    assert " True q a 1 #00ff00 [[1, 2], [3, 4]] idle 0 " in text_of(f)  # the click is forgotten
    browser_click(f._interact.controls["bb"]._buttons[1])
    assert " idle -1 " in text_of(f)


def test_selector_grid_sets_its_columns(wire):
    @interact
    def f(b=selector(list(range(6)), ncols=3), r=selector("abcdef", selector_type="radio", nrows=3),
          plain=selector([1, 2], buttons=True), bad=selector(range(5), nrows=2)):
        pass
    for name, cols in (("b", 3), ("r", 2), ("bad", 5)):  # 5 in 2 rows does not fit: one row
        w = widget(f, name)
        assert "interact-grid-select" in w._dom_classes
        assert w.layout.grid_template_columns == f"repeat({cols}, max-content)"
    assert isinstance(widget(f, "r"), W.RadioButtons)
    plain = widget(f, "plain")
    assert "interact-grid-select" not in plain._dom_classes and plain.layout.grid_template_columns is None


def test_input_grid_submits(wire):
    @interact
    def f(m=input_grid(2, 2, default=0, to_value=lambda rows: sum(map(sum, rows)))):
        print("sum", m)
    grid = f._interact.controls["m"]
    assert text_of(f) == "sum 0\n"
    browser_set(grid._cells[0][0], value="5")
    browser_set(grid._cells[1][1], value="2+3")
    assert text_of(f) == "sum 0\n"  # not before Submit
    browser_click(grid._submit)
    assert text_of(f) == "sum 10\n"
    f.m = [[1, 1], [1, 1]]
    assert grid._cells[0][0].value == "1" and text_of(f) == "sum 4\n"


def test_bad_input_box_text_shows_error(wire):
    @interact
    def f(e=input_box(1)):
        print(e)
    browser_set(widget(f, "e"), value="1 +")
    assert f._interact.output.outputs[0]["ename"] == "SyntaxError"
    browser_set(widget(f, "e"), value="1 + 1")
    assert text_of(f) == "2\n"


def test_proxy_first_parameter(wire):
    @interact
    def f(self, n=(0, 5, 1)):
        print("n", n, self.n)
    browser_set(widget(f, "n"), value=3)
    assert text_of(f) == "n 3 3\n"


def test_set_inside_function_reruns_bounded(wire):
    @interact
    def f(self, n=(0, 20, 1)):
        print("n", n)
        if n < 20:
            self.n = n + 1
    assert f.n == 10 and text_of(f) == "n 9\n"  # MAX_RERUNS bounds the chain


def test_nested_interacts_are_replaced(wire):
    inner = []

    @interact
    def f(n=(1, 3, 1)):
        @interact
        def g(k=(0, n, 1)):
            print("k", k)
        inner.append(g)
    assert len(f._interact.children) == 1
    outs = f._interact.output.outputs
    assert "application/vnd.jupyter.widget-view+json" in outs[0]["data"]
    first = inner[0]
    browser_set(widget(f, "n"), value=2)
    assert first._interact.closed and not inner[1]._interact.closed


def test_readonly_and_labels(wire):
    @interact(readonly=True, automatic_labels=False)
    def f(x=1, y=("Why", True)):
        pass
    assert widget(f, "x").disabled and widget(f, "y").disabled
    labels = [w.value for w in f._interact.controls["y"].widget.children if isinstance(w, W.HTMLMath)]
    assert labels == ["Why"]
    assert len(f._interact.controls["x"].widget.children) == 1


@pytest.mark.parametrize("make, msg", [
    (lambda: interact(lambda _x=1: None), "invalid control name"),
    (lambda: interact(lambda a=1: None, controls=[("a", 2)]), "duplicate"),
    (lambda: interact(lambda a=1: None, layout=[["b"]]), "not a control"),
    (lambda: interact(lambda a=1: None, update=["b"]), "unknown controls"),
    (lambda: interact(lambda a=1: None, locations=True), "not supported"),
    (lambda: interact(lambda a=1: None, controls=[(1, 2)]), "name, control"),
])
def test_bad_definitions_say_what_is_wrong(wire, make, msg):
    with pytest.raises(ValueError, match=msg):
        make()


def test_not_callable(wire):
    with pytest.raises(TypeError):
        interact(5)


def test_colors_are_strings_with_rgb(wire):
    @interact
    def f(c=Color("#ff0000")):
        print(c.rgb())
    assert text_of(f) == "(1.0, 0.0, 0.0)\n"


def test_snapshot_and_restore_for_permalinks(wire):
    import json

    from cellserver.interacts import restore, snapshot
    from cellserver.interacts.interact import _top_level
    _top_level.clear()

    @interact
    def f(x=slider(0, 10), d=selector(["a", "b"]), g=input_grid(1, 2, default=0), b=button("Go")):
        print(x, d, g)
    f.x = 4
    browser_set(widget(f, "d"), index=1)
    grid = f._interact.controls["g"]
    browser_set(grid._cells[0][1], value="9")
    browser_click(grid._submit)
    snap = json.loads(snapshot())
    assert snap == [{"x": 4, "d": 1, "g": [["0", "9"]]}]

    restore(json.dumps(snap + [{"y": True, "nope": 1}]))

    @interact
    def f2(x=slider(0, 10), d=selector(["a", "b"]), g=input_grid(1, 2, default=0), b=button("Go")):
        print(x, d, g)
    assert text_of(f2) == "4 b [[0, 9]]\n" and f2._interact.runs == 1

    @interact
    def f3(y=False, z=slider(0, 3, default=2)):
        print(y, z)
    assert text_of(f3) == "True 2\n"
    with pytest.raises(ValueError):
        restore('{"not": "a list"}')
