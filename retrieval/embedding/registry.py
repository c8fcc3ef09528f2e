"""The embedding backends by name (``RAG_EMBEDDING_BACKEND``), and how ``auto`` resolves.

``torch`` is sentence-transformers; ``onnx`` and ``onnx-int8`` run ONNX Runtime over a file exported locally
from the same weights (``retrieval.onnx_export``), made on first use and cached per machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from retrieval.embedding.onnx_runtime import OnnxRuntime
from retrieval.embedding.runtime import EncoderRuntime, RuntimeConfig
from retrieval.embedding.torch_runtime import TorchRuntime
from retrieval.onnx_export import default_cache_dir, onnx_model_path

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def resolve_backend(backend: str, device: str, onnx_ready: bool = True) -> str:
    """``auto``: int8 ONNX on a CPU (faster than torch for a negligible nDCG@10 change, see
    bench/embedding_backends.py) when the runtime can reproduce the model (``onnx_ready``), else torch; torch
    on a GPU. An ONNX backend named on a GPU is refused: it runs on the CPU only."""
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


EMBEDDING_BACKENDS: dict[str, Callable[[SentenceTransformer, RuntimeConfig], EncoderRuntime]] = {
    "torch": _torch,
    "onnx": _onnx(quantized=False),
    "onnx-int8": _onnx(quantized=True),
}
