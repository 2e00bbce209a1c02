"""`TokenService`: only genuine, unexpired tokens of the right kind are accepted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest

from socketsvc.domain.errors import Unauthorized
from socketsvc.domain.tokens import VISITOR_AUDIENCE, AgentIdentity, TokenService

SECRET = "unit-test-secret-0123456789abcdef-xyz"
TTL = 3600


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(SECRET, TTL)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], key: str | None = SECRET) -> str:
    """A JWT with any header, HMAC-SHA256-signed with `key` (no signature when None)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    if key is None:
        return signing_input + "."
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def agent_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "a1",
        "name": "Alice",
        "role": "agent",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def visitor_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "v1", "aud": VISITOR_AUDIENCE, "iat": now, "exp": now + 600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def hs256(claims: dict[str, Any], key: str = SECRET) -> str:
    return jwt.encode(claims, key, algorithm="HS256")


# visitor tokens ---------------------------------------------------------------------------


def legacy(claims: dict[str, Any] | None = None) -> str:
    """A visitor token as releases before itsdangerous minted it: an HS256 JWT."""
    return hs256(claims or visitor_claims())


def test_visitor_round_trip(tokens: TokenService) -> None:
    token = tokens.mint_visitor("visitor-42")
    assert tokens.verify_visitor(token) == "visitor-42"
    visitor_id, stamp, signature = token.split(".")
    assert visitor_id == "visitor-42" and stamp and len(signature) == 43  # HMAC-SHA256


def test_visitor_token_is_accepted_by_another_instance_with_the_same_secret() -> None:
    token = TokenService(SECRET, TTL).mint_visitor("v7")
    assert TokenService(SECRET, 60).verify_visitor(token) == "v7"


def test_expired_visitor_token(tokens: TokenService) -> None:
    token = tokens.mint_visitor("v1", now=0)
    with pytest.raises(Unauthorized, match="expired") as raised:
        tokens.verify_visitor(token)
    assert raised.value.code == "unauthorized"
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify_visitor(tokens.mint_visitor("v1", now=time.time() - TTL - 5))


def test_visitor_token_minted_in_the_past_but_within_ttl_is_valid(tokens: TokenService) -> None:
    token = tokens.mint_visitor("v1", now=time.time() - TTL + 60)
    assert tokens.verify_visitor(token) == "v1"


def test_a_visitor_token_from_a_clock_ahead_by_up_to_the_skew_is_valid(
    tokens: TokenService,
) -> None:
    assert tokens.verify_visitor(tokens.mint_visitor("v1", now=time.time() + 20)) == "v1"
    with pytest.raises(Unauthorized, match="issued in the future"):
        tokens.verify_visitor(tokens.mint_visitor("v1", now=time.time() + 120))


def test_tampered_signature(tokens: TokenService) -> None:
    visitor_id, stamp, signature = tokens.mint_visitor("v1").split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[0] ^= 0x01
    with pytest.raises(Unauthorized, match="bad signature"):
        tokens.verify_visitor(f"{visitor_id}.{stamp}.{b64(bytes(raw))}")


def test_tampered_payload_keeps_old_signature(tokens: TokenService) -> None:
    _, stamp, signature = tokens.mint_visitor("v1").split(".")
    with pytest.raises(Unauthorized):
        tokens.verify_visitor(f"someone-else.{stamp}.{signature}")
    visitor_id, _, signature = tokens.mint_visitor("v1").split(".")
    later = tokens.mint_visitor("v1", now=time.time() + 10).split(".")[1]
    with pytest.raises(Unauthorized):
        tokens.verify_visitor(f"{visitor_id}.{later}.{signature}")


def test_visitor_token_signed_with_another_secret(tokens: TokenService) -> None:
    other = TokenService("another-secret-0123456789abcdef-000", TTL)
    with pytest.raises(Unauthorized):
        tokens.verify_visitor(other.mint_visitor("v1"))


def test_a_visitor_jwt_of_an_earlier_release_is_still_valid(tokens: TokenService) -> None:
    assert tokens.verify_visitor(legacy(visitor_claims(sub="v-old"))) == "v-old"
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify_visitor(legacy(visitor_claims(exp=int(time.time()) - 60)))


def test_visitor_jwt_with_alg_none(tokens: TokenService) -> None:
    unsigned = jwt.encode(visitor_claims(), None, algorithm="none")
    assert jwt.get_unverified_header(unsigned)["alg"] == "none"
    with pytest.raises(Unauthorized):
        tokens.verify_visitor(unsigned)
    with pytest.raises(Unauthorized):
        tokens.verify_visitor(forge({"alg": "none", "typ": "JWT"}, visitor_claims(), key=None))


@pytest.mark.parametrize(
    "claims",
    [
        visitor_claims(aud=None),
        visitor_claims(aud="socketsvc:agent"),
        visitor_claims(sub=None),
        visitor_claims(sub=""),
        visitor_claims(exp=None),
    ],
    ids=["no-aud", "wrong-aud", "no-sub", "empty-sub", "no-exp"],
)
def test_visitor_jwt_with_bad_claims(tokens: TokenService, claims: dict[str, Any]) -> None:
    with pytest.raises(Unauthorized):
        tokens.verify_visitor(hs256(claims))


@pytest.mark.parametrize(
    "token",
    [None, "", 42, {"token": "x"}, "not-a-jwt", "a.b.c", "v1..", "..", "x" * 9000, "v\x00.a.b"],
)
def test_visitor_token_that_is_not_a_token(tokens: TokenService, token: Any) -> None:
    with pytest.raises(Unauthorized):
        tokens.verify_visitor(token)


