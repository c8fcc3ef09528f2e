"""Looking up a collection by name: the one read every layer needs (ingest, query, admin)."""

from __future__ import annotations

from sqlalchemy import select

from core.db import Database
from core.errors import NotFound
from core.models import Collection


def get_collection(db: Database, name: str) -> Collection:
    with db.session() as session:
        collection = session.scalar(select(Collection).where(Collection.name == name))
        if collection is None:
            raise NotFound(f"Collection {name!r} does not exist; create it with POST /v1/collections.")
        return collection
