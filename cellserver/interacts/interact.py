"""``@interact``: SageMathCell's interact API on top of ipywidgets.

``interact(f)`` guesses a control for each parameter of ``f`` (see
``guess``), lays the controls and an ``Output`` widget out in boxes (see
``layout``), runs ``f`` once, displays the whole as one widget and returns an
``InteractProxy``.  Each later change of a control reruns ``f`` with every
control's value; what ``f`` prints or displays is collected (``capture``) and
swapped into the interact's own ``Output`` in one state update, errors
included, so the page never shows a half-drawn update and nothing leaks into
the cell that happened to be running.

The proxy is the "dependency management" of SageMathCell: ``f.x`` reads a
control, ``f.x = 5`` moves it (ipywidgets sends the new value to the browser
over the widget's comm at once) and reruns ``f``; assigning a new name adds a
control, ``del f.x`` removes one.
"""
from __future__ import annotations

import inspect
import json
import sys
import weakref
from typing import Any, Callable

import ipywidgets as W
from IPython import get_ipython
from IPython.display import display

from . import controls as C
from .capture import OutputCollector, capturing, flush_figures
from .guess import automatic_control
from .layout import COLUMN, OUTPUT, plan

MAX_RERUNS = 10  # changes made while the function runs cause at most this many reruns

_running: list["_Interact"] = []  # interacts whose function is running (nesting)
_top_level: list = []             # weak references to the top-level interacts, in order
_pending_states: list[dict] = []  # states from a permalink, for the next top-level interacts


