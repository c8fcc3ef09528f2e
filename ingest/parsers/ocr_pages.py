"""Images to text through the configured OCR engine, for the image parser and PDF pages without a text layer.

A page's OCR text must hold at least ``MIN_WORD_CHARS`` letters or digits: engines read a stray mark on a
photo as "1" or "l", and a picture must not become a searchable page. Images are scaled down to at most
``MAX_PIXELS`` before OCR, which bounds the engine's memory whatever the upload declares.
"""

from __future__ import annotations

import math
import re

from PIL.Image import Image

from core.errors import DocumentUnreadable
from ingest.ocr import engine, resolve
from ingest.parsers.base import ParseOptions, tidy

MIN_WORD_CHARS = 3
MAX_PIXELS = 40_000_000
# Smaller than this (in pixels, either side) cannot hold a line of text worth reading.
MIN_SIDE = 24
_WORD_CHAR = re.compile(r"\w")


def ocr_engine_name(options: ParseOptions) -> str | None:
    return resolve(options.ocr)


def read_image(image: Image, engine_name: str) -> str:
    """Tidied text of ``image``, "" when the engine found no text worth keeping."""
    if min(image.size) < MIN_SIDE:
        return ""
    pixels = image.size[0] * image.size[1]
    if pixels > MAX_PIXELS:
        scale = math.sqrt(MAX_PIXELS / pixels)
        image = image.resize((max(1, int(image.size[0] * scale)), max(1, int(image.size[1] * scale))))
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    text = tidy(engine(engine_name).read(image))
    return text if len(_WORD_CHAR.findall(text)) >= MIN_WORD_CHARS else ""


def ocr_off_error(what: str) -> DocumentUnreadable:
    return DocumentUnreadable(
        f"{what} needs OCR, which is off on this server (RAG_OCR=off); ask the admin to turn it on, or upload a "
        "file with a text layer (for example from `ocrmypdf in.pdf out.pdf`)."
    )
