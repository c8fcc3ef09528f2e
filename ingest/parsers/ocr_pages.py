"""Images to text through the configured OCR engine, for the image parser and PDF pages without a text layer.

A page's OCR text must hold at least ``MIN_WORD_CHARS`` letters or digits: engines read a stray mark on a
photo as "1" or "l", and a picture must not become a searchable page. Images are scaled down to at most
``MAX_PIXELS`` before OCR, which bounds the engine's memory whatever the upload declares.

One ``PageReader`` reads one document, so the engine is chosen per document. Under ``RAG_OCR=auto`` with both
engines installed, the document's script decides: Tesseract (installed with English) reads Latin script word
for word but drops every word of a Chinese, Japanese or Korean page as low-confidence, while RapidOCR reads
those scripts and glues English words together. So Tesseract reads first; a page on which it keeps fewer than
``DECISIVE_WORD_CHARS`` characters is read by RapidOCR too, and when most of what RapidOCR reads there is CJK
script the document switches to RapidOCR. The first page with text settles it, after at most
``DECIDING_PAGES`` tries, so a mostly-pictures English document pays for the second engine a few pages at most.
"""

from __future__ import annotations

import math
import re

from PIL.Image import Image

from core.errors import DocumentUnreadable
from ingest.ocr import available, engine, resolve
from ingest.parsers.base import ParseOptions, tidy

MIN_WORD_CHARS = 3
MAX_PIXELS = 40_000_000
# Smaller than this (in pixels, either side) cannot hold a line of text worth reading.
MIN_SIDE = 24
# A Tesseract page with this many letters or digits kept is Latin-script text: the document stays with it.
DECISIVE_WORD_CHARS = 40
DECIDING_PAGES = 3
# Share of the letters RapidOCR read that must be CJK for a document to switch to it.
CJK_MAJORITY = 0.5
_WORD_CHAR = re.compile(r"\w")
# Han (with extension A and compatibility ideographs), kana and Hangul syllables.
_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


class PageReader:
    """Reads the scanned pages of one document; ``engine_name`` is the engine that reads (or read) it."""

    def __init__(self, engine_name: str, cjk_engine: str | None = None) -> None:
        self.engine_name = engine_name
        self._cjk_engine = cjk_engine
        self._tries_left = DECIDING_PAGES if cjk_engine else 0

    def read(self, image: Image) -> str:
        """Tidied text of ``image``, "" when the engine found no text worth keeping."""
        prepared = _prepared(image)
        if prepared is None:
            return ""
        text = _read(prepared, self.engine_name)
        if self._tries_left == 0 or self._cjk_engine is None:
            return text
        if word_chars(text) >= DECISIVE_WORD_CHARS:
            self._tries_left = 0
            return text
        self._tries_left -= 1
        other = _read(prepared, self._cjk_engine)
        if other and cjk_share(other) >= CJK_MAJORITY:
            self.engine_name, self._tries_left = self._cjk_engine, 0
            return other
        if text or other:  # a page with text in Latin script: the first engine stays
            self._tries_left = 0
        return text


def page_reader(options: ParseOptions) -> PageReader | None:
    """The reader for one document under ``options.ocr``, None when OCR is off or no engine is installed."""
    name = resolve(options.ocr)
    if name is None:
        return None
    cjk_engine = "rapidocr" if options.ocr == "auto" and name == "tesseract" and "rapidocr" in available() else None
    return PageReader(name, cjk_engine)


def word_chars(text: str) -> int:
    return len(_WORD_CHAR.findall(text))


def cjk_share(text: str) -> float:
    """Share of the letters and digits of ``text`` that are Chinese, Japanese or Korean script."""
    total = word_chars(text)
    return len(_CJK_CHAR.findall(text)) / total if total else 0.0


def _prepared(image: Image) -> Image | None:
    if min(image.size) < MIN_SIDE:
        return None
    pixels = image.size[0] * image.size[1]
    if pixels > MAX_PIXELS:
        scale = math.sqrt(MAX_PIXELS / pixels)
        image = image.resize((max(1, int(image.size[0] * scale)), max(1, int(image.size[1] * scale))))
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return image


def _read(image: Image, engine_name: str) -> str:
    text = tidy(engine(engine_name).read(image))
    return text if word_chars(text) >= MIN_WORD_CHARS else ""


def ocr_off_error(what: str) -> DocumentUnreadable:
    return DocumentUnreadable(
        f"{what} needs OCR, which is off on this server (RAG_OCR=off); ask the admin to turn it on, or upload a "
        "file with a text layer (for example from `ocrmypdf in.pdf out.pdf`)."
    )
