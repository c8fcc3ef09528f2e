from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import EnqueueDep, IngestDep, LimitsDep, PrincipalDep, ServicesDep, identity
from api.limits import RateLimits
from api.schemas import MAX_OFFSET, DocumentOut, DocumentPageOut, ErrorOut
from api.uploads import multipart_openapi, read_upload_form, too_large_message
from core.collections import get_collection
from core.errors import BadInput, NotFound, TooLarge
from core.jsonsafe import load_json_object, repair_json, repair_text
from core.keys import Principal
from core.models import Document, Role
from ingest.service import Enqueue, IngestService, Upload
from runtime.services import Services

router = APIRouter(tags=["documents"])


def document_out(document: Document, collection: str, duplicate: bool = False) -> DocumentOut:
    return DocumentOut(
        id=document.id,
        collection=collection,
        filename=repair_text(document.filename),
        content_type=document.content_type,
        sha256=document.sha256,
        size_bytes=document.size_bytes,
        status=document.status,  # type: ignore[arg-type]
        error=None if document.error is None else repair_text(document.error),
        chunks=document.chunk_count,
        pages=document.page_count,
        ocr_pages=document.ocr_pages,
        ocr_engine=document.ocr_engine,
        attached_to=document.parent_id,
        metadata=repair_json(document.metadata_ or {}),
        created_at=document.created_at,
        started_at=document.started_at,
        finished_at=document.finished_at,
        duplicate=duplicate,
    )


def parse_metadata(raw: str | None) -> dict[str, Any]:
    """Checked at the edge (size, depth, Unicode, number range: ``core.jsonsafe``), before the body's
    files are stored."""
    if not raw:
        return {}
    value = load_json_object(raw)
    tags = value.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise BadInput('metadata.tags must be a list of strings, e.g. ["finance", "2024"].')
    return value


async def read_limited(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(too_large_message(upload.filename, limit))
    return data


def submit(
    ingest: IngestService,
    enqueue: Enqueue,
    collection: str,
    files: list[tuple[UploadFile, bytes]],
    metadata: dict[str, Any],
    replace: bool,
) -> list[DocumentOut]:
    uploads = [Upload(upload.filename, data, upload.content_type) for upload, data in files]
    submissions = ingest.submit(collection, uploads, metadata, enqueue, replace=replace)
    return [document_out(s.document, collection, duplicate=not s.created) for s in submissions]


UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorOut, "description": "A file, or the request body, is over the limit"},
    415: {"model": ErrorOut, "description": "Unsupported type"},
}


async def trust_upload(
    name: str, request: Request, services: Services, limits: RateLimits, principal: Principal
) -> None:
    """Everything that needs no body byte, in order: key (a dependency), role and scope, the collection,
    the rate limit. Only then may the body be read."""
    principal.require(Role.writer, name)
    await run_in_threadpool(get_collection, services.db, name)
    limits.hit("upload", identity(principal, request))


@router.post(
    "/v1/collections/{name}/documents",
    status_code=status.HTTP_202_ACCEPTED,
    responses=UPLOAD_ERRORS,
    openapi_extra=multipart_openapi("file", many=False),
)
async def upload_document(
    name: str,
    request: Request,
    services: ServicesDep,
    enqueue: EnqueueDep,
    limits: LimitsDep,
    principal: PrincipalDep,
) -> DocumentOut:
    """Multipart ``file`` (PDF, DOCX, PPTX, XLSX, CSV, EML, PNG/JPEG/TIFF for OCR, text, Markdown or HTML),
    optional ``metadata`` (a JSON object) and
    ``replace``. The key, role, scope and size are checked before the body is read (``api.uploads``)."""
    await trust_upload(name, request, services, limits, principal)
    settings = services.settings
    form = await read_upload_form(request, "file", 1, settings.max_upload_bytes)
    try:
        if len(form.files) > 1:
            raise BadInput("Send one 'file' here; several files go to .../documents/batch.")
        meta = parse_metadata(form.metadata)
        data = await read_limited(form.files[0], settings.max_upload_bytes)
        documents = await run_in_threadpool(
            submit,
            services.ingest,
            enqueue,
            name,
            [(form.files[0], data)],
            meta,
            form.replace,
        )
    finally:
        await form.close()
    return documents[0]


