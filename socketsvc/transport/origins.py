"""Which browser origins may open connections (checked on polling and on the WebSocket upgrade)."""

from __future__ import annotations

from typing import Any


def own_origins(environ: dict[str, Any]) -> set[str]:
    """The service's own origin as the browser sees it (directly or through a proxy)."""
    host = environ.get("HTTP_HOST")
    if not host:
        return set()
    scheme = environ.get("wsgi.url_scheme", "http")
    origins = {f"{scheme}://{host}"}
    proto = environ.get("HTTP_X_FORWARDED_PROTO", scheme).split(",")[0].strip()
    forwarded_host = environ.get("HTTP_X_FORWARDED_HOST", host).split(",")[0].strip()
    origins.add(f"{proto}://{forwarded_host}")
    return origins


class OriginPolicy:
    """Allows the configured origins plus the service's own, so its demo pages keep working."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        self.allowed = frozenset(allowed)

    def __call__(self, origin: str | None, environ: dict[str, Any]) -> bool:
        if origin is None:
            return True  # not a browser's cross-origin request
        return origin in self.allowed or origin in own_origins(environ)


def cors_setting(allowed: tuple[str, ...] | None) -> Any:
    """The value for python-engineio's `cors_allowed_origins`."""
    if allowed is None:
        return None  # same origin only (python-engineio's own check)
    if allowed == ("*",):
        return "*"
    return OriginPolicy(allowed)
