"""API keys: created once (shown once), stored as SHA-256 hashes, scoped by role and collections.

Keys are 192-bit random tokens, so a plain SHA-256 is enough at rest (no password stretching needed).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from core.db import Database
from core.errors import BadInput, Forbidden, NotFound
from core.models import ROLE_RANK, ApiKey, Role

KEY_PREFIX = "rag_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role and the collections it may touch (``None`` = all, an empty set = none)."""

    key_id: str | None
    role: Role
    collections: frozenset[str] | None = None

    def can(self, role: Role, collection: str | None = None) -> bool:
        if ROLE_RANK[self.role] < ROLE_RANK[role]:
            return False
        return collection is None or self.collections is None or collection in self.collections

    def require(self, role: Role, collection: str | None = None) -> None:
        """For requests that name a collection: the caller already knows the name, so 403 reveals nothing."""
        self.require_role(role)
        if collection is not None and not self.in_scope(collection):
            raise Forbidden(f"This key is not allowed to use collection {collection!r}.")

    def require_role(self, role: Role) -> None:
        if ROLE_RANK[self.role] < ROLE_RANK[role]:
            raise Forbidden(f"This key has the {self.role.value} role; this needs {role.value}.")

    def in_scope(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections

    def require_visible(self, role: Role, collection: str, missing: NotFound) -> None:
        """For records addressed by id (documents, query logs, jobs, conversations): the one rule is that a
        record of a collection outside the key's scope answers exactly like a missing one, so a scoped key
        cannot learn which ids exist. The role is checked first; a 403 there depends on the key alone."""
        self.require_role(role)
        if not self.in_scope(collection):
            raise missing

    @property
    def owner(self) -> str:
        """Whose data this is: the key id, or "root" for the bootstrap key and the open local mode."""
        return self.key_id or "root"

    def require_unscoped(self, role: Role) -> None:
        """For acts over the whole platform (minting keys), which a collection-scoped key must not do."""
        self.require(role)
        if self.collections is not None:
            raise Forbidden("This needs a key that is not limited to some collections.")


ROOT = Principal(key_id=None, role=Role.admin, collections=None)


@dataclass(frozen=True)
class CreatedKey:
    key: str
    record: ApiKey


def create_key(db: Database, name: str, role: str, collections: list[str] | None) -> CreatedKey:
    """``collections`` None = every collection; an empty list is refused, never widened to "all"."""
    try:
        parsed_role = Role(role)
    except ValueError as exc:
        raise BadInput(f"role must be one of {', '.join(r.value for r in Role)}.") from exc
    if collections is not None and not collections:
        raise BadInput('collections must name at least one collection, or be null for "all collections".')
    key = generate_key()
    with db.session() as session:
        record = ApiKey(
            name=name,
            key_hash=hash_key(key),
            prefix=key[:8],
            role=parsed_role.value,
            collections=None if collections is None else sorted(set(collections)),
        )
        session.add(record)
    return CreatedKey(key=key, record=record)


def list_keys(db: Database) -> list[ApiKey]:
    with db.session() as session:
        return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def get_key(db: Database, key_id: str) -> ApiKey:
    with db.session() as session:
        record = session.get(ApiKey, key_id)
        if record is None:
            raise NotFound(f"API key {key_id!r} does not exist.")
        return record


def revoke_key(db: Database, key_id: str) -> ApiKey:
    with db.session() as session:
        record = session.get(ApiKey, key_id)
        if record is None:
            raise NotFound(f"API key {key_id!r} does not exist.")
        if record.revoked_at is None:
            record.revoked_at = datetime.now(UTC)
        return record


def principal_for(db: Database, key: str) -> Principal | None:
    """The principal of an active stored key, or ``None``."""
    with db.session() as session:
        record = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
        if record is None or record.revoked_at is not None:
            return None
        scope = None if record.collections is None else frozenset(record.collections)
        return Principal(key_id=record.id, role=Role(record.role), collections=scope)


def any_keys(db: Database) -> bool:
    with db.session() as session:
        return session.scalar(select(ApiKey.id).limit(1)) is not None
