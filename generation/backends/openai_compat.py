"""Any OpenAI-compatible chat server: vLLM first, also llama-cpp-python's server and hosted APIs.

Transient failures (timeouts, refused connections, 5xx) are retried with exponential backoff; anything
still failing becomes ``Unavailable`` so the fallback chain or the API can act on one error type.
The server is contacted lazily: a backend whose server is down can still be built at start-up.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import openai
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from core.errors import Unavailable
from generation.backends.base import Completion, Message

log = logging.getLogger(__name__)

T = TypeVar("T")

CHARS_PER_TOKEN_ESTIMATE = 4
"""Used only when the server has no tokenize endpoint: English BPE averages about 4 characters a token."""

# (path, key of the text, extra fields); both answer {"count": n, ...}. vLLM serves /tokenize (asked not to
# count BOS, since chunks are counted one by one); llama-cpp-python's server /extras/tokenize/count.
_TOKENIZE_ROUTES: dict[str, tuple[str, dict[str, Any]]] = {
    "/tokenize": ("prompt", {"add_special_tokens": False}),
    "/extras/tokenize/count": ("input", {}),
}
_ESTIMATE = "estimate"


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, openai.APITimeoutError | openai.APIConnectionError):
        return True
    if isinstance(error, openai.APIStatusError):
        return error.status_code >= 500
    if isinstance(error, httpx.TimeoutException | httpx.TransportError):
        return True
    return isinstance(error, httpx.HTTPStatusError) and error.response.status_code >= 500


class OpenAICompatBackend:
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str | None,
        api_key: str | None,
        timeout_s: float,
        context_window: int,
        attempts: int = 3,
        backoff_s: float = 0.5,
        repeat_penalty: float = 1.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.context_window = context_window
        self.served_model: str | None = None
        """The model id the server reports in its responses (kept for the query log)."""
        self._model = model
        self._model_lock = threading.Lock()
        self._attempts = attempts
        self._backoff_s = backoff_s
        # Not in the OpenAI API: vLLM reads it from the body (extra_body); 1.0 sends nothing.
        self._extra_body = {"repetition_penalty": repeat_penalty} if repeat_penalty != 1.0 else None
        # The client's own retries are off: tenacity decides, so every call has the same policy.
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=api_key or "unused", timeout=timeout_s, max_retries=0
        )
        server_root = self.base_url.removesuffix("/v1")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=server_root, timeout=timeout_s, headers=headers)
        self.tokenize_route: str | None = None
        """The server's token-count endpoint once probed, or ``"estimate"`` when it has none."""

    @property
    def model(self) -> str:
        """What to log: the server-reported name once known, else the configured one."""
        return self.served_model or self._model or "unresolved"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._backoff_s, max=8),
            retry=retry_if_exception(_is_transient),
            reraise=True,
        )
        try:
            return retrying(fn)
        except (openai.OpenAIError, httpx.HTTPError) as error:
            raise Unavailable(f"LLM server at {self.base_url} failed to {what}: {error}") from error

    def _model_id(self) -> str:
        """The configured model, or the first one the server lists (vLLM serves exactly one)."""
        if self._model is None:
            with self._model_lock:
                if self._model is None:
                    models = self._call("list models", lambda: self._client.models.list().data)
                    if not models:
                        raise Unavailable(f"LLM server at {self.base_url} serves no model")
                    self._model = models[0].id
        return self._model

    def complete(self, messages: list[Message], max_tokens: int, temperature: float) -> Completion:
        model = self._model_id()
        response = self._call(
            "complete",
            lambda: self._client.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
                extra_body=self._extra_body,
            ),
        )
        self.served_model = response.model or model
        choice = response.choices[0]
        usage = response.usage
        return Completion(
            text=choice.message.content or "",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            model=self.served_model,
            backend=self.name,
            finish_reason=choice.finish_reason,
        )

    def stream(self, messages: list[Message], max_tokens: int, temperature: float) -> Iterator[str]:
        """Only opening the stream is retried: once text has been handed out a retry would repeat it.

        Closing the iterator closes the HTTP response, which makes vLLM abort the generation.
        """
        model = self._model_id()
        chunks = self._call(
            "stream",
            lambda: self._client.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
                extra_body=self._extra_body,
                stream=True,
            ),
        )
        try:
            for chunk in chunks:
                self.served_model = chunk.model or model
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except Exception as error:
            # Whatever breaks the stream (HTTP, decoding, the server going away), the answer is lost.
            raise Unavailable(f"LLM server at {self.base_url} died mid-stream: {error}") from error
        finally:
            chunks.close()

    def count_tokens(self, text: str) -> int:
        """By the server's tokenizer when it exposes one, else ``ceil(chars / 4)``.

        The first call finds which tokenize endpoint exists and remembers it, or that there is none.
        """
        if self.tokenize_route is None:
            self.tokenize_route = self._find_tokenize_route()
        if self.tokenize_route == _ESTIMATE:
            return math.ceil(len(text) / CHARS_PER_TOKEN_ESTIMATE)
        return self._call("tokenize", lambda: self._count(self.tokenize_route or "", text))

    def _count(self, path: str, text: str) -> int:
        key, extra = _TOKENIZE_ROUTES[path]
        response = self._http.post(path, json={"model": self._model_id(), key: text, **extra})
        response.raise_for_status()
        return int(response.json()["count"])

    def _find_tokenize_route(self) -> str:
        for path in _TOKENIZE_ROUTES:
            try:
                self._call("tokenize", lambda path=path: self._count(path, "probe"))
            except Unavailable as error:
                cause = error.__cause__
                if isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code < 500:
                    continue
                raise
            except (KeyError, TypeError, ValueError):
                continue
            log.info("llm tokenizer endpoint %s%s", self.base_url.removesuffix("/v1"), path)
            return path
        log.warning("llm server %s has no tokenize endpoint; estimating tokens", self.base_url)
        return _ESTIMATE