def test_agent_token_is_refused_as_visitor_token(tokens: TokenService) -> None:
    with pytest.raises(Unauthorized):
        tokens.verify_visitor(tokens.mint_agent("a1", "Alice"))


# agent tokens -----------------------------------------------------------------------------


def test_agent_round_trip(tokens: TokenService) -> None:
    token = tokens.mint_agent("a1", "Alice", ttl=120)
    assert tokens.verify_agent(token) == AgentIdentity("a1", "Alice")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["role"] == "agent"
    assert claims["exp"] - claims["iat"] == 120


def test_externally_signed_agent_jwt_is_accepted(tokens: TokenService) -> None:
    assert tokens.verify_agent(hs256(agent_claims(sub="ext-9", name="Eve"))) == AgentIdentity(
        "ext-9", "Eve"
    )


def test_visitor_token_is_refused_as_agent_token(tokens: TokenService) -> None:
    with pytest.raises(Unauthorized):
        tokens.verify_agent(tokens.mint_visitor("v1"))


def test_visitor_token_with_agent_claims_is_still_refused(tokens: TokenService) -> None:
    # A visitor audience makes it a visitor token, whatever else it claims.
    with pytest.raises(Unauthorized):
        tokens.verify_agent(hs256(agent_claims(aud=VISITOR_AUDIENCE)))


def test_expired_agent_token(tokens: TokenService) -> None:
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify_agent(tokens.mint_agent("a1", "Alice", ttl=-60))


def test_agent_token_signed_with_another_secret(tokens: TokenService) -> None:
    with pytest.raises(Unauthorized):
        tokens.verify_agent(hs256(agent_claims(), key="another-secret-0123456789abcdef-000"))


@pytest.mark.parametrize(
    "claims",
    [
        agent_claims(exp=None),
        agent_claims(name=None),
        agent_claims(name=""),
        agent_claims(name=7),
        agent_claims(sub=None),
        agent_claims(sub=""),
        agent_claims(role=None),
        agent_claims(role="visitor"),
        agent_claims(role="admin"),
        agent_claims(role="Agent"),
    ],
    ids=[
        "no-exp",
        "no-name",
        "empty-name",
        "int-name",
        "no-sub",
        "empty-sub",
        "no-role",
        "role-visitor",
        "role-admin",
        "role-case",
    ],
)
def test_agent_token_with_bad_claims(tokens: TokenService, claims: dict[str, Any]) -> None:
    with pytest.raises(Unauthorized):
        tokens.verify_agent(hs256(claims))


def test_agent_token_with_alg_none(tokens: TokenService) -> None:
    with pytest.raises(Unauthorized):
        tokens.verify_agent(jwt.encode(agent_claims(), None, algorithm="none"))
    with pytest.raises(Unauthorized):
        tokens.verify_agent(forge({"alg": "none", "typ": "JWT"}, agent_claims(), key=None))
    # alg none with a (valid HS256) signature attached
    with pytest.raises(Unauthorized):
        tokens.verify_agent(forge({"alg": "none", "typ": "JWT"}, agent_claims()))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_agent_token_with_hs512(tokens: TokenService) -> None:
    token = jwt.encode(agent_claims(), SECRET, algorithm="HS512")
    assert jwt.decode(token, SECRET, algorithms=["HS512"])["sub"] == "a1"  # genuinely signed
    with pytest.raises(Unauthorized):
        tokens.verify_agent(token)


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS256", "HS384"])
def test_agent_token_algorithm_confusion(tokens: TokenService, alg: str) -> None:
    # Header claims an asymmetric (or other) algorithm; body HMAC-SHA256-signed with the secret,
    # as an attacker holding a "public key" equal to the secret would.
    token = forge({"alg": alg, "typ": "JWT"}, agent_claims())
    with pytest.raises(Unauthorized):
        tokens.verify_agent(token)


def test_forged_hs256_with_the_right_key_is_accepted(tokens: TokenService) -> None:
    # The forging helper is sound: the same construction with alg HS256 verifies.
    assert tokens.verify_agent(forge({"alg": "HS256", "typ": "JWT"}, agent_claims())) == (
        AgentIdentity("a1", "Alice")
    )


@pytest.mark.parametrize("token", [None, "", 0, ["a.b.c"], "garbage"])
def test_agent_token_that_is_not_a_token(tokens: TokenService, token: Any) -> None:
    with pytest.raises(Unauthorized):
        tokens.verify_agent(token)


def test_small_clock_differences_are_tolerated(tokens: TokenService) -> None:
    # minted by a server whose clock is 10 s ahead, or just expired by its clock
    assert tokens.verify_agent(tokens.mint_agent("a1", "Alice", ttl=-10)).id == "a1"
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify_agent(tokens.mint_agent("a1", "Alice", ttl=-31))


def test_bot_credentials_name_the_bot() -> None:
    from socketsvc.domain.tokens import BotIdentity

    tokens = TokenService("s" * 40, 60, bot_keys=(("helper", "k" * 20),))
    assert tokens.verify_bot("helper", key="k" * 20) == BotIdentity("helper")
    assert tokens.verify_bot("helper", tokens.mint_bot("helper")) == BotIdentity("helper")
    for bot, token, key in [
        ("helper", None, "x" * 20),
        ("other", None, "k" * 20),
        ("helper", tokens.mint_bot("other"), None),
        ("helper", tokens.mint_agent("helper", "Helper"), None),
        ("helper", TokenService("t" * 40, 60).mint_bot("helper"), None),
        (None, tokens.mint_bot("helper"), None),
        ("helper", None, None),
    ]:
        with pytest.raises(Unauthorized):
            tokens.verify_bot(bot, token, key)
