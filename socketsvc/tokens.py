"""Signed tokens: visitor tokens (resume a visitor's session) and agent JWTs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

from socketsvc.errors import Unauthorized

VISITOR_AUDIENCE = "socketsvc:visitor"
ALGORITHM = "HS256"


@dataclass(frozen=True)
class AgentIdentity:
    id: str
    name: str


class TokenService:
    """Mints and verifies tokens with the service's secret (HS256)."""

    def __init__(self, secret: str, visitor_ttl: int) -> None:
        self._secret = secret
        self.visitor_ttl = visitor_ttl

    def mint_visitor(self, visitor_id: str, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "sub": visitor_id,
            "aud": VISITOR_AUDIENCE,
            "iat": issued,
            "exp": issued + self.visitor_ttl,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify_visitor(self, token: Any) -> str:
        """The visitor id in a valid visitor token; `Unauthorized` otherwise."""
        claims = self._decode(token, audience=VISITOR_AUDIENCE, kind="visitor token")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthorized("visitor token has no subject")
        return subject

    def mint_agent(self, agent_id: str, name: str, ttl: int = 12 * 3600) -> str:
        issued = int(time.time())
        claims = {
            "sub": agent_id,
            "name": name,
            "role": "agent",
            "iat": issued,
            "exp": issued + ttl,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify_agent(self, token: Any) -> AgentIdentity:
        """The agent in a valid agent JWT; `Unauthorized` for anything else."""
        claims = self._decode(token, audience=None, kind="agent token")
        subject, name = claims.get("sub"), claims.get("name")
        if claims.get("role") != "agent":
            raise Unauthorized("agent token must carry role 'agent'")
        if not isinstance(subject, str) or not subject or not isinstance(name, str) or not name:
            raise Unauthorized("agent token needs string 'sub' and 'name' claims")
        return AgentIdentity(subject, name)

    def _decode(self, token: Any, *, audience: str | None, kind: str) -> dict[str, Any]:
        if not isinstance(token, str) or not token:
            raise Unauthorized(f"{kind} missing")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=audience,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized(f"{kind} expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"{kind} invalid: {exc}") from None
        return claims
