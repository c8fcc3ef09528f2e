"""What an upload of many files returns, and which refusals belong to a file rather than to the request."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from client.calls import FileInput
from client.errors import ApiError, BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError
from core.schemas import DocumentOut

FILE_REFUSALS: tuple[type[ApiError], ...] = (BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError)
"""A batch refused with one of these is sent again file by file to learn which files the server refuses
(one bad file refuses a whole batch); any other error (401, 403, 404, 429, 5xx) concerns every file."""
Progress = Callable[[int, int], None]
"""Called with (done, total) as files are sent or documents finish."""


class ProgressBar(Protocol):
    """What ``bar_progress`` drives: a tqdm bar, for one."""

    total: float | None
    n: float

    def refresh(self) -> None: ...


def bar_progress(bar: ProgressBar) -> Progress:
    """A progress callback that moves ``bar`` to (done, total)."""

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update


@dataclass(frozen=True)
class Rejected:
    filename: str
    error: ApiError


@dataclass
class UploadReport:
    items: list[DocumentOut | Rejected] = field(default_factory=list)
    """One per file, in the order of the files: the accepted document (a duplicate upload returns the existing
    one) or the refusal."""

    @property
    def documents(self) -> list[DocumentOut]:
        return [item for item in self.items if isinstance(item, DocumentOut)]

    @property
    def rejected(self) -> list[Rejected]:
        """Files the server refused, each with its status and message."""
        return [item for item in self.items if isinstance(item, Rejected)]


def batches(files: Sequence[FileInput], size: int) -> Iterator[Sequence[FileInput]]:
    if size < 1:
        raise ValueError("batch_size must be at least 1")
    for start in range(0, len(files), size):
        yield files[start : start + size]
