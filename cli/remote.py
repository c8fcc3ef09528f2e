"""``ragctl --server URL``: the commands that work against a running server, through the Python client.

The in-process commands open the stores themselves (which a running ``ragctl serve`` holds locked); these
send the same work over HTTP instead, with the key from ``--api-key`` or RAG_API_KEY.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from tqdm import tqdm

from client import ConflictError, DoneEvent, ErrorEvent, RagClient, ResetEvent, TokenEvent
from client.calls import QueryOptions
from client.uploads import bar_progress
from core.config import Settings
from core.errors import RagError
from core.schemas import ReindexIn


@dataclass(frozen=True)
class Server:
    """Where ragctl sends its work; ``url`` None = in this process."""

    url: str | None
    api_key: str | None

    @classmethod
    def resolve(cls, url: str | None, api_key: str | None) -> Server:
        """Options win over RAG_SERVER_URL / RAG_API_KEY (and .env), read through Settings."""
        settings = Settings()
        return cls(url or settings.server_url, api_key or settings.api_key)


def target(ctx: typer.Context) -> Server:
    """Where a command runs: the server named by --server / RAG_SERVER_URL, else this process."""
    root = ctx.find_root().obj
    return root if isinstance(root, Server) else Server(None, None)


def fail(exc: RagError) -> None:
    typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@contextmanager
def connect(server: Server) -> Iterator[RagClient]:
    """A client for the server; any error it raises ends the command with the server's message (exit 2)."""
    assert server.url is not None
    with RagClient(server.url, server.api_key) as rag:
        try:
            yield rag
        except RagError as exc:
            fail(exc)


def ensure_collection(rag: RagClient, name: str) -> None:
    """Creates it when this key cannot see it (a key that may only write gets the server's refusal)."""
    if name not in {c.name for c in rag.list_collections()}:
        with suppress(ConflictError):  # created meanwhile by another caller
            rag.create_collection(name)


def ingest(server: Server, files: Sequence[Path], collection: str, batch_size: int) -> int:
    """Uploads through the batch endpoint, waits until every document is indexed or failed, and names each
    refused or failed file with the server's message. Returns how many files failed."""
    with connect(server) as rag:
        ensure_collection(rag, collection)
        with tqdm(total=len(files), desc="uploading", unit="file") as bar:
            report = rag.upload_files(collection, list(files), batch_size=batch_size, progress=bar_progress(bar))
        for rejected in report.rejected:
            tqdm.write(f"{rejected.filename}: {rejected.error.message}")
        with tqdm(total=len(report.documents), desc="indexing", unit="file") as bar:
            finished = rag.wait_for_documents([d.id for d in report.documents], progress=bar_progress(bar))
        failed = [d for d in finished if d.status == "failed"]
        for document in failed:
            tqdm.write(f"{document.filename}: failed: {document.error}")
    failures = len(report.rejected) + len(failed)
    typer.echo(f"{len(files) - failures} of {len(files)} files indexed into {collection!r}.")
    return failures


def query(server: Server, collection: str, text: str, stream: bool, as_json: bool, options: QueryOptions) -> dict:
    """The result as the JSON body carries it; a streamed answer is printed as its tokens arrive."""
    with connect(server) as rag:
        if not (stream and options.get("generate", True)):
            return rag.query(collection, text, **options).model_dump(mode="json")
        final: DoneEvent | None = None
        for event in rag.stream(collection, text, **options):
            if isinstance(event, TokenEvent) and not as_json:
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif isinstance(event, ResetEvent) and not as_json:
                typer.echo(f"\n[the draft was replaced: {event.reason}]")
            elif isinstance(event, ErrorEvent):
                fail(RagError(f"{event.status}: {event.detail}"))
            elif isinstance(event, DoneEvent):
                final = event
        if not as_json:
            typer.echo("")
        if final is None:
            fail(RagError("the stream ended without its final event"))
        return final.model_dump(mode="json", exclude={"type", "conversation_id", "turn"})  # type: ignore[union-attr]


def reindex(server: Server, name: str, options: dict[str, Any]) -> tuple[str, str]:
    """Starts the job on the server and follows it; returns (status, the line to print)."""
    with connect(server) as rag:
        job = rag.reindex(name, ReindexIn(**options))
        with tqdm(desc=f"re-indexing {name}", unit="doc") as bar:
            job = rag.wait_for_reindex(job.id, progress=bar_progress(bar))
    if job.status != "done":
        return job.status, f"re-index failed: {job.errors}"
    return job.status, f"{name} now serves index version {job.target_version} ({job.done} documents)."


def keys_create(server: Server, name: str, role: str, collections: list[str] | None) -> str:
    with connect(server) as rag:
        created = rag.create_key(name, role, collections)
    scope = ", ".join(created.collections or ["all collections"])
    return f"{created.key}\n(id {created.id}, role {created.role}, {scope}; shown only once)"


def keys_list(server: Server) -> list[str]:
    with connect(server) as rag:
        keys = rag.list_keys()
    return [key_line(k.id, k.prefix, k.role, k.collections, k.revoked_at is not None, k.name) for k in keys]


def key_line(key_id: str, prefix: str, role: str, collections: list[str] | None, revoked: bool, name: str) -> str:
    scope = ",".join(collections or ["*"])
    return f"{key_id}  {prefix}...  {role:6}  {scope:20}  {'revoked' if revoked else 'active':7}  {name}"


def keys_revoke(server: Server, key_id: str) -> None:
    with connect(server) as rag:
        rag.revoke_key(key_id)
