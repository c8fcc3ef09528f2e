from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile, status
from starlette.concurrency import run_in_threadpool

from api.deps import DbDep, EnqueueDep, LimitsDep, PrincipalDep, ServicesDep, identity
from api.schemas import DocumentOut, DocumentPageOut
from core.config import Settings
from core.db import Database
from core.errors import BadInput, NotFound, TooLarge
from core.keys import Principal
from core.models import Document, Role
from ingest import service
from retrieval.retriever import HybridRetriever

router = APIRouter(tags=["documents"])

MetadataForm = Annotated[str | None, Form(description='JSON object, e.g. {"tags": ["a"]}')]
ReplaceForm = Annotated[
    bool, Form(description="Replace documents of the same filename in this collection by this upload.")
]


def document_out(document: Document, collection: str, duplicate: bool = False) -> DocumentOut:
    return DocumentOut(
        id=document.id,
        collection=collection,
        filename=document.filename,
        content_type=document.content_type,
        sha256=document.sha256,
        size_bytes=document.size_bytes,
        status=document.status,  # type: ignore[arg-type]
        error=document.error,
        chunks=document.chunk_count,
        pages=document.page_count,
        metadata=document.metadata_ or {},
        created_at=document.created_at,
        started_at=document.started_at,
        finished_at=document.finished_at,
        duplicate=duplicate,
    )


def parse_metadata(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadInput(f"metadata must be a JSON object: {exc.msg} at position {exc.pos}.") from exc
    if not isinstance(value, dict):
        raise BadInput('metadata must be a JSON object, e.g. {"tags": ["finance"]}.')
    tags = value.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise BadInput('metadata.tags must be a list of strings, e.g. ["finance", "2024"].')
    return value


async def read_limited(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(
            f"{upload.filename or 'The file'} is larger than the {limit / 1024 / 1024:g} MB limit (RAG_MAX_UPLOAD_MB)."
        )
    return data


def submit(
    db: Database,
    settings: Settings,
    retriever: HybridRetriever,
    enqueue: Any,
    collection: str,
    files: list[tuple[UploadFile, bytes]],
    metadata: dict[str, Any],
    replace: bool,
) -> list[DocumentOut]:
    """Replacing removes same-named documents with other bytes once the new ones are accepted; of several
    files with one name in a request, the last wins, as if they had come one by one."""
    names = [upload.filename or "" for upload, _ in files]
    previous = {name: service.same_name_documents(db, collection, name) for name in set(names)} if replace else {}
    uploads = [service.Upload(upload.filename, data, upload.content_type) for upload, data in files]
    submissions = service.submit_documents(db, settings, collection, uploads, metadata, enqueue)
    if replace:
        kept = {name: submission.document.id for name, submission in zip(names, submissions, strict=True)}
        for name, document_id in kept.items():
            batch = {s.document.id for n, s in zip(names, submissions, strict=True) if n == name}
            for stale in (set(previous[name]) | batch) - {document_id}:
                service.delete_document(db, retriever, stale)
    return [document_out(s.document, collection, duplicate=not s.created) for s in submissions]


@router.post(
    "/v1/collections/{name}/documents",
    status_code=status.HTTP_202_ACCEPTED,
    responses={413: {"description": "Too large"}, 415: {"description": "Unsupported type"}},
)
async def upload_document(
    name: str,
    request: Request,
    services: ServicesDep,
    enqueue: EnqueueDep,
    limits: LimitsDep,
    principal: PrincipalDep,
    file: Annotated[UploadFile, File(description="PDF, plain text, Markdown or HTML")],
    metadata: MetadataForm = None,
    replace: ReplaceForm = False,
) -> DocumentOut:
    principal.require(Role.writer, name)
    limits.hit("upload", identity(principal, request))
    settings = services.settings
    data = await read_limited(file, settings.max_upload_bytes)
    meta = parse_metadata(metadata)
    documents = await run_in_threadpool(
        submit, services.db, settings, services.retriever, enqueue, name, [(file, data)], meta, replace
    )
    return documents[0]


@router.post("/v1/collections/{name}/documents/batch", status_code=status.HTTP_202_ACCEPTED)
async def upload_documents(
    name: str,
    request: Request,
    services: ServicesDep,
    enqueue: EnqueueDep,
    limits: LimitsDep,
    principal: PrincipalDep,
    files: Annotated[list[UploadFile], File(description="Several files in one request")],
    metadata: MetadataForm = None,
    replace: ReplaceForm = False,
) -> list[DocumentOut]:
    """All files are checked before any is stored, so one bad file rejects the request as a whole."""
    principal.require(Role.writer, name)
    settings = services.settings
    if len(files) > settings.max_files_per_request:
        raise BadInput(
            f"{len(files)} files in one request; the limit is {settings.max_files_per_request} "
            "(RAG_MAX_FILES_PER_REQUEST)."
        )
    limits.hit("upload", identity(principal, request), cost=len(files))
    meta = parse_metadata(metadata)
    contents = [await read_limited(f, settings.max_upload_bytes) for f in files]
    return await run_in_threadpool(
        submit,
        services.db,
        settings,
        services.retriever,
        enqueue,
        name,
        list(zip(files, contents, strict=True)),
        meta,
        replace,
    )


@router.get("/v1/collections/{name}/documents")
def list_documents(
    name: str,
    db: DbDep,
    principal: PrincipalDep,
    status_: Annotated[Literal["queued", "processing", "indexed", "failed"] | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> DocumentPageOut:
    principal.require(Role.reader, name)
    page = service.list_documents(db, name, status_, limit, offset)
    return DocumentPageOut(
        items=[document_out(d, name) for d in page.items], total=page.total, limit=limit, offset=offset
    )


def visible_document(db: Database, document_id: str, principal: Principal, role: Role) -> tuple[Document, str]:
    principal.require_role(role)
    document, collection = service.get_document(db, document_id)
    principal.require_visible(role, collection, NotFound(f"Document {document_id!r} does not exist."))
    return document, collection


@router.get("/v1/documents/{document_id}")
def get_document(document_id: str, db: DbDep, principal: PrincipalDep) -> DocumentOut:
    document, collection = visible_document(db, document_id, principal, Role.reader)
    return document_out(document, collection)


@router.delete("/v1/documents/{document_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_document(document_id: str, services: ServicesDep, principal: PrincipalDep) -> Response:
    """Its chunks leave both indexes, its row and (unless shared) its original are removed."""
    visible_document(services.db, document_id, principal, Role.writer)
    service.delete_document(services.db, services.retriever, document_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
