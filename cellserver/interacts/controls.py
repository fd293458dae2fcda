"""SageMathCell's interact controls, built from ipywidgets.

A control is a description first (what SageMathCell's ``slider(...)``,
``Selector(...)``, ... return: kind, default, label) and widgets second:
``build()`` makes the ipywidgets that the interact lays out.  Values are in
the interact function's terms: ``get()`` is what the function receives (a
selector's item, not its index; an input box's evaluated text) and ``set()``
moves the widget, which ipywidgets sends to the browser at once over the
widget's comm.  The CamelCase classes follow SageMathCell's
``interact_sagecell`` signatures; the lower-case functions at the end follow
its backwards-compatible API (``interact_compatibility``).
"""
from __future__ import annotations

import math
from itertools import islice
from numbers import Real
from types import GeneratorType
from typing import Any, Callable

import ipywidgets as W

MAX_VALUES = 10000


def take(n: int, iterable) -> list:
    return list(islice(iterable, n))


def closest_index(values: list, value) -> int:
    """Index of ``value`` in ``values``, else of the nearest number; 0 for None."""
    if value is None:
        return 0
    if isinstance(values, range) and _is_number(value):
        return int(clamp(round((value - values.start) / values.step), 0, len(values) - 1))
    for i, v in enumerate(values):
        try:
            if v == value:
                return i
        except Exception:  # noqa: BLE001 - odd __eq__: not equal
            continue
    try:
        return min(range(len(values)), key=lambda i: abs(value - values[i]))
    except TypeError:
        raise ValueError(f"{value!r} is not one of the values {values!r}") from None


