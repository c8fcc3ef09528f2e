"""Request and response bodies of the HTTP API (the contract other issues and clients rely on).

On the bottom floor so that the Python client (``client``) shares them without importing the server;
``api.schemas`` re-exports every name."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from core.jsonsafe import check_text
from core.types import RetrievalMode, SearchFilter

__all__ = [
    "ANSWER_MODE_HELP",
    "COLLECTION_NAME_PATTERN",
    "MAX_OFFSET",
    "AnswerModeName",
    "AnswerSentenceOut",
    "CitationOut",
    "CollectionIn",
    "CollectionOut",
    "ConversationOut",
    "CreatedKeyOut",
    "DocumentOut",
    "DocumentPageOut",
    "ErrorOut",
    "FieldErrorOut",
    "FiltersIn",
    "KeyIn",
    "KeyOut",
    "MemoryIn",
    "MessageIn",
    "MessageOut",
    "QueryIn",
    "QueryLogOut",
    "QueryLogPageOut",
    "QueryOut",
    "ReindexIn",
    "ReindexJobOut",
    "SpanOut",
    "Text",
    "TurnOut",
    "UtcDatetime",
    "as_utc",
]


def as_utc(value: datetime) -> datetime:
    """Every datetime in and out is timezone-aware UTC: a naive input means UTC, and rows read back from
    SQLite (which drops the offset) get it back. An instant outside years 1-9999 in UTC is a 422."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("datetime is outside the years 1-9999 once converted to UTC") from exc


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
Text = Annotated[str, AfterValidator(check_text)]
"""Text that can be stored and served back: valid Unicode (no lone surrogates) without NUL characters."""
COLLECTION_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
MAX_OFFSET = 1_000_000_000


class CollectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=63, pattern=COLLECTION_NAME_PATTERN, examples=["docs"])


class CollectionOut(BaseModel):
    name: str
    index_version: int
    documents: int
    created_at: UtcDatetime
    options: dict[str, Any] = Field(
        default_factory=dict, description="How its indexes are built: embedding model, tokenizer, chunking."
    )
    vectors_awaiting_build: int = Field(
        0,
        description="Chunks that vector searches skip until their HNSW build lands (embedded Qdrant Edge, seconds "
        "to a minute after a bulk load into a large collection: RAG_EDGE_INDEXED_ONLY_MIN_COVERAGE); keyword "
        "searches find them meanwhile. 0: every chunk is vector-searchable.",
    )


class DocumentOut(BaseModel):
    id: str
    collection: str
    filename: str
    content_type: str
    sha256: str
    size_bytes: int
    status: Literal["queued", "processing", "indexed", "failed"]
    error: str | None
    chunks: int
    pages: int | None
    ocr_pages: int = Field(0, description="Pages (or image frames) whose text was read by OCR.")
    ocr_engine: str | None = Field(None, description="The OCR engine that read them (tesseract or rapidocr).")
    attached_to: str | None = Field(
        None, description="The document this one is an attachment of (an e-mail's); deleting that one deletes this."
    )
    metadata: dict[str, Any]
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    duplicate: bool = Field(False, description="True when these bytes were already in the collection.")


class FiltersIn(BaseModel):
    """Applied inside both searches, before fusion."""

    model_config = ConfigDict(extra="forbid")
    document_ids: list[Text] = []
    filenames: list[Text] = []
    tags: list[Text] = Field([], description="Chunks of documents carrying any of these tags.")
    uploaded_after: UtcDatetime | None = None
    uploaded_before: UtcDatetime | None = None

    def to_filter(self) -> SearchFilter:
        return SearchFilter(
            document_ids=tuple(self.document_ids),
            filenames=tuple(self.filenames),
            tags=tuple(self.tags),
            uploaded_after=self.uploaded_after,
            uploaded_before=self.uploaded_before,
        )


AnswerModeName = Literal["extractive", "generative", "auto"]
ANSWER_MODE_HELP = (
    "How the answer is written; unset = the server's RAG_ANSWER_MODE. extractive: the best evidence sentences, "
    "quoted and cited; generative: the LLM, then verified sentence by sentence; auto: the LLM, falling back to "
    "extractive when its answer loops or is not grounded."
)


class QueryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: Text = Field(min_length=1, examples=["What does the report conclude?"])
    top_k: int = Field(5, ge=1, le=100)
    mode: RetrievalMode = "hybrid"
    generate: bool = True
    stream: bool = Field(False, description="Server-Sent Events: retrieval, token..., done.")
    filters: FiltersIn | None = None
    cache: bool = Field(True, description="false bypasses the answer cache for this request.")
    answer_mode: AnswerModeName | None = Field(None, description=ANSWER_MODE_HELP)

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must contain text")
        return value.strip()


class SpanOut(BaseModel):
    start: int = Field(description="Offset of the quoted sentence in the chunk's text.")
    end: int
    quote: str = Field(description="Exactly text[start:end].")


class CitationOut(BaseModel):
    number: int | None = Field(None, description="The [n] the answer uses; null for retrieval-only hits.")
    chunk_id: str
    document_id: str | None
    filename: str | None
    page: int | None
    score: float
    text: str
    ocr: bool = Field(False, description="The text was read from an image by OCR (a scan); it may hold misreadings.")
    quote: str | None = Field(None, description="The first cited sentence of this chunk (text[start:end]).")
    start: int | None = None
    end: int | None = None
    spans: list[SpanOut] = Field([], description="Every sentence of this chunk the answer rests on.")


