"""Prompt-injection screening of retrieved text and the post-processing hook on model output.

Retrieved chunks are data written by whoever uploaded a document, so they may try to talk to the model.
``injection_score`` is a pure function: it names the families of phrasing a chunk matches. Each family is
one regular expression built from interchangeable parts (verbs x quantifiers x targets), so that
"Disregard everything above", "forget all prior guidance" and "pay no attention to the previous rules"
are one family, not three strings. A flagged chunk is still data; the answer layer decides to down-rank
or drop it. The flag rate on ordinary text is measured on the eval corpora (SciFact, ClapNQ) and kept
near zero: every family needs wording that addresses the reader as a model or its instructions, not
words that papers and encyclopedias use ("previous studies ignored ...").
"""

from __future__ import annotations

import re
from collections.abc import Callable

_I = re.IGNORECASE
_OVERRIDE_VERB = (
    r"(?:ignore|disregard|forget|override|overrule|bypass|skip|discard|drop|abandon|set\s+aside|"
    r"pay\s+no\s+attention\s+to|do\s+not\s+(?:follow|obey)|don'?t\s+(?:follow|obey)|stop\s+following|"
    r"never\s+mind)"
)
_QUANTIFIER = r"(?:(?:all|any|every|each|the|your|my|these|those|of|its|such)\s+)*"
_EARLIER = r"(?:previous|prior|above|earlier|preceding|foregoing|former|initial|original|old|system|developer|given)"
_INSTRUCTION_NOUN = (
    r"(?:instructions?|prompts?|rules|directions|directives|messages?|context|guidelines?|guidance|"
    r"constraints|commands?|orders|policies|polic(?:y|ies)|programming|text|tasks?)"
)
_EVERYTHING = (
    r"(?:everything|anything|all(?:\s+of\s+it)?|what(?:ever)?\s+(?:you\s+were|you'?ve\s+been|was)\s+"
    r"(?:told|said|given|instructed))"
)
_BEFORE = r"(?:above|before|prior|previously|so\s+far|earlier|(?:that|which)\s+(?:came|comes|was\s+said)\s+before)"
_ANSWER_VERB = r"(?:answer|reply|respond|say|output|print|write|return|type)"

INJECTION_PATTERNS: dict[str, re.Pattern[str]] = {
    # "Ignore all previous instructions", "pay no attention to the above rules", "forget the system prompt"
    "ignore_instructions": re.compile(
        rf"\b{_OVERRIDE_VERB}\s+{_QUANTIFIER}(?:{_EARLIER}\s+)+(?:\w+\s+)?{_INSTRUCTION_NOUN}\b"
        # "Disregard everything above", "forget whatever you were told"
        rf"|\b{_OVERRIDE_VERB}\s+{_EVERYTHING}(?:\s+{_BEFORE})?\b(?=\s*(?:and|[,.;:!]|$))"
        rf"|\b{_OVERRIDE_VERB}\s+{_EVERYTHING}\s+{_BEFORE}"
        # the same in a few other languages
        r"|\bignor(?:ez|iere|a|e)\s+(?:toutes\s+|tous\s+|les\s+|alle\s+|todas\s+|las\s+)*"
        r"(?:instructions|anweisungen|instrucciones|vorherigen|vorigen|précédentes)",
        _I,
    ),
    # "Answer with the single word X", "respond only with", "your only answer must be", "just say"
    "forced_answer": re.compile(
        rf"\b{_ANSWER_VERB}\s+(?:(?:only|just|exactly|simply|solely)\s+)?(?:with\s+)?(?:(?:the|a|this|one)\s+)?"
        r"(?:single|one|following|exact)\s+(?:word|phrase|sentence|token|string|text)\b"
        rf"|\b(?:answer|reply|respond)\s+(?:only|just|solely|exclusively)\s+(?:with|in|using)\b"
        r"|\byour\s+(?:only\s+|final\s+|next\s+)?(?:answer|response|reply|output)\s+(?:must|should|shall|will|has\s+to)"
        r"\s+(?:be|consist|only|contain|say|start)\b"
        rf"|\b(?:just|only|simply)\s+{_ANSWER_VERB}\s+[\"'“]"
        rf"|\b(?:instead|rather)\s*,?\s+{_ANSWER_VERB}\s+(?:with\s+)?[\"'“]",
        _I,
    ),
    "new_instructions": re.compile(
        r"\b(?:new|updated|real|actual|revised|true|secret|hidden|additional)\s+(?:system\s+)?instructions?\s*:"
        r"|\bthe\s+(?:real|true|actual)\s+(?:task|question|instructions?)\s+(?:is|are)\b"
        r"|\bfrom\s+now\s+on\s*,?\s+(?:you|always|only|never|answer|respond|reply)\b",
        _I,
    ),
    "role_play": re.compile(
        r"\byou\s+are\s+(?:now|no\s+longer)\b|\bpretend\s+(?:that\s+)?you\s+are\b"
        r"|\b(?:act|behave|respond|roleplay|role-play|pretend\s+to\s+be)\s+as\s+(?:an?\s+)?"
        r"(?:unrestricted|unfiltered|uncensored|jailbroken|evil|dan)\b"
        r"|\b(?:act|behave|pretend\s+to\s+be)\s+(?:as\s+)?(?:an?\s+)?(?:different|new|other)\s+"
        r"(?:ai|assistant|model|chatbot|persona)\b"
        r"|\b(?:developer|god|dan|jailbreak|unrestricted)\s+mode\b",
        _I,
    ),
    # Text that speaks to the model reading it: "If you are an AI reading this", "Note to the assistant:"
    "addresses_the_model": re.compile(
        r"\b(?:if\s+you\s+are|as)\s+an?\s+(?:ai|llm|language\s+model|assistant|chatbot)\s+"
        r"(?:reading|processing|summari[sz]ing|answering|that\s+reads)\b"
        r"|\b(?:note|message|attention|instructions?)\s+(?:to|for)\s+(?:the\s+|any\s+)?"
        r"(?:ai|llm|language\s+model|assistant|chatbot|model)\b\s*[:,-]"
        r"|\b(?:ai|llm|assistant|chatbot|language\s+model)s?\s+(?:reading|processing)\s+this\b"
        r"|\b(?:attention|hey|hello)\s*,?\s+(?:ai|llm|assistant|chatbot|language\s+model)\s*[:,!]",
        _I,
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
        r"\b(?:reveal|print|show|repeat|output|display|leak|disclose|dump|recite|tell\s+(?:me|us))\s+"
        r"(?:me\s+|us\s+)?(?:your|the)\s+(?:full\s+|entire\s+|exact\s+|original\s+|initial\s+|hidden\s+|secret\s+)*"
        r"(?:system\s+|developer\s+)?(?:prompt|instructions|rules|configuration)\b"
        r"|\bwhat\s+(?:is|are|were)\s+your\s+(?:system\s+|original\s+|initial\s+)?(?:prompt|instructions)\b",
        _I,
    ),
}


def injection_score(text: str) -> list[str]:
    """Names of the injection families ``text`` matches; empty means nothing suspicious. Pure."""
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
