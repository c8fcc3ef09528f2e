"""Warming a process's services at start, in the background, so the first query is not the slow one.

Loading the embedding model and its ONNX session, opening each collection's indexes and loading the LLM
take seconds; without this the first user pays them. ``/ready`` reports ``warming`` (not ready) until the
warm-up ends, so a load balancer sends no traffic before; ``/health`` (liveness) is unaffected. A part
that fails to warm is reported and left to fail the first query that needs it, with its own error.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import select

from core.models import Collection
from retrieval.retriever import IndexProfile
from runtime.services import Services

log = logging.getLogger(__name__)

WARM_QUERY = "warm up"


@dataclass
class Warmup:
    done: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)
    seconds: float | None = None

    @property
    def status(self) -> tuple[str, str]:
        """``(status, detail)`` in the shape of a ``/ready`` check."""
        if not self.done.is_set():
            return "warming", "models and indexes are loading"
        if self.errors:
            return "degraded", "; ".join(self.errors)[:300]
        return "ok", f"warmed in {self.seconds:.1f}s"


def _step(warmup: Warmup, what: str, action: object) -> None:
    try:
        action()  # type: ignore[operator]
    except Exception as exc:  # one part failing to warm must not keep the others cold
        warmup.errors.append(f"{what}: {type(exc).__name__}: {exc}")
        log.warning("warm-up of %s failed: %s", what, exc)


def warm(services: Services, warmup: Warmup) -> None:
    started = time.perf_counter()
    try:
        settings = services.settings
        _step(warmup, "embedding model", lambda: services.embedder.embed_query(WARM_QUERY))
        with services.db.session() as session:
            collections = list(session.scalars(select(Collection)))
        for collection in collections:
            profile = IndexProfile.of_collection(settings, collection.options)
            _step(
                warmup,
                f"collection {collection.name}",
                lambda c=collection, p=profile: services.retriever.retrieve(
                    c.index_name, WARM_QUERY, top_k=1, profile=p
                ),
            )
        if services.llm is not None and settings.llm_backend == "llama_cpp":
            _step(warmup, "LLM", lambda: services.llm.count_tokens(WARM_QUERY))  # type: ignore[union-attr]
    finally:
        warmup.seconds = time.perf_counter() - started
        warmup.done.set()
        log.info("warm-up finished", extra={"seconds": round(warmup.seconds, 2), "errors": warmup.errors})


def start_warmup(services: Services) -> Warmup:
    warmup = Warmup()
    threading.Thread(target=warm, args=(services, warmup), name="warmup", daemon=True).start()
    return warmup
