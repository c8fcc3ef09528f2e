"""Request bodies of the OpenAI-compatible routes (``/v1/chat/completions``), in the Chat Completions shape.

Every parameter is honoured or refused with a 400, never silently ignored: unknown fields are refused like
OpenAI refuses them ("Unrecognized request argument"), and sampling knobs the platform cannot apply are
accepted only at their neutral value (``n`` 1, ``top_p`` 1, penalties 0). Options of the platform itself
travel in one extra field, ``rag`` (the openai package sends it with ``extra_body={"rag": {...}}``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.schemas import AnswerModeName, FiltersIn, Text
from core.types import RetrievalMode

MAX_STOP_SEQUENCES = 4


class TextPart(BaseModel):
    """The one content part a knowledge base reads; image, audio and file parts are refused."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: Text


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"] = Field(
        description="tool and function messages are refused: the platform offers no tools to call."
    )
    content: Text | list[TextPart] | None = None
    name: Text | None = Field(None, max_length=64, description="Accepted; not used.")

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = Field(False, description="A last chunk with usage and no choices, before [DONE].")


class RagOptionsIn(BaseModel):
    """The platform's own query options (``extra_body={"rag": {...}}`` with the openai package)."""

    model_config = ConfigDict(extra="forbid")
    answer_mode: AnswerModeName | None = Field(None, description="extractive, generative or auto.")
    top_k: int = Field(5, ge=1, le=100)
    mode: RetrievalMode = "hybrid"
    filters: FiltersIn | None = None
    cache: bool = Field(True, description="false bypasses the answer cache.")


Neutral = Annotated[float | None, Field(description="Accepted only at its neutral value.")]


class ChatCompletionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: Text = Field(min_length=1, max_length=64, description="The collection to answer from.")
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=512)
    stream: bool = False
    stream_options: StreamOptionsIn | None = None
    max_tokens: int | None = Field(None, ge=1, description="Caps the LLM and the content (finish_reason length).")
    max_completion_tokens: int | None = Field(None, ge=1, description="The newer name of max_tokens.")
    temperature: float | None = Field(None, ge=0, le=2, description="The LLM's; extractive answers are quotes.")
    stop: Text | list[Text] | None = Field(None, description="Up to 4 strings; content ends before the first.")
    n: int | None = Field(None, description="Only 1.")
    top_p: Neutral = None
    presence_penalty: Neutral = None
    frequency_penalty: Neutral = None
    user: Text | None = Field(None, max_length=256, description="Accepted; the key identifies the caller.")
    rag: RagOptionsIn | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError("only n=1 is supported: a knowledge base gives one cited answer")
        return value

    @field_validator("top_p")
    @classmethod
    def _top_p_neutral(cls, value: float | None) -> float | None:
        if value not in (None, 1):
            raise ValueError("only top_p=1 is supported; use temperature")
        return value

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _penalty_neutral(cls, value: float | None) -> float | None:
        if value not in (None, 0):
            raise ValueError("only 0 is supported (the server applies RAG_LLM_REPEAT_PENALTY)")
        return value

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > MAX_STOP_SEQUENCES or any(not s for s in stops):
            raise ValueError(f"stop takes at most {MAX_STOP_SEQUENCES} non-empty strings")
        return value

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def token_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorOut(BaseModel):
    """The one error body of the OpenAI-compatible routes."""

    error: OpenAIErrorDetail
