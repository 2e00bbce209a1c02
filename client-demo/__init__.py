"""Visitor widget and agent console served by socketsvc (static files)."""
