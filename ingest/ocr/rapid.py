"""RapidOCR (PP-OCR models run by onnxruntime; the wheel ships the models, nothing is downloaded)."""

from __future__ import annotations

import numpy as np
from PIL.Image import Image

from ingest.ocr.base import MIN_CONFIDENCE


class RapidEngine:
    name = "rapidocr"

    def __init__(self) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self._ocr = RapidOCR()

    def read(self, image: Image) -> str:
        result, _ = self._ocr(np.asarray(image.convert("RGB")))
        lines = [str(text).strip() for _, text, score in result or [] if float(score) >= MIN_CONFIDENCE]
        return "\n".join(line for line in lines if line)
