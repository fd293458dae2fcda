"""Turn an interact's ``layout=`` into rows of cells (pure).

SageMathCell's layouts: a list of rows, each a list of control names or
``(name, width)`` pairs, or a dict with ``top``/``bottom``/``left``/``right``
lists of rows placed around the output.  We also let a row hold a nested list
of rows (a column: layouts inside layouts).  ``"_output"`` places the output;
``None`` is an empty cell.  Controls the layout leaves out get a row each
after it, then the output (if not placed).

The result is a tree the interact turns into ipywidgets boxes:
``Rows = list[Row]``, ``Row = list[Cell]``, ``Cell = (name | None, width)``
or ``("_column", Rows)``.
"""
from __future__ import annotations

OUTPUT = "_output"
COLUMN = "_column"


def _is_cell(item) -> bool:
    return (isinstance(item, (list, tuple)) and len(item) == 2
            and (isinstance(item[0], str) or item[0] is None) and isinstance(item[1], int)
            and not isinstance(item[1], bool))


def _rows(rows, placed: set, known: set) -> list:
    if isinstance(rows, (str, tuple)) or rows is None:
        rows = [rows]
    out = []
    for row in rows:
        if row is None or isinstance(row, str) or _is_cell(row):
            row = [row]
        cells = []
        for item in row:
            if isinstance(item, list) and not _is_cell(item):
                cells.append((COLUMN, _rows(item, placed, known)))
                continue
            name, width = (item[0], int(item[1])) if _is_cell(item) else (item, 1)
            if name is not None:
                if not isinstance(name, str):
                    raise ValueError(f"layout entries must be control names, not {name!r}")
                if name not in known:
                    raise ValueError(f"layout names {name!r}, which is not a control of this interact")
                if name in placed:
                    raise ValueError(f"duplicate item {name!r} in layout")
                placed.add(name)
            cells.append((name, max(width, 1)))
        out.append(cells)
    return out


def plan(layout, names: list[str], output: bool = True) -> list:
    """Rows of cells placing every control in ``names`` (and the output)."""
    known = set(names) | ({OUTPUT} if output else set())
    placed: set = set()
    if isinstance(layout, dict):
        unknown = set(layout) - {"top", "bottom", "left", "right"}
        if unknown:
            raise ValueError(f"layout dict keys are top, bottom, left, right; not {sorted(unknown)}")
        top = _rows(layout.get("top", []), placed, known)
        left = _rows(layout.get("left", []), placed, known)
        right = _rows(layout.get("right", []), placed, known)
        bottom = _rows(layout.get("bottom", []), placed, known)
        middle = []
        if left:
            middle.append((COLUMN, left))
        if output and OUTPUT not in placed:
            placed.add(OUTPUT)
            middle.append((OUTPUT, 1))
        if right:
            middle.append((COLUMN, right))
        rows = top + ([middle] if middle else []) + bottom
    elif layout is None:
        rows = []
    elif isinstance(layout, (list, tuple)):
        rows = _rows(list(layout), placed, known)
    else:
        raise ValueError(f"layout must be a list of rows or a dict, not {type(layout).__name__}")
    for n in names:
        if n not in placed:
            rows.append([(n, 1)])
    if output and OUTPUT not in placed:
        rows.append([(OUTPUT, 1)])
    return rows


def names_in(rows) -> list:
    """Every name placed in ``rows``, in order (columns included)."""
    found = []
    for row in rows:
        for name, arg in row:
            if name == COLUMN:
                found.extend(names_in(arg))
            elif name is not None:
                found.append(name)
    return found
