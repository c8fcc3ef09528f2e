from __future__ import annotations

from fastapi import APIRouter, Response, status

from api.deps import IngestDep, PrincipalDep
from api.schemas import CollectionIn, CollectionOut, ErrorOut
from core.models import Role

router = APIRouter(prefix="/v1/collections", tags=["collections"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={409: {"model": ErrorOut, "description": "A collection of that name exists"}},
)
def create_collection(body: CollectionIn, ingest: IngestDep, principal: PrincipalDep) -> CollectionOut:
    """A collection-scoped admin may create only collections its scope names."""
    principal.require(Role.admin, body.name)
    c = ingest.create_collection(body.name)
    return CollectionOut(
        name=c.name, index_version=c.index_version, documents=0, created_at=c.created_at, options=c.options
    )


@router.get("")
def list_collections(ingest: IngestDep, principal: PrincipalDep) -> list[CollectionOut]:
    """The collections this key may read."""
    return [
        CollectionOut(
            name=c.name,
            index_version=c.index_version,
            documents=n,
            created_at=c.created_at,
            options=c.options or {},
            vectors_awaiting_build=ingest.vectors_awaiting_build(c),
        )
        for c, n in ingest.list_collections()
        if principal.can(Role.reader, c.name)
    ]


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_collection(name: str, ingest: IngestDep, principal: PrincipalDep) -> Response:
    """Drops the collection, its documents, their originals and both indexes."""
    principal.require(Role.admin, name)
    ingest.delete_collection(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
