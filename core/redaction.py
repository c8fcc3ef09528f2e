"""Masks personal data and secrets in text that leaves the platform (logs, prompts to external models).

Patterns are deliberately conservative: card numbers must pass the Luhn check and IBANs the mod-97 check,
so product codes and long ids are not masked by accident.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}(?!\w)")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}[./-]\d{2}[./-]\d{4}")
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
SECRET = re.compile(
    r"\b(?:rag_[A-Za-z0-9_-]{16,}|sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})\b"
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rotated = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rotated)) % 97 == 1


@dataclass(frozen=True)
class Rule:
    label: str
    pattern: re.Pattern[str]
    check: Callable[[str], bool] | None = None


# Order matters: secrets and IBANs before phone numbers, whose pattern would eat their digit groups.
RULES = (
    Rule("SECRET", SECRET),
    Rule("EMAIL", EMAIL),
    Rule("IBAN", IBAN, iban_ok),
    Rule("CARD", CARD, lambda s: luhn_ok(re.sub(r"\D", "", s))),
    Rule("PHONE", PHONE, lambda s: 7 <= len(re.sub(r"\D", "", s)) <= 15 and not DATE.fullmatch(s)),
)


@dataclass(frozen=True)
class Redacted:
    text: str
    counts: dict[str, int]

    @property
    def changed(self) -> bool:
        return bool(self.counts)


def redact(text: str) -> Redacted:
    counts: dict[str, int] = {}
    for rule in RULES:

        def mask(match: re.Match[str], rule: Rule = rule) -> str:
            if rule.check is not None and not rule.check(match.group(0)):
                return match.group(0)
            counts[rule.label] = counts.get(rule.label, 0) + 1
            return f"[{rule.label}]"

        text = rule.pattern.sub(mask, text)
    return Redacted(text, counts)


def redact_text(text: str) -> str:
    return redact(text).text
