"""Tables as records: every row rendered as "header: value" pairs, so each row carries its column names.

Shared by the spreadsheet, CSV, DOCX and PPTX parsers. A row is one paragraph of a ``keep_paragraphs``
section, which the chunker never splits (unless one row alone is over the chunk size): a chunk holds whole
rows, and any chunk of a table can be read without the header row that came before it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time

PAIR_SEPARATOR = "; "


def cell_text(value: object) -> str:
    """One cell as text: dates as ISO 8601 (a date alone when there is no time of day), whole floats as ints."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return " ".join(str(value).split())


def column_names(header: Sequence[str]) -> list[str]:
    """Header cells, with "Column N" (1-based) standing in for empty ones so no value goes unnamed."""
    return [name or f"Column {index + 1}" for index, name in enumerate(header)]


def render_row(names: Sequence[str], values: Sequence[str]) -> str:
    """ "name: value" for each non-empty cell; cells past the header are named by position."""
    pairs = []
    for index, value in enumerate(values):
        if value:
            name = names[index] if index < len(names) else f"Column {index + 1}"
            pairs.append(f"{name}: {value}")
    return PAIR_SEPARATOR.join(pairs)


def render_table(rows: Iterable[Sequence[str]]) -> list[str]:
    """First non-empty row is the header; each later non-empty row becomes one record line.

    A table of a single row (a layout table, a title box) renders as its cells joined, so nothing is lost.
    """
    header: list[str] | None = None
    names: list[str] = []
    records: list[str] = []
    for row in rows:
        if not any(row):
            continue
        if header is None:
            header = list(row)
            names = column_names(header)
            continue
        record = render_row(names, row)
        if record:
            records.append(record)
    if header is not None and not records:
        return [" | ".join(value for value in header if value)]
    return records


def bounded_records(
    rows: Iterable[Sequence[object]],
    max_rows: int,
    max_columns: int,
    total_rows: int | None = None,
    total_columns: int | None = None,
) -> tuple[list[str], str | None]:
    """Records of at most ``max_rows`` data rows and ``max_columns`` columns, and a note on what was left out.

    ``rows`` is read only as far as the limit (plus one row, to know more exist); ``total_rows`` and
    ``total_columns`` (a sheet's declared size, header included) make the note exact where the format knows
    them. Rows may be cut to ``max_columns + 1`` cells by the reader: one more than kept shows there are more.
    """
    kept: list[list[str]] = []
    extra_columns = 0
    more = False
    for row in rows:
        values = [cell_text(value) for value in row]
        while values and not values[-1]:
            values.pop()
        if not values:
            continue
        if len(kept) > max_rows:  # the header plus max_rows data rows are kept
            more = True
            break
        extra_columns = max(extra_columns, len(values) - max_columns)
        kept.append(values[:max_columns])
    notes = []
    if more:
        left = f"{total_rows - 1 - max_rows:,} more rows" if total_rows and total_rows - 1 > max_rows else "More rows"
        notes.append(f"{left} after the first {max_rows:,} were not indexed (RAG_TABLE_MAX_ROWS).")
    if extra_columns > 0:
        left = f"{total_columns - max_columns:,} more columns" if total_columns else "More columns"
        notes.append(f"{left} after the first {max_columns:,} were not indexed (RAG_TABLE_MAX_COLUMNS).")
    return render_table(kept), " ".join(notes) or None