@router.post(
    "/v1/collections/{name}/documents/batch",
    status_code=status.HTTP_202_ACCEPTED,
    responses=UPLOAD_ERRORS,
    openapi_extra=multipart_openapi("files", many=True),
)
async def upload_documents(
    name: str,
    request: Request,
    services: ServicesDep,
    enqueue: EnqueueDep,
    limits: LimitsDep,
    principal: PrincipalDep,
) -> list[DocumentOut]:
    """Several ``files`` in one request. All files are checked before any is stored, so one bad file rejects
    the request as a whole."""
    await trust_upload(name, request, services, limits, principal)
    settings = services.settings
    form = await read_upload_form(request, "files", settings.max_files_per_request, settings.max_upload_bytes)
    try:
        if len(form.files) > 1:  # the first was counted before the body was read
            limits.hit("upload", identity(principal, request), cost=len(form.files) - 1)
        meta = parse_metadata(form.metadata)
        contents = [await read_limited(f, settings.max_upload_bytes) for f in form.files]
        return await run_in_threadpool(
            submit,
            services.ingest,
            enqueue,
            name,
            list(zip(form.files, contents, strict=True)),
            meta,
            form.replace,
        )
    finally:
        await form.close()


@router.get("/v1/collections/{name}/documents")
def list_documents(
    name: str,
    ingest: IngestDep,
    principal: PrincipalDep,
    status_: Annotated[Literal["queued", "processing", "indexed", "failed"] | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> DocumentPageOut:
    principal.require(Role.reader, name)
    page = ingest.list_documents(name, status_, limit, offset)
    return DocumentPageOut(
        items=[document_out(d, name) for d in page.items], total=page.total, limit=limit, offset=offset
    )


def visible_document(ingest: IngestService, document_id: str, principal: Principal, role: Role) -> tuple[Document, str]:
    principal.require_role(role)
    document, collection = ingest.get_document(document_id)
    principal.require_visible(role, collection, NotFound(f"Document {document_id!r} does not exist."))
    return document, collection


@router.get("/v1/documents/{document_id}")
def get_document(document_id: str, ingest: IngestDep, principal: PrincipalDep) -> DocumentOut:
    document, collection = visible_document(ingest, document_id, principal, Role.reader)
    return document_out(document, collection)


@router.get(
    "/v1/documents/{document_id}/original",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The uploaded bytes"}},
)
def download_original(document_id: str, ingest: IngestDep, principal: PrincipalDep) -> FileResponse:
    """The bytes as uploaded, always as an attachment of type application/octet-stream: an uploaded HTML
    file must never be rendered by the browser in this origin."""
    document, _ = visible_document(ingest, document_id, principal, Role.reader)
    return FileResponse(
        ingest.original_path(document),
        media_type="application/octet-stream",
        filename=document.filename,
        headers={"X-Content-Type-Options": "nosniff"},
    )


@router.post(
    "/v1/documents/{document_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    responses={409: {"model": ErrorOut, "description": "The document is not in the failed state"}},
)
def retry_document(document_id: str, ingest: IngestDep, enqueue: EnqueueDep, principal: PrincipalDep) -> DocumentOut:
    """Queue a failed document again from its stored original."""
    _, collection = visible_document(ingest, document_id, principal, Role.writer)
    return document_out(ingest.retry(document_id, enqueue), collection)


@router.delete("/v1/documents/{document_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_document(document_id: str, ingest: IngestDep, principal: PrincipalDep) -> Response:
    """Its chunks leave both indexes, its row and (unless shared) its original are removed."""
    visible_document(ingest, document_id, principal, Role.writer)
    ingest.delete_document(document_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
