"""`LOG_FORMAT=json` prints one JSON object per line, carrying the conversation id."""

from __future__ import annotations

import json
import logging

import pytest

from socketsvc.runtime import logs


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_context_and_exceptions(restore_logging, capsys):
    logs.configure("INFO", "json")
    log = logging.getLogger("socketsvc.test")
    log.info("conversation queued (%s)", "visitor", extra={"conversation_id": "c-1"})
    log.debug("not shown at INFO")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "conversation queued (visitor)"
    assert first["conversation_id"] == "c-1"
    assert first["level"] == "INFO" and first["logger"] == "socketsvc.test"
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exc_info"]


def test_text_format_appends_the_conversation_id(restore_logging, capsys):
    logs.configure("WARNING", "text")
    logging.getLogger("socketsvc.test").warning("slow", extra={"conversation_id": "c-9"})
    logging.getLogger("socketsvc.test").info("hidden")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "WARNING socketsvc.test: slow [conversation_id=c-9]" in err
