"""Answer quality and cost: overlap with reference answers, citations, abstention, consistency, tokens.

Each scorer is a small pure function over one answer; ``summarize_answers`` averages them over a run.
Answers are compared with the best-matching reference (datasets list several phrasings of one answer).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from rouge_score.rouge_scorer import RougeScorer

from generation.backends.base import LLMBackend
from generation.citations import is_abstention
from generation.loops import has_loop
from generation.prompt import count_prompt_tokens, neutralize

Encode = Callable[[list[str]], np.ndarray]
"""Texts -> one embedding row per text (the platform's embedding model)."""

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_CITATION_MARKER = re.compile(r"\[\s*(?:sources?\s*)?\d+(?:\s*(?:,|;|-|–|and)\s*(?:sources?\s*)?\d+)*\s*\]", re.I)


def normalize_answer(text: str) -> str:
    """SQuAD normalization: lower case, no punctuation, no articles, single spaces."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION))
    return " ".join(text.split())


def strip_citations(text: str) -> str:
    """References carry no ``[n]`` markers, so they must not count as (missing) answer tokens."""
    return _CITATION_MARKER.sub(" ", text)


def token_f1(prediction: str, references: Sequence[str]) -> float | None:
    """SQuAD token F1 against the best reference; ``None`` without references."""
    if not references:
        return None
    predicted = normalize_answer(strip_citations(prediction)).split()
    best = 0.0
    for reference in references:
        gold = normalize_answer(reference).split()
        if not predicted or not gold:
            best = max(best, float(predicted == gold))
            continue
        common = sum((Counter(predicted) & Counter(gold)).values())
        if common:
            precision, recall = common / len(predicted), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


@lru_cache(maxsize=1)
def _rouge() -> RougeScorer:
    return RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, references: Sequence[str]) -> float | None:
    """ROUGE-L F-measure (Porter-stemmed) against the best reference; ``None`` without references."""
    if not references:
        return None
    cleaned = strip_citations(prediction)
    return max(_rouge().score(reference, cleaned)["rougeL"].fmeasure for reference in references)


def semantic_similarity(prediction: str, references: Sequence[str], encode: Encode) -> float | None:
    """Cosine similarity of the answer's and the best reference's embeddings; ``None`` without references."""
    if not references:
        return None
    vectors = np.asarray(encode([strip_citations(prediction), *references]), dtype=float)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms == 0, 1.0, norms)
    return float(np.max(unit[1:] @ unit[0]))


def citation_precision(cited_doc_ids: Sequence[str], gold_doc_ids: Iterable[str]) -> float | None:
    """Share of cited chunks whose document is a gold document; ``None`` when nothing is cited."""
    if not cited_doc_ids:
        return None
    gold = set(gold_doc_ids)
    return sum(1 for doc in cited_doc_ids if doc in gold) / len(cited_doc_ids)


def abstained(answer: str | None, reported: bool | None = None) -> bool:
    """The platform's own verdict when it gave one, else the same phrase detection it uses."""
    if reported is not None:
        return reported
    return is_abstention(answer or "")


def consistency(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Share of questions asked twice that got the identical answer both times."""
    if not pairs:
        return None
    return sum(1 for first, second in pairs if first.strip() == second.strip()) / len(pairs)


def cost_per_1k_questions(
    prompt_tokens: float, completion_tokens: float, price_prompt_per_1k: float, price_completion_per_1k: float
) -> float:
    """Cost of 1,000 questions from mean tokens per question and prices per 1,000 tokens."""
    return prompt_tokens * price_prompt_per_1k + completion_tokens * price_completion_per_1k


@dataclass(frozen=True)
class AnswerRecord:
    """One generated answer and what scoring it needs."""

    question_id: str
    answer: str
    answerable: bool
    abstained: bool
    references: tuple[str, ...] = ()
    gold_doc_ids: tuple[str, ...] = ()
    cited_doc_ids: tuple[str, ...] = ()
    """Dataset ids of the cited chunks' documents, one entry per cited chunk."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    faithful: bool | None = None
    """The judge's verdict; ``None`` when not judged."""
    groundedness: float | None = None
    """The platform's share of verified answer sentences; ``None`` when it did not verify."""
    fallback_reason: str | None = None
    answerability: float | None = None
    """The evidence score the platform's abstention threshold applies to."""

    @property
    def looped(self) -> bool:
        return has_loop(self.answer)


def score_answer(record: AnswerRecord, encode: Encode | None) -> dict[str, float | None]:
    """Per-answer scores; reference-based ones only for answerable questions with references.

    An abstention on an answerable question scores 0 on every overlap metric: declining is a miss.
    """
    references = record.references if record.answerable else ()
    if references and record.abstained:
        return {
            "f1": 0.0,
            "rouge_l": 0.0,
            "similarity": 0.0 if encode else None,
            "citation_precision": None,
        }
    return {
        "f1": token_f1(record.answer, references),
        "rouge_l": rouge_l(record.answer, references),
        "similarity": semantic_similarity(record.answer, references, encode) if encode else None,
        "citation_precision": citation_precision(record.cited_doc_ids, record.gold_doc_ids)
        if record.gold_doc_ids
        else None,
    }


def _mean(values: Iterable[float | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return round(float(np.mean(present)), 4) if present else None


def summarize_answers(
    records: Sequence[AnswerRecord],
    scores: Sequence[dict[str, float | None]],
    *,
    consistency_pairs: Sequence[tuple[str, str]] = (),
    price_prompt_per_1k: float = 0.0,
    price_completion_per_1k: float = 0.0,
) -> dict[str, float | None]:
    """Run-level answer metrics from records and their ``score_answer`` results (same order).

    ``None`` marks a metric with nothing to average (e.g. a set without unanswerable questions).
    """
    if not records:
        return {}
    scored = list(zip(records, scores, strict=True))
    answerable = [(r, s) for r, s in scored if r.answerable]
    unanswerable = [r for r in records if not r.answerable]
    prompt = float(np.mean([r.prompt_tokens for r in records]))
    completion = float(np.mean([r.completion_tokens for r in records]))
    summary: dict[str, float | None] = {
        "answer_f1": _mean(s["f1"] for _, s in answerable),
        "answer_rouge_l": _mean(s["rouge_l"] for _, s in answerable),
        "answer_similarity": _mean(s["similarity"] for _, s in answerable),
        "citation_precision": _mean(s["citation_precision"] for _, s in scored),
        "citation_rate": _mean(float(bool(r.cited_doc_ids)) for r, _ in answerable if not r.abstained),
        "abstention_rate": _mean(float(r.abstained) for r in unanswerable),
        "false_abstention_rate": _mean(float(r.abstained) for r, _ in answerable),
        "loop_rate": _mean(float(r.looped) for r in records),
        "groundedness": _mean(r.groundedness for r in records if not r.abstained),
        "fallback_rate": _mean(float(r.fallback_reason is not None) for r in records if not r.abstained),
        "consistency": consistency(consistency_pairs),
        "prompt_tokens_per_question": round(prompt, 1),
        "completion_tokens_per_question": round(completion, 1),
        "cost_per_1k_questions": round(
            cost_per_1k_questions(prompt, completion, price_prompt_per_1k, price_completion_per_1k), 6
        ),
    }
    verdicts = [r.faithful for r in records if r.faithful is not None]
    if verdicts:
        summary["faithfulness"] = round(sum(verdicts) / len(verdicts), 4)
    return summary


JUDGE_SYSTEM = (
    "You check answers against sources. Reply with one word: YES if every claim in the answer is "
    "stated in the sources, NO if any claim is missing from them or contradicts them."
)
JUDGE_REPLY_TOKENS = 8
_VERDICT = re.compile(r"\b(yes|no)\b", re.I)


def judge_messages(answer: str, sources: Sequence[str]) -> list[dict[str, str]]:
    blocks = "\n\n".join(f"<source>\n{neutralize(text.strip())}\n</source>" for text in sources)
    user = (
        f"Sources:\n{blocks}\n\nAnswer: {neutralize(strip_citations(answer).strip())}\n\n"
        "Is every claim in the answer supported by the sources? Reply YES or NO."
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def parse_verdict(reply: str) -> bool | None:
    """The first YES or NO in the reply; ``None`` when it gives neither (left out of the average)."""
    found = _VERDICT.search(reply)
    return None if found is None else found.group(1).lower() == "yes"


def judge_faithfulness(llm: LLMBackend, answer: str, sources: Sequence[str]) -> bool | None:
    """LLM-as-judge: is the answer supported by the sources it was given? Greedy, so repeatable.

    Trailing sources are left out until the prompt fits the judge's context window with room to reply.
    """
    kept = list(sources)
    messages = judge_messages(answer, kept)
    budget = llm.context_window - JUDGE_REPLY_TOKENS
    while len(kept) > 1 and count_prompt_tokens(messages, llm.count_tokens) > budget:
        kept.pop()
        messages = judge_messages(answer, kept)
    return parse_verdict(llm.complete(messages, JUDGE_REPLY_TOKENS, 0.0).text)