def clamp(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else hi if v > hi else v


def int_progression(values: list) -> int | None:
    """The step if ``values`` are ints in increasing arithmetic progression."""
    if isinstance(values, range):
        return values.step if values.step > 0 else None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    step = values[1] - values[0]
    if step <= 0 or any(b - a != step for a, b in zip(values, values[1:])):
        return None
    return step


def grid_shape(n: int, nrows: int | None, ncols: int | None) -> tuple[int, int]:
    """SageMathCell's rule for button grids: (rows, cols) that hold ``n``
    items exactly, else one row."""
    if nrows is None and ncols is None:
        return 1, n
    if nrows is None:
        ncols = int(ncols) if int(ncols) > 0 else n
        nrows = n // ncols
        return (nrows, ncols) if nrows * ncols >= n else (1, n)
    if ncols is None:
        nrows = max(int(nrows), 1)
        ncols = n // nrows
        return (nrows, ncols) if ncols * nrows >= n else (1, n)
    nrows, ncols = int(nrows), int(ncols)
    return (nrows, ncols) if nrows * ncols == n else (1, n)


def _value_label(v) -> str:
    return v if isinstance(v, str) else repr(v)


def _css_width(width) -> str | None:
    if width in (None, "", 0):
        return None
    return f"{width}ex" if isinstance(width, (int, float)) else str(width)


class Color(str):
    """A colour as the ``#rrggbb`` string matplotlib and HTML take, with the
    ``rgb()``/``html_color()`` accessors Sage's Color offers."""

    def rgb(self) -> tuple[float, float, float]:
        return tuple(int(self[i:i + 2], 16) / 255 for i in (1, 3, 5))  # type: ignore[return-value]

    def html_color(self) -> str:
        return str(self)


def to_hex(color) -> Color:
    """``#rrggbb`` for a hex string, an (r, g, b) tuple (0..1 floats or
    0..255 ints), an object with ``html_color()``, or a colour name."""
    if hasattr(color, "html_color"):
        color = color.html_color()
    if isinstance(color, str):
        s = color.strip()
        if s.startswith("#") and len(s) == 4 and all(c in "0123456789abcdefABCDEF" for c in s[1:]):
            s = "#" + "".join(c * 2 for c in s[1:])
        if s.startswith("#") and len(s) == 7:
            try:
                int(s[1:], 16)
                return Color(s.lower())
            except ValueError:
                pass
        try:
            from matplotlib.colors import to_hex as mpl_hex
            return Color(mpl_hex(s))
        except (ImportError, ValueError):
            raise ValueError(f"unknown color {color!r}") from None
    if isinstance(color, (tuple, list)) and len(color) == 3:
        if all(isinstance(c, int) for c in color) and any(c > 1 for c in color):
            rgb = [clamp(c, 0, 255) for c in color]
        else:
            rgb = [round(clamp(float(c), 0.0, 1.0) * 255) for c in color]
        return Color("#%02x%02x%02x" % tuple(rgb))
    raise ValueError(f"unknown color {color!r}")


class Control:
    """Base of all controls.

    Subclasses build their widgets in ``_build`` and call ``self._changed()``
    when the user changes them.  ``triggers`` says whether such a change
    reruns the function on auto-update; ``always_triggers`` (buttons) reruns
    it even when the interact waits for an Update button.
    """

    triggers = True
    always_triggers = False
    is_update_button = False

    def __init__(self, label: str | None = None):
        self.label = label
        self.name: str | None = None
        self.widget: W.Widget | None = None
        self.globals: dict = {}
        self._on_change: Callable[[Control], None] | None = None

    # -- building ----------------------------------------------------------
    def build(self, name: str, label_text: str, on_change: Callable[["Control"], None]) -> W.Widget:
        self.name = name
        self._on_change = on_change
        inner = self._build()
        children = [inner]
        if label_text:
            lab = W.HTMLMath(value=label_text)
            lab.add_class("interact-label")
            children.insert(0, lab)
        box = W.HBox(children, layout=W.Layout(align_items="center"))
        box.add_class("interact-control")
        box.add_class(f"interact-control-{name}")
        self.widget = box
        return box

    def _build(self) -> W.Widget:
        raise NotImplementedError

    def _changed(self, *_args) -> None:
        if self._on_change is not None:
            self._on_change(self)

    # -- values ------------------------------------------------------------
    def get(self):
        raise NotImplementedError

    def set(self, value) -> None:
        raise NotImplementedError

    def call_value(self):
        """What the function receives on an update (buttons differ from get)."""
        return self.get()

    def reset(self) -> None:
        """Called after every update (buttons forget they were clicked)."""

    # JSON-able state for permalinks (the widget's own value by default);
    # None: nothing worth keeping (buttons, HTML).
    def raw_state(self):
        w = getattr(self, "_w", None)
        if w is None or not hasattr(w, "value"):
            return None
        v = w.value
        return list(v) if isinstance(v, tuple) else v

    def set_raw_state(self, state) -> None:
        w = self._w
        w.value = tuple(state) if isinstance(w.value, tuple) else state

    def disable(self, disabled: bool = True) -> None:
        for w in _walk(self.widget):
            if hasattr(w, "disabled"):
                w.disabled = disabled

    def close(self) -> None:
        close_tree(self.widget)


def _walk(widget):
    if widget is None:
        return
    yield widget
    for child in getattr(widget, "children", ()) or ():
        yield from _walk(child)


def close_tree(widget) -> None:
    """Close a widget and every widget below it (their comms go away)."""
    for w in list(_walk(widget)):
        w.close()


class Checkbox(Control):
    def __init__(self, default=True, label=None, raw=True):
        super().__init__(label)
        self.default = bool(default)

    def _build(self):
        self._w = W.Checkbox(value=self.default, indent=False)
        self._w.observe(self._changed, "value")
        return self._w

    def get(self):
        return self._w.value

    def set(self, value):
        self._w.value = bool(value)


class InputBox(Control):
    """A text box; ``evaluate=True`` passes the text evaluated as Python in
    the function's globals (SageMathCell's ExpressionBox), then ``adapter``."""

    def __init__(self, default="", label=None, width=0, height=1, keypress=False,
                 adapter=None, evaluate=False):
        super().__init__(label)
        self.default = default if isinstance(default, str) else repr(default)
        self.width = int(width or 0)
        self.height = int(height or 1)
        self.keypress = keypress
        self.adapter = adapter
        self.evaluate = evaluate

    def _build(self):
        cls = W.Textarea if self.height > 1 else W.Text
        layout = W.Layout(width=f"{self.width}ch") if self.width else W.Layout()
        self._w = cls(value=self.default, continuous_update=bool(self.keypress), layout=layout)
        if self.height > 1:
            self._w.rows = self.height
        self._w.observe(self._changed, "value")
        return self._w

    def get(self):
        text = self._w.value
        value = eval(text, self.globals) if self.evaluate else text  # noqa: S307 - the user's own kernel
        return self.adapter(value) if self.adapter is not None else value

    def set(self, value):
        self._w.value = value if isinstance(value, str) else repr(value)


class ExpressionBox(InputBox):
    def __init__(self, default="0", label=None, width=0, height=1, adapter=None):
        super().__init__(default, label, width, height, adapter=adapter, evaluate=True)


class Selector(Control):
    """Choose one of ``values`` (or ``(value, label)`` pairs): a dropdown
    (``list``), radio buttons, or toggle buttons in ``nrows`` x ``ncols``."""

    def __init__(self, values, default=None, selector_type="list", nrows=None, ncols=None,
                 width="", label=None):
        super().__init__(label)
        values = list(values)
        if not values:
            raise ValueError("values list cannot be empty")
        if all(isinstance(v, tuple) and len(v) == 2 for v in values):
            self.values = [v[0] for v in values]
            self.value_labels = [str(v[1]) for v in values]
        else:
            self.values = values
            self.value_labels = [_value_label(v) for v in values]
        self.selector_type = selector_type if selector_type in ("button", "radio") else "list"
        self.default_index = 0 if default is None else self._index(default)
        self.width = width
        self.nrows, self.ncols = (grid_shape(len(self.values), nrows, ncols)
                                  if self.selector_type != "list" else (None, None))
        # Buttons or radio buttons in a grid only when asked (else the
        # widgets' own row of buttons, column of radio buttons).
        self.grid = self.selector_type != "list" and (nrows is not None or ncols is not None)

    def _index(self, value) -> int:
        for i, v in enumerate(self.values):
            if v is value or v == value:
                return i
        raise ValueError(f"{value!r} is not one of the selector's values")

    def _build(self):
        options = list(zip(self.value_labels, range(len(self.values))))
        if self.selector_type == "list":
            self._w = W.Dropdown(options=options, value=self.default_index)
        elif self.selector_type == "radio":
            self._w = W.RadioButtons(options=options, value=self.default_index)
        else:
            style = {"button_width": _css_width(self.width)} if _css_width(self.width) else {}
            self._w = W.ToggleButtons(options=options, value=self.default_index, style=style)
        if self.grid:
            # The column count travels as the widget's own grid-template-columns;
            # the page's stylesheet (.interact-grid-select) makes the inner
            # group of buttons a grid that inherits it.
            self._w.layout.grid_template_columns = f"repeat({self.ncols}, max-content)"
            self._w.add_class("interact-grid-select")
        self._w.observe(self._changed, "value")
        return self._w

    def get(self):
        return self.values[self._w.value]

    def set(self, value):
        self._w.value = self._index(value)


class DiscreteSlider(Control):
    """A slider over a list of values (an IntSlider when they are evenly
    spaced ints, else a SelectionSlider over their labels).

    Sliders update while dragged: the browser's widget manager keeps one
    update per control in flight and sends only the latest value after it,
    so a slow function sees fewer, never stale, updates."""

    def __init__(self, values=(0, 1), default=None, range_slider=False, display_value=True, label=None):
        super().__init__(label)
        if isinstance(values, range):
            self.values = values          # any length: an IntSlider needs no list
        else:
            self.values = take(MAX_VALUES, values) if isinstance(values, GeneratorType) else list(values)
        if len(self.values) < 2:
            raise ValueError("discrete slider must have at least 2 values")
        self.range_slider = range_slider
        self.display_value = display_value
        if range_slider:
            self.default_index = ((0, len(self.values) - 1) if default is None
                                  else tuple(sorted(closest_index(self.values, d) for d in default)))
        else:
            self.default_index = closest_index(self.values, default)
        self.step = int_progression(self.values)

    def _build(self):
        common = dict(readout=self.display_value, continuous_update=True)
        if self.step is not None:
            lo, hi = self.values[0], self.values[-1]
            if self.range_slider:
                self._w = W.IntRangeSlider(min=lo, max=hi, step=self.step,
                                           value=[self.values[i] for i in self.default_index], **common)
            else:
                self._w = W.IntSlider(min=lo, max=hi, step=self.step,
                                      value=self.values[self.default_index], **common)
        else:
            options = [(_value_label(v), i) for i, v in enumerate(self.values)]
            if self.range_slider:
                self._w = W.SelectionRangeSlider(options=options, index=self.default_index, **common)
            else:
                self._w = W.SelectionSlider(options=options, value=self.default_index, **common)
        self._w.observe(self._changed, "value")
        return self._w

    def get(self):
        v = self._w.value
        if self.step is not None:
            return tuple(v) if self.range_slider else v
        return tuple(self.values[i] for i in v) if self.range_slider else self.values[v]

    def set(self, value):
        if self.range_slider:
            idx = tuple(sorted(closest_index(self.values, v) for v in value))
            self._w.value = tuple(self.values[i] for i in idx) if self.step is not None else idx
        else:
            i = closest_index(self.values, value)
            self._w.value = self.values[i] if self.step is not None else i


class ContinuousSlider(Control):
    """A float slider over ``interval`` with ``steps`` steps (or ``stepsize``)."""

    def __init__(self, interval=(0, 100), default=None, steps=250, stepsize=0, label=None,
                 range_slider=False, display_value=True, adapter=None):
        super().__init__(label)
        if len(interval) != 2 or interval[0] == interval[1]:
            raise ValueError(f"invalid interval: {interval!r}")
        self.interval = tuple(sorted((float(interval[0]), float(interval[1]))))
        self.range_slider = range_slider
        self.display_value = display_value
        self.adapter = adapter
        self.steps = int(steps) if steps and steps > 0 else 250
        span = self.interval[1] - self.interval[0]
        self.stepsize = float(stepsize) if stepsize and 0 < stepsize <= span else span / self.steps
        self.default = self._constrain(default)

    def _constrain(self, value):
        lo, hi = self.interval
        if self.range_slider:
            if isinstance(value, (list, tuple)) and len(value) == 2:
                return tuple(sorted(clamp(float(v), lo, hi) for v in value))
            return (lo, hi)
        return lo if value is None else clamp(float(value), lo, hi)

    def _build(self):
        digits = max(0, min(10, math.ceil(-math.log10(self.stepsize)))) if self.stepsize < 1 else 0
        cls = W.FloatRangeSlider if self.range_slider else W.FloatSlider
        self._w = cls(min=self.interval[0], max=self.interval[1], step=self.stepsize,
                      value=self.default, readout=self.display_value,
                      readout_format=f".{digits}f", continuous_update=True)
        self._w.observe(self._changed, "value")
        return self._w

    def get(self):
        v = tuple(self._w.value) if self.range_slider else self._w.value
        return self.adapter(v) if self.adapter is not None else v

    def set(self, value):
        self._w.value = self._constrain(value)


class ColorSelector(Control):
    def __init__(self, default="#000000", hide_input=False, label=None, sage_color=True):
        super().__init__(label)
        self.default = to_hex(default)
        self.hide_input = hide_input

    def _build(self):
        self._w = W.ColorPicker(value=str(self.default), concise=bool(self.hide_input))
        self._w.observe(self._changed, "value")
        return self._w

    def get(self):
        try:
            return to_hex(self._w.value)
        except ValueError:
            return Color(self._w.value)

    def set(self, value):
        self._w.value = str(to_hex(value))


class InputGrid(Control):
    """A matrix of text boxes with a Submit button; the function sees the
    submitted entries (evaluated unless ``evaluate=False``) as a list of rows,
    passed through ``adapter``."""

    def __init__(self, nrows=1, ncols=1, default="0", width=5, label=None, evaluate=True,
                 adapter=None, element_adapter=None):
        super().__init__(label)
        self.nrows, self.ncols = int(nrows), int(ncols)
        if self.nrows < 1 or self.ncols < 1:
            raise ValueError("input grid needs at least one row and one column")
        self.width = int(width)
        self.evaluate = evaluate
        self.adapter = adapter
        self.element_adapter = element_adapter
        self.default = self.texts(default)

    def texts(self, value) -> list[list[str]]:
        """Entries as strings in an nrows x ncols list (one value fills all;
        a flat list is read row by row)."""
        conv = lambda v: v if isinstance(v, str) else repr(v)  # noqa: E731
        if isinstance(value, GeneratorType):
            value = take(self.nrows * self.ncols, value)
        if hasattr(value, "tolist"):
            value = value.tolist()
        if not isinstance(value, (list, tuple)):
            return [[conv(value)] * self.ncols for _ in range(self.nrows)]
        if not all(isinstance(r, (list, tuple)) for r in value):
            flat = list(value)
            if len(flat) != self.nrows * self.ncols:
                raise ValueError(f"need {self.nrows * self.ncols} entries, got {len(flat)}")
            return [[conv(flat[i * self.ncols + j]) for j in range(self.ncols)] for i in range(self.nrows)]
        if len(value) != self.nrows or any(len(r) != self.ncols for r in value):
            raise ValueError(f"need a {self.nrows} x {self.ncols} grid")
        return [[conv(v) for v in row] for row in value]

    def _build(self):
        self._cells = [[W.Text(value=t, continuous_update=True,
                               layout=W.Layout(width=f"{self.width + 3}ch"))
                        for t in row] for row in self.default]
        grid = W.GridBox([c for row in self._cells for c in row],
                         layout=W.Layout(grid_template_columns=f"repeat({self.ncols}, max-content)"))
        grid.add_class("interact-grid")
        self._submit = W.Button(description="Submit")
        self._submit.add_class("interact-submit")
        self._submit.on_click(self._on_submit)
        self._submitted = [row[:] for row in self.default]
        return W.VBox([grid, self._submit])

    def _on_submit(self, _button):
        self._submitted = [[c.value for c in row] for row in self._cells]
        self._changed()

    def _element(self, text):
        v = eval(text, self.globals) if self.evaluate else text  # noqa: S307 - the user's own kernel
        return self.element_adapter(v) if self.element_adapter is not None else v

    def get(self):
        rows = [[self._element(t) for t in row] for row in self._submitted]
        return self.adapter(rows) if self.adapter is not None else rows

    def raw_state(self):
        return [row[:] for row in self._submitted]

    def set_raw_state(self, state) -> None:
        self.set([[str(v) for v in row] for row in state])

    def set(self, value):
        texts = self.texts(value)
        for row, trow in zip(self._cells, texts):
            for cell, t in zip(row, trow):
                cell.value = t
        self._submitted = texts


class Button(Control):
    """A push button: the function gets ``value`` on the update its click
    causes and ``default`` otherwise."""

    always_triggers = True

    def __init__(self, default="", value="", text="Button", width="", label=None):
        super().__init__(label)
        self.default_value = default
        self.clicked_value = value
        self.text = text
        self.width = width
        self.clicked = False

    def _build(self):
        layout = W.Layout(width=_css_width(self.width)) if _css_width(self.width) else W.Layout()
        self._w = W.Button(description=str(self.text), layout=layout)
        self._w.on_click(self._on_click)
        return self._w

    def _on_click(self, _button):
        self.clicked = True
        self._changed()

    def raw_state(self):
        return None

    def get(self):
        return self.clicked_value if self.clicked else self.default_value

    def set(self, value):
        self.clicked = bool(value)

    def reset(self):
        self.clicked = False


class UpdateButton(Button):
    """Runs the function when clicked; its presence turns auto-update off."""

    is_update_button = True

    def __init__(self, text="Update", value="", default="", width="", label=""):
        super().__init__(default, value, text, width, label)


class ButtonBar(Control):
    """A row (or grid) of buttons; the function gets the clicked button's
    value on the update the click causes, ``default`` otherwise."""

    always_triggers = True

    def __init__(self, values=(0,), default="", nrows=None, ncols=None, width="", label=None):
        super().__init__(label)
        values = list(values)
        if not values:
            raise ValueError("values list cannot be empty")
        self.values = [v[0] if isinstance(v, tuple) and len(v) == 2 else v for v in values]
        self.value_labels = [str(v[1]) if isinstance(v, tuple) and len(v) == 2 else _value_label(v)
                             for v in values]
        self.default_value = default
        self.width = width
        self.nrows, self.ncols = grid_shape(len(self.values), nrows, ncols)
        self.clicked: int | None = None

    def _build(self):
        layout = W.Layout(width=_css_width(self.width)) if _css_width(self.width) else W.Layout()
        self._buttons = []
        for i, text in enumerate(self.value_labels):
            b = W.Button(description=text, layout=layout)
            b.on_click(lambda _b, i=i: self._on_click(i))
            self._buttons.append(b)
        return W.GridBox(self._buttons,
                         layout=W.Layout(grid_template_columns=f"repeat({self.ncols}, max-content)"))

    def _on_click(self, i):
        self.clicked = i
        self._changed()

    def raw_state(self):
        return None

    def get(self):
        return self.default_value if self.clicked is None else self.values[self.clicked]

    def set(self, value):
        self.clicked = None if value is None else closest_index(self.values, value)

    def reset(self):
        self.clicked = None


class HtmlBox(Control):
    """HTML shown among the controls (``text_control``); its text is also
    passed to the function."""

    triggers = False

    def __init__(self, value="", label=""):
        super().__init__(label)
        self.default = str(value)

    def _build(self):
        self._w = W.HTMLMath(value=self.default)
        return self._w

    def raw_state(self):
        return None

    def get(self):
        return self._w.value

    def set(self, value):
        self._w.value = str(value)

    def disable(self, disabled=True):
        pass


# -- SageMathCell's backwards-compatible (lower-case) API --------------------

def _values_list(vmin, vmax, step_size) -> list:
    if isinstance(vmin, (list, tuple, range, GeneratorType)):
        return take(MAX_VALUES, vmin) if isinstance(vmin, GeneratorType) else list(vmin)
    if vmax is None:
        vmin, vmax = 0, vmin
    if vmin > vmax:
        vmin, vmax = vmax, vmin
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (vmin, vmax))
    if ints and (step_size is None or (isinstance(step_size, int) and step_size > 0)):
        step = step_size or 1
        if (vmax - vmin) % step == 0:
            return range(vmin, vmax + 1, step)
    if step_size is None or step_size <= 0:
        if step_size is not None:
            raise ValueError("invalid negative step size -- step size must be positive")
        step_size = 1 if isinstance(vmin, int) and isinstance(vmax, int) and vmax - vmin <= 500 \
            else (vmax - vmin) / 499
    n = int(math.floor((vmax - vmin) / step_size + 1e-9))
    if n > MAX_VALUES:
        raise ValueError(f"too many slider values ({n}); use a larger step_size")
    vals = [vmin + i * step_size for i in range(n + 1)]
    if isinstance(step_size, float) or isinstance(vmin, float):
        vals = [round(v, 12) for v in vals]
    if vals[-1] != vmax:
        vals.append(vmax)
    return vals


