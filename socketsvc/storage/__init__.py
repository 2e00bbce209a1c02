"""Durable state behind one interface: SQLAlchemy Core over SQLite (aiosqlite) or PostgreSQL (asyncpg)."""

from socketsvc.storage.store import Store

__all__ = ["Store"]
