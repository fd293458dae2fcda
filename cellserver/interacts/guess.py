"""Guess an interact control from a parameter's default value.

SageMathCell's rules, with the ones issue 7 asks for: a number gives a
slider, a bool a checkbox, a string an input box, a list a selector (buttons
up to five items, one item a push button), a ``(min, max)`` tuple a
continuous slider, ``(min, max, step)`` a discrete one, a longer tuple or a
generator a slider over its items.  ``("label", x)`` labels a control and
``(default, values)`` picks a default.  ``auto_update=False`` gives the
Update button.  Anything else becomes an input box evaluated as Python.
"""
from __future__ import annotations

from types import GeneratorType

from . import controls as C


def _number_range(v):
    if isinstance(v, int):
        if v == 0:
            return 0, 10
        return (-v, 3 * v) if v > 0 else (3 * v, -v)
    if v == 0:
        return 0.0, 1.0
    return (-v, 3 * v) if v > 0 else (3 * v, -v)


def automatic_control(control, var: str | None = None) -> C.Control:
    if var == "auto_update" and control is False:
        return C.UpdateButton()
    label = None
    default = None
    for _ in range(2):
        if isinstance(control, tuple) and len(control) == 2 and isinstance(control[0], str):
            label, control = control
        if (isinstance(control, tuple) and len(control) == 2
                and isinstance(control[1], (tuple, list, GeneratorType))):
            default, control = control

    if isinstance(control, C.Control):
        if label:
            control.label = label
        return control
    if isinstance(control, C.Color):
        return C.ColorSelector(default=control, label=label)
    if isinstance(control, str):
        return C.InputBox(default=control, label=label)
    if isinstance(control, bool):
        return C.Checkbox(default=control, label=label)
    if C._is_number(control):
        if isinstance(control, int):
            lo, hi = _number_range(control)
            return C.DiscreteSlider(range(lo, hi + 1), default=control, label=label)
        lo, hi = _number_range(float(control))
        return C.ContinuousSlider((lo, hi), default=control, label=label)
    if isinstance(control, list):
        if len(control) == 1:
            v = control[0]
            value, text = v if isinstance(v, (list, tuple)) and len(v) == 2 else (v, str(v))
            return C.Button(value=value, text=text, default=value, label=label)
        kind = "button" if len(control) <= 5 else "list"
        return C.Selector(control, default=default, selector_type=kind, label=label)
    if isinstance(control, GeneratorType):
        return C.DiscreteSlider(C.take(C.MAX_VALUES, control), default=default, label=label)
    if isinstance(control, (tuple, range)):
        if isinstance(control, tuple) and len(control) == 2 and all(C._is_number(v) for v in control):
            return C.ContinuousSlider(control, default=default, label=label)
        if isinstance(control, tuple) and len(control) == 3 and all(C._is_number(v) for v in control):
            return C.slider(control[0], control[1], control[2], default=default, label=label)
        return C.DiscreteSlider(list(control), default=default, label=label)
    shape = getattr(control, "shape", None)
    if shape is not None and len(shape) in (1, 2) and hasattr(control, "tolist"):
        import numpy as np
        if len(shape) == 2:
            return C.InputGrid(shape[0], shape[1], default=control.tolist(), label=label,
                               adapter=np.array)
        return C.InputGrid(1, shape[0], default=[control.tolist()], label=label,
                           adapter=lambda rows: np.array(rows[0]))
    return C.InputBox(default=control, label=label, evaluate=True)
