"""The one place tests get the service's secret and mint tokens with it."""

from __future__ import annotations

from socketsvc.domain.tokens import TokenService

SECRET = "test-secret-0123456789abcdef-0123456789"
"""SOCKETSVC_SECRET of every app a test starts (`tests.conftest.make_settings`)."""

TOKENS = TokenService(SECRET, 3600)
"""Mints and verifies tokens as the service under test does."""


def agent_token(agent_id: str, name: str) -> str:
    """A valid agent token for the service under test."""
    return TOKENS.mint_agent(agent_id, name)


def visitor_token(visitor_id: str, now: float | None = None) -> str:
    """A visitor token for the service under test (`now=0`: long expired)."""
    return TOKENS.mint_visitor(visitor_id, now=now)
