"""The tables of a sweep folder: one row per point (CSV and Parquet), headline metrics flattened to columns."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..metrics.run import RunSummary
from ..results import atomic_write_bytes
from .run_tables import headline_entries

#: The columns a rate contributes to a sweep row, as ``section.metric.<field>``.
PROPORTION_FIELDS = ("rate", "count", "of", "ci_low", "ci_high")


def table_cell(value: Any) -> Any:
    """A swept value as a table cell: lists and tables as canonical JSON (sorted keys), the rest as is."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


def headline_metrics(summary: RunSummary) -> dict[str, Any]:
    """The deterministic metrics of a point's summary, flattened to ``section.metric[.field]`` columns (sorted)."""
    row: dict[str, Any] = {"replicates": summary.replicates}
    for name, entry in headline_entries(summary):
        if isinstance(entry, dict):  # a rate
            row.update({f"{name}.{f}": entry[f] for f in PROPORTION_FIELDS})
        else:
            row[name] = entry
    row["threshold"] = summary.metrics.threshold
    row["database_size"] = summary.metrics.database_size
    return row


def columns_of(head: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[str]:
    """``head``, then every other key of ``rows`` in first-seen order."""
    return list(dict.fromkeys([*head, *(c for r in rows for c in r)]))


def write_parquet(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> Path:
    """Write ``rows`` as a Parquet table; each column gets one Arrow type (mixed columns become text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: _arrow_column([r.get(c) for r in rows]) for c in columns})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return atomic_write_bytes(path, sink.getvalue().to_pybytes())


def _arrow_column(values: list[Any]) -> Any:
    import pyarrow as pa

    present = [v for v in values if v is not None]
    if not present:
        return pa.array(values, type=pa.null())
    if all(isinstance(v, bool) for v in present):
        return pa.array(values, type=pa.bool_())
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.array(values, type=pa.int64())
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pa.array([None if v is None else float(v) for v in values], type=pa.float64())
    return pa.array([None if v is None else v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in values],
                    type=pa.string())