class AnswerSentenceOut(BaseModel):
    text: str
    citations: list[int]
    supported: bool = Field(description="A cited source sentence backs it (verification).")
    support: float


class QueryOut(BaseModel):
    query_id: str
    collection: str
    index_version: int
    answer: str | None
    abstained: bool | None
    citations: list[CitationOut]
    retrieval: dict[str, list[str]]
    usage: dict[str, int]
    timings_ms: dict[str, float]
    model: str | None
    backend: str | None
    events: list[dict[str, Any]]
    cache: dict[str, Any] = Field(description='{"hit": false} or {"hit": true, "kind": "exact"|"semantic", ...}')
    answer_mode: str | None = Field(None, description="The mode that wrote the answer (after any fallback).")
    fallback_reason: str | None = Field(
        None,
        description="Why the requested mode did not answer: loop, unsupported, model_abstained, empty, "
        "llm_unavailable, no_llm.",
    )
    abstain_reason: str | None = Field(None, description="no_context, low_evidence or model (the LLM declined).")
    groundedness: float | None = Field(None, description="Share of answer sentences backed by a cited sentence.")
    answerability: float | None = Field(None, description="Evidence score the abstention threshold is applied to.")
    sentences: list[AnswerSentenceOut] = []


class QueryLogOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    collection: str
    index_version: int
    query: str
    mode: str
    top_k: int
    filters: dict[str, Any]
    retrieval: dict[str, Any]
    answer: str | None
    citations: list[Any]
    model: str | None
    backend: str | None
    usage: dict[str, Any]
    timings_ms: dict[str, Any]
    events: list[Any]
    error: str | None
    latency_ms: float
    created_at: UtcDatetime
    answer_mode: str | None = None
    fallback_reason: str | None = None
    abstain_reason: str | None = None

    @model_validator(mode="after")
    def _answer_verdict(self) -> QueryLogOut:
        """Read from the log's ``answer`` event, which every answered query records."""
        for event in self.events:
            if isinstance(event, dict) and event.get("type") == "answer":
                self.answer_mode = event.get("mode")
                self.fallback_reason = event.get("fallback_reason")
                self.abstain_reason = event.get("abstain_reason")
        return self


class DocumentPageOut(BaseModel):
    items: list[DocumentOut]
    total: int
    limit: int
    offset: int


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text = Field(min_length=1, max_length=128)
    role: Literal["admin", "writer", "reader"]
    collections: list[Annotated[str, Field(pattern=COLLECTION_NAME_PATTERN)]] | None = Field(
        None, min_length=1, description="Collections this key may use (at least one); null = all."
    )


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    role: str
    collections: list[str] | None
    created_at: UtcDatetime
    revoked_at: UtcDatetime | None


class CreatedKeyOut(KeyOut):
    key: str = Field(description="Shown once; only its hash is stored.")


class ReindexIn(BaseModel):
    """New ingest settings for the collection; omitted ones keep their current values."""

    model_config = ConfigDict(extra="forbid")
    chunk_size_tokens: int | None = Field(None, ge=16, le=2048)
    chunk_overlap_tokens: int | None = Field(None, ge=0, le=1024)
    embedding_model: str | None = Field(
        None, min_length=1, max_length=512, description="Model name or local path (loaded to check it first)."
    )
    embedding_backend: Literal["auto", "torch", "onnx", "onnx-int8"] | None = None
    keyword_tokenizer: Literal["english", "simple"] | None = None

    def options(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class ReindexJobOut(BaseModel):
    id: str
    collection: str
    status: Literal["queued", "running", "done", "failed"]
    source_version: int
    target_version: int
    options: dict[str, Any]
    total: int
    done: int
    errors: list[Any]
    eta_s: float | None
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None


class MessageIn(BaseModel):
    """A conversation turn: the same options as a query, with ``message`` as the follow-up question."""

    model_config = ConfigDict(extra="forbid")
    message: Text = Field(min_length=1, examples=["And what about its side effects?"])
    top_k: int = Field(5, ge=1, le=100)
    mode: RetrievalMode = "hybrid"
    generate: bool = True
    stream: bool = False
    filters: FiltersIn | None = None
    answer_mode: AnswerModeName | None = Field(None, description=ANSWER_MODE_HELP)

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message must contain text")
        return value.strip()


class TurnOut(BaseModel):
    ordinal: int
    question: str
    rewritten_query: str
    rewrite_method: str
    answer: str | None
    citations: list[dict[str, Any]]
    query_id: str | None
    created_at: UtcDatetime


class ConversationOut(BaseModel):
    id: str
    collection: str
    summary: str | None
    summarized_turns: int
    created_at: UtcDatetime
    turns: list[TurnOut]


class MessageOut(QueryOut):
    conversation_id: str
    turn: int
    rewritten_query: str


class MemoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: Text = Field(min_length=1, max_length=500, examples=["French"])


class QueryLogPageOut(BaseModel):
    items: list[QueryLogOut]
    total: int
    limit: int
    offset: int


class FieldErrorOut(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """The body of every 4xx and 5xx answer."""

    detail: str = Field(description="What went wrong and, where it helps, what to do.")
    errors: list[FieldErrorOut] | None = Field(None, description="Per-field problems, on a 422 from validation.")
