"""Data retention and the right to be forgotten, over the SQL state (ids and metrics may stay)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, update

from core.db import Database
from core.models import Conversation, Memory, QueryLog


@dataclass(frozen=True)
class Purged:
    query_logs: int
    conversations: int


def purge_expired(db: Database, retention_days: float | None, now: datetime | None = None) -> Purged:
    """Delete query logs and conversations older than the retention period (``None`` keeps everything)."""
    if retention_days is None:
        return Purged(0, 0)
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    with db.session() as session:
        logs = session.execute(delete(QueryLog).where(QueryLog.created_at < cutoff)).rowcount
        conversations = session.execute(delete(Conversation).where(Conversation.updated_at < cutoff)).rowcount
    return Purged(logs or 0, conversations or 0)


def forget_owner(db: Database, owner: str) -> dict[str, int]:
    """Remove one key's conversations and memory, and blank the texts of its query logs."""
    with db.session() as session:
        conversations = session.execute(delete(Conversation).where(Conversation.owner == owner)).rowcount
        memories = session.execute(delete(Memory).where(Memory.owner == owner)).rowcount
        logs = session.execute(
            update(QueryLog).where(QueryLog.owner == owner).values(query="", answer=None, citations=[])
        ).rowcount
    return {"conversations": conversations or 0, "memories": memories or 0, "query_logs": logs or 0}
