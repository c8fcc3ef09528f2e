"""Dense text embeddings: the ``Embedder`` and the runtimes it runs on, one idea per module.

- ``embedder``: ``Embedder``, lazy model loading, the runtime it uses, token counting for the chunker.
- ``model``: which files and device a model name means, what a loaded model reports.
- ``runtime``: the ``EncoderRuntime`` protocol every backend implements, and its configuration.
- ``registry``: the backends by name (``torch``, ``onnx``, ``onnx-int8``) and how ``auto`` resolves.
- ``torch_runtime``: sentence-transformers itself.
- ``onnx_runtime``: ONNX Runtime over a locally exported file, with the model's tokenizer and pooling.
- ``session_pool``: the thread per ONNX session that document batches run on.
- ``token_inputs``: texts into the transformer's input arrays, as the model's ``preprocess`` makes them.
- ``token_counting``: token counts and ids without special tokens, for the chunker.

The names below are the package's public API, importable from ``retrieval.embedding`` itself.
"""

from retrieval.embedding.embedder import Embedder
from retrieval.embedding.model import BUNDLED_MINILM, best_device, resolve_model_path, torch_threads
from retrieval.embedding.onnx_runtime import ONNX_MODULES, OnnxRuntime, onnx_unsupported, pooling_mode
from retrieval.embedding.registry import EMBEDDING_BACKENDS, resolve_backend
from retrieval.embedding.runtime import ContentIds, EncoderRuntime, Purpose, RuntimeConfig
from retrieval.embedding.session_pool import SessionPool
from retrieval.embedding.token_counting import TokenCounter
from retrieval.embedding.token_inputs import (
    INPUT_PROBES,
    ModelInputs,
    PreprocessInputs,
    SpecialTokens,
    TokenIdInputs,
    special_tokens,
    token_id_inputs,
)
from retrieval.embedding.torch_runtime import TorchRuntime

__all__ = [
    "BUNDLED_MINILM",
    "EMBEDDING_BACKENDS",
    "INPUT_PROBES",
    "ONNX_MODULES",
    "ContentIds",
    "Embedder",
    "EncoderRuntime",
    "ModelInputs",
    "OnnxRuntime",
    "PreprocessInputs",
    "Purpose",
    "RuntimeConfig",
    "SessionPool",
    "SpecialTokens",
    "TokenCounter",
    "TokenIdInputs",
    "TorchRuntime",
    "best_device",
    "onnx_unsupported",
    "pooling_mode",
    "resolve_backend",
    "resolve_model_path",
    "special_tokens",
    "token_id_inputs",
    "torch_threads",
]
