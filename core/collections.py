"""Looking up a collection by name: the one read every layer needs (ingest, query, admin)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.db import Database
from core.errors import NotFound
from core.models import Collection


def get_collection(db: Database, name: str) -> Collection:
    with db.session() as session:
        return collection_in(session, name)


def collection_in(session: Session, name: str) -> Collection:
    """For callers that read more in the same transaction (an upload's duplicate check)."""
    collection = session.scalar(select(Collection).where(Collection.name == name))
    if collection is None:
        raise NotFound(f"Collection {name!r} does not exist; create it with POST /v1/collections.")
    return collection


def bump_content_version(session: Session, collection_id: str) -> None:
    """Every change of a collection's content invalidates its cached answers (the version is in the key)."""
    session.execute(
        update(Collection).where(Collection.id == collection_id).values(content_version=Collection.content_version + 1)
    )
