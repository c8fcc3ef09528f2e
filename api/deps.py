"""FastAPI dependencies as ``Annotated`` aliases; everything comes from ``app.state``, built at start.

The getters that only read ``app.state`` are ``async``: FastAPI runs a plain ``def`` dependency in the
thread pool, and each pool hop is a GIL hand-off between the event loop and a thread; under many
concurrent clients those hand-offs, not the work, would make the tail latency.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from api.auth import authenticate
from api.limits import RateLimits
from core.config import Settings
from core.db import Database
from core.keys import Principal
from generation.conversation import ConversationService
from generation.query_service import QueryService
from ingest.service import Enqueue, IngestService
from runtime.services import Services


async def get_services(request: Request) -> Services:
    return request.app.state.services


async def get_settings(request: Request) -> Settings:
    return request.app.state.services.settings


async def get_db(request: Request) -> Database:
    return request.app.state.services.db


async def get_queries(request: Request) -> QueryService:
    return request.app.state.services.queries


async def get_conversations(request: Request) -> ConversationService:
    return request.app.state.services.conversations


async def get_ingest(request: Request) -> IngestService:
    return request.app.state.services.ingest


async def get_enqueue(request: Request) -> Enqueue:
    """Upload routes hand this to the ingest service, which calls it after committing the rows."""
    return request.app.state.queue.enqueue_ingest


async def get_limits(request: Request) -> RateLimits:
    return request.app.state.limits


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[Database, Depends(get_db)]
QueriesDep = Annotated[QueryService, Depends(get_queries)]
ConversationsDep = Annotated[ConversationService, Depends(get_conversations)]
IngestDep = Annotated[IngestService, Depends(get_ingest)]
EnqueueDep = Annotated[Enqueue, Depends(get_enqueue)]
LimitsDep = Annotated[RateLimits, Depends(get_limits)]


def get_principal(settings: SettingsDep, db: DbDep, authorization: Annotated[str | None, Header()] = None) -> Principal:
    return authenticate(settings.api_key, db, authorization)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_optional_principal(
    settings: SettingsDep, db: DbDep, authorization: Annotated[str | None, Header()] = None
) -> Principal | None:
    """For the open probes: ``None`` when the caller has no valid key, or when the key store cannot be read
    (a readiness probe must answer while the database is down)."""
    try:
        return authenticate(settings.api_key, db, authorization)
    except Exception:
        return None


OptionalPrincipalDep = Annotated[Principal | None, Depends(get_optional_principal)]


def identity(principal: Principal, request: Request) -> str:
    """Rate-limit bucket owner: the key, or the client address when the API is open."""
    if principal.key_id is not None:
        return principal.key_id
    return "root" if request.app.state.services.settings.api_key else (request.client or ("anon",))[0]
