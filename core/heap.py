"""Keeps the interpreter from pausing the threads that matter: the cyclic garbage collector, and the GIL.

Garbage collector:

A full collection walks every tracked object while holding the GIL. Once the embedding model and its
libraries are loaded, a serving process holds hundreds of thousands of them, so a full collection pauses
every thread long enough to show in the tail latency (bench/load_test.py). Objects alive after start-up
and model loading live as long as the process, so they move to the collector's permanent generation
(``gc.freeze``): later collections skip them, and reference counting still frees any that are released.

GIL: the embedding runtime releases the GIL while a batch runs and must take it back to start the next
batch. A waiting thread gets it only when the holder's switch interval runs out (5 ms by CPython's default),
so every batch boundary can leave a core idle that long while a worker thread parses or writes SQL.
"""

from __future__ import annotations

import gc
import sys
import threading

_LOCK = threading.Lock()


def freeze_long_lived() -> None:
    """Collect what is garbage now (one pause, at a moment that is slow anyway), then freeze the rest."""
    with _LOCK:
        gc.collect()
        gc.freeze()


def thaw() -> None:
    """Hand frozen objects back to the collector when an app stops: a process that builds many apps (tests,
    the CLI) would otherwise keep every cycle that was alive at one of their starts."""
    with _LOCK:
        gc.unfreeze()


def set_switch_interval(milliseconds: float) -> None:
    """Process-wide; a shorter interval costs Python-only threads a little more switching."""
    sys.setswitchinterval(milliseconds / 1000)
