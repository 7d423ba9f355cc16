"""Errors the client raises."""

from __future__ import annotations

from typing import Any


class CorralError(Exception):
    """Anything that went wrong talking to a Corral server."""

    message: str

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CorralAPIError(CorralError):
    """The server answered with an error: ``{"error": {"code", "message", "field", "details"}}``."""

    def __init__(self, status_code: int, code: str, message: str, field: str | None = None,
                 details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.field = field
        self.details = details or []

    def __str__(self) -> str:
        where = f" (field: {self.field})" if self.field else ""
        return f"{self.status_code} {self.code}: {self.message}{where}"

    def __repr__(self) -> str:
        return (f"CorralAPIError(status_code={self.status_code!r}, code={self.code!r}, message={self.message!r}, "
                f"field={self.field!r})")

    @property
    def not_found(self) -> bool:
        return self.status_code == 404


class CorralConnectionError(CorralError):
    """The server could not be reached, or did not answer in time."""
