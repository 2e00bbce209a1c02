"""Durable state behind one interface: SQLAlchemy Core over SQLite or PostgreSQL."""

from socketsvc.storage.store import Store

__all__ = ["Store"]
