"""What an OCR engine does: image in, text out (lines in reading order, low-confidence words dropped)."""

from __future__ import annotations

from typing import Protocol

from PIL.Image import Image

from core.errors import DocumentUnreadable

# Words an engine is less sure of than this are dropped: on photos and drawings engines "read" shapes as
# letters with low confidence, and such noise must not turn a picture into a searchable page.
MIN_CONFIDENCE = 0.6


class OcrUnavailable(DocumentUnreadable):
    """The configured engine cannot run here (not installed, unknown name)."""


class OcrEngine(Protocol):
    name: str

    def read(self, image: Image) -> str:
        """The text in ``image``, one line per text line, "" when none was found."""
        ...
