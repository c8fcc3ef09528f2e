"""OCR on scans built here (text rendered with Pillow), through the parse sandbox as the pipeline runs it.

Tesseract is required here, not optional: .ci/run and the Dockerfile install it, so its absence is a
failure of the environment that these tests must report.
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from core.errors import DocumentUnreadable
from ingest import ocr
from ingest.parsers import ParseOptions, detect_kind, parse_document
from ingest.sandbox import parse_isolated
from tests import documents
from tests.services import missing_service

LINES = ["The lighthouse at Cape Wrath", "was built by Robert Stevenson in 1828."]
CHINESE = ["灯塔位于苏格兰最北端的海角之上。", "它由史蒂文森家族在一八二八年建造。", "每年夏天都有许多游客前来参观。"]


def chinese_scan(pages: int) -> bytes:
    if not documents.CJK_FONT_PATH.is_file():
        missing_service(f"no CJK font at {documents.CJK_FONT_PATH}: apt-get install fonts-wqy-microhei")
    return documents.scanned_pdf_bytes([CHINESE] * pages, cjk=True)


def isolated(data: bytes, kind: str, engine: str) -> object:
    return parse_isolated(data, kind, max_pages=100, timeout_s=120, memory_mb=2048, options=ParseOptions(ocr=engine))


def test_both_engines_are_installed_and_auto_prefers_tesseract() -> None:
    assert ocr.available() == ["tesseract", "rapidocr"]
    assert ocr.resolve("auto") == "tesseract"
    assert ocr.resolve("off") is None


def test_a_named_engine_that_is_missing_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert ocr.resolve("auto") == "rapidocr"
    with pytest.raises(DocumentUnreadable, match="apt-get install tesseract-ocr"):
        ocr.resolve("tesseract")


def test_png_is_read_by_tesseract_word_for_word() -> None:
    data = documents.png_bytes(LINES)
    assert detect_kind(data, "scan.bin", None) == "image"
    parsed = isolated(data, "image", "tesseract")
    assert [(s.page, s.ocr) for s in parsed.sections] == [(1, True)]
    assert parsed.sections[0].text == "\n".join(LINES)


def test_rapidocr_reads_the_same_png_in_the_sandbox() -> None:
    parsed = isolated(documents.png_bytes(LINES), "image", "rapidocr")
    text = parsed.sections[0].text.replace(" ", "").lower()
    assert "lighthouse" in text and "stevenson" in text and parsed.sections[0].ocr


def test_auto_reads_a_chinese_scan_with_rapidocr_and_says_so_in_the_payload() -> None:
    # Tesseract (English) keeps no word of these pages; the document switches to RapidOCR on its first page.
    parsed = isolated(chinese_scan(pages=2), "pdf", "auto")
    assert [(s.page, s.ocr) for s in parsed.sections] == [(1, True), (2, True)]
    for section in parsed.sections:
        assert "史蒂文森家族" in section.text and "苏格兰" in section.text
    assert parsed.ocr_engine == "rapidocr"


def test_auto_keeps_tesseract_for_an_english_scan() -> None:
    parsed = isolated(documents.scanned_pdf_bytes([LINES, LINES]), "pdf", "auto")
    assert parsed.ocr_engine == "tesseract"
    assert [s.text for s in parsed.sections] == ["\n".join(LINES)] * 2


def test_tesseract_by_name_reads_no_chinese_and_says_no_text_was_found() -> None:
    with pytest.raises(DocumentUnreadable, match=r"No text was found in this PDF.*OCR \(tesseract"):
        isolated(chinese_scan(pages=1), "pdf", "tesseract")


def test_multipage_tiff_gives_one_page_per_frame() -> None:
    frames = [documents.text_image(["First frame mentions herons."]), documents.text_image(["Second frame, quokkas."])]
    out = io.BytesIO()
    frames[0].save(out, format="TIFF", save_all=True, append_images=frames[1:])
    parsed = parse_document(out.getvalue(), "image", options=ParseOptions(ocr="tesseract"))
    assert [(s.page, s.text) for s in parsed.sections] == [
        (1, "First frame mentions herons."),
        (2, "Second frame, quokkas."),
    ]


def test_pdf_pages_get_ocr_only_where_they_have_no_text_layer(pdf_dir: Path) -> None:
    writer = PdfWriter()
    writer.append(PdfReader(pdf_dir / "minimal-document.pdf"))
    writer.append(PdfReader(io.BytesIO(documents.scanned_pdf_bytes([["A scanned page about heron migration."]]))))
    out = io.BytesIO()
    writer.write(out)
    parsed = isolated(out.getvalue(), "pdf", "auto")
    assert parsed.page_count == 2
    pages = {(s.page, s.ocr) for s in parsed.sections}
    assert pages == {(1, False), (2, True)}
    assert "Lorem ipsum" in parsed.sections[0].text
    assert parsed.sections[-1].text == "A scanned page about heron migration."


def test_image_only_pdf_without_text_still_fails_saying_no_text_was_found(pdf_dir: Path) -> None:
    data = (pdf_dir / "imagemagick-images.pdf").read_bytes()
    for engine in ("tesseract", "rapidocr"):
        with pytest.raises(DocumentUnreadable, match=re.escape("No text was found in this PDF") + ".*OCR \\(" + engine):
            isolated(data, "pdf", engine)


def test_a_picture_without_text_is_not_a_page_of_text() -> None:
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", (800, 600), "skyblue")
    draw = ImageDraw.Draw(picture)
    draw.ellipse((200, 150, 600, 450), fill="orange", outline="black", width=8)
    out = io.BytesIO()
    picture.save(out, format="JPEG")
    with pytest.raises(DocumentUnreadable, match="No text was found in this image"):
        isolated(out.getvalue(), "image", "auto")


def test_with_ocr_off_scans_say_what_to_do() -> None:
    with pytest.raises(DocumentUnreadable, match="RAG_OCR=off"):
        parse_document(documents.png_bytes(LINES), "image")
    with pytest.raises(DocumentUnreadable, match="run OCR first"):
        parse_document(documents.scanned_pdf_bytes([LINES]), "pdf")


def test_a_broken_image_fails_only_itself() -> None:
    with pytest.raises(DocumentUnreadable, match="damaged"):
        isolated(b"\x89PNG\r\n\x1a\n" + bytes(300), "image", "auto")


def test_a_decompression_bomb_image_is_refused_from_its_header() -> None:
    from PIL import Image

    out = io.BytesIO()
    Image.new("1", (12_000, 10_000)).save(out, format="PNG")  # 120 M pixels in ~20 KB
    assert len(out.getvalue()) < 100_000
    with pytest.raises(DocumentUnreadable, match="12,000 x 10,000 pixels, over the limit"):
        isolated(out.getvalue(), "image", "auto")


def running_tesseracts() -> list[str]:
    """Live (not zombie) tesseract processes on this machine."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split(") ", 1)
        except OSError:
            continue
        if fields[0].endswith("(tesseract") and not fields[1].startswith("Z"):
            found.append(stat.parent.name)
    return found


def test_a_parse_stopped_by_the_time_limit_stops_its_ocr_program_too() -> None:
    """tesseract is a program of its own: killing only the parse process would leave it reading the page."""
    assert running_tesseracts() == []
    # One dense page rendered at 600 dpi (~34 M pixels): tesseract reads it for several seconds, so the time
    # limit strikes while it runs.
    pages = [[f"Line {i} of a dense scan about tides, harbours and the keepers' logs." for i in range(40)]]
    with pytest.raises(DocumentUnreadable, match=r"took longer than 4 s"):
        parse_isolated(
            documents.scanned_pdf_bytes(pages),
            "pdf",
            max_pages=100,
            timeout_s=4,
            memory_mb=2048,
            options=ParseOptions(ocr="tesseract", ocr_dpi=600),
        )
    time.sleep(0.5)  # SIGKILL is delivered asynchronously
    assert running_tesseracts() == []
