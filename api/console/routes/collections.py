"""Collections: the list with document counts and index options, create, delete after a confirmation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from api.console.forms import api_body
from api.console.security import CONSOLE_PREFIX, UserDep
from api.console.site import page, see_other
from api.deps import IngestDep
from api.routes import collections as api
from api.schemas import CollectionIn
from core.errors import NotFound
from core.models import Role

router = APIRouter(prefix=CONSOLE_PREFIX)


@router.get("/collections")
def collections_page(request: Request, user: UserDep, ingest: IngestDep) -> HTMLResponse:
    items = api.list_collections(ingest, user.principal)
    return page(request, "collections.html", user, collections=items)


@router.post("/collections")
def create_collection(user: UserDep, ingest: IngestDep, name: Annotated[str, Form(max_length=200)]) -> Response:
    created = api.create_collection(api_body(CollectionIn, name=name.strip()), ingest, user.principal)
    return see_other(f"{CONSOLE_PREFIX}/collections/{created.name}")


@router.get("/collections/{name}/delete")
def confirm_delete(request: Request, name: str, user: UserDep, ingest: IngestDep) -> HTMLResponse:
    user.principal.require(Role.admin, name)
    collection = next((c for c in api.list_collections(ingest, user.principal) if c.name == name), None)
    if collection is None:
        raise NotFound(f"Collection {name!r} does not exist.")
    return page(request, "collection_delete.html", user, name=name, collection=collection)


@router.post("/collections/{name}/delete")
def delete_collection(name: str, user: UserDep, ingest: IngestDep) -> Response:
    api.delete_collection(name, ingest, user.principal)
    return see_other(f"{CONSOLE_PREFIX}/collections")