class _Interact:
    def __init__(self, function: Callable, controls: dict[str, C.Control], layout,
                 *, pass_proxy: bool, params: set[str], var_kwargs: bool, update: list | None,
                 output: bool, readonly: bool, automatic_labels: bool):
        self.function = function
        self.controls = controls
        self.pass_proxy = pass_proxy
        self.params = params
        self.var_kwargs = var_kwargs
        self.update_names = set(update) if update is not None else None
        self.readonly = readonly
        self.automatic_labels = automatic_labels
        self.proxy = InteractProxy(self)
        self.children: list[_Interact] = []
        self.closed = False
        self._silent = 0
        self._running = False
        self._pending = False
        self.runs = 0
        self.output = W.Output() if output else None
        if self.output is not None:
            self.output.add_class("interact-output")
        for name, c in controls.items():
            self._build_control(name, c)
        self.rows = plan(layout, list(controls), output=output)
        self.root = W.VBox()
        self.root.add_class("sagecell-interact")
        self._containers: list[W.Widget] = []
        self._render()
        if _running:
            _running[-1].children.append(self)

    # -- widgets -----------------------------------------------------------
    def _build_control(self, name: str, c: C.Control) -> None:
        c.globals = getattr(self.function, "__globals__", {})
        label = c.label if c.label is not None else (name if self.automatic_labels else "")
        c.build(name, label, self._on_change)
        if self.readonly:
            c.disable()

    def _render(self) -> None:
        old = self._containers
        self._containers = []
        self.root.children = tuple(self._rows(self.rows))
        for w in old:
            w.close()

    def _rows(self, rows) -> list:
        out = []
        for row in rows:
            cells = []
            for name, arg in row:
                if name == COLUMN:
                    box = W.VBox(self._rows(arg))
                    self._containers.append(box)
                    w = box
                elif name is None:
                    w = W.Box()
                    self._containers.append(w)
                elif name == OUTPUT:
                    w = self.output
                else:
                    w = self.controls[name].widget
                if len(row) > 1:
                    w.layout.flex = f"{arg} 1 auto"
                cells.append(w)
            if len(cells) == 1:
                out.append(cells[0])
            else:
                box = W.HBox(cells)
                box.add_class("interact-row")
                self._containers.append(box)
                out.append(box)
        return out

    # -- updates -------------------------------------------------------------
    def auto(self) -> bool:
        return not any(c.is_update_button for c in self.controls.values())

    def _triggers(self, c: C.Control) -> bool:
        if c.always_triggers:
            return True
        if not self.auto() or not c.triggers:
            return False
        return self.update_names is None or c.name in self.update_names

    def _on_change(self, c: C.Control) -> None:
        if self._silent or self.closed:
            return
        if self._triggers(c):
            self.request_update()

    def request_update(self) -> None:
        if self._running:
            self._pending = True
            return
        self.run()

    def run(self) -> None:
        self._running = True
        try:
            for _ in range(MAX_RERUNS):
                self._pending = False
                self._run_once()
                if not self._pending:
                    break
        finally:
            self._running = False

    def _kwargs(self) -> dict[str, Any]:
        return {n: c.call_value() for n, c in self.controls.items()
                if self.var_kwargs or n in self.params}

    def _run_once(self) -> None:
        for child in self.children:
            child.close()
        self.children = []
        shell = get_ipython()
        collector = OutputCollector()
        _running.append(self)
        try:
            with capturing(collector, shell):
                try:
                    args = [self.proxy] if self.pass_proxy else []
                    result = self.function(*args, **self._kwargs())
                    if result is not None:
                        display(result)
                    flush_figures()
                except (Exception, KeyboardInterrupt):
                    etype, evalue, tb = sys.exc_info()
                    collector.error(etype, evalue, tb.tb_next or tb, shell)
        finally:
            _running.pop()
            for c in self.controls.values():
                c.reset()
            self.runs += 1
        if self.output is not None:
            self.output.outputs = collector.result()

    # -- the proxy's operations ----------------------------------------------
    def set_value(self, name: str, value) -> None:
        self.set_values({name: value})

    def set_values(self, values: dict) -> None:
        for name in values:
            if name not in self.controls:
                raise AttributeError(f"interact has no control {name!r}")
        self._silent += 1
        try:
            for name, value in values.items():
                self.controls[name].set(value)
        finally:
            self._silent -= 1
        if self.auto() or any(self.controls[n].always_triggers for n in values):
            self.request_update()

    def add_control(self, name: str, control) -> None:
        if name.startswith("_"):
            raise ValueError(f"invalid control name: {name}")
        c = automatic_control(control, var=name)
        self._build_control(name, c)
        self.controls[name] = c
        at = next((i for i, row in enumerate(self.rows) if row == [(OUTPUT, 1)]), len(self.rows))
        self.rows.insert(at, [(name, 1)])
        self._render()
        self.request_update()

    def remove_control(self, name: str) -> None:
        if name not in self.controls:
            raise AttributeError(f"interact has no control {name!r}")
        c = self.controls.pop(name)
        self.rows = _strip(self.rows, name)
        self._render()
        c.close()
        self.request_update()

    def raw_state(self) -> dict[str, Any]:
        """JSON-able control values (for permalinks)."""
        out = {}
        for n, c in self.controls.items():
            v = c.raw_state()
            if v is not None:
                out[n] = v
        return out

    def apply_raw_state(self, state: dict) -> None:
        """Set controls from ``raw_state()`` output; bad entries are skipped."""
        self._silent += 1
        try:
            for n, v in state.items():
                c = self.controls.get(n)
                if c is None:
                    continue
                try:
                    c.set_raw_state(v)
                except Exception:  # noqa: BLE001 - a stale permalink must not break the interact
                    pass
        finally:
            self._silent -= 1

    def state(self) -> dict[str, Any]:
        return {n: c.get() for n, c in self.controls.items() if not isinstance(c, (C.Button, C.ButtonBar))}

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for child in self.children:
            child.close()
        for c in self.controls.values():
            c.close()
        for w in self._containers:
            w.close()
        if self.output is not None:
            self.output.close()
        self.root.close()


def _strip(rows, name):
    out = []
    for row in rows:
        cells = []
        for n, arg in row:
            if n == COLUMN:
                sub = _strip(arg, name)
                if sub:
                    cells.append((n, sub))
            elif n != name:
                cells.append((n, arg))
        if cells:
            out.append(cells)
    return out


class InteractProxy:
    """What ``@interact`` returns: control values as attributes."""

    def __init__(self, interact: _Interact):
        object.__setattr__(self, "_interact", interact)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        controls = object.__getattribute__(self, "_interact").controls
        if name in controls:
            return controls[name].get()
        raise AttributeError(f"interact has no control {name!r}")

    def __setattr__(self, name, value):
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        it = self._interact
        if name in it.controls:
            it.set_value(name, value)
        else:
            it.add_control(name, value)

    def __delattr__(self, name):
        if name.startswith("_"):
            object.__delattr__(self, name)
            return
        self._interact.remove_control(name)

    def __dir__(self):
        return sorted(set(self._interact.controls) | {"_update", "_state", "_widget", "_close"})

    def __call__(self, *args, **kwargs):
        return self._interact.function(*args, **kwargs)

    def __repr__(self):
        return f"<interact {getattr(self._interact.function, '__name__', '?')}({', '.join(self._interact.controls)})>"

    def _ipython_display_(self):
        """Already displayed when made; showing the proxy adds nothing."""

    def _update(self):
        """Rerun the function now."""
        self._interact.run()

    def _state(self, state: dict | None = None):
        """The controls' values, or set several at once (one rerun)."""
        if state is None:
            return self._interact.state()
        self._interact.set_values(dict(state))

    @property
    def _widget(self) -> W.VBox:
        return self._interact.root

    def _close(self):
        self._interact.close()