def _is_number(x) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


def slider(vmin, vmax=None, step_size=None, default=None, label=None, display_value=True):
    """A slider over ``vmin..vmax`` by ``step_size`` (or over the list
    ``vmin``); without a step between two non-integers it is continuous."""
    if (_is_number(vmin) and _is_number(vmax) and step_size is None
            and not (isinstance(vmin, int) and isinstance(vmax, int))):
        return ContinuousSlider((vmin, vmax), default=default, steps=499, label=label,
                                display_value=display_value)
    return DiscreteSlider(_values_list(vmin, vmax, step_size), default=default, label=label,
                          display_value=display_value)


def range_slider(vmin, vmax=None, step_size=None, default=None, label=None, display_value=True):
    """A two-handle slider; the function gets a ``(low, high)`` tuple."""
    if (_is_number(vmin) and _is_number(vmax) and step_size is None
            and not (isinstance(vmin, int) and isinstance(vmax, int))):
        return ContinuousSlider((vmin, vmax), default=default, steps=499, label=label,
                                range_slider=True, display_value=display_value)
    return DiscreteSlider(_values_list(vmin, vmax, step_size), default=default, range_slider=True,
                          label=label, display_value=display_value)


def input_box(default=None, label=None, type=None, width=0, height=1, keypress=False, **kwargs):
    """A text box.  ``type=str`` passes the text as typed; otherwise it is
    evaluated and, if ``type`` is a callable, passed through it."""
    if type is Color:
        return color_selector(default=default, label=label, hide_box=kwargs.get("hide_box", False))
    if type is str:
        return InputBox(default="" if default is None else default, label=label, width=width,
                        height=height, keypress=keypress)
    return InputBox(default=default, label=label, width=width, height=height, keypress=keypress,
                    adapter=type, evaluate=True)


