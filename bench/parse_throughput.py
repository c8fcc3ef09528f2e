"""Parse throughput per format (pages or rows per second) and OCR seconds per page, on files built here.

Each format's file is built with its own library (python-docx, python-pptx, openpyxl, the csv module, the
stdlib e-mail package, Pillow for scans; builders shared with the tests in ``tests/documents.py``), then
parsed ``--repeat`` times in this process with ``parse_document`` (the parser alone: the sandbox adds a
process start, ~0.1 s per document, measured separately on one PDF). The figure is the best run's units
per second, since this shared machine's speed drifts. OCR: a scanned (image-only) PDF and a PNG read by
each installed engine, seconds per page.

    python -m bench.parse_throughput [--rows 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from collections.abc import Callable
from datetime import date, timedelta

from bench.common import Report, heading, print_table, progress
from ingest import ocr
from ingest.parsers import ParsedDocument, ParseOptions, parse_document
from ingest.sandbox import parse_isolated
from tests import documents

SCAN_LINES = [
    "The lighthouse at Cape Wrath was built in 1828",
    "by Robert Stevenson, and its keepers logged the",
    "weather every three hours until automation in 1998.",
]


def best_seconds(run: Callable[[], ParsedDocument], repeat: int) -> tuple[float, ParsedDocument]:
    best, parsed = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        parsed = run()
        best = min(best, time.perf_counter() - started)
    assert parsed is not None
    return best, parsed


def sheet_rows(count: int) -> list[list[object]]:
    start = date(2026, 1, 1)
    return [
        ["Invoice", "Customer", "Region", "Amount", "Issued"],
        *(
            [f"INV-{i:06d}", f"Customer {i % 997}", ("North", "South", "East")[i % 3], i * 1.25, start + timedelta(i)]
            for i in range(count)
        ),
    ]


def build_inputs(rows: int) -> dict[str, tuple[str, bytes, str, int]]:
    """Format -> (kind, bytes, unit, units in the file)."""
    slides = [
        (f"Slide {i}", f"Point {i}: revenue grew in region {i % 5}.", f"Say the figure for {i} aloud.")
        for i in range(60)
    ]
    sections = [
        (f"Chapter {i}", [f"Paragraph {j} of chapter {i} explains the pump design." for j in range(20)])
        for i in range(30)
    ]
    table = [
        ["Component", "Supplier", "Lead time"],
        *([f"Part {i}", f"Supplier {i % 40}", f"{i % 20} weeks"] for i in range(200)),
    ]
    csv_text = io.StringIO()
    writer = csv.writer(csv_text)
    for row in sheet_rows(rows):
        writer.writerow(row)
    docx = documents.docx_bytes("Design notes", sections, table=table)
    mail = documents.eml_bytes(
        "Design notes", "a@example.com", "b@example.com", "Attached.",
        [("notes.docx", docx, "application/vnd.openxmlformats-officedocument.wordprocessingml.document")],
    )  # fmt: skip
    return {
        "DOCX (30 headings, 600 paragraphs, 200-row table)": ("docx", docx, "paragraphs+rows", 600 + 200),
        "PPTX (60 slides with notes)": ("pptx", documents.pptx_bytes(slides), "slides", 60),
        f"XLSX ({rows:,} rows x 5 columns)": (
            "xlsx",
            documents.xlsx_bytes({"Invoices": sheet_rows(rows)}),
            "rows",
            rows,
        ),
        f"CSV ({rows:,} rows x 5 columns)": ("csv", csv_text.getvalue().encode(), "rows", rows),
        "EML with the DOCX attached": ("email", mail, "messages", 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the XLSX and CSV files")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    report = Report("bench.parse_throughput")
    report.start("Parse throughput per format, OCR seconds per page, sandbox overhead")
    options = ParseOptions(max_rows=max(args.rows, 100_000))
    rows = []
    for label, (kind, data, unit, units) in build_inputs(args.rows).items():
        progress(f"parsing {label}")
        seconds, parsed = best_seconds(lambda k=kind, d=data: parse_document(d, k, options=options), args.repeat)
        rows.append(
            [
                label,
                f"{len(data) / 1e6:.2f}",
                f"{seconds:.3f}",
                f"{units / seconds:,.0f} {unit}/s",
                len(parsed.sections),
            ]
        )
    heading(f"Parse rate per format (best of {args.repeat})")
    print_table(["file", "MB", "best s", "throughput", "sections"], rows)

    scan_pages = 3
    # Pages differ in their first and last lines: lines that open or close 3+ pages are dropped as running heads.
    scan = documents.scanned_pdf_bytes([SCAN_LINES[i:] + SCAN_LINES[:i] for i in range(scan_pages)])
    png = documents.png_bytes(SCAN_LINES)
    ocr_rows = []
    for engine in ocr.available():
        engine_options = ParseOptions(ocr=engine)
        progress(f"OCR with {engine}")
        parse_document(png, "image", options=engine_options)  # loads the engine (RapidOCR: ONNX models) untimed
        pdf_s, parsed = best_seconds(lambda o=engine_options: parse_document(scan, "pdf", options=o), args.repeat)
        png_s, _ = best_seconds(lambda o=engine_options: parse_document(png, "image", options=o), args.repeat)
        words = sum(len(s.text.split()) for s in parsed.sections) // scan_pages
        ocr_rows.append([engine, f"{pdf_s / scan_pages:.2f}", f"{png_s:.2f}", words])
    heading("OCR")
    print_table(
        ["OCR engine", "s per scanned PDF page (200 dpi scan, rendered at 300)", "s per PNG", "words read per page"],
        ocr_rows,
    )

    progress("sandbox overhead")
    small = documents.docx_bytes("x", [("y", ["z"])])
    inline, _ = best_seconds(lambda: parse_document(small, "docx"), args.repeat)
    isolated, _ = best_seconds(
        lambda: parse_isolated(small, "docx", max_pages=2000, timeout_s=60, memory_mb=2048), args.repeat
    )
    heading("Sandbox overhead (a one-paragraph DOCX)")
    print_table(["where", "ms"], [["in-process", inline * 1000], ["isolated (sandbox process)", isolated * 1000]])
    report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
