"""The service's error tree. Each error carries a stable code from the public contract."""

from __future__ import annotations

import math
from typing import Any, Literal

ErrorCode = Literal[
    "invalid",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "rate_limited",
    "too_large",
    "unavailable",
    "internal",
]


class ServiceError(Exception):
    """An expected failure that reaches the client as `{"ok": false, "error": {...}}`."""

    code: ErrorCode = "internal"

    def __init__(self, message: str, fields: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
        return error


class Invalid(ServiceError):
    code = "invalid"


class TooLarge(ServiceError):
    code = "too_large"


class Unauthorized(ServiceError):
    code = "unauthorized"


class VisitorErased(Unauthorized):
    """The visitor a token names was erased on request (domain/privacy.py)."""

    def __init__(self) -> None:
        super().__init__("this visitor is not known here (erased): connect without a token")


class Forbidden(ServiceError):
    code = "forbidden"


class NotFound(ServiceError):
    code = "not_found"


class Conflict(ServiceError):
    code = "conflict"


class RateLimited(ServiceError):
    """Over a budget; `retry_after` is how many seconds until a retry can pass."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        error = super().to_dict()
        if self.retry_after is not None:
            # Rounded up: a client that waits this long finds a token.
            error["retry_after_ms"] = max(1, math.ceil(self.retry_after * 1000))
        return error


class Unavailable(ServiceError):
    code = "unavailable"


class StorageUnavailable(Unavailable):
    """The database is unreachable or refusing us (an outage, see `storage/outages.py`): logged
    once per outage there, not per request."""

    def __init__(self, message: str = "storage unavailable; retry shortly") -> None:
        super().__init__(message)


def error_ack(
    code: ErrorCode, message: str, fields: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ack for a failed request."""
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"ok": False, "error": error}
