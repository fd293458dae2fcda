"""Control guessing and the control descriptions (no widgets involved)."""
import pytest

from cellserver.interacts import controls as C
from cellserver.interacts.guess import automatic_control


def test_number_gives_slider():
    c = automatic_control(5)
    assert isinstance(c, C.DiscreteSlider) and c.step == 1
    assert c.values[0] == -5 and c.values[-1] == 15 and c.values[c.default_index] == 5
    f = automatic_control(0.5)
    assert isinstance(f, C.ContinuousSlider) and f.interval == (-0.5, 1.5) and f.default == 0.5


def test_bool_string_list():
    assert isinstance(automatic_control(True), C.Checkbox)
    box = automatic_control("hello")
    assert isinstance(box, C.InputBox) and box.default == "hello" and not box.evaluate
    sel = automatic_control(["a", "b", "c"])
    assert isinstance(sel, C.Selector) and sel.selector_type == "button" and sel.values == ["a", "b", "c"]
    assert automatic_control(list(range(6))).selector_type == "list"
    one = automatic_control(["go"])
    assert isinstance(one, C.Button) and one.text == "go"


def test_tuples_give_sliders():
    c = automatic_control((0, 1))
    assert isinstance(c, C.ContinuousSlider) and c.interval == (0.0, 1.0) and c.default == 0.0
    d = automatic_control((0, 10, 2))
    assert isinstance(d, C.DiscreteSlider) and list(d.values) == [0, 2, 4, 6, 8, 10] and d.step == 2
    e = automatic_control((1, 5, 7, 9))
    assert isinstance(e, C.DiscreteSlider) and e.values == [1, 5, 7, 9] and e.step is None
    g = automatic_control(x for x in "abc")
    assert isinstance(g, C.DiscreteSlider) and g.values == ["a", "b", "c"]


def test_label_and_default_forms():
    c = automatic_control(("alpha", (0, 10)))
    assert c.label == "alpha" and isinstance(c, C.ContinuousSlider)
    d = automatic_control((3, [1, 2, 3, 4]))
    assert isinstance(d, C.Selector) and d.default_index == 2
    e = automatic_control(("n", (7, (0, 10))))
    assert e.label == "n" and e.default == 7.0


def test_auto_update_false_is_update_button():
    assert isinstance(automatic_control(False, var="auto_update"), C.UpdateButton)
    assert isinstance(automatic_control(False, var="other"), C.Checkbox)


def test_other_values_are_evaluated_input_boxes():
    c = automatic_control(None)
    assert isinstance(c, C.InputBox) and c.evaluate and c.default == "None"
    d = automatic_control(2 + 3j)
    assert d.evaluate and d.default == "(2+3j)"


def test_explicit_control_keeps_itself_and_takes_label():
    s = C.slider(0, 10)
    assert automatic_control(("lab", s)) is s and s.label == "lab"


def test_color_and_array():
    import numpy as np
    assert isinstance(automatic_control(C.Color("#00ff00")), C.ColorSelector)
    g = automatic_control(np.array([[1, 2], [3, 4]]))
    assert isinstance(g, C.InputGrid) and (g.nrows, g.ncols) == (2, 2) and g.default == [["1", "2"], ["3", "4"]]


def test_slider_compat_forms():
    assert list(C.slider(0, 10).values) == list(range(11))
    assert list(C.slider(0, 10, 5).values) == [0, 5, 10]
    big = C.slider(0, 100000)  # a range, not a list: any length
    assert big.step == 1 and len(big.values) == 100001 and C.closest_index(big.values, 99999.6) == 100000
    assert C.closest_index(big.values, -5) == 0
    assert C.slider(0, 1, 0.25).values == [0, 0.25, 0.5, 0.75, 1]
    assert C.slider(0, 10, 3).values == [0, 3, 6, 9, 10]
    assert C.slider(["a", "b"]).values == ["a", "b"]
    assert isinstance(C.slider(0.0, 2.5), C.ContinuousSlider)
    r = C.range_slider(0, 10, 1, default=(2, 8))
    assert r.range_slider and r.default_index == (2, 8)
    with pytest.raises(ValueError):
        C.slider(0, 10, -1)
    with pytest.raises(ValueError):
        C.DiscreteSlider([1])


def test_selector_compat_forms():
    assert C.selector([1, 2, 7]).selector_type == "list"
    assert C.selector([1, 2, 7], nrows=3).selector_type == "button"
    assert C.selector([1, 2, 3, 4], ncols=2).nrows == 2
    assert C.selector([1, 2, 3], selector_type="radio").selector_type == "radio"
    assert isinstance(C.selector([(1, "one")], buttons=True), C.Button)
    pairs = C.selector([(2, "second"), (3, "third")], default=3)
    assert pairs.values == [2, 3] and pairs.value_labels == ["second", "third"] and pairs.default_index == 1
    with pytest.raises(ValueError):
        C.selector([1, 2], default=5)
    with pytest.raises(ValueError):
        C.Selector([])


def test_grid_shape_rule():
    assert C.grid_shape(6, None, None) == (1, 6)
    assert C.grid_shape(6, 2, None) == (2, 3)
    assert C.grid_shape(6, None, 3) == (2, 3)
    assert C.grid_shape(6, 4, 4) == (1, 6)
    assert C.grid_shape(5, 2, None) == (1, 5)


def test_colors():
    assert C.to_hex((0, 0, 1)) == "#0000ff"
    assert C.to_hex("#ABC") == "#aabbcc"
    assert C.to_hex((255, 128, 0)) == "#ff8000"
    assert C.to_hex("red") == "#ff0000"
    assert C.to_hex("#102030").rgb() == pytest.approx((16 / 255, 32 / 255, 48 / 255))
    with pytest.raises(ValueError):
        C.to_hex("crayon")


def test_input_grid_defaults():
    g = C.input_grid(2, 2, default=0)
    assert g.default == [["0", "0"], ["0", "0"]]
    assert C.InputGrid(2, 2, default=[1, 2, 3, 4]).default == [["1", "2"], ["3", "4"]]
    with pytest.raises(ValueError):
        C.InputGrid(2, 2, default=[1, 2, 3])
    with pytest.raises(ValueError):
        C.InputGrid(0, 2)