def checkbox(default=True, label=None):
    return Checkbox(default=default, label=label)


def selector(values, label=None, default=None, nrows=None, ncols=None, width=None, buttons=False,
             selector_type=None):
    """A dropdown, or buttons when ``buttons``/``nrows``/``ncols`` is given,
    or ``selector_type="radio"``.  One button alone is a push button."""
    kind = selector_type or ("button" if buttons or nrows is not None or ncols is not None else "list")
    if kind == "button" and len(values) == 1:
        v = values[0]
        value, text = v if isinstance(v, (list, tuple)) and len(v) == 2 else (v, str(v))
        return Button(value=value, text=text, default=value, label=label, width=width)
    return Selector(values=values, default=default, label=label, selector_type=kind,
                    nrows=nrows, ncols=ncols, width=width or "")


def color_selector(default=(0, 0, 1), label=None, widget="colorpicker", hide_box=False):
    return ColorSelector(default=default, label=label, hide_input=hide_box)


def input_grid(nrows, ncols, default=None, label=None, to_value=None, width=4, evaluate=True):
    return InputGrid(nrows=nrows, ncols=ncols, default="0" if default is None else default,
                     width=width, label=label, evaluate=evaluate, adapter=to_value)


def button(text="Button", value=True, default=False, width="", label=""):
    return Button(default=default, value=value, text=text, width=width, label=label)


def button_bar(values, default=None, nrows=None, ncols=None, width="", label=None):
    return ButtonBar(values=values, default=default, nrows=nrows, ncols=ncols, width=width, label=label)


def text_control(value=""):
    return HtmlBox(value=value)
