"""Errors the services raise; the API turns each into one JSON shape and status code."""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code


class InvalidInput(ServiceError):
    status_code = 422
    code = "invalid"


class Unauthenticated(ServiceError):
    status_code = 401
    code = "unauthenticated"


class Forbidden(ServiceError):
    """The caller may see the object but not do this to it (a member setting a quota)."""

    status_code = 403
    code = "forbidden"


class NotFound(ServiceError):
    """Missing, or not visible to the caller: the two are indistinguishable on purpose."""

    status_code = 404
    code = "not_found"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"


class ClusterUnavailable(ServiceError):
    status_code = 503
    code = "cluster_unhealthy"
