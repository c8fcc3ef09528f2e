"""CSV (and other delimited text) via the csv module: one page, each row a "header: value" record.

The dialect (delimiter, quoting) is sniffed from the first lines; when sniffing fails the file is read as
standard comma-separated values. The first non-empty row is the header. Rows and columns are bounded like a
spreadsheet sheet's, with what was left out said at the end.
"""

from __future__ import annotations

import csv
import io

from core.errors import DocumentUnreadable
from ingest.parsers.base import ParsedDocument, ParseOptions, Section, require_text
from ingest.parsers.detect import decode_text
from ingest.parsers.rows import bounded_records

_SAMPLE_CHARS = 64 * 1024
_DELIMITERS = ",;\t|"


def sniff_dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS)
    except csv.Error:
        return csv.excel


def parse(data: bytes, options: ParseOptions | None = None) -> ParsedDocument:
    options = options or ParseOptions()
    text = decode_text(data, "The CSV file")
    dialect = sniff_dialect(text[:_SAMPLE_CHARS])
    # A field may hold the whole file; the csv module's default field limit (128 KiB) would fail it.
    csv.field_size_limit(max(len(text), csv.field_size_limit()))
    try:
        records, note = bounded_records(
            csv.reader(io.StringIO(text, newline=""), dialect), options.max_rows, options.max_columns
        )
    except csv.Error as exc:
        raise DocumentUnreadable(f"This CSV file is malformed ({exc}); re-export it and upload it again.") from exc
    if note:
        records.append(note)
    sections = [Section(text="\n\n".join(records), page=1, heading=None, keep_paragraphs=True)]
    return ParsedDocument(sections=require_text(sections, "The CSV file"), page_count=1, title=None)
