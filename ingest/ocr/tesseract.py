"""Tesseract through pytesseract (the ``tesseract`` binary from Debian's tesseract-ocr + tesseract-ocr-eng)."""

from __future__ import annotations

import os

import pytesseract
from PIL.Image import Image

from ingest.ocr.base import MIN_CONFIDENCE

# Tesseract's own OpenMP threads fight the other parse and embedding work on small machines; one per page.
os.environ.setdefault("OMP_THREAD_LIMIT", "1")


class TesseractEngine:
    name = "tesseract"

    def __init__(self, languages: str = "eng") -> None:
        self.languages = languages

    def read(self, image: Image) -> str:
        data = pytesseract.image_to_data(
            image, lang=self.languages, config="--psm 3", output_type=pytesseract.Output.DICT
        )
        lines: dict[tuple[int, int, int], list[str]] = {}
        for index, word in enumerate(data["text"]):
            word = word.strip()
            if word and float(data["conf"][index]) >= MIN_CONFIDENCE * 100:
                key = (data["block_num"][index], data["par_num"][index], data["line_num"][index])
                lines.setdefault(key, []).append(word)
        paragraphs: dict[tuple[int, int], list[str]] = {}
        for (block, paragraph, _), words in lines.items():
            paragraphs.setdefault((block, paragraph), []).append(" ".join(words))
        return "\n\n".join("\n".join(texts) for texts in paragraphs.values())
