"""Signed tokens: visitor tokens, agent JWTs, and host-site identity assertions.

Visitor tokens are `itsdangerous` timestamp signatures (`VISITOR_ID.TIMESTAMP.HMAC-SHA256`, salt
`socketsvc:visitor`): one is minted on every visitor connect and checked on every resume, and
signing and checking one costs a few tens of microseconds against a few hundred for a JWT with
PyJWT, whose base64 and key checks dominated a resumed handshake. Visitor tokens of releases
before that change are JWTs (`aud` `socketsvc:visitor`) and are still honoured until they expire
(`VISITOR_TOKEN_TTL` after they were issued).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import itsdangerous
import jwt

from socketsvc.domain.errors import Unauthorized

VISITOR_AUDIENCE = "socketsvc:visitor"
"""The JWT audience of the visitor tokens of earlier releases, and the signer's salt now."""
LEGACY_PREFIX = "eyJ"
"""How every JWT starts (base64 of `{"`); a visitor id never does (hex or `u-` + hex)."""
ALGORITHM = "HS256"
CLOCK_SKEW = 30
"""Seconds of clock difference tolerated for `exp`, `iat` and `nbf` (other servers mint tokens)."""


@dataclass(frozen=True)
class AgentIdentity:
    id: str
    name: str


@dataclass(frozen=True)
class BotIdentity:
    """A connected bot worker: which bot it serves."""

    bot: str


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


class _VisitorSigner(itsdangerous.TimestampSigner):
    """Visitor tokens' signer; with `backdate`, it signs `CLOCK_SKEW` s before `clock` says (a
    process whose clock is behind ours must not see a token from the future, which itsdangerous
    refuses); without, it checks ages against `clock`."""

    def __init__(
        self, secret: str, clock: Callable[[], float] = time.time, backdate: bool = False
    ) -> None:
        super().__init__(secret, salt=VISITOR_AUDIENCE, digest_method=hashlib.sha256)
        self.clock = clock
        self.backdate = CLOCK_SKEW if backdate else 0

    def get_timestamp(self) -> int:
        return max(0, int(self.clock()) - self.backdate)


class TokenService:
    """Mints and verifies tokens. Each kind accepts exactly one algorithm, never `none`."""

    def __init__(
        self,
        secret: str,
        visitor_ttl: int,
        agent_keys: AgentKeys | None = None,
        identity_secret: str | None = None,
        bot_keys: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._secret = secret
        self._visitor_signer = _VisitorSigner(secret, backdate=True)
        self._visitor_checker = _VisitorSigner(secret)
        self._bot_keys = bot_keys
        self.visitor_ttl = visitor_ttl
        self.agent_keys = agent_keys or AgentKeys()
        self._identity_secret = identity_secret

    def mint_visitor(self, visitor_id: str, now: float | None = None) -> str:
        """A visitor token valid for `visitor_ttl` s from `now` (default: the current time)."""
        signer = self._visitor_signer
        if now is not None:
            signer = _VisitorSigner(self._secret, lambda: now, backdate=True)
        return signer.sign(visitor_id).decode("ascii")

    def verify_visitor(self, token: Any) -> str:
        """The visitor id in a valid visitor token (or a JWT one of an earlier release);
        `Unauthorized` otherwise."""
        if not isinstance(token, str) or not token:
            raise Unauthorized("visitor token missing")
        if len(token) > 8192:
            raise Unauthorized("visitor token too long")
        if token.startswith(LEGACY_PREFIX):
            return self._verify_legacy_visitor(token)
        try:
            subject = self._visitor_checker.unsign(
                token, max_age=self.visitor_ttl + CLOCK_SKEW
            ).decode("utf-8")
        except itsdangerous.SignatureExpired as exc:
            future = exc.date_signed is not None and exc.date_signed.timestamp() > time.time()
            raise Unauthorized(
                "visitor token invalid: issued in the future" if future else "visitor token expired"
            ) from None
        except (itsdangerous.BadData, UnicodeDecodeError):
            raise Unauthorized("visitor token invalid: bad signature") from None
        if not subject or len(subject) > 64:
            raise Unauthorized("visitor token has no valid subject")
        return subject

    def _verify_legacy_visitor(self, token: str) -> str:
        """A visitor JWT of an earlier release (HS256, `aud` `socketsvc:visitor`)."""
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

    def mint_bot(self, bot: str, ttl: int = 24 * 3600) -> str:
        """An HS256 bot JWT: `sub` is the bot's name, `role` is `bot` (signed like agent
        tokens: only meaningful while agents are verified with the secret)."""
        issued = int(time.time())
        claims: dict[str, Any] = {"sub": bot, "role": "bot", "iat": issued, "exp": issued + ttl}
        if self.agent_keys.issuer:
            claims["iss"] = self.agent_keys.issuer
        if self.agent_keys.audience:
            claims["aud"] = self.agent_keys.audience
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify_bot(self, bot: Any, token: Any = None, key: Any = None) -> BotIdentity:
        """A worker of `bot`, proven by a bot JWT (role `bot`, `sub` = the bot's name, verified
        like agent tokens) or by one of `BOT_KEYS`; `Unauthorized` otherwise."""
        if not isinstance(bot, str) or not bot or len(bot) > 64:
            raise Unauthorized("auth.bot must name the bot (a string)")
        if key is not None:
            if not isinstance(key, str) or not any(
                name == bot and hmac.compare_digest(key.encode(), known.encode())
                for name, known in self._bot_keys
            ):
                raise Unauthorized("bot key invalid")
            return BotIdentity(bot)
        keys = self.agent_keys
        claims = self._decode(
            token,
            keys.public_key or self._secret,
            keys.algorithm,
            audience=keys.audience,
            issuer=keys.issuer,
            kind="bot token",
        )
        if claims.get("role") != "bot":
            raise Unauthorized("bot token must carry role 'bot'")
        if claims.get("sub") != bot:
            raise Unauthorized("bot token is for another bot")
        return BotIdentity(bot)

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
