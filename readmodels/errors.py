"""Why a read cannot be answered: the query services raise these, the HTTP app maps them to its error
shape (ReadNotFound -> 404, InvalidRead -> 422, NotYetApplied -> 503 with Retry-After)."""

from __future__ import annotations

from typing import Any


class ReadError(Exception):
    """``code`` is machine-readable (API.md error.code), ``details`` JSON-ready or None."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class ReadNotFound(ReadError):
    """No such metric, entity type or entity (at that instant)."""


class InvalidRead(ReadError):
    """A parameter the read does not accept: window, grain, dimension, as_of, a time travel too large."""


class NotYetApplied(ReadError):
    """``min_position`` was not applied within the wait bound; ask again after ``retry_after_s``."""

    def __init__(self, code: str, message: str, details: Any = None, retry_after_s: int = 1) -> None:
        super().__init__(code, message, details)
        self.retry_after_s = retry_after_s
