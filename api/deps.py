"""FastAPI dependencies as ``Annotated`` aliases; everything comes from ``app.state``, built at start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, Request

from api.auth import check_bearer
from core.config import Settings
from core.db import Database
from generation.query_service import QueryService
from workers.services import Services


def get_services(request: Request) -> Services:
    return request.app.state.services


def get_settings(request: Request) -> Settings:
    return request.app.state.services.settings


def get_db(request: Request) -> Database:
    return request.app.state.services.db


def get_queries(request: Request) -> QueryService:
    return request.app.state.services.queries


def get_enqueue(request: Request) -> Callable[[str], None]:
    return request.app.state.enqueue


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[Database, Depends(get_db)]
QueriesDep = Annotated[QueryService, Depends(get_queries)]
EnqueueDep = Annotated[Callable[[str], None], Depends(get_enqueue)]


def require_key(settings: SettingsDep, authorization: Annotated[str | None, Header()] = None) -> None:
    check_bearer(settings.api_key, authorization)
