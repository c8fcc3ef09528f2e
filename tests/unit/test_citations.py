"""Reading citations and abstentions back from answer text."""

from __future__ import annotations

import pytest

from generation.citations import cited_numbers, is_abstention

AVAILABLE = {1, 2, 3, 4}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Paris [1].", [1]),
        ("Both agree [2, 1].", [2, 1]),
        ("See [3][1] and again [3].", [3, 1]),
        ("Semicolons [1; 4].", [1, 4]),
        ("A range [2-4].", [2, 3, 4]),
        ("Named [Source 2] and [sources 1 and 3].", [2, 1, 3]),
        ("Spaces [ 4 ].", [4]),
        ("No citation at all.", []),
        ("Made up [7] and [0].", []),
        ("Mixed [7, 2].", [2]),
        ("Not a marker: array[i] or [a].", []),
    ],
)
def test_cited_numbers(answer: str, expected: list[int]) -> None:
    assert cited_numbers(answer, AVAILABLE) == expected


def test_huge_range_does_not_expand() -> None:
    assert cited_numbers("[1-100000]", set(range(1, 200_001))) == [1, 100000]


@pytest.mark.parametrize(
    "answer",
    [
        "I don't know.",
        "I don\u2019t know the answer.",
        "I do not know.",
        "The sources do not contain the answer.",
        "Sorry, I cannot find that in the sources.",
        "There is not enough information to answer.",
        "",
        "   ",
    ],
)
def test_abstentions(answer: str) -> None:
    assert is_abstention(answer)


@pytest.mark.parametrize(
    "answer",
    ["The Eiffel Tower was completed in 1889 [1].", "Knowledge is power [2].", "It is known that X [1]."],
)
def test_answers_are_not_abstentions(answer: str) -> None:
    assert not is_abstention(answer)
