"""Excel (XLSX) via openpyxl in read-only mode: one page per worksheet, each row a "header: value" record.

Formulas give their cached values (what Excel showed when the file was saved; a formula never computed
has none). Dates are ISO dates. The first non-empty row is the header. Rows and columns per sheet are
bounded (``max_rows``, ``max_columns``); what was left out is said at the end of the sheet's text, so a
search for it finds the note. Macros, charts, pictures and embedded objects are not read.
"""

from __future__ import annotations

import io
import zipfile

from openpyxl import load_workbook

from core.errors import DocumentUnreadable
from ingest.parsers.base import ParsedDocument, ParseOptions, Section, require_text
from ingest.parsers.office_zip import check_office_zip
from ingest.parsers.rows import bounded_records

WHAT = "Excel workbook"
SHARED_STRINGS = "xl/sharedStrings.xml"
CONTENT_TYPES = "[Content_Types].xml"
WORKBOOK_RELS = "xl/_rels/workbook.xml.rels"
# What Excel itself assumes when a workbook names a shared-strings part it does not hold: no shared strings.
EMPTY_SHARED_STRINGS = b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="0"/>'


def parse(data: bytes, options: ParseOptions | None = None) -> ParsedDocument:
    options = options or ParseOptions()
    check_office_zip(data, WHAT, options)
    try:
        workbook = load_workbook(io.BytesIO(_repaired(data)), read_only=True, data_only=True, keep_links=False)
    except MemoryError:  # the sandbox's memory limit: let it report as such
        raise
    except Exception as exc:  # openpyxl raises many types on a package that is not a plain XLSX
        raise DocumentUnreadable(
            f"This {WHAT} cannot be read ({type(exc).__name__}); save it as a .xlsx and upload it again."
        ) from exc
    try:
        sheets = workbook.worksheets
        if len(sheets) > options.max_pages:
            raise DocumentUnreadable(
                f"This {WHAT} has {len(sheets)} sheets, over the limit of {options.max_pages} (RAG_MAX_PDF_PAGES)."
            )
        sections: list[Section] = []
        for number, sheet in enumerate(sheets, start=1):
            # Read-only sheets know their size only from the file's <dimension>, which writers may omit.
            rows_declared = sheet.max_row if isinstance(sheet.max_row, int) else None
            columns_declared = sheet.max_column if isinstance(sheet.max_column, int) else None
            cells = sheet.iter_rows(values_only=True, max_col=options.max_columns + 1)
            records, note = bounded_records(
                cells, options.max_rows, options.max_columns, rows_declared, columns_declared
            )
            if note:
                records.append(note)
            if records:
                sections.append(
                    Section(text="\n\n".join(records), page=number, heading=sheet.title, keep_paragraphs=True)
                )
        title = (workbook.properties.title or "").strip() or None
        page_count = len(sheets)
    finally:
        workbook.close()
    return ParsedDocument(sections=require_text(sections, f"The {WHAT}"), page_count=page_count, title=title)


def _repaired(data: bytes) -> bytes:
    """``data`` with an empty shared-strings part added when its package names one it lacks.

    Some writers declare xl/sharedStrings.xml (in [Content_Types].xml) and store every string inline;
    Excel opens such files, openpyxl stops with a KeyError. Anything else is returned as it is (the size and
    member limits were checked before).
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        declared = b"".join(archive.read(name) for name in (CONTENT_TYPES, WORKBOOK_RELS) if name in names)
        if SHARED_STRINGS in names or b"sharedStrings.xml" not in declared:
            return data
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as repaired:
            for item in archive.infolist():
                repaired.writestr(item, archive.read(item))
            repaired.writestr(SHARED_STRINGS, EMPTY_SHARED_STRINGS)
    return out.getvalue()
