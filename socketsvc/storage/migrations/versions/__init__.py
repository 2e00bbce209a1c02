"""Revisions, oldest first: 0001_baseline is the schema create_all made before Alembic."""
