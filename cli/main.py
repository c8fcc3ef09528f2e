"""``ragctl``: the top floor. Starts the API and workers, ingests and queries from the shell."""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from cli import remote
from cli.db_cmd import app as db_app
from cli.eval_cmd import eval_command
from cli.keys_cmd import keys_app
from cli.remote import Server, fail, target
from core.config import Settings
from core.errors import RagError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(help="Hybrid RAG platform: serve, ingest, query, evaluate.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.command("eval")(eval_command)
LOGGING_CONFIG = Path(__file__).resolve().parents[1] / "ops" / "logging.json"


@app.callback()
def main(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            help="Send ingest, query, eval, reindex and keys to the server at this URL (RAG_SERVER_URL) "
            "instead of opening the stores in this process.",
        ),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="The key to send with --server (RAG_API_KEY).")
    ] = None,
) -> None:
    ctx.obj = Server.resolve(server, api_key)


def load_or_create_api_key(settings: Settings) -> tuple[str, bool]:
    """The key from RAG_API_KEY, else the one kept in the data dir, else a new one saved there."""
    if settings.api_key:
        return settings.api_key, False
    path = settings.data_dir / "api_key"
    if path.exists():
        return path.read_text().strip(), False
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = "rag_" + secrets.token_urlsafe(24)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key, True


def banner(url: str, key: str, created: bool, from_env: bool) -> str:
    """The key itself is printed once, on the start that created it; a key the operator supplied
    (RAG_API_KEY) or one kept from an earlier start is a secret the log must not hold."""
    if created:
        shown, line = key, f"API key (created on first start, kept in the data dir; shown only this once): {key}"
    else:
        shown = "<your key>"
        line = (
            "API key: from RAG_API_KEY (not shown)" if from_env else "API key: kept in <data dir>/api_key (not shown)"
        )
    auth = f'-H "Authorization: Bearer {shown}"'
    return f"""
hybrid-rag is running at {url}  (OpenAPI: {url}/docs)
Web console: {url}/ui/  (sign in with the API key)
{line}

Try it:
  curl -s {auth} -H 'Content-Type: application/json' -d '{{"name":"docs"}}' {url}/v1/collections
  curl -s {auth} -F file=@/path/to/file.pdf {url}/v1/collections/docs/documents
  curl -s {auth} {url}/v1/documents/<id from the upload>          # wait for "status": "indexed"
  curl -s {auth} -H 'Content-Type: application/json' \\
       -d '{{"query":"What is this document about?"}}' {url}/v1/collections/docs/query
"""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (RAG_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (RAG_PORT).")] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="API processes; more than 1 needs RAG_BROKER_URL and RAG_QDRANT_URL.")
    ] = 1,
) -> None:
    """Start the API; without RAG_BROKER_URL it also runs the worker in this process."""
    import uvicorn

    from api.app import create_app
    from core.telemetry import configure_logging

    settings = Settings()
    from_env = bool(settings.api_key)
    key, created = load_or_create_api_key(settings)
    settings = settings.model_copy(update={"api_key": key})
    host = host or settings.host
    port = port or settings.port
    configure_logging(redact=settings.redact_logs)
    typer.echo(banner(f"http://{host}:{port}", key, created, from_env))
    if workers == 1:
        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            timeout_keep_alive=settings.keep_alive_s,
        )
        return
    if not (settings.broker_url and settings.qdrant_url and settings.keyword_backend == "qdrant_sparse"):
        typer.secho(
            "--workers > 1 needs RAG_BROKER_URL and RAG_QDRANT_URL: embedded stores lock their folder to one "
            "process and the embedded worker cannot be shared.",
            err=True,
        )
        raise typer.Exit(2)
    # Each worker process builds its own app from the environment, so the key goes there; metrics of
    # all processes are summed from files (see core/metrics.py).
    os.environ["RAG_API_KEY"] = key
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="rag-metrics-"))
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_config=str(LOGGING_CONFIG),
        access_log=False,
        timeout_keep_alive=settings.keep_alive_s,
    )


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Tasks run at once in this process.")] = 1,
    queues: Annotated[str, typer.Option(help="Comma-separated queues to consume.")] = "ingest,reindex",
    beat: Annotated[
        bool, typer.Option(help="Also run the periodic tasks (retention purge); one per deployment.")
    ] = False,
    metrics_port: Annotated[
        int | None, typer.Option(envvar="RAG_WORKER_METRICS_PORT", help="Serve Prometheus metrics on this port.")
    ] = None,
) -> None:
    """Run a Celery worker process against RAG_BROKER_URL (Redis or RabbitMQ)."""
    from celery.signals import worker_shutdown

    from core.metrics import serve_metrics
    from core.telemetry import configure_logging
    from core.tracing import configure_tracing
    from runtime.services import Services
    from workers.app import make_celery
    from workers.recovery import requeue_unfinished

    settings = Settings()
    if not settings.broker_url:
        typer.secho("RAG_BROKER_URL is not set; `ragctl serve` runs the worker in-process.", err=True)
        raise typer.Exit(2)
    configure_logging(redact=settings.redact_logs)
    configure_tracing(settings, "hybrid-rag-worker")  # before Services: engines created later are traced
    services = Services(settings)
    celery = make_celery(settings)
    celery.set_default()  # the only app of this process: pool threads must resolve it
    celery.services = services  # type: ignore[attr-defined]
    worker_shutdown.connect(lambda **_: services.close(), weak=False)
    requeue_unfinished(services, celery)
    if metrics_port:
        serve_metrics(metrics_port)
    celery.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={concurrency}",
            f"--queues={queues}",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            *(["--beat", f"--schedule={settings.data_dir / 'celerybeat-schedule'}"] if beat else []),
        ]
    )


