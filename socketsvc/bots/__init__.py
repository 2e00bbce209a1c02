"""Pluggable bots: the one-method interface and the built-in knowledge-base bot."""
