"""The loop rule, the cut and the streaming guard agree on one definition of a loop."""

from __future__ import annotations

import pytest

from generation.loops import LoopGuard, cut_loop, guarded, has_loop

LOOPING = "They are not evil, but they are evil. They are not evil, but they are evil. They are not evil"


@pytest.mark.parametrize(
    ("text", "loops"),
    [
        (LOOPING, True),
        ("the " * 12, True),
        ("one two three four five six one two three four five six", True),
        ("ha ha ha ha ha ha", False),  # too short a run to be a loop
        ("I think the Ayes have it, the Ayes have it.", False),  # a phrase said twice
        ("The America's Cup is old. The America's Cup is a race. The America's Cup has rules.", False),
        ("the cat sat on the mat and the cat sat on the mat", False),
        (
            "They were influenced by futurism and its ideas. They rejected tradition. "
            "They were influenced by futurism and its ideas. More text.",
            True,
        ),  # a whole sentence comes back later
        ("It is big. It is big. Yes.", False),  # too short a sentence to count
        ("Seasonality is a pattern that recurs every year in the data.", False),
        ("", False),
        ("no no", False),
    ],
)
def test_has_loop(text: str, loops: bool) -> None:
    assert has_loop(text) is loops


def test_cut_keeps_the_text_before_the_repetition_at_a_sentence_end() -> None:
    assert cut_loop(LOOPING) == "They are not evil, but they are evil."
    assert cut_loop("No repetition here.") == "No repetition here."
    assert not has_loop(cut_loop(LOOPING))


def test_guard_fires_on_the_piece_that_completes_the_repeat_even_across_split_words() -> None:
    guard = LoopGuard()
    pieces = ["They are", " not ev", "il, but", " they are evil.", " They are not", " evil, but they", " are evil."]
    fired = [guard.feed(piece) for piece in pieces]
    assert fired == [False, False, False, False, False, False, True]
    assert guard.text == "".join(pieces)


def test_guard_fires_when_a_finished_sentence_comes_back() -> None:
    guard = LoopGuard()
    pieces = [
        "Their work was inspired by the movement.",
        " They questioned it.",
        " Their work was inspired",
        " by the movement.",
    ]
    assert [guard.feed(piece) for piece in pieces] == [False, False, False, True]
    assert cut_loop(guard.text) == "Their work was inspired by the movement. They questioned it."


def test_guarded_stops_and_closes_the_source() -> None:
    closed: list[bool] = []

    def source():
        try:
            while True:
                yield " again and again"
        finally:
            closed.append(True)

    guard = LoopGuard()
    out = list(guarded(source(), guard))
    assert guard.looped and closed == [True]
    assert len(out) < 10
