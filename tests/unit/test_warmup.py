"""The warm-up's verdict as /ready reads it."""

from __future__ import annotations

from runtime.warmup import Warmup


def test_status_is_warming_until_done_then_ok_or_degraded() -> None:
    warmup = Warmup()
    assert warmup.status[0] == "warming"
    warmup.seconds = 1.5
    warmup.done.set()
    assert warmup.status == ("ok", "warmed in 1.5s")
    warmup.errors.append("LLM: Unavailable: no GGUF")
    assert warmup.status == ("degraded", "LLM: Unavailable: no GGUF")
