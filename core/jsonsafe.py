"""Checks that user-supplied text and JSON can be stored and served back by every backend.

A value that passes ``check_json`` encodes as UTF-8, fits PostgreSQL ``json``/``text`` (no NUL), is finite
JSON (no NaN or Infinity, which ``json.dumps(allow_nan=False)`` refuses), and is small and shallow enough
to be walked recursively. ``repair_json`` is the read-side guard for rows stored before these checks (or by
another writer): it never raises, so no stored row can break a listing.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from core.errors import BadInput

MAX_JSON_DEPTH = 16
MAX_JSON_BYTES = 64 * 1024
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored and served, or ``None``: a NUL character or a lone surrogate."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (\\ud800-\\udfff), which is not valid Unicode"
    return None


def check_text(text: str) -> str:
    """Raise ``ValueError`` (so pydantic reports a 422 on the field) for text that cannot be stored."""
    problem = text_problem(text)
    if problem is not None:
        raise ValueError(f"text {problem}")
    return text


def _reject_constant(name: str) -> Any:
    raise BadInput(f"metadata holds {name}; JSON numbers must be finite.")


def load_json_object(raw: str, what: str = "metadata") -> dict[str, Any]:
    """Parse ``raw`` as a JSON object within the size, depth, Unicode and number limits above."""
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_JSON_BYTES:
        raise BadInput(f"{what} is larger than {MAX_JSON_BYTES // 1024} KB.")
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{what} must be a JSON object: {exc.msg} at position {exc.pos}.") from exc
    except (ValueError, RecursionError) as exc:  # over the int digit limit, or nested past the stack
        raise BadInput(f"{what} is not acceptable JSON: {str(exc)[:120]}.") from exc
    if not isinstance(value, dict):
        raise BadInput(f'{what} must be a JSON object, e.g. {{"tags": ["finance"]}}.')
    check_json(value, what)
    return value


def check_json(value: Any, where: str, depth: int = 0) -> None:
    """Raise ``BadInput`` naming the first place in ``value`` that breaks a limit."""
    if depth > MAX_JSON_DEPTH:
        raise BadInput(f"{where} nests deeper than {MAX_JSON_DEPTH} levels.")
    if isinstance(value, str):
        _check_string(value, where)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise BadInput(f"{where} holds an integer outside the 64-bit range.")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise BadInput(f"{where} holds a number that is not finite.")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json(item, f"{where}[{index}]", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_string(key, f"{where} key")
            check_json(item, f"{where}.{key}", depth + 1)
    else:
        raise BadInput(f"{where} holds a value that is not JSON.")


def _check_string(text: str, where: str) -> None:
    problem = text_problem(text)
    if problem is not None:
        raise BadInput(f"{where.encode('ascii', 'backslashreplace').decode()} {problem}.")


def repair_text(text: str) -> str:
    """Lone surrogates become U+FFFD and NULs are dropped; valid text comes back unchanged."""
    if text_problem(text) is None:
        return text
    return _SURROGATE.sub(REPLACEMENT, text.replace("\x00", ""))


def repair_json(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` that serializes; too-deep parts are cut to ``None``, non-finite numbers too."""
    if depth > MAX_JSON_DEPTH:
        return None
    if isinstance(value, str):
        return repair_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [repair_json(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {repair_text(str(k)): repair_json(v, depth + 1) for k, v in value.items()}
    return value
