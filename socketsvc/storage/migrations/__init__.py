"""Alembic migrations of the schema in `socketsvc.storage.tables`, run by `storage.schema`.

Every schema change is a new revision in `versions/` with a test (docs/operations.md, "Schema
migrations"); `tables.py` stays the description of the newest schema.
"""
