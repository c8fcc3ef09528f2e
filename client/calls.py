"""Every endpoint as a ``Call``: the request to send and how to read its answer. The sync and async
clients only send calls, so the two cannot drift apart."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypedDict, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from core.schemas import (
    AnswerModeName,
    CollectionIn,
    CollectionOut,
    ConversationOut,
    CreatedKeyOut,
    DocumentOut,
    DocumentPageOut,
    FiltersIn,
    KeyIn,
    KeyOut,
    MemoryIn,
    MessageIn,
    MessageOut,
    QueryIn,
    QueryLogOut,
    QueryLogPageOut,
    QueryOut,
    ReindexIn,
    ReindexJobOut,
)
from core.types import RetrievalMode

T = TypeVar("T")
FileInput = Path | str | tuple[str, bytes] | tuple[str, bytes, str]
"""A path to read, or ``(filename, bytes)`` / ``(filename, bytes, content_type)``."""
FINISHED = frozenset({"indexed", "failed"})
REINDEX_FINISHED = frozenset({"done", "failed"})


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    params: Mapping[str, Any] | None = None
    files: list[tuple[str, tuple[str, bytes] | tuple[str, bytes, str]]] | None = None
    data: Mapping[str, str] | None = None

    def request_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.json is not None:
            kwargs["json"] = self.json
        if self.params:
            kwargs["params"] = {k: v for k, v in self.params.items() if v is not None}
        if self.files is not None:
            kwargs["files"] = self.files
        if self.data:
            kwargs["data"] = self.data
        return kwargs


def model(kind: type[T]) -> Callable[[httpx.Response], T]:
    adapter = TypeAdapter(kind)
    return lambda response: adapter.validate_json(response.content)


def nothing(_: httpx.Response) -> None:
    return None


def body(value: BaseModel) -> dict[str, Any]:
    return value.model_dump(mode="json", exclude_none=True)


def file_part(item: FileInput) -> tuple[str, bytes] | tuple[str, bytes, str]:
    if isinstance(item, tuple):
        return item
    path = Path(item)
    return (path.name, path.read_bytes())


def filename_of(item: FileInput) -> str:
    return item[0] if isinstance(item, tuple) else Path(item).name


def upload_form(metadata: Mapping[str, Any] | None, replace: bool) -> dict[str, str]:
    form = {"replace": "true"} if replace else {}
    if metadata:
        form["metadata"] = json.dumps(metadata)
    return form


# --- collections --------------------------------------------------------------------------------


def list_collections() -> Call[list[CollectionOut]]:
    return Call("GET", "/v1/collections", model(list[CollectionOut]))


def create_collection(name: str) -> Call[CollectionOut]:
    return Call("POST", "/v1/collections", model(CollectionOut), json=body(CollectionIn(name=name)))


def delete_collection(name: str) -> Call[None]:
    return Call("DELETE", f"/v1/collections/{name}", nothing)


# --- documents ----------------------------------------------------------------------------------


def upload(collection: str, file: FileInput, metadata: Mapping[str, Any] | None, replace: bool) -> Call[DocumentOut]:
    return Call(
        "POST",
        f"/v1/collections/{collection}/documents",
        model(DocumentOut),
        files=[("file", file_part(file))],
        data=upload_form(metadata, replace),
    )


def upload_batch(
    collection: str, files: Sequence[FileInput], metadata: Mapping[str, Any] | None, replace: bool
) -> Call[list[DocumentOut]]:
    return Call(
        "POST",
        f"/v1/collections/{collection}/documents/batch",
        model(list[DocumentOut]),
        files=[("files", file_part(f)) for f in files],
        data=upload_form(metadata, replace),
    )


def list_documents(collection: str, status: str | None, limit: int, offset: int) -> Call[DocumentPageOut]:
    params = {"status": status, "limit": limit, "offset": offset}
    return Call("GET", f"/v1/collections/{collection}/documents", model(DocumentPageOut), params=params)


def get_document(document_id: str) -> Call[DocumentOut]:
    return Call("GET", f"/v1/documents/{document_id}", model(DocumentOut))


def delete_document(document_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/documents/{document_id}", nothing)


# --- query --------------------------------------------------------------------------------------


class QueryOptions(TypedDict, total=False):
    """The options of ``QueryIn`` besides the question (see the HTTP API for their defaults)."""

    top_k: int
    mode: RetrievalMode
    generate: bool
    filters: FiltersIn | None
    cache: bool
    answer_mode: AnswerModeName | None


class MessageOptions(TypedDict, total=False):
    """The options of ``MessageIn`` besides the message."""

    top_k: int
    mode: RetrievalMode
    generate: bool
    filters: FiltersIn | None
    answer_mode: AnswerModeName | None


def query_body(query: str, stream: bool, options: QueryOptions) -> dict[str, Any]:
    return body(QueryIn(query=query, stream=stream, **options))


def query(collection: str, payload: dict[str, Any]) -> Call[QueryOut]:
    return Call("POST", f"/v1/collections/{collection}/query", model(QueryOut), json=payload)


def get_query(query_id: str) -> Call[QueryLogOut]:
    return Call("GET", f"/v1/queries/{query_id}", model(QueryLogOut))


# --- conversations and memory -------------------------------------------------------------------


def start_conversation(collection: str) -> Call[ConversationOut]:
    return Call("POST", f"/v1/collections/{collection}/conversations", model(ConversationOut))


def get_conversation(conversation_id: str) -> Call[ConversationOut]:
    return Call("GET", f"/v1/conversations/{conversation_id}", model(ConversationOut))


def delete_conversation(conversation_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/conversations/{conversation_id}", nothing)


def message_body(message: str, stream: bool, options: MessageOptions) -> dict[str, Any]:
    return body(MessageIn(message=message, stream=stream, **options))


def send_message(conversation_id: str, payload: dict[str, Any]) -> Call[MessageOut]:
    return Call("POST", f"/v1/conversations/{conversation_id}/messages", model(MessageOut), json=payload)


def list_memory() -> Call[dict[str, str]]:
    return Call("GET", "/v1/memory", model(dict[str, str]))


def set_memory(key: str, value: str) -> Call[dict[str, str]]:
    return Call("PUT", f"/v1/memory/{key}", model(dict[str, str]), json=body(MemoryIn(value=value)))


def delete_memory(key: str | None) -> Call[None]:
    return Call("DELETE", "/v1/memory" if key is None else f"/v1/memory/{key}", nothing)


# --- admin --------------------------------------------------------------------------------------


def create_key(name: str, role: str, collections: Sequence[str] | None) -> Call[CreatedKeyOut]:
    key = KeyIn(name=name, role=role, collections=list(collections) if collections else None)  # type: ignore[arg-type]
    return Call("POST", "/v1/admin/keys", model(CreatedKeyOut), json=body(key))


def list_keys() -> Call[list[KeyOut]]:
    return Call("GET", "/v1/admin/keys", model(list[KeyOut]))


def revoke_key(key_id: str) -> Call[KeyOut]:
    return Call("DELETE", f"/v1/admin/keys/{key_id}", model(KeyOut))


def forget_key_data(key_id: str) -> Call[dict[str, int]]:
    return Call("DELETE", f"/v1/admin/keys/{key_id}/data", model(dict[str, int]))


def start_reindex(collection: str, options: ReindexIn | None) -> Call[ReindexJobOut]:
    payload = body(options) if options is not None else None
    return Call("POST", f"/v1/admin/collections/{collection}/reindex", model(ReindexJobOut), json=payload)


def get_reindex(job_id: str) -> Call[ReindexJobOut]:
    return Call("GET", f"/v1/admin/reindex/{job_id}", model(ReindexJobOut))


def query_logs(
    collection: str | None,
    since: datetime | None,
    until: datetime | None,
    min_latency_ms: float | None,
    errors: bool,
    backend: str | None,
    limit: int,
    offset: int,
) -> Call[QueryLogPageOut]:
    params = {
        "collection": collection,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "min_latency_ms": min_latency_ms,
        "errors": "true" if errors else None,
        "backend": backend,
        "limit": limit,
        "offset": offset,
    }
    return Call("GET", "/v1/admin/queries", model(QueryLogPageOut), params=params)


# --- operations ---------------------------------------------------------------------------------


def health() -> Call[dict[str, Any]]:
    return Call("GET", "/health", model(dict[str, Any]))
