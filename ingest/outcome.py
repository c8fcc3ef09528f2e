"""What one indexing run did with one document: the values ``index_documents`` and the ingest tasks return.

The first four are what callers see; ``stale`` and ``done_elsewhere`` only pass between the commit and the
pipeline, which turns them into a second attempt and ``skipped``. The values that are also document statuses
(``queued``, ``indexed``, ``failed``) are spelled the same, so an outcome compares equal to the status it
left the row in.
"""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    indexed = "indexed"
    """Its chunks are in the serving version and its row says ``indexed``."""
    failed = "failed"
    """Recorded ``failed`` with a message a user can act on."""
    skipped = "skipped"
    """Nothing for this run to do: the document is gone, finished, or held by another live run."""
    queued = "queued"
    """Handed back to the queue: its batch failed, and it runs alone next."""
    stale = "stale"
    """Written into a version that no longer serves (a re-index switched meanwhile): index it again."""
    done_elsewhere = "done elsewhere"
    """A concurrent run of it committed first; its chunks (same deterministic ids) are the ones to keep."""
