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
from ingest.parsers.ocr_pages import ocr_engine_name, ocr_off_error, read_image

# Pillow refuses images over twice this many pixels (DecompressionBombError) before decoding them.
_MAX_DECLARED_PIXELS = 100_000_000
_DAMAGED = "This image is damaged or not a PNG, JPEG or TIFF file; re-save it and upload it again."


def parse(data: bytes, options: ParseOptions | None = None) -> ParsedDocument:
    options = options or ParseOptions()
    engine_name = ocr_engine_name(options)
    if engine_name is None:
        raise ocr_off_error("This image")
    Image.MAX_IMAGE_PIXELS = _MAX_DECLARED_PIXELS // 2
    sections: list[Section] = []
    pages = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            for number, frame in enumerate(ImageSequence.Iterator(image), start=1):
                if number > options.max_pages:
                    raise DocumentUnreadable(
                        f"This image has more than {options.max_pages} pages (RAG_MAX_PDF_PAGES); split it."
                    )
                pages = number
                frame.load()
                text = read_image(frame.copy(), engine_name)
                if text:
                    sections.append(Section(text=text, page=number, heading=None, ocr=True))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DocumentUnreadable(
            f"This image is over {_MAX_DECLARED_PIXELS // 2:,} pixels; scale it down and upload it again."
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:  # Pillow's errors on broken files
        raise DocumentUnreadable(_DAMAGED) from exc
    if not sections:
        raise DocumentUnreadable(
            f"No text was found in this image (OCR with {engine_name} read none); if it holds text, upload a "
            "sharper scan (300 dpi) or a file with a text layer."
        )
    return ParsedDocument(sections=sections, page_count=pages, title=None)
