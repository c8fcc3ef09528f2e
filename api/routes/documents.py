from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile, status

from api.deps import DbDep, EnqueueDep, SettingsDep
from api.schemas import DocumentOut
from core.errors import BadInput, TooLarge
from core.models import Document
from ingest import service

router = APIRouter(tags=["documents"])


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
        raise TooLarge(f"The file is larger than the {limit / 1024 / 1024:g} MB limit (RAG_MAX_UPLOAD_MB).")
    return data


@router.post(
    "/v1/collections/{name}/documents",
    status_code=status.HTTP_202_ACCEPTED,
    responses={413: {"description": "Too large"}, 415: {"description": "Unsupported type"}},
)
async def upload_document(
    name: str,
    db: DbDep,
    settings: SettingsDep,
    enqueue: EnqueueDep,
    file: Annotated[UploadFile, File(description="PDF, plain text, Markdown or HTML")],
    metadata: Annotated[str | None, Form(description='JSON object, e.g. {"tags": ["a"]}')] = None,
) -> DocumentOut:
    data = await read_limited(file, settings.max_upload_bytes)
    meta = parse_metadata(metadata)
    from starlette.concurrency import run_in_threadpool

    submission = await run_in_threadpool(
        service.submit_document, db, settings, name, file.filename, data, meta, enqueue, file.content_type
    )
    return document_out(submission.document, name, duplicate=not submission.created)


@router.get("/v1/documents/{document_id}")
def get_document(document_id: str, db: DbDep) -> DocumentOut:
    document, collection = service.get_document(db, document_id)
    return document_out(document, collection)
