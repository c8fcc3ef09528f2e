"""PNG, JPEG and TIFF uploads: text by OCR, one page per image frame (a multi-page TIFF is a scan of many).

Every section is marked ``ocr``. An image in which OCR finds no text ends the document with a message
that says so, like an image-only PDF.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageSequence, UnidentifiedImageError

from core.errors import DocumentUnreadable
from ingest.parsers.base import ParsedDocument, ParseOptions, Section
from ingest.parsers.ocr_pages import ocr_off_error, page_reader

# Larger frames are refused from their header, before a pixel is decoded (decompression bombs: a few KB
# of PNG can declare 100,000 x 100,000 pixels). A 600 dpi A3 scan is ~70 million.
MAX_FRAME_PIXELS = 100_000_000
_DAMAGED = "This image is damaged or not a PNG, JPEG or TIFF file; re-save it and upload it again."


def parse(data: bytes, options: ParseOptions | None = None) -> ParsedDocument:
    options = options or ParseOptions()
    reader = page_reader(options)
    if reader is None:
        raise ocr_off_error("This image")
    sections: list[Section] = []
    pages = 0
    try:
        with warnings.catch_warnings():
            # Pillow warns past ~89 M pixels (and refuses past ~179 M in open()); the check per frame decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            for number, frame in enumerate(ImageSequence.Iterator(image), start=1):
                if number > options.max_pages:
                    raise DocumentUnreadable(
                        f"This image has more than {options.max_pages} pages (RAG_MAX_PDF_PAGES); split it."
                    )
                width, height = frame.size
                if width * height > MAX_FRAME_PIXELS:
                    raise DocumentUnreadable(
                        f"This image is {width:,} x {height:,} pixels, over the limit of {MAX_FRAME_PIXELS:,}; "
                        "scale it down (300 dpi is enough for OCR) and upload it again."
                    )
                pages = number
                frame.load()
                text = reader.read(frame.copy())
                if text:
                    sections.append(Section(text=text, page=number, heading=None, ocr=True))
    except Image.DecompressionBombError as exc:  # over twice Pillow's limit, refused inside open()
        raise DocumentUnreadable(
            f"This image is over {MAX_FRAME_PIXELS:,} pixels; scale it down and upload it again."
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:  # Pillow's errors on broken files
        raise DocumentUnreadable(_DAMAGED) from exc
    if not sections:
        raise DocumentUnreadable(
            f"No text was found in this image (OCR with {reader.engine_name} read none); if it holds text, upload a "
            "sharper scan (300 dpi) or a file with a text layer."
        )
    return ParsedDocument(sections=sections, page_count=pages, title=None, ocr_engine=reader.engine_name)