def _files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")))
        elif path.is_file():
            found.append(path)
        else:
            typer.secho(f"skipping {path}: not found", err=True)
    return found


@app.command()
def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Files or folders.")],
    collection: Annotated[str, typer.Option("--collection", "-c")],
    batch_size: Annotated[
        int, typer.Option(min=1, help="With --server: files per batch upload (at most the server's limit).")
    ] = 20,
) -> None:
    """Index files into a collection (creates the collection if needed).

    In this process, every file is recorded first, then the queued ones are indexed RAG_INGEST_BATCH_DOCUMENTS
    at a time, so their chunks share embedding batches. With --server, the files go through the batch upload
    endpoint and the command waits until the server has indexed (or failed) each of them.
    """
    server = target(ctx)
    if server.url:
        if remote.ingest(server, _files(paths), collection, batch_size):
            raise typer.Exit(1)
        return
    from tqdm import tqdm

    from ingest.service import Upload
    from runtime.services import Services

    services = Services(Settings())
    try:
        service = services.ingest
        service.ensure_collection(collection)
        queued: list[str] = []
        names: dict[str, Path] = {}
        failures = 0
        files = _files(paths)
        for path in tqdm(files, desc="recording", unit="file"):
            try:
                [sub] = service.submit(collection, [Upload(path.name, path.read_bytes())], None, queued.extend)
            except RagError as exc:
                tqdm.write(f"{path}: {exc.message}")
                failures += 1
                continue
            names.setdefault(sub.document.id, path)
        with tqdm(total=len(queued), desc="indexing", unit="file") as bar:
            service.index_in_batches(queued, bar.update)
        for document_id, path in names.items():
            document, _ = service.get_document(document_id)
            if document.status == "failed":
                tqdm.write(f"{path}: failed: {document.error}")
                failures += 1
        typer.echo(f"{len(files) - failures} of {len(files)} files indexed into {collection!r}.")
    finally:
        services.close()
    if failures:
        raise typer.Exit(1)


