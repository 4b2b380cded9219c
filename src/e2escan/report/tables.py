"""Plain-text tables for terminal summaries (machine-readable output goes to files)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e6 or abs(value) < 1e-3:
            return f"{value:.3g}"
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def format_table(rows: Sequence[Sequence[Any]], headers: Sequence[str], title: str | None = None,
                 width: int | None = None) -> str:
    """Left-aligned text columns, right-aligned numbers, one header rule.

    With ``width`` (e.g. the terminal's), the last column is wrapped so that
    every line fits, continuation lines indented under it (never narrower than
    20 characters).
    """
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [
        all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool) for row in rows) if rows else False
        for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    last = len(headers) - 1
    if width is not None and last >= 0:
        room = width - sum(widths[:last]) - 2 * last
        if room < 20:  # too many wide columns for the terminal: one record per row instead
            return _records(cells, headers, title, width)
        widths[last] = min(widths[last], room)

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if numeric[i] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    def lines(values: Sequence[str]) -> list[str]:
        if width is None or last < 0 or len(values[last]) <= widths[last] or numeric[last]:
            return [line(values)]
        import textwrap

        parts = textwrap.wrap(values[last], widths[last]) or [""]
        first = line([*values[:last], parts[0]])
        indent = " " * (sum(widths[:last]) + 2 * last)
        return [first] + [indent + p for p in parts[1:]]

    out = []
    if title:
        out.append(title)
    out.append(line(list(headers)))
    out.append("  ".join("-" * w for w in widths))
    for r in cells:
        out.extend(lines(r))
    return "\n".join(out)


def _records(cells: list[list[str]], headers: Sequence[str], title: str | None, width: int) -> str:
    """Each row as its first cell, then one wrapped ``header: value`` line per other column."""
    import textwrap

    out = [title] if title else []
    for r in cells:
        out.append(r[0])
        for h, v in zip(headers[1:], r[1:]):
            out.extend(textwrap.wrap(f"{h}: {v}", max(20, width), initial_indent="    ", subsequent_indent="      ")
                       or ["    " + h + ":"])
    return "\n".join(out)


def terminal_width() -> int:
    """The terminal's width in columns (100 when not a terminal, e.g. in a log or a pipe)."""
    import shutil

    return shutil.get_terminal_size((100, 24)).columns
