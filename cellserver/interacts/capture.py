"""Capture what an interact's function prints and displays, in order.

An interact's output must land only in its own ``Output`` widget and be
swapped in whole once the function has finished (the old output stays until
the new one is ready).  So instead of streaming into the widget, an update
runs with ``sys.stdout``/``sys.stderr`` and IPython's display publisher
pointed at an ``OutputCollector``; the collected Jupyter output dicts are then
assigned to ``Output.outputs`` in one state update, which the browser renders
in one go.
"""
from __future__ import annotations

import io
import sys
import traceback
from contextlib import contextmanager
from typing import Any

from IPython.core.displaypub import DisplayPublisher


class OutputCollector:
    """Jupyter output dicts (nbformat shape) gathered in the order produced."""

    def __init__(self) -> None:
        self.outputs: list[dict[str, Any]] = []
        self._clear_pending = False

    def _before_output(self) -> None:
        if self._clear_pending:
            self.outputs.clear()
            self._clear_pending = False

    def stream(self, name: str, text: str) -> None:
        if not text:
            return
        self._before_output()
        last = self.outputs[-1] if self.outputs else None
        if last and last["output_type"] == "stream" and last["name"] == name:
            last["text"] += text
        else:
            self.outputs.append({"output_type": "stream", "name": name, "text": text})

    def display(self, data: dict, metadata: dict | None = None,
                transient: dict | None = None, update: bool = False) -> None:
        display_id = (transient or {}).get("display_id")
        if update:
            for out in self.outputs:
                if display_id and out.get("_display_id") == display_id:
                    out["data"], out["metadata"] = dict(data), dict(metadata or {})
            return
        self._before_output()
        out = {"output_type": "display_data", "data": dict(data), "metadata": dict(metadata or {})}
        if display_id:
            out["_display_id"] = display_id
        self.outputs.append(out)

    def clear(self, wait: bool = False) -> None:
        if wait:
            self._clear_pending = True
        else:
            self.outputs.clear()

    def error(self, etype, evalue, tb, shell=None) -> None:
        self._before_output()
        lines = None
        if shell is not None:
            try:
                lines = shell.InteractiveTB.structured_traceback(etype, evalue, tb)
            except Exception:  # noqa: BLE001 - fall back to the plain format
                lines = None
        if lines is None:
            lines = traceback.format_exception(etype, evalue, tb)
        self.outputs.append({
            "output_type": "error",
            "ename": etype.__name__,
            "evalue": str(evalue),
            "traceback": list(lines),
        })

    def result(self) -> tuple[dict[str, Any], ...]:
        """The outputs as the ``Output`` widget's ``outputs`` trait wants them."""
        return tuple({k: v for k, v in out.items() if not k.startswith("_")} for out in self.outputs)


class _Stream(io.TextIOBase):
    def __init__(self, collector: OutputCollector, name: str):
        self._collector = collector
        self.name = name

    def write(self, text: str) -> int:
        self._collector.stream(self.name, str(text))
        return len(text)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


class _Publisher(DisplayPublisher):
    """IPython display publisher that appends to a collector."""

    def __init__(self, collector: OutputCollector, **kw):
        super().__init__(**kw)
        self._collector = collector

    def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
        self._collector.display(data, metadata, transient, update)

    def clear_output(self, wait=False):
        self._collector.clear(wait)


@contextmanager
def capturing(collector: OutputCollector, shell=None):
    """Route stdout, stderr and IPython displays into ``collector``."""
    saved_out, saved_err = sys.stdout, sys.stderr
    saved_pub = shell.display_pub if shell is not None else None
    sys.stdout = _Stream(collector, "stdout")
    sys.stderr = _Stream(collector, "stderr")
    if shell is not None:
        shell.display_pub = _Publisher(collector, shell=shell)
    try:
        yield collector
    finally:
        sys.stdout, sys.stderr = saved_out, saved_err
        if shell is not None:
            shell.display_pub = saved_pub


def flush_figures() -> None:
    """Show the matplotlib figures drawn during an update (inline or ipympl),
    as the kernel would at the end of a cell; no-op if pyplot is not in use."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    backend = str(plt.get_backend()).lower()
    if "inline" in backend:
        from matplotlib_inline.backend_inline import flush_figures as flush
    elif "ipympl" in backend or backend == "widget":
        from ipympl.backend_nbagg import flush_figures as flush
    else:
        return
    flush()
