"""Parsers of Office files, CSV and e-mail on files built here with python-docx, python-pptx and openpyxl."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import date, datetime

import pytest
from docx import Document as new_docx
from docx.oxml.ns import qn
from lxml import etree

from core.errors import DocumentUnreadable
from ingest.chunking import chunk_sections
from ingest.parsers import ParseOptions, detect_kind, parse_document
from tests import documents

TABLE = [["Part", "Torque", "Note"], ["Flange bolt", "42 Nm", "dry"], ["Cover screw", "7 Nm", ""]]


def words(text: str) -> int:
    return len(text.split())


def test_docx_headings_lists_tables_and_headers_once() -> None:
    data = documents.docx_bytes(
        "Field manual",
        [("Assembly", ["Fit the flange first.", "* wipe the seat", "* fit the gasket"]), ("Storage", ["Keep dry."])],
        table=TABLE,
        header="ACME confidential",
        footer="Rev 3",
    )
    parsed = parse_document(data, detect_kind(data, "upload.bin", None))
    assert parsed.title == "Field manual" and parsed.page_count is None
    by_heading = {}
    for section in parsed.sections:
        assert section.page is None
        by_heading.setdefault(section.heading, []).append(section)
    prose, table = by_heading["Field manual > Assembly"]
    assert prose.text == "Fit the flange first.\n\n- wipe the seat\n\n- fit the gasket"
    assert table.keep_paragraphs
    assert table.text == "Part: Flange bolt; Torque: 42 Nm; Note: dry\n\nPart: Cover screw; Torque: 7 Nm"
    assert by_heading["Field manual > Storage"][0].text == "Keep dry."
    assert by_heading["Headers and footers"][0].text == "ACME confidential\nRev 3"


def test_docx_headers_repeated_in_every_section_are_kept_once() -> None:
    document = new_docx()
    document.add_paragraph("First part.")
    document.sections[0].header.paragraphs[0].text = "Quarterly report"
    section = document.add_section()
    section.header.is_linked_to_previous = False
    section.header.paragraphs[0].text = "Quarterly report"
    document.add_paragraph("Second part.")
    out = io.BytesIO()
    document.save(out)
    text = "\n".join(s.text for s in parse_document(out.getvalue(), "docx").sections)
    assert text.count("Quarterly report") == 1


def test_docx_tracked_changes_give_the_final_text_or_the_original_and_comments_on_request() -> None:
    document = new_docx()
    paragraph = document.add_paragraph("The valve is ")
    p = paragraph._p
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    inserted = etree.SubElement(p, qn("w:ins"), {qn("w:id"): "1", qn("w:author"): "A"})
    etree.SubElement(etree.SubElement(inserted, qn("w:r")), qn("w:t")).text = "open"
    deleted = etree.SubElement(p, qn("w:del"), {qn("w:id"): "2", qn("w:author"): "A"})
    etree.SubElement(etree.SubElement(deleted, qn("w:r")), f"{{{w}}}delText").text = "closed"
    document.add_comment(paragraph.runs, text="Check with the plant manager", author="Ann")
    out = io.BytesIO()
    document.save(out)
    assert [s.text for s in parse_document(out.getvalue(), "docx").sections] == ["The valve is open"]
    original = parse_document(out.getvalue(), "docx", options=ParseOptions(docx_revisions="original"))
    assert [s.text for s in original.sections] == ["The valve is closed"]
    commented = parse_document(out.getvalue(), "docx", options=ParseOptions(docx_comments=True))
    assert [(s.heading, s.text) for s in commented.sections] == [
        (None, "The valve is open"),
        ("Comments", "Ann: Check with the plant manager"),
    ]


def test_docx_text_inside_content_controls_is_kept() -> None:
    document = new_docx()
    document.add_paragraph("Before the control.")
    wrapped = document.add_paragraph("Inside a content control.")._p
    sdt = etree.Element(qn("w:sdt"))
    content = etree.SubElement(sdt, qn("w:sdtContent"))
    wrapped.addprevious(sdt)
    content.append(wrapped)
    document.add_paragraph("After it.")
    out = io.BytesIO()
    document.save(out)
    assert parse_document(out.getvalue(), "docx").sections[0].text == (
        "Before the control.\n\nInside a content control.\n\nAfter it."
    )


def test_pptx_one_page_per_slide_with_notes_and_tables() -> None:
    data = documents.pptx_bytes(
        [("Kickoff", "Agenda and goals", "Remind everyone about the zebra budget"), ("Results", "Q1 numbers", "")],
        table=[["Quarter", "Revenue"], ["Q1", "10"]],
    )
    parsed = parse_document(data, detect_kind(data, "deck.bin", None))
    assert parsed.page_count == 2 and parsed.title == "Kickoff"
    assert [(s.page, s.heading) for s in parsed.sections] == [(1, "Kickoff"), (2, "Results"), (2, "Results")]
    assert parsed.sections[0].text == "Agenda and goals\n\nSpeaker notes:\nRemind everyone about the zebra budget"
    assert parsed.sections[2].text == "Quarter: Q1; Revenue: 10" and parsed.sections[2].keep_paragraphs


def test_pptx_charts_are_read_as_tables_with_their_title() -> None:
    from pptx import Presentation
    from pptx.chart.data import CategoryChartData
    from pptx.enum.chart import XL_CHART_TYPE
    from pptx.util import Inches

    presentation = Presentation()
    slide = presentation.slides.add_slide(presentation.slide_layouts[5])  # title only
    slide.shapes.title.text = "Pelican census"
    data = CategoryChartData()
    data.categories = ["2024", "2025"]
    data.add_series("Brown pelicans", (120, 135))
    data.add_series("White pelicans", (40, 38.5))
    frame = slide.shapes.add_chart(XL_CHART_TYPE.COLUMN_CLUSTERED, Inches(1), Inches(2), Inches(6), Inches(4), data)
    frame.chart.has_title = True
    frame.chart.chart_title.text_frame.text = "Nesting pairs per year"
    out = io.BytesIO()
    presentation.save(out)
    parsed = parse_document(out.getvalue(), "pptx")
    assert [(s.page, s.heading, s.keep_paragraphs) for s in parsed.sections] == [(1, "Pelican census", True)]
    assert parsed.sections[0].text.split("\n\n") == [
        "Chart: Nesting pairs per year",
        "category: 2024; Brown pelicans: 120; White pelicans: 40",
        "category: 2025; Brown pelicans: 135; White pelicans: 38.5",
    ]


def test_xlsx_with_inline_strings_and_a_declared_but_missing_shared_strings_part_is_read() -> None:
    # As some writers save it: every string inline (openpyxl does that too), and xl/sharedStrings.xml declared
    # in [Content_Types].xml without the part itself, which stops openpyxl and not Excel.
    import zipfile

    source = documents.xlsx_bytes({"Birds": [["Bird", "Count"], ["Heron", 7]]})
    override = (
        b'<Override PartName="/xl/sharedStrings.xml" '
        b'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
    )
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(source)) as archive, zipfile.ZipFile(out, "w") as declared:
        assert "xl/sharedStrings.xml" not in archive.namelist()
        for item in archive.infolist():
            content = archive.read(item)
            if item.filename == "[Content_Types].xml":
                content = content.replace(b"</Types>", override + b"</Types>")
            declared.writestr(item, content)
    parsed = parse_document(out.getvalue(), "xlsx")
    assert [s.text for s in parsed.sections] == ["Bird: Heron; Count: 7"]


def test_xlsx_sheets_are_pages_rows_are_records_dates_iso_formulas_cached() -> None:
    data = documents.xlsx_bytes(
        {
            "Sales": [
                ["Region", "Revenue", "Booked"],
                ["North", 1200, date(2026, 1, 2)],
                ["South", 900.5, datetime(2026, 1, 3, 10, 30)],
            ],
            "Blank": [],
            "Staff": [["Name", None, "Room"], ["Ada", "x", "B12"]],
        },
        total=2100.5,
    )
    parsed = parse_document(data, detect_kind(data, "book.bin", None))
    assert parsed.page_count == 3
    assert [(s.page, s.heading, s.keep_paragraphs) for s in parsed.sections] == [(1, "Sales", True), (3, "Staff", True)]
    assert parsed.sections[0].text.split("\n\n") == [
        "Region: North; Revenue: 1200; Booked: 2026-01-02",
        "Region: South; Revenue: 900.5; Booked: 2026-01-03 10:30:00",
        "Region: Total; Revenue: 2100.5",
    ]
    assert parsed.sections[1].text == "Name: Ada; Column 2: x; Room: B12"


def test_xlsx_rows_and_columns_are_bounded_and_the_rest_reported() -> None:
    header = [f"c{i}" for i in range(8)]
    rows = [header, *([f"r{r}v{i}" for i in range(8)] for r in range(50))]
    data = documents.xlsx_bytes({"Wide": rows})
    parsed = parse_document(data, "xlsx", options=ParseOptions(max_rows=10, max_columns=5))
    lines = parsed.sections[0].text.split("\n\n")
    assert len(lines) == 11
    assert lines[0] == "c0: r0v0; c1: r0v1; c2: r0v2; c3: r0v3; c4: r0v4"
    assert "40 more rows after the first 10 were not indexed (RAG_TABLE_MAX_ROWS)" in lines[-1]
    assert "3 more columns after the first 5 were not indexed (RAG_TABLE_MAX_COLUMNS)" in lines[-1]


def test_every_chunk_of_a_big_sheet_holds_whole_rows_with_column_names() -> None:
    rows = [["Invoice", "Customer", "Amount"], *([f"INV-{i}", f"Customer {i} Inc. North", i] for i in range(300))]
    parsed = parse_document(documents.xlsx_bytes({"Invoices": rows}), "xlsx")
    drafts = chunk_sections(parsed.sections, words, size=40, overlap=10)
    assert len(drafts) > 10
    for draft in drafts:
        for line in draft.text.split("\n\n"):
            assert re.fullmatch(r"Invoice: INV-\d+; Customer: Customer \d+ Inc\. North; Amount: \d+", line), line


def test_csv_dialect_is_sniffed_and_rows_bounded() -> None:
    data = b"name;city;joined\nAda;London;2024-05-01\nBob;Paris;\n"
    parsed = parse_document(data, detect_kind(data, "people.csv", None))
    assert parsed.page_count == 1 and parsed.sections[0].page == 1
    assert parsed.sections[0].text == "name: Ada; city: London; joined: 2024-05-01\n\nname: Bob; city: Paris"
    many = "\n".join(["a,b", *(f"{i},{i * 2}" for i in range(30))]).encode()
    bounded = parse_document(many, "csv", options=ParseOptions(max_rows=5))
    assert bounded.sections[0].text.endswith("More rows after the first 5 were not indexed (RAG_TABLE_MAX_ROWS).")


def test_email_headers_body_and_attachments() -> None:
    attachment = documents.docx_bytes("Plan", [("Budget", ["The zebra line item is 40k."])])
    data = documents.eml_bytes(
        "Quarterly plan",
        "Ann <ann@example.com>",
        "bob@example.com",
        "Hi Bob,\n\nThe plan is attached.",
        [
            ("plan.docx", attachment, "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
            ("archive.zip", b"PK\x05\x06" + bytes(18), "application/zip"),
        ],
    )
    parsed = parse_document(data, detect_kind(data, "message.eml", None))
    assert parsed.title == "Quarterly plan"
    assert parsed.metadata == {
        "subject": "Quarterly plan",
        "from": "Ann <ann@example.com>",
        "to": "bob@example.com",
        "date": "2026-03-03T09:30:00+00:00",
    }
    assert "From: Ann <ann@example.com>" in parsed.sections[0].text
    assert parsed.sections[1].text == "Hi Bob,\n\nThe plan is attached."
    # The DOCX comes back whole, to be a document of its own; both files are named in the message's text.
    assert [(a.filename, a.kind, a.data) for a in parsed.attachments] == [("plan.docx", "docx", attachment)]
    assert parsed.sections[-1].heading == "Quarterly plan > Attachments"
    listed = parsed.sections[-1].text.split("\n")
    assert listed[0] == "Attachment: plan.docx"
    assert listed[1].startswith("Attachment: archive.zip was not indexed: ")
    assert "zebra" not in "".join(s.text for s in parsed.sections)


def test_email_html_body_goes_through_the_html_parser() -> None:
    message = documents.EmailMessage()
    message["Subject"] = "Launch"
    message["From"] = "ann@example.com"
    message.set_content(
        "<html><body><script>x()</script><h1>Launch</h1><p>Ship on <b>Friday</b>.</p></body></html>", subtype="html"
    )
    parsed = parse_document(message.as_bytes(), "email")
    assert parsed.sections[-1].text == "Ship on Friday."
    assert "x()" not in "".join(s.text for s in parsed.sections)


def test_nested_emails_stop_at_the_depth_limit() -> None:
    inner = documents.eml_bytes("Level two", "c@example.com", "d@example.com", "Deepest words.")
    middle = documents.eml_bytes(
        "Level one", "b@example.com", "c@example.com", "Middle words.", [("two.eml", inner, "message/rfc822")]
    )
    outer = documents.eml_bytes(
        "Top", "a@example.com", "b@example.com", "Top words.", [("one.eml", middle, "message/rfc822")]
    )
    [one] = parse_document(outer, "email", options=ParseOptions(max_attachment_depth=1)).attachments
    assert (one.filename, one.kind) == ("one.eml", "email")
    # one.eml is attached at depth 1: its own attachment is read within a limit of 1, not within 0.
    within = parse_document(one.data, "email", options=ParseOptions(max_attachment_depth=1, attachment_depth=1))
    assert [a.filename for a in within.attachments] == ["two.eml"]
    assert parse_document(within.attachments[0].data, "email").sections[-1].text == "Deepest words."
    beyond = parse_document(one.data, "email", options=ParseOptions(max_attachment_depth=0, attachment_depth=1))
    assert beyond.attachments == [] and "Middle words." in beyond.sections[1].text
    assert beyond.sections[-1].text == (
        "Attachment: two.eml was not indexed: attachments of e-mails nested deeper than 0 are not read."
    )


def test_markdown_whose_only_text_is_a_heading_is_text() -> None:
    parsed = parse_document(b"# Sea otters of Monterey Bay\n", "markdown")
    assert [s.text for s in parsed.sections] == ["Sea otters of Monterey Bay"]
    assert parse_document(b"---\ntitle: Kelp forests\n---\n", "markdown").sections[0].text == "Kelp forests"
    with pytest.raises(DocumentUnreadable, match="contains no text"):
        parse_document(b"---\nauthor: x\n---\n\n", "markdown")


# --- hostile Office files -----------------------------------------------------------------------------


def rezip(data: bytes, replace: dict[str, bytes] | None = None, add: dict[str, bytes] | None = None) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            target.writestr(item.filename, (replace or {}).get(item.filename, source.read(item.filename)))
        for name, content in (add or {}).items():
            target.writestr(name, content)
    return out.getvalue()


def small_docx() -> bytes:
    return documents.docx_bytes("Memo", [("Body", ["Plain words here."])])


def test_zip_bomb_is_refused_by_its_compression_ratio_before_inflating() -> None:
    bomb = rezip(small_docx(), add={"word/media/zeros.bin": bytes(50 * 1024 * 1024)})
    with pytest.raises(DocumentUnreadable, match=r"compresses \d[\d,]* to 1, over the limit of 200"):
        parse_document(bomb, "docx")


def test_archive_size_and_part_count_are_bounded() -> None:
    big = rezip(small_docx(), add={"word/media/noise.bin": bytes(range(256)) * 8192})
    with pytest.raises(DocumentUnreadable, match=r"unpacks to \d MB, over the limit of 1 MB"):
        parse_document(big, "docx", options=ParseOptions(max_archive_mb=1))
    many = rezip(small_docx(), add={f"customXml/extra{i}.xml": b"<a/>" for i in range(60)})
    with pytest.raises(DocumentUnreadable, match=r"holds 7\d parts, over the limit of 50"):
        parse_document(many, "docx", options=ParseOptions(max_archive_members=50))


@pytest.mark.parametrize("builder", [small_docx, lambda: documents.xlsx_bytes({"S": [["a"], ["b"]]})])
def test_xml_entities_are_refused(builder) -> None:  # type: ignore[no-untyped-def]
    data = builder()
    part = (
        "word/document.xml"
        if "word/document.xml" in zipfile.ZipFile(io.BytesIO(data)).namelist()
        else "xl/workbook.xml"
    )
    original = zipfile.ZipFile(io.BytesIO(data)).read(part)
    laughs = b'<!DOCTYPE r [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    root = re.search(rb"<[A-Za-z]", original)
    assert root is not None
    hostile = rezip(data, replace={part: original[: root.start()] + laughs + original[root.start() :]})
    with pytest.raises(DocumentUnreadable, match="declares XML entities"):
        parse_document(hostile, detect_kind(hostile, "x", None))


def test_xml_entities_are_refused_in_a_part_whatever_its_name() -> None:
    laughs = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "lol">]><r>&a;</r>'
    hostile = rezip(small_docx(), add={"word/custom.dat": laughs})
    with pytest.raises(DocumentUnreadable, match=r"declares XML entities \(part word/custom\.dat\)"):
        parse_document(hostile, "docx")


def test_macros_and_embedded_objects_are_ignored() -> None:
    data = rezip(
        small_docx(),
        add={"word/vbaProject.bin": b"\xd0\xcf\x11\xe0" + bytes(512), "word/embeddings/oleObject1.bin": bytes(256)},
    )
    parsed = parse_document(data, detect_kind(data, "macro.docm", None))
    assert [s.text for s in parsed.sections] == ["Plain words here."]


def test_password_protected_office_file_fails_with_what_to_do() -> None:
    from msoffcrypto.format.ooxml import OOXMLFile

    out = io.BytesIO()
    OOXMLFile(io.BytesIO(small_docx())).encrypt("secret", out)
    kind = detect_kind(out.getvalue(), "memo.docx", None)
    assert kind == "encrypted-office"
    with pytest.raises(DocumentUnreadable, match=r"password-protected .*remove the password"):
        parse_document(out.getvalue(), kind)


@pytest.mark.parametrize("kind", ["docx", "pptx", "xlsx"])
def test_truncated_office_files_say_damaged(kind: str) -> None:
    data = {
        "docx": small_docx,
        "pptx": lambda: documents.pptx_bytes([("A", "B", "")]),
        "xlsx": lambda: documents.xlsx_bytes({"S": [["a"]]}),
    }[kind]()
    with pytest.raises(DocumentUnreadable, match="damaged"):
        parse_document(data[: len(data) // 2], kind)


def test_email_with_malformed_headers_still_gives_its_text() -> None:
    raw = (
        b'From: "unterminated <a@b\nTo: ,,,@@@;;<>\nSubject: =?utf-8?q?Pump_report?= =?bogus?b?xx?=\n'
        b"Date: not a date at all\n\nThe pump failed on Tuesday.\n"
    )
    parsed = parse_document(raw, detect_kind(raw, "m.eml", None))
    assert parsed.sections[-1].text == "The pump failed on Tuesday."
    assert parsed.metadata["date"] == "not a date at all" and parsed.metadata["subject"].startswith("Pump report")


def test_chunk_payloads_carry_the_email_headers_and_the_ocr_mark() -> None:
    from core.models import Document
    from ingest.parsers.base import Section
    from ingest.records import chunk_records

    document = Document(id="doc", collection_id="c", filename="m.eml", content_type="email", sha256="0")
    document.created_at = datetime(2026, 1, 1)
    parsed = parse_document(documents.eml_bytes("Rota", "a@example.com", "b@example.com", "Monday: Ada."), "email")
    sections = [*parsed.sections, Section(text="Read from a scan.", page=None, heading=None, ocr=True)]
    records = chunk_records(document, chunk_sections(sections, words, 50, 5), parsed.title, None, parsed.metadata)
    assert all(record.payload["source"] == parsed.metadata for record in records)
    assert [record.payload["ocr"] for record in records] == [False, True]  # headers and body: one chunk
