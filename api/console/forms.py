"""Turning form fields into the API's request bodies: the same pydantic models, the same limits."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from core.errors import BadInput

M = TypeVar("M", bound=BaseModel)


def api_body(model: type[M], **fields: Any) -> M:
    """A 422 that names the field, as the API's own validation error would, instead of a 500."""
    try:
        return model(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "form"
        raise BadInput(f"{where}: {first.get('msg', 'invalid')}") from None


def optional_text(value: str | None) -> str | None:
    """An empty form field means "not given"."""
    return value.strip() or None if value is not None else None
