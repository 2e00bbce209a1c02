"""The chat domain: conversations, handoff routing, presence, the bot runner, tokens and limits.

Knows nothing of Socket.IO, aiohttp or SQL (an import-linter contract in setup.cfg keeps it so):
it stores through the ports in `domain.ports` and publishes through a `Broadcaster`.
"""
