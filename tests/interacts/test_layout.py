"""Layout plans (pure)."""
import pytest

from cellserver.interacts.layout import COLUMN, OUTPUT, names_in, plan


def test_default_layout_is_a_row_each_then_output():
    assert plan(None, ["a", "b"]) == [[("a", 1)], [("b", 1)], [(OUTPUT, 1)]]
    assert plan(None, ["a"], output=False) == [[("a", 1)]]


def test_rows_widths_and_unplaced():
    rows = plan([["a", ("b", 2)]], ["a", "b", "c"])
    assert rows == [[("a", 1), ("b", 2)], [("c", 1)], [(OUTPUT, 1)]]


def test_output_placed_and_spacer():
    rows = plan([["_output"], ["a", None]], ["a"])
    assert rows == [[(OUTPUT, 1)], [("a", 1), (None, 1)]]


def test_nested_columns():
    rows = plan([["a", [["b"], ["c"]]]], ["a", "b", "c"])
    assert rows[0][0] == ("a", 1)
    assert rows[0][1] == (COLUMN, [[("b", 1)], [("c", 1)]])
    assert names_in(rows) == ["a", "b", "c", OUTPUT]


def test_dict_layout_puts_left_right_beside_output():
    rows = plan({"top": [["a"]], "left": [["b"]], "right": [["c"]], "bottom": [["d"]]}, list("abcd"))
    assert rows[0] == [("a", 1)]
    assert rows[1] == [(COLUMN, [[("b", 1)]]), (OUTPUT, 1), (COLUMN, [[("c", 1)]])]
    assert rows[2] == [("d", 1)]


@pytest.mark.parametrize("layout, msg", [
    ([["a", "a"]], "duplicate"),
    ([["zz"]], "not a control"),
    ({"middle": []}, "top, bottom"),
    (42, "list of rows"),
    ([[3.5]], "control names"),
])
def test_bad_layouts_say_what_is_wrong(layout, msg):
    with pytest.raises(ValueError, match=msg):
        plan(layout, ["a"])