@app.command()
def query(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="The question.")],
    collection: Annotated[str, typer.Option("--collection", "-c")],
    mode: Annotated[str, typer.Option(help="hybrid, vector or keyword")] = "hybrid",
    top_k: Annotated[int, typer.Option("--top-k")] = 5,
    generate: Annotated[bool, typer.Option(help="Generate an answer (else retrieval only).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full JSON response.")] = False,
    stream: Annotated[bool, typer.Option(help="Print answer tokens as they arrive.")] = False,
    answer_mode: Annotated[
        str | None, typer.Option(help="extractive, generative or auto (default: RAG_ANSWER_MODE).")
    ] = None,
) -> None:
    """Ask a collection a question (in this process, or on the server given by --server)."""
    from core.types import MODES

    if mode not in MODES:
        raise typer.BadParameter(f"mode must be one of {', '.join(MODES)}")
    if answer_mode not in (None, "extractive", "generative", "auto"):
        raise typer.BadParameter("answer mode must be extractive, generative or auto", param_hint="--answer-mode")
    server = target(ctx)
    if server.url:
        options = {"top_k": top_k, "mode": mode, "generate": generate, "answer_mode": answer_mode}
        show_result(remote.query(server, collection, text, stream, as_json, options), as_json, stream)  # type: ignore[arg-type]
        return
    from generation.query_types import QueryRequest
    from runtime.services import Services

    services = Services(Settings())
    request = QueryRequest(
        query=text,
        top_k=top_k,
        mode=mode,  # type: ignore[arg-type]
        generate=generate,
        answer_mode=answer_mode,
    )
    try:
        if stream and generate:
            final: dict = {}
            for event in services.queries.stream(collection, request):
                if event["type"] == "token" and not as_json:
                    sys.stdout.write(event["text"])
                    sys.stdout.flush()
                elif event["type"] == "reset" and not as_json:
                    typer.echo(f"\n[the draft was replaced: {event['reason']}]")
                elif event["type"] == "done":
                    final = event
            result = final
            if not as_json:
                typer.echo("")
        else:
            result = services.queries.query(collection, request).to_dict()
    except RagError as exc:
        fail(exc)
        return
    finally:
        services.close()
    show_result(result, as_json, stream)


def show_result(result: dict, as_json: bool, streamed: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    if result.get("answer") and not streamed:
        typer.echo(result["answer"].strip())
    typer.echo("")
    for c in result["citations"]:
        where = f"p.{c['page']}" if c.get("page") else ""
        label = f"[{c['number']}]" if c.get("number") else "-"
        typer.echo(f"{label} {c['filename']} {where} {c['chunk_id']} score={c['score']:.4f}")
    typer.echo(f"query_id={result['query_id']} timings_ms={result['timings_ms']}")


@app.command()
def mcp(
    key: Annotated[
        str | None, typer.Option(help="Act as this API key (its role and collections); default: the data dir's owner.")
    ] = None,
) -> None:
    """Serve MCP over stdio for an MCP client that starts this command (tools: search, ask, get_document)."""
    from api.mcp_server import serve_stdio
    from runtime.services import Services

    services = Services(Settings())
    try:
        serve_stdio(services, key)
    except RagError as exc:
        fail(exc)
    finally:
        services.close()


@app.command()
def reindex(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Collection to re-index.")],
    chunk_size: Annotated[int | None, typer.Option(help="New chunk size in tokens.")] = None,
    chunk_overlap: Annotated[int | None, typer.Option(help="New chunk overlap in tokens.")] = None,
    embedding_model: Annotated[str | None, typer.Option(help="New embedding model (name or local path).")] = None,
    embedding_backend: Annotated[str | None, typer.Option(help="auto, torch, onnx or onnx-int8.")] = None,
    keyword_tokenizer: Annotated[str | None, typer.Option(help="english or simple.")] = None,
) -> None:
    """Rebuild a collection's indexes from the stored originals, then switch to them (in this process, or on
    the server given by --server while it keeps serving)."""
    given = {
        "chunk_size_tokens": chunk_size,
        "chunk_overlap_tokens": chunk_overlap,
        "embedding_model": embedding_model,
        "embedding_backend": embedding_backend,
        "keyword_tokenizer": keyword_tokenizer,
    }
    options = {k: v for k, v in given.items() if v is not None}
    server = target(ctx)
    if server.url:
        status, line = remote.reindex(server, name, options)
        if status != "done":
            typer.secho(line, fg=typer.colors.RED, err=True)
            raise typer.Exit(1)
        typer.echo(line)
        return
    from tqdm import tqdm

    from runtime.services import Services

    services = Services(Settings())
    jobs: list[str] = []
    try:
        services.ingest.start_reindex(name, options, jobs.append)
        with tqdm(desc=f"re-indexing {name}", unit="doc") as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            status = services.ingest.run_reindex(jobs[0], services.retriever.drop_index, progress)
        view = services.ingest.get_job(jobs[0])
    except RagError as exc:
        fail(exc)
        return
    finally:
        services.close()
    if status != "done":
        typer.secho(f"re-index failed: {view.job.errors}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(f"{name} now serves index version {view.job.target_version} ({view.job.done} documents).")


if __name__ == "__main__":
    app()
