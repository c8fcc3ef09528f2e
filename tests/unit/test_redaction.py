from __future__ import annotations

import pytest

from core.redaction import iban_ok, luhn_ok, redact

CASES = [
    ("mail jane.doe+rag@example.co.uk today", "mail [EMAIL] today", "EMAIL"),
    ("call +44 20 7946 0958 now", "call [PHONE] now", "PHONE"),
    ("call (030) 1234 5678", "call [PHONE]", "PHONE"),
    ("pay to DE89 3704 0044 0532 0130 00 please", "pay to [IBAN] please", "IBAN"),
    ("pay to GB82WEST12345698765432", "pay to [IBAN]", "IBAN"),
    ("card 4111 1111 1111 1111 exp 12/29", "card [CARD] exp 12/29", "CARD"),
    ("card 5500-0000-0000-0004", "card [CARD]", "CARD"),
    ("key rag_abcdefghijklmnopqrstuvwx leaked", "key [SECRET] leaked", "SECRET"),
    ("token sk-proj-ABCDEFGHIJKLMNOPQRST1234", "token [SECRET]", "SECRET"),
    ("aws AKIAIOSFODNN7EXAMPLE", "aws [SECRET]", "SECRET"),
]


@pytest.mark.parametrize(("text", "expected", "label"), CASES)
def test_each_pattern_is_masked(text: str, expected: str, label: str) -> None:
    result = redact(text)
    assert result.text == expected
    assert result.counts == {label: 1}


@pytest.mark.parametrize(
    "text",
    [
        "order 4111 1111 1111 1112 shipped",  # fails Luhn
        "account DE00 3704 0044 0532 0130 00",  # fails mod-97
        "version 1.2.3 released in 2024",
        "chunk 6f1c3c2e-5a8e-4f61-9d0b-2f6f2f0c9a11",
        "nDCG@10 rose to 0.731",
        "released 2026-11-25 and 25.11.2026",
        "page 12 of 117",
    ],
)
def test_lookalikes_are_left_alone(text: str) -> None:
    assert redact(text).text == text and not redact(text).changed


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB00 WEST 1234 5698 7654 32")
