"""The MCP server (official ``mcp`` SDK, ``MCPServer``): a thin adapter over the services the routes call.

Tools: ``list_collections``, ``search`` (ranked chunks), ``ask`` (a cited answer, abstention included) and
``get_document``; every document is a resource ``rag://documents/{id}``. Nothing in it writes, so a reader
key can use all of it, within its collections. Two transports share this one server definition:

- streamable HTTP at ``/mcp`` of the API (stateless, JSON responses): :class:`McpEndpoint` checks the
  ``Authorization: Bearer`` key exactly like the routes (401 before the MCP layer sees the request) and hands
  the principal to the tools through the request's state; search and ask count against the key's query rate
  limit, like ``POST /v1/collections/{c}/query``;
- stdio through ``ragctl mcp``: one local principal for the whole session (the key given, or the owner of
  the data dir when none is).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, TypeVar

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ListResourcesResult, Resource
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from api.auth import authenticate
from api.limits import RateLimits
from api.schemas import FiltersIn
from core.errors import BadInput, NotFound, RagError
from core.keys import ROOT, Principal
from core.models import Role
from core.types import SearchFilter
from generation.query_types import QueryRequest
from runtime.services import Services

T = TypeVar("T")
PRINCIPAL_STATE = "rag_principal"
RESOURCE_LIST_LIMIT = 500
"""Documents ``resources/list`` names (newest first); any other is still read by its URI."""
DOCUMENT_URI = "rag://documents/{document_id}"


class McpContext:
    """What the tools need besides their arguments: the services, and who is calling."""

    def __init__(self, services: Services, limits: RateLimits | None, local: Principal | None) -> None:
        self.services = services
        self.limits = limits
        self.local = local
        """The stdio session's principal; None over HTTP, where each request carries its own."""

    def principal(self, request: Any) -> Principal:
        if request is None:
            if self.local is None:
                raise ToolError("No principal for this session.")
            return self.local
        principal = getattr(request.state, PRINCIPAL_STATE, None)
        if principal is None:
            raise ToolError("Missing API key: send 'Authorization: Bearer <key>'.")
        return principal

    def hit_query_limit(self, principal: Principal) -> None:
        if self.limits is not None:
            self.limits.hit("query", principal.owner)


async def blocking(call: Callable[[], T]) -> T:
    """Services block (SQL, models): off the event loop; their typed errors become tool errors the model
    can read (a crash stays a generic error, logged with its traceback)."""
    try:
        return await anyio.to_thread.run_sync(call)
    except RagError as exc:
        raise ToolError(exc.message) from exc


def search_hit(rank: int, citation: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "rank": rank,
        "chunk_id": citation["chunk_id"],
        "document_id": citation["document_id"],
        "filename": citation["filename"],
        "page": citation["page"],
        "heading": payload.get("heading"),
        "ordinal": payload.get("ordinal"),
        "score": citation["score"],
        "text": citation["text"],
    }


def cited_source(citation: dict[str, Any]) -> dict[str, Any]:
    keys = ("number", "chunk_id", "document_id", "filename", "page", "score", "quote", "start", "end", "spans")
    return {k: citation.get(k) for k in keys}


def document_body(services: Services, principal: Principal, document_id: str) -> dict[str, Any]:
    document, collection = services.ingest.get_document(document_id)
    principal.require_visible(Role.reader, collection, NotFound(f"Document {document_id!r} does not exist."))
    chunks = services.ingest.document_chunks(document_id)
    return {
        "id": document.id,
        "collection": collection,
        "filename": document.filename,
        "status": document.status,
        "pages": document.page_count,
        "metadata": document.metadata_ or {},
        "chunks": [{"chunk_id": c.id, "ordinal": c.ordinal, "page": c.page, "text": c.text} for c in chunks],
    }


def request_of(ctx: Context) -> Any:
    return ctx.request_context.request


