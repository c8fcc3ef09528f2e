"""Keeps Python's cyclic garbage collector from pausing every request thread.

A full collection walks every tracked object while holding the GIL. Once the embedding model and its
libraries are loaded, a serving process holds about 650k of them, and each full collection took 315 ms
here: the p99 stalls of bench/load_test.py. Objects alive after start-up and model loading live as long
as the process, so they move to the collector's permanent generation (``gc.freeze``): later collections
skip them, and reference counting still frees any of them that are released.
"""

from __future__ import annotations

import gc
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
