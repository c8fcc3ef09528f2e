"""``RagClient``: the HTTP API from Python, blocking (httpx). ``AsyncRagClient`` is the same for asyncio."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar, Unpack

import httpx

from client import calls
from client.calls import FINISHED, REINDEX_FINISHED, Call, FileInput, MessageOptions, QueryOptions
from client.errors import ConnectionFailed, RateLimitError, error_from_response
from client.sse import StreamEvent, decode, typed
from client.uploads import FILE_REFUSALS, Progress, Rejected, UploadReport, batches
from core.schemas import (
    CollectionOut,
    ConversationOut,
    CreatedKeyOut,
    DocumentOut,
    DocumentPageOut,
    KeyOut,
    MessageOut,
    QueryLogOut,
    QueryLogPageOut,
    QueryOut,
    ReindexIn,
    ReindexJobOut,
)

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_BATCH = 20
"""The server's default RAG_MAX_FILES_PER_REQUEST."""


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class RagClient:
    """Typed calls to a running server; every 4xx/5xx raises a ``client.errors.ApiError`` subclass carrying
    the status and the server's message. A 429 is retried after its Retry-After up to
    ``rate_limit_retries`` times. Use as a context manager, or call ``close()``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        rate_limit_retries: int = 2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.rate_limit_retries = rate_limit_retries
        self._http = httpx.Client(
            base_url=self.base_url, headers=auth_headers(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> RagClient:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            try:
                response = self._http.request(call.method, call.path, **call.request_kwargs())
            except httpx.TransportError as exc:
                raise ConnectionFailed(f"cannot reach {self.base_url}: {exc}") from exc
            if not response.is_error:
                return call.parse(response)
            error = error_from_response(response)
            if not isinstance(error, RateLimitError) or attempt >= self.rate_limit_retries:
                raise error
            attempt += 1
            time.sleep(error.retry_after_s)

    def _stream(self, call: Call[Any]) -> Iterator[StreamEvent]:
        try:
            with self._http.stream(call.method, call.path, **call.request_kwargs()) as response:
                if response.is_error:
                    response.read()
                    raise error_from_response(response)
                for event in decode(response.iter_lines()):
                    yield typed(event)
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"cannot reach {self.base_url}: {exc}") from exc

    # --- operations and collections -------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._send(calls.health())

    def list_collections(self) -> list[CollectionOut]:
        """The collections this key may read."""
        return self._send(calls.list_collections())

    def create_collection(self, name: str) -> CollectionOut:
        return self._send(calls.create_collection(name))

    def delete_collection(self, name: str) -> None:
        self._send(calls.delete_collection(name))

    # --- documents ------------------------------------------------------------------------------

    def upload(
        self, collection: str, file: FileInput, *, metadata: Mapping[str, Any] | None = None, replace: bool = False
    ) -> DocumentOut:
        """One file (a path, or ``(filename, bytes)``); it is queued for indexing (see ``wait_for_document``)."""
        return self._send(calls.upload(collection, file, metadata, replace))

    def upload_batch(
        self,
        collection: str,
        files: Sequence[FileInput],
        *,
        metadata: Mapping[str, Any] | None = None,
        replace: bool = False,
    ) -> list[DocumentOut]:
        """Several files in one request; the server refuses the request as a whole if any file is bad."""
        return self._send(calls.upload_batch(collection, files, metadata, replace))

    def upload_files(
        self,
        collection: str,
        files: Sequence[FileInput],
        *,
        batch_size: int = DEFAULT_BATCH,
        metadata: Mapping[str, Any] | None = None,
        replace: bool = False,
        progress: Progress | None = None,
    ) -> UploadReport:
        """Any number of files through the batch endpoint, ``batch_size`` per request. A batch refused because
        of a file is sent again file by file, so the report names each refused file with the server's message
        and the good files of that batch still go in."""
        report = UploadReport()
        done = 0
        for batch in batches(files, batch_size):
            try:
                report.items.extend(self.upload_batch(collection, batch, metadata=metadata, replace=replace))
            except FILE_REFUSALS:
                for file in batch:
                    try:
                        report.items.append(self.upload(collection, file, metadata=metadata, replace=replace))
                    except FILE_REFUSALS as exc:
                        report.items.append(Rejected(calls.filename_of(file), exc))
            done += len(batch)
            if progress:
                progress(done, len(files))
        return report

    def list_documents(
        self, collection: str, *, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> DocumentPageOut:
        return self._send(calls.list_documents(collection, status, limit, offset))

    def get_document(self, document_id: str) -> DocumentOut:
        return self._send(calls.get_document(document_id))

    def delete_document(self, document_id: str) -> None:
        self._send(calls.delete_document(document_id))

    def wait_for_document(self, document_id: str, *, timeout: float | None = None, poll_s: float = 0.5) -> DocumentOut:
        """The document once it is ``indexed`` or ``failed`` (its ``error`` says why); TimeoutError after
        ``timeout`` seconds (None: no limit)."""
        return self.wait_for_documents([document_id], timeout=timeout, poll_s=poll_s)[0]

    def wait_for_documents(
        self,
        document_ids: Sequence[str],
        *,
        timeout: float | None = None,
        poll_s: float = 0.5,
        progress: Progress | None = None,
    ) -> list[DocumentOut]:
        """Every document once indexed or failed, in the order given; polls only the unfinished ones."""
        deadline = None if timeout is None else time.monotonic() + timeout
        finished: dict[str, DocumentOut] = {}
        wanted = list(dict.fromkeys(document_ids))
        while True:
            for document_id in wanted:
                if document_id not in finished:
                    document = self.get_document(document_id)
                    if document.status in FINISHED:
                        finished[document_id] = document
            if progress:
                progress(len(finished), len(wanted))
            if len(finished) == len(wanted):
                return [finished[i] for i in document_ids]
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{len(wanted) - len(finished)} document(s) still unfinished after {timeout}s")
            time.sleep(poll_s)

    # --- query ----------------------------------------------------------------------------------

    def query(self, collection: str, query: str, **options: Unpack[QueryOptions]) -> QueryOut:
        """A cited answer (or, with ``generate=False``, the ranked chunks as citations)."""
        return self._send(calls.query(collection, calls.query_body(query, False, options)))

    def stream(self, collection: str, query: str, **options: Unpack[QueryOptions]) -> Iterator[StreamEvent]:
        """``RetrievalEvent``, then ``TokenEvent``s (a ``ResetEvent`` when a draft is replaced), then a
        ``DoneEvent`` with the whole result, or an ``ErrorEvent`` if the answer failed part-way."""
        return self._stream(calls.query(collection, calls.query_body(query, True, options)))

    def get_query(self, query_id: str) -> QueryLogOut:
        """One query's log entry (admin keys)."""
        return self._send(calls.get_query(query_id))

    # --- conversations and memory ---------------------------------------------------------------

    def start_conversation(self, collection: str) -> ConversationOut:
        return self._send(calls.start_conversation(collection))

    def get_conversation(self, conversation_id: str) -> ConversationOut:
        return self._send(calls.get_conversation(conversation_id))

    def delete_conversation(self, conversation_id: str) -> None:
        self._send(calls.delete_conversation(conversation_id))

    def send_message(self, conversation_id: str, message: str, **options: Unpack[MessageOptions]) -> MessageOut:
        """A follow-up question, rewritten with the conversation's history before retrieval."""
        return self._send(calls.send_message(conversation_id, calls.message_body(message, False, options)))

    def stream_message(
        self, conversation_id: str, message: str, **options: Unpack[MessageOptions]
    ) -> Iterator[StreamEvent]:
        """As ``stream``; the ``DoneEvent`` also carries ``conversation_id`` and ``turn``."""
        return self._stream(calls.send_message(conversation_id, calls.message_body(message, True, options)))

    def list_memory(self) -> dict[str, str]:
        return self._send(calls.list_memory())

    def set_memory(self, key: str, value: str) -> dict[str, str]:
        return self._send(calls.set_memory(key, value))

    def delete_memory(self, key: str | None = None) -> None:
        """One preference, or all of them when ``key`` is None."""
        self._send(calls.delete_memory(key))

    # --- admin ----------------------------------------------------------------------------------

    def create_key(self, name: str, role: str = "reader", collections: Sequence[str] | None = None) -> CreatedKeyOut:
        """``key`` in the answer is shown only this once."""
        return self._send(calls.create_key(name, role, collections))

    def list_keys(self) -> list[KeyOut]:
        return self._send(calls.list_keys())

    def revoke_key(self, key_id: str) -> KeyOut:
        return self._send(calls.revoke_key(key_id))

    def forget_key_data(self, key_id: str) -> dict[str, int]:
        return self._send(calls.forget_key_data(key_id))

    def reindex(self, collection: str, options: ReindexIn | None = None) -> ReindexJobOut:
        """Starts a re-index (new index version built while the current one serves); see ``wait_for_reindex``."""
        return self._send(calls.start_reindex(collection, options))

    def get_reindex(self, job_id: str) -> ReindexJobOut:
        return self._send(calls.get_reindex(job_id))

    def wait_for_reindex(
        self, job_id: str, *, timeout: float | None = None, poll_s: float = 0.5, progress: Progress | None = None
    ) -> ReindexJobOut:
        """The job once ``done`` or ``failed``; ``progress`` gets (documents done, total) on every poll."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get_reindex(job_id)
            if progress:
                progress(job.done, job.total)
            if job.status in REINDEX_FINISHED:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"re-index {job_id} still {job.status} after {timeout}s")
            time.sleep(poll_s)

    def query_logs(
        self,
        *,
        collection: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        min_latency_ms: float | None = None,
        errors: bool = False,
        backend: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> QueryLogPageOut:
        """The query log, newest first (admin keys)."""
        return self._send(calls.query_logs(collection, since, until, min_latency_ms, errors, backend, limit, offset))