@contextmanager
def root_logging_kept() -> Iterator[None]:
    """The SDK's ``MCPServer()`` calls ``logging.basicConfig`` (a Rich handler at INFO on the root logger) when
    the root has no handler, e.g. in a process that builds the app without ``ragctl serve``. Logging belongs to
    the process's entry point (``core.telemetry.configure_logging``): the root is put back as it was, since
    a Rich handler renders every INFO line of the worker as a table, which slows ingest."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def build_mcp_server(context: McpContext) -> MCPServer:
    with root_logging_kept():
        mcp = MCPServer(
            "hybrid-rag",
            instructions="Search a knowledge base of documents and get answers that cite them. Collections group "
            "documents; search returns ranked chunks, ask returns an answer with [n] citations or says it cannot.",
        )
    services = context.services

    def run_query(principal: Principal, collection: str, request: QueryRequest) -> tuple[dict[str, Any], list]:
        """The checks of the query route (scope, blank or over-long query, rate limit), then the query."""
        principal.require(Role.reader, collection)
        limit = services.settings.max_query_chars
        if not request.query:
            raise BadInput("The query is empty.")
        if len(request.query) > limit:
            raise BadInput(f"The query is {len(request.query)} characters; the limit is {limit}.")
        context.hit_query_limit(principal)
        result = services.queries.query(collection, request)
        return result.to_dict(), [h.payload for h in result.hits]

    @mcp.tool(description="The collections this key may read, with their document counts.")
    async def list_collections(ctx: Context) -> list[dict[str, Any]]:
        principal = context.principal(request_of(ctx))
        rows = await blocking(services.ingest.list_collections)
        return [
            {"name": c.name, "documents": n, "index_version": c.index_version}
            for c, n in rows
            if principal.can(Role.reader, c.name)
        ]

    @mcp.tool(
        description="Hybrid search (vector + keyword) in a collection: ranked chunks with file, page, "
        "position in the document (ordinal) and score. mode: hybrid, vector or keyword."
    )
    async def search(
        query: str,
        collection: str,
        ctx: Context,
        top_k: int = 5,
        mode: Literal["hybrid", "vector", "keyword"] = "hybrid",
        filters: FiltersIn | None = None,
    ) -> dict[str, Any]:
        principal = context.principal(request_of(ctx))
        request = QueryRequest(
            query=query.strip(),
            top_k=max(1, min(top_k, 100)),
            mode=mode,
            generate=False,
            filters=filters.to_filter() if filters else SearchFilter(),
            owner=principal.owner,
        )
        result, payloads = await blocking(lambda: run_query(principal, collection, request))
        ranked = zip(result["citations"], payloads, strict=True)
        return {"query_id": result["query_id"], "results": [search_hit(i, c, p) for i, (c, p) in enumerate(ranked, 1)]}

    @mcp.tool(
        description="A cited answer from a collection: quoted sources numbered [n] in the answer, or "
        "abstained=true with the reason when the documents do not hold the answer."
    )
    async def ask(
        question: str,
        collection: str,
        ctx: Context,
        top_k: int = 5,
        answer_mode: Literal["extractive", "generative", "auto"] | None = None,
        filters: FiltersIn | None = None,
    ) -> dict[str, Any]:
        principal = context.principal(request_of(ctx))
        request = QueryRequest(
            query=question.strip(),
            top_k=max(1, min(top_k, 100)),
            filters=filters.to_filter() if filters else SearchFilter(),
            owner=principal.owner,
            answer_mode=answer_mode,
        )
        result, _ = await blocking(lambda: run_query(principal, collection, request))
        return {
            "answer": result["answer"],
            "abstained": result["abstained"],
            "abstain_reason": result["abstain_reason"],
            "answer_mode": result["answer_mode"],
            "groundedness": result["groundedness"],
            "citations": [cited_source(c) for c in result["citations"]],
            "query_id": result["query_id"],
        }

    @mcp.tool(description="A document's metadata and its text as indexed: chunks in reading order with pages.")
    async def get_document(document_id: str, ctx: Context) -> dict[str, Any]:
        principal = context.principal(request_of(ctx))
        return await blocking(lambda: document_body(services, principal, document_id))

    @mcp.resource(
        DOCUMENT_URI,
        name="document",
        mime_type="application/json",
        description="A document's metadata and its chunks in reading order (what get_document returns).",
    )
    async def document_resource(document_id: str, ctx: Context) -> dict[str, Any]:
        principal = context.principal(request_of(ctx))
        try:
            return await anyio.to_thread.run_sync(lambda: document_body(services, principal, document_id))
        except RagError as exc:
            raise ResourceError(exc.message) from exc

    async def list_documents(ctx: Any, call_next: Any) -> Any:
        """``resources/list`` names the documents the caller may read (the SDK lists only static ones)."""
        if ctx.method != "resources/list":
            return await call_next(ctx)
        principal = context.principal(ctx.request)
        documents = await anyio.to_thread.run_sync(lambda: readable_documents(services, principal))
        return ListResourcesResult(
            resources=[
                Resource(
                    uri=DOCUMENT_URI.format(document_id=d.id),
                    name=d.filename,
                    description=f"{d.filename} in collection {collection}",
                    mime_type="application/json",
                )
                for d, collection in documents
            ]
        )

    mcp.middleware.append(list_documents)
    return mcp


def readable_documents(services: Services, principal: Principal) -> list[tuple[Any, str]]:
    found: list[tuple[Any, str]] = []
    for collection, _ in services.ingest.list_collections():
        if principal.can(Role.reader, collection.name):
            page = services.ingest.list_documents(collection.name, "indexed", RESOURCE_LIST_LIMIT, 0)
            found.extend((d, collection.name) for d in page.items)
    return found[:RESOURCE_LIST_LIMIT]


def http_transport(mcp: MCPServer, host: str) -> StreamableHTTPASGIApp:
    """Stateless (any API process answers any request) with JSON responses. DNS-rebinding protection is
    the SDK's: on for a loopback bind, where a browser page could otherwise reach a local server."""
    security = (
        None
        if host in ("127.0.0.1", "localhost", "::1")
        else TransportSecuritySettings(enable_dns_rebinding_protection=False)
    )
    mcp.streamable_http_app(stateless_http=True, json_response=True, transport_security=security, host=host)
    return StreamableHTTPASGIApp(mcp.session_manager)


class McpEndpoint:
    """The ``/mcp`` route: the key is checked like on every route, then the MCP transport answers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state
        services: Services = state.services
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        try:
            principal = await anyio.to_thread.run_sync(
                lambda: authenticate(services.settings.api_key, services.db, header)
            )
        except RagError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
            await JSONResponse({"detail": exc.message}, exc.status_code, headers=headers)(scope, receive, send)
            return
        scope.setdefault("state", {})[PRINCIPAL_STATE] = principal
        await state.mcp_http(scope, receive, send)


def serve_stdio(services: Services, key: str | None) -> None:
    """``ragctl mcp``: the MCP server on stdin/stdout with this process's stores (stop ``ragctl serve`` on the
    same data dir first, as for ``ragctl query``). Without ``key`` the session acts as the data dir's owner."""
    principal = ROOT if key is None else authenticate(services.settings.api_key, services.db, f"Bearer {key}")
    mcp = build_mcp_server(McpContext(services, limits=None, local=principal))
    anyio.run(mcp.run_stdio_async)
