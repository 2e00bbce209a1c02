"""The reconnecting visitor's read (`Store.returning_visitor`, `Store.sync_read`) on the lookup
connections of storage/lookups.py, on both databases."""

from __future__ import annotations

import asyncio

import pytest

from socketsvc.domain.models import Role, Sender
from socketsvc.storage.lookups import LOOKUP_CONNECTIONS
from socketsvc.storage.store import Store

BOT = Sender(Role.BOT, "bot", "Bot")
VISITOR = Sender(Role.VISITOR, "v1", "Visitor v1")


async def test_a_visitor_never_stored_has_no_conversation(store: Store) -> None:
    returning = await store.returning_visitor("nobody")
    assert (returning.erased, returning.conversation, returning.read_marks) == (False, None, [])
    assert returning.queue_position is None


async def test_a_stored_conversation_is_found_and_synced(store: Store) -> None:
    await store.ensure_visitor("v1", "Visitor v1")
    created = await store.create_conversation("v1", (BOT, "Hello!"))
    conversation_id = created.conversation.id
    await store.append_message(conversation_id, VISITOR, "hi", "c-1")
    returning = await store.returning_visitor("v1")
    assert returning.conversation is not None
    assert returning.conversation.id == conversation_id
    messages, after = await store.sync_read(conversation_id, 1, 100)
    assert [(m.seq, m.text) for m in messages] == [(2, "hi")]
    assert after.conversation is not None and after.conversation.last_seq == 2


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_lookups_run_side_by_side_on_a_few_held_connections(store: Store) -> None:
    """A storm's handshakes read at once: on more than one connection (one at a time was the
    storm's limit), never more than LOOKUP_CONNECTIONS, kept between lookups, dropped at close."""
    lookups = store._pg_lookups
    await store.ensure_visitor("v1", "Visitor v1")
    results = await asyncio.gather(*(store.returning_visitor("v1") for _ in range(40)))
    assert all(r.conversation is None and not r.erased for r in results)
    assert 1 < len(lookups._idle) <= LOOKUP_CONNECTIONS
    held = len(lookups._idle)
    await store.returning_visitor("v1")
    assert len(lookups._idle) == held  # reused, not made anew
    in_use = asyncio.ensure_future(store.returning_visitor("v1"))
    await asyncio.sleep(0)  # it has taken a connection
    await lookups.close()
    await in_use
    assert lookups._idle == []  # the one in use during close() was dropped, not given back
