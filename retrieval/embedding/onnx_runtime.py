"""The ONNX runtime: the transformer on ONNX Runtime, with the model's own tokenizer and pooling.

It reproduces only transformer -> mean/CLS pooling -> L2 norm; ``onnx_unsupported`` says why a model is out
of reach (dense layers, routers and prompts would otherwise be silently skipped).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retrieval.embedding.model import dimension
from retrieval.embedding.runtime import ContentIds, Purpose
from retrieval.embedding.session_pool import SessionPool
from retrieval.embedding.token_inputs import token_id_inputs

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


class OnnxRuntime:
    """The transformer on ONNX Runtime, with the model's own tokenizer and pooling.

    Documents run on one single-threaded session per core, fed longest-first batches by a ``SessionPool``:
    no barrier per operator to wait at (as a session with several intra-op threads has), and a core lent to
    other work stalls only its own batch. Queries run on another single-threaded session on the calling
    thread, so concurrent queries spread over the cores and never wait for a document batch.

    With the int8 file, activations are quantized with one scale per batch, so a text's vector depends a
    little on its batch mates; chunk ids, not vectors, make re-ingest idempotent.
    """

    def __init__(self, model: SentenceTransformer, path: Path, batch_size: int, threads: int) -> None:
        import onnxruntime as ort

        self._model_inputs = token_id_inputs(model)
        self._pooling = pooling_mode(model)
        self._dim = dimension(model)
        self._batch_size = batch_size

        def session() -> Any:
            return ort.InferenceSession(str(path), _session_options(), providers=["CPUExecutionProvider"])

        self._query_session = session()
        self._sessions = max(1, threads)
        self._inputs = {i.name for i in self._query_session.get_inputs()}
        self._pool = SessionPool([session() for _ in range(self._sessions)])

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
        batches = [order[start : start + size] for start in range(0, len(order), size)]
        self._pool.run(self._encode_batch, items, batches, out)
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
