from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import DbDep
from api.schemas import CollectionIn, CollectionOut
from ingest import service

router = APIRouter(prefix="/v1/collections", tags=["collections"])


@router.post("", status_code=status.HTTP_201_CREATED)
def create_collection(body: CollectionIn, db: DbDep) -> CollectionOut:
    c = service.create_collection(db, body.name)
    return CollectionOut(name=c.name, index_version=c.index_version, documents=0, created_at=c.created_at)


@router.get("")
def list_collections(db: DbDep) -> list[CollectionOut]:
    return [
        CollectionOut(name=c.name, index_version=c.index_version, documents=n, created_at=c.created_at)
        for c, n in service.list_collections(db)
    ]
