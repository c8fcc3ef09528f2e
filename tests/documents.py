"""Documents of every supported format, built with the libraries themselves (tests and benchmarks share them).

Each builder takes the text it must hold, so a test can look for a word it chose.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Sequence
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from docx import Document
from openpyxl import Workbook
from PIL import Image, ImageDraw, ImageFont
from pptx import Presentation
from pptx.util import Inches

FONT_PATHS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
)


def docx_bytes(
    title: str,
    sections: Sequence[tuple[str, Sequence[str]]],
    table: Sequence[Sequence[str]] = (),
    header: str = "",
    footer: str = "",
) -> bytes:
    """A Word file: a Title, then per section a Heading 1 and its paragraphs; a table after the first section."""
    document = Document()
    document.add_heading(title, level=0)
    for index, (heading, paragraphs) in enumerate(sections):
        document.add_heading(heading, level=1)
        for paragraph in paragraphs:
            if paragraph.startswith("* "):
                document.add_paragraph(paragraph[2:], style="List Bullet")
            else:
                document.add_paragraph(paragraph)
        if index == 0 and table:
            grid = document.add_table(rows=len(table), cols=len(table[0]))
            for row_index, row in enumerate(table):
                for column, value in enumerate(row):
                    grid.cell(row_index, column).text = value
    if header:
        document.sections[0].header.paragraphs[0].text = header
    if footer:
        document.sections[0].footer.paragraphs[0].text = footer
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pptx_bytes(slides: Sequence[tuple[str, str, str]], table: Sequence[Sequence[str]] = ()) -> bytes:
    """One slide per (title, body, notes); ``table`` goes on the last slide."""
    presentation = Presentation()
    layout = presentation.slide_layouts[1]  # title and content
    for index, (title, body, notes) in enumerate(slides):
        slide = presentation.slides.add_slide(layout)
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
        if table and index == len(slides) - 1:
            shape = slide.shapes.add_table(len(table), len(table[0]), Inches(1), Inches(4), Inches(6), Inches(2))
            for row_index, row in enumerate(table):
                for column, value in enumerate(row):
                    shape.table.cell(row_index, column).text = value
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def xlsx_bytes(sheets: dict[str, Sequence[Sequence[object]]], total: float | None = None) -> bytes:
    """One sheet per entry. With ``total``, sheet one ends in a row "Total" with the formula SUM over column B
    and ``total`` as its cached value, as Excel saves it (openpyxl writes formulas without one)."""
    workbook = Workbook()
    workbook.remove(workbook.active)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(list(row))
        if total is not None and len(workbook.worksheets) == 1:
            sheet.append(["Total", f"=SUM(B2:B{len(rows)})"])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue() if total is None else _cache_formula(out.getvalue(), total)


def _cache_formula(data: bytes, value: float) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                content = re.sub(
                    rb"(<f>SUM\([^<]*\)</f>)<v\s*/?>(</v>)?", rb"\1<v>%s</v>" % str(value).encode(), content
                )
            target.writestr(item, content)
    return out.getvalue()


# Debian's fonts-wqy-microhei (.ci/run installs it): Chinese text for the OCR engine choice.
CJK_FONT_PATH = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")


def text_image(
    lines: Sequence[str], size: tuple[int, int] = (1700, 600), font_size: int = 48, cjk: bool = False
) -> Image.Image:
    """Black text on white, like a 200 dpi scan of a printed page; ``cjk`` draws with the CJK font."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(CJK_FONT_PATH), font_size) if cjk else _font(font_size)
    for index, line in enumerate(lines):
        draw.text((60, 60 + index * int(font_size * 1.6)), line, fill="black", font=font)
    return image


def png_bytes(lines: Sequence[str]) -> bytes:
    out = io.BytesIO()
    text_image(lines).save(out, format="PNG")
    return out.getvalue()


def scanned_pdf_bytes(pages: Sequence[Sequence[str]], cjk: bool = False) -> bytes:
    """An image-only PDF (no text layer): each page is a picture of its lines, as a scanner makes."""
    images = [text_image(lines, size=(1700, 2200), cjk=cjk) for lines in pages]
    out = io.BytesIO()
    images[0].save(out, format="PDF", save_all=True, append_images=images[1:], resolution=200.0)
    return out.getvalue()


def text_pdf_bytes(pages: Sequence[Sequence[str]]) -> bytes:
    """A PDF with a text layer (Helvetica, one line per entry), written object by object with its xref
    table, as a word processor's "save as PDF" would; pypdf reads the lines back as text."""

    def literal(line: str) -> str:
        return "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"

    count = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for index, lines in enumerate(pages):
        text = " T* ".join(f"{literal(line)} Tj" for line in lines)
        stream = f"BT /F1 11 Tf 14 TL 72 740 Td {text} ET"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {5 + 2 * index} 0 R >>"
        )
        objects.append(f"<< /Length {len(stream.encode('latin-1'))} >>\nstream\n{stream}\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def eml_bytes(
    subject: str, sender: str, to: str, body: str, attachments: Sequence[tuple[str, bytes, str]] = ()
) -> bytes:
    """A MIME message; attachments are (filename, bytes, MIME type)."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = to
    message["Date"] = "Tue, 03 Mar 2026 09:30:00 +0000"
    message.set_content(body)
    for name, data, mime in attachments:
        if mime == "message/rfc822":  # attached as a message part (RFC 2046 forbids base64 for it)
            message.add_attachment(message_from_bytes(data, policy=policy.default), filename=name)
            continue
        maintype, subtype = mime.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes()


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in FONT_PATHS:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            continue
    return ImageFont.load_default(size)
