"""SageMathCell-compatible interacts on ipywidgets (issue 7).

Kernels get everything in ``__all__`` in their user namespace (the kernel
provider preloads this package): ``interact``, the lower-case control
functions SageMathCell pages use (``slider``, ``input_box``, ...) and the
CamelCase control classes.  ``imports`` maps those names to objects.

Permalinks: ``snapshot()`` gives the control values of the kernel's
top-level interacts as JSON (a permalink's ``interacts``); ``restore(json)``
run before the code hands them to the next interacts made, in order.
"""
from .controls import (Button, ButtonBar, Checkbox, Color, ColorSelector, ContinuousSlider,
                       DiscreteSlider, ExpressionBox, HtmlBox, InputBox, InputGrid, Selector,
                       UpdateButton, button, button_bar, checkbox, color_selector, input_box,
                       input_grid, range_slider, selector, slider, text_control)
from .guess import automatic_control
from .interact import InteractProxy, html, interact, restore, snapshot

__all__ = [
    "interact", "slider", "range_slider", "input_box", "checkbox", "selector", "color_selector",
    "input_grid", "button", "button_bar", "text_control", "html",
    "Button", "ButtonBar", "Checkbox", "Color", "ColorSelector", "ContinuousSlider",
    "DiscreteSlider", "ExpressionBox", "HtmlBox", "InputBox", "InputGrid", "Selector",
    "UpdateButton",
]

imports = {name: globals()[name] for name in __all__}
