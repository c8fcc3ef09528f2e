"""The typed Python client of the HTTP API (sync and async, on httpx).

It shares the API's request and response models (``core.schemas``) and never imports the server's own
floors (runtime, retrieval, ingest, generation): installing the distribution to talk to a server loads no
model. Example::

    from client import RagClient

    with RagClient("http://127.0.0.1:8000", api_key="rag_...") as rag:
        report = rag.upload_files("docs", ["a.pdf", "b.md"])
        rag.wait_for_documents([d.id for d in report.documents])
        print(rag.query("docs", "What does the report conclude?").answer)
"""

from client.async_client import AsyncRagClient
from client.calls import FileInput, MessageOptions, QueryOptions
from client.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectionFailed,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    UnsupportedMediaTypeError,
)
from client.sse import DoneEvent, ErrorEvent, OtherEvent, ResetEvent, RetrievalEvent, StreamEvent, TokenEvent
from client.sync_client import RagClient
from client.uploads import Rejected, UploadReport

__all__ = [
    "ApiError",
    "AsyncRagClient",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ConnectionFailed",
    "DoneEvent",
    "ErrorEvent",
    "FileInput",
    "MessageOptions",
    "NotFoundError",
    "OtherEvent",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "QueryOptions",
    "RagClient",
    "RateLimitError",
    "Rejected",
    "ResetEvent",
    "RetrievalEvent",
    "ServerError",
    "ServiceUnavailableError",
    "StreamEvent",
    "TokenEvent",
    "UnsupportedMediaTypeError",
    "UploadReport",
]
