"""The script shares the OCR engine choice is made on (pure functions)."""

from __future__ import annotations

import pytest

from ingest.parsers.ocr_pages import cjk_share, word_chars


@pytest.mark.parametrize(
    ("text", "share"),
    [
        ("灯塔位于苏格兰", 1.0),
        ("ひらがなカタカナ", 1.0),
        ("등대는 스코틀랜드에", 1.0),
        ("The lighthouse", 0.0),
        ("灯塔 in Scotland", 2 / 12),
        ("", 0.0),
        ("— . , !", 0.0),
    ],
)
def test_cjk_share_counts_letters_and_digits_only(text: str, share: float) -> None:
    assert cjk_share(text) == pytest.approx(share)


def test_word_chars_ignore_punctuation_and_spaces() -> None:
    assert word_chars("A-1, b!") == 3
