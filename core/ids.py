"""Content hashes and deterministic ids, so re-running any ingest step overwrites instead of duplicating."""

from __future__ import annotations

import hashlib
import uuid

_CHUNK_NAMESPACE = uuid.UUID("6f1c3c2e-5a8e-4f61-9d0b-2f6f2f0c9a11")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stable_hash64(text: str) -> int:
    """``text``'s 64-bit hash, the same in every process (Python's ``hash`` is salted per process); two texts
    share one with odds of about 2^-64."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def new_id() -> str:
    return uuid.uuid4().hex


def chunk_id(document_id: str, ordinal: int) -> str:
    """Same document and position -> same id in both indexes; Qdrant needs UUID-formatted ids."""
    return str(uuid.uuid5(_CHUNK_NAMESPACE, f"{document_id}:{ordinal}"))
