"""The pure parts of the OpenAI adapter: messages to a transcript, stop/max_tokens on streamed pieces,
annotations, error wording."""

from __future__ import annotations

import pytest

from api.openai_chat import ContentLimit, InvalidRequest, annotations, param_path, transcript_of, validation_error
from api.openai_schemas import ChatMessageIn
from generation.conversation import exchanges


def words(text: str) -> int:
    return len(text.split())


def messages(*pairs: tuple[str, str]) -> list[ChatMessageIn]:
    return [ChatMessageIn(role=role, content=content) for role, content in pairs]  # type: ignore[arg-type]


def test_transcript_pairs_turns_and_gathers_instructions() -> None:
    transcript = transcript_of(
        messages(
            ("system", "Be brief."),
            ("user", "What is a collection?"),
            ("assistant", "A named knowledge base. [1]"),
            ("developer", "Cite sources."),
            ("user", "Unanswered question"),
            ("user", "And deletion?"),
        )
    )
    assert transcript.question == "And deletion?"
    assert list(transcript.turns) == [
        ("What is a collection?", "A named knowledge base. [1]"),
        ("Unanswered question", None),
    ]
    assert transcript.instructions == "Be brief.\nCite sources."


def test_text_parts_are_joined() -> None:
    message = ChatMessageIn.model_validate(
        {"role": "user", "content": [{"type": "text", "text": "Which "}, {"type": "text", "text": "model?"}]}
    )
    assert transcript_of([message]).question == "Which model?"


@pytest.mark.parametrize("last", [("assistant", "Hello"), ("user", "   ")])
def test_the_last_message_must_be_a_user_question(last: tuple[str, str]) -> None:
    with pytest.raises(InvalidRequest) as refused:
        transcript_of(messages(("user", "Hi"), last))
    assert refused.value.param == "messages"


def test_past_queries_chain_like_stored_fallback_rewrites() -> None:
    chained = exchanges([("Which model answers?", "SmolLM2."), ("How big is it?", "135M.")])
    assert chained[0].rewritten_query == "Which model answers?"
    assert chained[1].rewritten_query == "Which model answers? How big is it?"


def test_stop_sequences_split_across_pieces_are_found() -> None:
    limit = ContentLimit(["END"], None, words)
    sent = [limit.feed(piece) for piece in ("alpha E", "N", "D beta")]
    assert "".join(sent) + limit.close() == "alpha "
    assert limit.finish_reason == "stop" and limit.ended


def test_a_held_back_prefix_that_is_no_stop_is_released() -> None:
    limit = ContentLimit(["END"], None, words)
    assert limit.feed("alpha EN") == "alpha "
    assert limit.feed("ough") == "ENough"
    assert limit.close() == "" and not limit.ended


def test_max_tokens_cuts_at_the_last_whole_word_that_fits() -> None:
    limit = ContentLimit([], 3, words)
    assert limit.feed("one two") == "one two"
    assert limit.feed(" three four five") == " three"
    assert limit.feed(" six") == "" and limit.finish_reason == "length"


def test_annotations_point_at_markers_with_the_sentence_quoted() -> None:
    chunk = "Alpha is first. Beta is second."
    citation = {
        "number": 1,
        "chunk_id": "c1",
        "document_id": "d1",
        "filename": "a.txt",
        "page": 2,
        "quote": "Alpha is first.",
        "start": 0,
        "end": 15,
        "spans": [
            {"start": 0, "end": 15, "quote": "Alpha is first."},
            {"start": 16, "end": 31, "quote": "Beta is second."},
        ],
    }
    content = "Alpha is first. [1] Beta is second. [1] Gamma. [7]"
    found = annotations(content, [citation])
    assert [content[a["start_index"] : a["end_index"]] for a in found] == ["[1]", "[1]"]
    quotes = [a["file_citation"]["quote"] for a in found]
    assert quotes == ["Alpha is first.", "Beta is second."]
    assert all(
        chunk[a["file_citation"]["start"] : a["file_citation"]["end"]] == a["file_citation"]["quote"] for a in found
    )


def test_validation_errors_are_worded_like_openai() -> None:
    assert param_path(("body", "messages", 0, "content")) == "messages[0].content"
    assert validation_error([{"loc": ("body", "seed"), "type": "extra_forbidden", "msg": "x"}]) == (
        "Unrecognized request argument supplied: seed",
        "seed",
        "unknown_parameter",
    )