def interact(f=None, controls=None, update=None, layout=None, locations=None, output=True,
             readonly=False, automatic_labels=True, auto_update=True):
    """Make ``f`` an interact; usable as ``@interact`` or ``@interact(...)``.

    ``controls``: extra ``(name, control)`` pairs (or names) beside ``f``'s
    parameters; ``update``: names whose change reruns ``f`` (default all);
    ``layout``: rows of names, or a dict of top/bottom/left/right rows;
    ``auto_update=False``: rerun only on the Update button; ``readonly``:
    controls shown but disabled; ``output=False``: no output area.
    A first parameter without a default receives the interact's proxy.
    """
    opts = dict(update=update, layout=layout, locations=locations, output=output,
                readonly=readonly, automatic_labels=automatic_labels, auto_update=auto_update)
    if f is None or isinstance(f, (list, tuple)):
        extra = controls if f is None else f
        return lambda g: interact(g, controls=extra, **opts)
    if isinstance(f, InteractProxy):
        f = f._interact.function
    if not callable(f):
        raise TypeError(f"interact needs a function, not {type(f).__name__}")
    if locations:
        raise ValueError("interact(locations=...) is not supported here: use layout=")

    sig = inspect.signature(f)
    params = [p for p in sig.parameters.values()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY)]
    var_kwargs = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    pass_proxy = bool(params) and params[0].default is params[0].empty \
        and params[0].kind != params[0].KEYWORD_ONLY
    if pass_proxy:
        params = params[1:]
    specs = [(p.name, None if p.default is p.empty else p.default) for p in params]
    for item in list(controls or []):
        if isinstance(item, str):
            specs.append((item, None))
        elif isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str):
            specs.append((item[0], item[1]))
        else:
            raise ValueError(f"interact control must be a (name, control) pair, not {item!r}")
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise ValueError("duplicate argument in interact definition")
    for n in names:
        if n.startswith("_"):
            raise ValueError(f"invalid control name: {n}")
    ctrls = {n: automatic_control(v, var=n) for n, v in specs}
    if not auto_update and not any(c.is_update_button for c in ctrls.values()):
        ctrls["auto_update"] = C.UpdateButton()
    if update is not None:
        missing = set(update) - set(ctrls)
        if missing:
            raise ValueError(f"update names unknown controls: {sorted(missing)}")
    it = _Interact(f, ctrls, layout, pass_proxy=pass_proxy,
                   params={p.name for p in params}, var_kwargs=var_kwargs, update=update,
                   output=output, readonly=readonly, automatic_labels=automatic_labels)
    if not _running:
        _top_level[:] = [r for r in _top_level if r() is not None and not r().closed]
        _top_level.append(weakref.ref(it))
        if _pending_states:
            it.apply_raw_state(_pending_states.pop(0))
    it.run()
    display(it.root)
    return it.proxy


def html(obj) -> None:
    """Show ``obj`` (a string) as HTML, as Sage's ``html()`` does."""
    from IPython.display import HTML
    display(HTML(str(obj)))


def snapshot() -> str:
    """The control values of this kernel's live top-level interacts, as the
    JSON list a permalink's ``interacts`` holds (one object per interact)."""
    live = [r() for r in _top_level]
    return json.dumps([it.raw_state() for it in live if it is not None and not it.closed])


def restore(states) -> None:
    """Give the next top-level interacts these values (a permalink's
    ``interacts``: a JSON list, or its text), before their first run."""
    if isinstance(states, str):
        states = json.loads(states) if states.strip() else []
    if not isinstance(states, list) or not all(isinstance(s, dict) for s in states):
        raise ValueError("interacts state must be a list of objects")
    _pending_states[:] = list(states)

