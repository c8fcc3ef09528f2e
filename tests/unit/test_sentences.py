"""Sentence splitting keeps offsets into the original text; a table of the hard cases."""

from __future__ import annotations

import pytest

from generation.sentences import split_sentences

CASES: list[tuple[str, list[str]]] = [
    ("Dr. Smith went to Washington. He arrived late.", ["Dr. Smith went to Washington.", "He arrived late."]),
    ("It rose 3.5 percent in 2020. Then it fell.", ["It rose 3.5 percent in 2020.", "Then it fell."]),
    ("The U.S. economy grew. The E.U. did not.", ["The U.S. economy grew.", "The E.U. did not."]),
    ("Use e.g. salt or i.e. sodium. Done now.", ["Use e.g. salt or i.e. sodium.", "Done now."]),
    ("J. R. R. Tolkien wrote it. Others read it.", ["J. R. R. Tolkien wrote it.", "Others read it."]),
    ("Was it late? Yes, very! Fine.", ["Was it late?", "Yes, very!", "Fine."]),
    ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
    (
        "Steps:\n- mix the flour\n- add water\n1. bake it well\n2. let it cool",
        ["Steps:", "- mix the flour", "- add water", "1. bake it well", "2. let it cool"],
    ),
    ("First paragraph without a stop\n\nSecond paragraph.", ["First paragraph without a stop", "Second paragraph."]),
    ("A line that wraps\nin a PDF page. Next one.", ["A line that wraps\nin a PDF page.", "Next one."]),
    ("demand is seasonal . An index above 1 means more .", ["demand is seasonal .", "An index above 1 means more ."]),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_splits_and_keeps_offsets(text: str, expected: list[str]) -> None:
    sentences = split_sentences(text)
    assert [s.text for s in sentences] == expected
    for sentence in sentences:
        assert text[sentence.start : sentence.end] == sentence.text


def test_hyphenated_line_break_is_joined_in_clean_text_only() -> None:
    text = "The experi-\nment was repeated twice. It held."
    first = split_sentences(text)[0]
    assert first.text == "The experi-\nment was repeated twice."
    assert first.clean == "The experiment was repeated twice."


def test_a_compound_word_keeps_its_hyphen_across_an_upper_case_break() -> None:
    assert split_sentences("The Franco-\nPrussian war ended. Yes it did.")[0].clean == "The Franco- Prussian war ended."


def test_short_fragments_join_their_neighbour_and_empty_text_has_none() -> None:
    assert split_sentences("") == []
    assert split_sentences("   \n ") == []
    sentences = split_sentences("It ended. )")
    assert [s.text for s in sentences] == ["It ended. )"]
