"""OCR engines behind one small Protocol, picked by ``RAG_OCR`` (auto | tesseract | rapidocr | off).

auto: Tesseract where its binary is installed (it reads English word for word, but slowly), else
RapidOCR (pip only, models inside its wheel; strong on Chinese, but glues English words together), else
none. Engines are built lazily and once per process: RapidOCR loads ONNX models, and parsing runs in
a fresh sandbox process per document, so nothing is loaded where no page needs OCR.
"""

from __future__ import annotations

import shutil
from functools import cache
from importlib.util import find_spec

from ingest.ocr.base import OcrEngine, OcrUnavailable

ENGINES = ("tesseract", "rapidocr")
CHOICES = ("auto", *ENGINES, "off")


def available() -> list[str]:
    """Engines this machine can run, in the order ``auto`` prefers them."""
    found = []
    if shutil.which("tesseract") and find_spec("pytesseract"):
        found.append("tesseract")
    if find_spec("rapidocr_onnxruntime"):
        found.append("rapidocr")
    return found


def resolve(choice: str) -> str | None:
    """The engine name ``choice`` means here, or None for no OCR; raises ``OcrUnavailable`` for an engine
    that was asked for by name and is not installed."""
    if choice == "off":
        return None
    if choice not in CHOICES:
        raise OcrUnavailable(f"Unknown OCR engine {choice!r} (RAG_OCR); choose one of {', '.join(CHOICES)}.")
    engines = available()
    if choice == "auto":
        return engines[0] if engines else None
    if choice not in engines:
        raise OcrUnavailable(
            f"RAG_OCR={choice} but {choice} is not installed on this server; install it "
            "(tesseract: apt-get install tesseract-ocr tesseract-ocr-eng; rapidocr: pip install rapidocr-onnxruntime) "
            "or set RAG_OCR=auto."
        )
    return choice


def describe(choice: str) -> dict[str, object]:
    """What ``/health`` says: the setting, the engine it means here (None: no OCR) and what is installed."""
    try:
        engine_name = resolve(choice)
    except OcrUnavailable:
        engine_name = None
    return {"setting": choice, "engine": engine_name, "installed": available()}


@cache
def engine(name: str) -> OcrEngine:
    if name == "tesseract":
        from ingest.ocr.tesseract import TesseractEngine

        return TesseractEngine()
    if name == "rapidocr":
        from ingest.ocr.rapid import RapidEngine

        return RapidEngine()
    raise OcrUnavailable(f"Unknown OCR engine {name!r}.")


__all__ = ["CHOICES", "ENGINES", "OcrEngine", "OcrUnavailable", "available", "describe", "engine", "resolve"]
