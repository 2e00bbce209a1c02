"""Signed tokens: visitor tokens, agent JWTs, and host-site identity assertions."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import jwt

from socketsvc.domain.errors import Unauthorized

VISITOR_AUDIENCE = "socketsvc:visitor"
ALGORITHM = "HS256"
CLOCK_SKEW = 30
"""Seconds of clock difference tolerated for `exp`, `iat` and `nbf` (other servers mint tokens)."""


@dataclass(frozen=True)
class AgentIdentity:
    id: str
    name: str


@dataclass(frozen=True)
class VerifiedUser:
    """A host site's logged-in user, vouched for with the identity secret."""

    user_id: str
    name: str | None
    email: str | None

    @property
    def visitor_id(self) -> str:
        """The stable visitor id of this user on every device."""
        return "u-" + hashlib.sha256(self.user_id.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class AgentKeys:
    """How agent JWTs are verified: HS256 with the service secret, or a public key."""

    algorithm: str = ALGORITHM
    public_key: str | None = None
    issuer: str | None = None
    audience: str | None = None


class TokenService:
    """Mints and verifies tokens. Each kind accepts exactly one algorithm, never `none`."""

    def __init__(
        self,
        secret: str,
        visitor_ttl: int,
        agent_keys: AgentKeys | None = None,
        identity_secret: str | None = None,
    ) -> None:
        self._secret = secret
        self.visitor_ttl = visitor_ttl
        self.agent_keys = agent_keys or AgentKeys()
        self._identity_secret = identity_secret

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
        claims = self._decode(
            token, self._secret, ALGORITHM, audience=VISITOR_AUDIENCE, kind="visitor token"
        )
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 64:
            raise Unauthorized("visitor token has no valid subject")
        return subject

    def mint_agent(self, agent_id: str, name: str, ttl: int = 12 * 3600) -> str:
        """An HS256 agent JWT (only meaningful while agents are verified with the secret)."""
        issued = int(time.time())
        claims: dict[str, Any] = {
            "sub": agent_id,
            "name": name,
            "role": "agent",
            "iat": issued,
            "exp": issued + ttl,
        }
        if self.agent_keys.issuer:
            claims["iss"] = self.agent_keys.issuer
        if self.agent_keys.audience:
            claims["aud"] = self.agent_keys.audience
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify_agent(self, token: Any) -> AgentIdentity:
        """The agent in a valid agent JWT; `Unauthorized` for anything else."""
        keys = self.agent_keys
        claims = self._decode(
            token,
            keys.public_key or self._secret,
            keys.algorithm,
            audience=keys.audience,
            issuer=keys.issuer,
            kind="agent token",
        )
        subject, name = claims.get("sub"), claims.get("name")
        if claims.get("role") != "agent":
            raise Unauthorized("agent token must carry role 'agent'")
        if not isinstance(subject, str) or not subject or len(subject) > 128:
            raise Unauthorized("agent token needs a string 'sub' claim")
        if not isinstance(name, str) or not name or len(name) > 100:
            raise Unauthorized("agent token needs a string 'name' claim")
        return AgentIdentity(subject, name)

    def verify_identity(self, token: Any) -> VerifiedUser:
        """A host site's signed assertion of its logged-in user (IDENTITY_SECRET, HS256)."""
        if self._identity_secret is None:
            raise Unauthorized("identity verification is not enabled on this service")
        claims = self._decode(
            token, self._identity_secret, ALGORITHM, audience=None, kind="identity token"
        )
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 200:
            raise Unauthorized("identity token needs a string 'sub' claim (the user id)")
        name, email = claims.get("name"), claims.get("email")
        return VerifiedUser(
            subject,
            name if isinstance(name, str) and 0 < len(name) <= 100 else None,
            email if isinstance(email, str) and 0 < len(email) <= 200 else None,
        )

    @staticmethod
    def _decode(
        token: Any,
        key: str,
        algorithm: str,
        *,
        audience: str | None,
        kind: str,
        issuer: str | None = None,
    ) -> dict[str, Any]:
        if not isinstance(token, str) or not token:
            raise Unauthorized(f"{kind} missing")
        if len(token) > 8192:
            raise Unauthorized(f"{kind} too long")
        required = ["exp", "sub"] + (["iss"] if issuer else []) + (["aud"] if audience else [])
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=audience,
                issuer=issuer,
                leeway=CLOCK_SKEW,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized(f"{kind} expired") from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise Unauthorized(f"{kind} invalid: {exc}") from None
        return claims
