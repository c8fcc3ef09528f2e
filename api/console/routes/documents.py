"""A collection's documents: upload (the browser sends one file per request, for a progress bar each),
live status, retry, delete and download of the original."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from api.console.security import CONSOLE_PREFIX, ConsoleUser, UserDep
from api.console.site import page
from api.deps import EnqueueDep, IngestDep, LimitsDep, ServicesDep
from api.routes import collections as api_collections
from api.routes import documents as api
from core.errors import NotFound
from ingest.service import IngestService

router = APIRouter(prefix=CONSOLE_PREFIX)
LISTED = 500
PENDING = frozenset({"queued", "processing"})


def documents_fragment(request: Request, user: ConsoleUser, ingest: IngestService, name: str) -> HTMLResponse:
    listing = api.list_documents(name, ingest, user.principal, None, LISTED, 0)
    pending = any(d.status in PENDING for d in listing.items)
    return page(request, "_documents.html", user, name=name, listing=listing, pending=pending)


@router.get("/collections/{name}")
def collection_page(request: Request, name: str, user: UserDep, ingest: IngestDep) -> HTMLResponse:
    listing = api.list_documents(name, ingest, user.principal, None, LISTED, 0)
    collection = next((c for c in api_collections.list_collections(ingest, user.principal) if c.name == name), None)
    if collection is None:
        raise NotFound(f"Collection {name!r} does not exist.")
    pending = any(d.status in PENDING for d in listing.items)
    return page(request, "collection.html", user, name=name, collection=collection, listing=listing, pending=pending)


@router.get("/collections/{name}/documents")
def documents_table(request: Request, name: str, user: UserDep, ingest: IngestDep) -> HTMLResponse:
    """The table alone; it asks for itself again every two seconds while a document is queued or processing."""
    return documents_fragment(request, user, ingest, name)


@router.post("/collections/{name}/upload")
async def upload(
    name: str, request: Request, user: UserDep, services: ServicesDep, enqueue: EnqueueDep, limits: LimitsDep
) -> JSONResponse:
    """The API's batch upload (field ``files``), with its checks in its order; answers the API's JSON."""
    documents = await api.upload_documents(name, request, services, enqueue, limits, user.principal)
    return JSONResponse([d.model_dump(mode="json") for d in documents], status_code=202)


@router.post("/documents/{document_id}/retry")
def retry(request: Request, document_id: str, user: UserDep, ingest: IngestDep, enqueue: EnqueueDep) -> HTMLResponse:
    document = api.retry_document(document_id, ingest, enqueue, user.principal)
    return documents_fragment(request, user, ingest, document.collection)


@router.post("/documents/{document_id}/delete")
def delete(request: Request, document_id: str, user: UserDep, ingest: IngestDep) -> HTMLResponse:
    collection = api.get_document(document_id, ingest, user.principal).collection
    api.delete_document(document_id, ingest, user.principal)
    return documents_fragment(request, user, ingest, collection)


@router.get("/documents/{document_id}/original")
def download(document_id: str, user: UserDep, ingest: IngestDep) -> FileResponse:
    return api.download_original(document_id, ingest, user.principal)
