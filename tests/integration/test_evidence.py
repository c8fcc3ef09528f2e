"""Evidence selection, verification and the answer modes with the real embedding model (and llama.cpp)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from core.errors import BadInput, Unavailable
from core.types import Hit
from generation.answer import Answer
from generation.evidence import EvidenceWeights, Passage, collect_candidates, gather_evidence, select_sentences
from generation.loops import has_loop
from generation.modes import (
    ANSWER_MODES,
    AnswerInputs,
    AnswerPolicy,
    GenerationOptions,
    answer_events,
    answer_mode,
    extractive_answer,
    fallback_reason,
    final_answer,
)
from generation.verify import check_sentences, groundedness
from retrieval.embedding import Embedder

TOWER = (
    "The Eiffel Tower is a wrought-iron lattice tower in Paris. It was completed in 1889 for the World's Fair. "
    "The tower is 330 metres tall. It was the tallest structure in the world until 1930."
)
FUJI = "Mount Fuji is the highest mountain in Japan. It is 3,776 metres tall. It last erupted in 1707."
POLICY = AnswerPolicy(abstain_threshold=0.5, support_threshold=0.6, min_groundedness=0.5, fallback_on_unavailable=True)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder("all-MiniLM-L6-v2", device="cpu")


def passages() -> list[Passage]:
    return [
        Passage(0, "c-tower", "d-tower", "tower.txt", 2, 0, TOWER, 0.9, "Eiffel Tower"),
        Passage(1, "c-fuji", "d-fuji", "fuji.txt", None, 0, FUJI, 0.4, "Mount Fuji"),
    ]


def hits() -> list[Hit]:
    return [Hit(p.chunk_id, p.score, {"text": p.text, "document_id": p.document_id}) for p in passages()]


def inputs(embedder: Embedder, question: str, llm=None, policy: AnswerPolicy = POLICY) -> AnswerInputs:
    evidence = gather_evidence(question, passages(), embedder, EvidenceWeights(budget_words=12))
    return AnswerInputs(
        question=question,
        hits=hits(),
        evidence=evidence,
        encoder=embedder,
        policy=policy,
        generation=GenerationOptions(max_tokens=48, temperature=0.0, context_window=1024),
        llm=llm,
    )


def test_candidates_drop_fragments_and_duplicates_of_overlapping_chunks() -> None:
    first = Passage(0, "a", "doc", None, None, 0, "The first sentence is whole. The second one is whole too.")
    second = Passage(0, "b", "doc", None, None, 1, "one is whole too. A third sentence follows here.")
    texts = [c.text for c in collect_candidates([first, second])]
    assert texts == ["The first sentence is whole.", "The second one is whole too.", "A third sentence follows here."]


def test_the_best_sentence_is_selected_with_its_offsets(embedder: Embedder) -> None:
    evidence = gather_evidence("When was the Eiffel Tower completed?", passages(), embedder, EvidenceWeights())
    best = next(c for c in evidence.candidates[:2] if "1889" in c.text)
    assert best in evidence.selected and best.passage.chunk_id == "c-tower"
    assert TOWER[best.sentence.start : best.sentence.end] == best.sentence.text
    assert evidence.answerability > 0.5
    unrelated = gather_evidence("What is the capital of Peru?", passages(), embedder, EvidenceWeights())
    assert unrelated.answerability < evidence.answerability


def test_selection_fills_the_budget_in_reading_order_without_near_duplicates(embedder: Embedder) -> None:
    doubled = [*passages(), Passage(0, "c-copy", "d-copy", None, None, 0, TOWER.replace("Paris.", "Paris, France."))]
    evidence = gather_evidence("How tall is the Eiffel Tower?", doubled, embedder, EvidenceWeights(budget_words=20))
    chosen = select_sentences(evidence.candidates, EvidenceWeights(budget_words=20))
    words = [len(c.text.split()) for c in chosen]
    assert sum(words[:-1]) < 20 <= sum(words) or len(chosen) == 3
    assert chosen == sorted(chosen, key=lambda c: c.reading_key)
    for a, b in itertools.combinations(chosen, 2):
        assert a.terms != b.terms


def test_extractive_answer_quotes_and_cites_every_sentence(embedder: Embedder) -> None:
    answer = extractive_answer(inputs(embedder, "When was the Eiffel Tower completed?").evidence, {})
    assert "1889" in answer.text and answer.text.count("[1]") == len(answer.sentences)
    assert answer.groundedness == 1.0 and answer.mode == "extractive"
    citation = answer.citations[0]
    assert citation.number == 1 and citation.chunk_id == "c-tower" and citation.page == 2
    for span in citation.spans:
        assert citation.text[span.start : span.end] == span.quote


def test_verification_attaches_forgotten_citations_and_marks_unsupported(embedder: Embedder) -> None:
    evidence = inputs(embedder, "When was the Eiffel Tower completed?").evidence
    number_of = {"c-tower": 1, "c-fuji": 2}
    draft = "The tower was completed in 1889 for the World's Fair. Bananas are the favourite fruit of astronauts."
    checks = check_sentences(draft, evidence, embedder, lambda c: number_of[c.passage.chunk_id], 0.6, [1, 2])
    assert [c.supported for c in checks] == [True, False]
    assert checks[0].numbers == (1,) and "1889" in checks[0].evidence.text
    assert groundedness(checks) == 0.5
    wrong_source = check_sentences(
        "Mount Fuji is 3,776 metres tall [1].", evidence, embedder, lambda c: number_of[c.passage.chunk_id], 0.6, [1, 2]
    )
    assert wrong_source[0].numbers == (2,)  # the model cited the tower; the support is in Fuji's source


def test_the_gate_abstains_before_any_mode_runs(embedder: Embedder) -> None:
    class NoCalls:
        name = model = "never"
        context_window = 1024

        def stream(self, *args: object) -> Iterator[str]:
            raise AssertionError("an unanswerable question must not reach the LLM")

    for name in ANSWER_MODES:
        answer = final_answer(
            answer_events(answer_mode(name), inputs(embedder, "Who won the 1998 World Cup?", NoCalls()))
        )
        assert answer.abstained and answer.abstain_reason == "low_evidence" and answer.citations == []


def test_generative_mode_needs_an_llm_and_unknown_modes_are_refused(embedder: Embedder) -> None:
    with pytest.raises(BadInput):
        final_answer(answer_events(answer_mode("generative"), inputs(embedder, "When was the Eiffel Tower completed?")))
    with pytest.raises(BadInput):
        answer_mode("creative")


def test_auto_without_an_llm_and_with_a_dead_one_answers_extractively(embedder: Embedder) -> None:
    answer = final_answer(answer_events(answer_mode("auto"), inputs(embedder, "When was the Eiffel Tower completed?")))
    assert answer.mode == "extractive" and answer.fallback_reason == "no_llm" and "1889" in answer.text

    class Dead:
        name = model = "dead"
        context_window = 1024

        def count_tokens(self, text: str) -> int:
            return len(text) // 4

        def stream(self, *args: object) -> Iterator[str]:
            raise Unavailable("the LLM server is down")

    for name in ("generative", "auto"):
        events = list(
            answer_events(answer_mode(name), inputs(embedder, "When was the Eiffel Tower completed?", Dead()))
        )
        answer = events[-1]["answer"]
        assert answer.mode == "extractive" and answer.fallback_reason == "llm_unavailable"
        assert answer.backend == "retrieval_only" and "1889" in answer.text
    strict = AnswerPolicy(0.5, 0.6, 0.5, fallback_on_unavailable=False)
    with pytest.raises(Unavailable):
        final_answer(
            answer_events(
                answer_mode("generative"), inputs(embedder, "When was the Eiffel Tower completed?", Dead(), strict)
            )
        )


def test_fallback_reasons() -> None:
    def draft(**fields: object) -> Answer:
        base = {"text": "A grounded answer.", "citations": [], "sources": [], "abstained": False, "usage": {}}
        return Answer(**{**base, "model": None, "backend": None, "groundedness": 1.0, **fields})  # type: ignore[arg-type]

    assert fallback_reason(draft(), 0.5) is None
    assert fallback_reason(draft(looped=True), 0.5) == "loop"
    assert fallback_reason(draft(abstained=True), 0.5) == "model_abstained"
    assert fallback_reason(draft(text="  "), 0.5) == "empty"
    assert fallback_reason(draft(groundedness=0.4), 0.5) == "unsupported"


def test_generative_mode_on_llama_cpp_is_verified_and_never_loops(embedder: Embedder) -> None:
    from generation.backends.llama_cpp import LlamaCppBackend

    llm = LlamaCppBackend(None, 1024, repeat_penalty=1.1)
    events = list(
        answer_events(answer_mode("generative"), inputs(embedder, "When was the Eiffel Tower completed?", llm))
    )
    assert [e["type"] for e in events][-1] == "done" and {e["type"] for e in events[:-1]} <= {"token"}
    answer = events[-1]["answer"]
    assert answer.mode == "generative" and answer.groundedness is not None
    assert not has_loop(answer.text)
    assert answer.looped == ("loop_stopped" in [e["type"] for e in answer.events])
    assert len(answer.sentences) >= 1
    supported = [s for s in answer.sentences if s["supported"]]
    assert all(s["citations"] for s in supported)
    assert {c.number for c in answer.citations} == {n for s in supported for n in s["citations"]}
