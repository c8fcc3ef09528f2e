from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import DbDep, PrincipalDep
from api.schemas import CreatedKeyOut, KeyIn, KeyOut
from core import keys
from core.models import ApiKey, Role

router = APIRouter(prefix="/v1/admin", tags=["admin"])


def key_out(record: ApiKey) -> KeyOut:
    return KeyOut(
        id=record.id,
        name=record.name,
        prefix=record.prefix,
        role=record.role,
        collections=record.collections,
        created_at=record.created_at,
        revoked_at=record.revoked_at,
    )


@router.post("/keys", status_code=status.HTTP_201_CREATED)
def create_key(body: KeyIn, db: DbDep, principal: PrincipalDep) -> CreatedKeyOut:
    principal.require_unscoped(Role.admin)
    created = keys.create_key(db, body.name, body.role, body.collections)
    return CreatedKeyOut(**key_out(created.record).model_dump(), key=created.key)


@router.get("/keys")
def list_keys(db: DbDep, principal: PrincipalDep) -> list[KeyOut]:
    principal.require_unscoped(Role.admin)
    return [key_out(k) for k in keys.list_keys(db)]


@router.delete("/keys/{key_id}")
def revoke_key(key_id: str, db: DbDep, principal: PrincipalDep) -> KeyOut:
    principal.require_unscoped(Role.admin)
    return key_out(keys.revoke_key(db, key_id))
