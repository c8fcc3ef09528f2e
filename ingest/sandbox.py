"""Parse untrusted files in a child process with a time and memory limit.

A PDF bomb (millions of pages, deeply nested objects, a decompression bomb) must not take the worker down
or hold it forever. PDFs, Office files (ZIP archives), e-mails (their attachments) and images (OCR) are
parsed in a fresh process from a ``forkserver`` (no threads, no model copied in) under ``RLIMIT_AS``; the
parent waits at most the time limit, then kills it and its process group (OCR programs included). Text,
Markdown, HTML and CSV parse in-process: they are linear in the upload, which the upload limit bounds.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import signal
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

from core.errors import DocumentUnreadable, RagError
from ingest.parsers import ParsedDocument, ParseOptions, parse_document

ISOLATED_KINDS = frozenset({"pdf", "docx", "pptx", "xlsx", "email", "image"})
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["ingest.parsers"])


def _child(conn: Connection, data: bytes, kind: str, options: ParseOptions, memory_bytes: int) -> None:
    # A process group of its own, so that stopping the parse also stops the programs it runs (tesseract).
    os.setpgid(0, 0)
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    try:
        conn.send(("ok", parse_document(data, kind, options=options)))
    except RagError as exc:
        conn.send(("rag", exc.message))
    except MemoryError:
        conn.send(("memory", None))
    except Exception as exc:  # a parser bug on a hostile file: reported as unreadable, not a crash
        conn.send(("error", type(exc).__name__))
    finally:
        conn.close()


def parse_isolated(
    data: bytes,
    kind: str,
    *,
    max_pages: int,
    timeout_s: float,
    memory_mb: int,
    filename: str = "The file",
    options: ParseOptions | None = None,
) -> ParsedDocument:
    """``max_pages`` overrides ``options.max_pages`` (callers from before options existed)."""
    options = replace(options or ParseOptions(), max_pages=max_pages)
    if kind not in ISOLATED_KINDS:
        return parse_document(data, kind, options=options)
    receive, send = _CONTEXT.Pipe(duplex=False)
    child = _CONTEXT.Process(target=_child, args=(send, data, kind, options, memory_mb * 1024 * 1024))
    child.start()
    send.close()
    try:
        if not receive.poll(timeout_s):
            raise DocumentUnreadable(
                f"{filename} took longer than {timeout_s:g} s to parse and was stopped; it may be damaged or "
                "built to exhaust parsers (a long scan read by OCR takes ~1 s a page). Try re-saving it, or split it."
            )
        status, payload = receive.recv()
    except EOFError as exc:  # the child died (killed by the memory limit)
        raise DocumentUnreadable(
            f"{filename} needed more than {memory_mb} MB to parse and was stopped; re-save it as a simpler file."
        ) from exc
    finally:
        _stop(child)
        receive.close()
    return _result(status, payload, filename, memory_mb)


def _stop(child: multiprocessing.process.BaseProcess) -> None:
    """Kill the child's process group (its OCR subprocesses too), then the child itself if it had not yet made
    its group. The child is reaped only after the kill, so its pid (the group's id) cannot have been reused."""
    assert child.pid is not None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    if child.is_alive():
        child.kill()
    child.join()


def _result(status: str, payload: Any, filename: str, memory_mb: int) -> ParsedDocument:
    if status == "ok":
        return payload
    if status == "rag":
        raise DocumentUnreadable(payload)
    if status == "memory":
        raise DocumentUnreadable(
            f"{filename} needed more than {memory_mb} MB to parse and was stopped; re-save it as a simpler file."
        )
    raise DocumentUnreadable(f"{filename} could not be parsed ({payload}); it may be damaged. Try re-saving it.")
