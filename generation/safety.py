"""Prompt-injection screening of retrieved text and the post-processing hook on model output.

Retrieved chunks are data written by whoever uploaded a document, so they may try to talk to the model.
The patterns flag the usual shapes of that (instruction overrides, chat-role markers, template tokens,
prompt delimiters); a flagged chunk is still data, and the answer layer decides to down-rank or drop it.
Flagging is a heuristic that trades a few false positives (a FAQ with "User:" lines) for visibility.
"""

from __future__ import annotations

import re
from collections.abc import Callable

INJECTION_PATTERNS: dict[str, re.Pattern[str]] = {
    "ignore_instructions": re.compile(
        r"\b(?:ignore|disregard|forget|override)\s+(?:all\s+|any\s+|the\s+|your\s+)*"
        r"(?:previous|prior|above|earlier|preceding|system|original)\s+"
        r"(?:instructions?|prompts?|rules|directions|messages?|context)",
        re.IGNORECASE,
    ),
    "new_instructions": re.compile(r"\b(?:new|updated|real)\s+instructions?\s*:", re.IGNORECASE),
    "role_play": re.compile(
        r"\byou\s+are\s+now\b|\bpretend\s+(?:to\s+be|you\s+are)\b|\bact\s+as\s+(?:an?\s+)?"
        r"(?:unrestricted|jailbroken|different|new)\b",
        re.IGNORECASE,
    ),
    "role_marker": re.compile(r"^\s*(?:system|assistant|user|developer)\s*:", re.IGNORECASE | re.MULTILINE),
    "chat_template_token": re.compile(r"<\|[A-Za-z_][A-Za-z0-9_]*\|>|\[/?INST\]|<</?SYS>>"),
    "instruction_header": re.compile(
        r"^\s*#{2,}\s*(?:instructions?|system|response|input)\b", re.IGNORECASE | re.MULTILINE
    ),
    "prompt_delimiter": re.compile(
        r"</?\s*(?:source|sources|system|context|instructions?|prompt)\b[^>]{0,80}>", re.IGNORECASE
    ),
    "prompt_exfiltration": re.compile(
        r"\b(?:reveal|print|show|repeat|output)\s+(?:your|the)\s+(?:system\s+)?(?:prompt|instructions)\b",
        re.IGNORECASE,
    ),
}


def injection_score(text: str) -> list[str]:
    """Names of the injection patterns ``text`` matches; empty means nothing suspicious."""
    return [name for name, pattern in INJECTION_PATTERNS.items() if pattern.search(text)]


OutputFilter = Callable[[str, str], str]
"""``(answer, system_prompt) -> answer``: one post-processing step on the model's final text."""

_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+|\n+")
_MIN_LEAK_CHARS = 24
_SOURCE_TAG = re.compile(r"</?\s*source\b[^>]{0,200}>", re.IGNORECASE)


def strip_system_prompt_leak(answer: str, system_prompt: str) -> str:
    """Remove sentences of the system prompt the model parroted back.

    Small models often echo their instructions; whole sentences (not short words that answers share
    with the prompt) are matched, case-insensitively.
    """
    cleaned = answer
    for sentence in _SENTENCE_END.split(system_prompt):
        sentence = sentence.strip()
        if len(sentence) >= _MIN_LEAK_CHARS:
            cleaned = re.sub(re.escape(sentence), "", cleaned, flags=re.IGNORECASE)
    return re.sub(r"[ \t]{2,}", " ", cleaned).strip() if cleaned != answer else answer


def strip_source_tags(answer: str, system_prompt: str) -> str:
    """Drop copies of the source fences: they are prompt markup, never part of an answer."""
    del system_prompt
    return _SOURCE_TAG.sub("", answer).strip()


OUTPUT_FILTERS: list[OutputFilter] = [strip_system_prompt_leak, strip_source_tags]


def register_output_filter(output_filter: OutputFilter) -> OutputFilter:
    """Append a deployment's own post-processor; usable as a decorator."""
    OUTPUT_FILTERS.append(output_filter)
    return output_filter


def apply_output_filters(answer: str, system_prompt: str) -> str:
    for output_filter in OUTPUT_FILTERS:
        answer = output_filter(answer, system_prompt)
    return answer
