"""Prometheus series, defined once. Served at /metrics."""

from __future__ import annotations

import functools

from prometheus_client import Counter, Gauge, Histogram

CONNECTS = Counter("socketsvc_connects_total", "Accepted connections", ["namespace"])
CONNECT_REFUSALS = Counter(
    "socketsvc_connect_refusals_total", "Refused connections", ["namespace", "code"]
)
DISCONNECTS = Counter("socketsvc_disconnects_total", "Disconnections", ["namespace"])
RESUMED = Counter("socketsvc_sessions_resumed_total", "Visitor sessions resumed with a token")
EVENTS = Counter(
    "socketsvc_events_total", "Client events handled", ["namespace", "event", "outcome"]
)
HANDLER_LATENCY = Histogram(
    "socketsvc_handler_seconds",
    "Time to handle a client event",
    ["namespace", "event"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
APPEND_BATCHES = Counter(
    "socketsvc_append_batches_total",
    "Transactions that stored messages (group commit: messages stored / batches = batch size)",
)
COMMIT_PACING = Gauge(
    "socketsvc_commit_pacing",
    "1 while group commits are spaced COMMIT_DELAY apart because the process is busy, else 0",
)
MESSAGES_STORED = Counter("socketsvc_messages_stored_total", "Messages stored", ["role"])
DUPLICATES = Counter(
    "socketsvc_duplicate_messages_total", "Retries answered with the already stored message"
)
CONVERSATIONS_STARTED = Counter("socketsvc_conversations_started_total", "Conversations started")
HANDOFFS = Counter("socketsvc_handoffs_total", "Conversations handed to the queue", ["by"])
BOT_FALLBACKS = Counter("socketsvc_bot_fallbacks_total", "Bot replies that were fallbacks")
BOT_DELIVERIES = Counter(
    "socketsvc_bot_deliveries_total",
    "Visitor messages sent to /bot workers (redeliveries included)",
    ["attempt"],
)
BOT_WORKER_FALLBACKS = Counter(
    "socketsvc_bot_worker_fallbacks_total",
    "Visitor messages no /bot worker took within BOT_TIMEOUT (handled by BOT_FALLBACK)",
    ["fallback"],
)
BOT_ERRORS = Counter("socketsvc_bot_errors_total", "Bot replies that failed or timed out")
BOT_SUPPRESSED = Counter(
    "socketsvc_bot_replies_suppressed_total",
    "Bot replies dropped because the conversation left the bot state",
)
QUEUE_LENGTH = Gauge("socketsvc_queue_length", "Conversations waiting for an agent")
QUEUE_WAIT = Histogram(
    "socketsvc_queue_wait_seconds",
    "Time a conversation waited in the queue before an agent accepted it",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
)
AGENTS_ONLINE = Gauge("socketsvc_agents_online", "Agents online with a live connection")
REDIS_PUBLISH_FAILURES = Counter(
    "socketsvc_redis_publish_failures_total", "Broadcasts Redis did not take (dropped)"
)
CANARY_OK = Gauge(
    "socketsvc_pubsub_canary_ok", "1 while this process hears its own Redis canary, else 0"
)
DATABASE_OUTAGE = Gauge(
    "socketsvc_database_outage",
    "1 while the database is unreachable or refusing connections (an outage), else 0",
)
DATABASE_REFUSALS = Counter(
    "socketsvc_database_refusals_total",
    "Events and connects answered unavailable because the database was unreachable",
    ["kind"],
)
ABUSE_DISCONNECTS = Counter(
    "socketsvc_abuse_disconnects_total", "Connections closed for sustained flooding", ["namespace"]
)
RETENTION_DELETED = Counter(
    "socketsvc_retention_deleted_conversations_total",
    "Resolved conversations deleted by retention (RETENTION_DAYS)",
)
VISITORS_ERASED = Counter("socketsvc_visitors_erased_total", "Visitors erased on request")


@functools.cache
def event_counter(namespace: str, event: str, outcome: str) -> Counter:
    """The EVENTS child for these labels (looked up once; `labels()` is a locked dict lookup)."""
    return EVENTS.labels(namespace=namespace, event=event, outcome=outcome)


@functools.cache
def stored(role: str) -> Counter:
    """The MESSAGES_STORED child for a sender role."""
    return MESSAGES_STORED.labels(role=role)


@functools.cache
def handler_latency(namespace: str, event: str) -> Histogram:
    return HANDLER_LATENCY.labels(namespace=namespace, event=event)


LLM_ERRORS = Counter(
    "socketsvc_llm_errors_total",
    "LLM endpoint failures answered with the fallback (BOT=openai)",
    ["kind"],
)
"""`kind`: http, connect, timeout or malformed."""


@functools.cache
def llm_errors(kind: str) -> Counter:
    """The LLM_ERRORS child for a kind of failure."""
    return LLM_ERRORS.labels(kind=kind)


WEBHOOK_DELIVERIES = Counter(
    "socketsvc_webhook_deliveries_total",
    "Events POSTed to the webhook bot (BOT=webhook), by their final outcome",
    ["event", "outcome"],
)
"""`event`: message.created, conversation.opened or conversation.resolved; `outcome`: `replied`
(2xx with replies or a handoff), `accepted` (2xx with nothing to say, 202, 204), `rejected`
(a 4xx other than 429: not retried), `malformed` (a 2xx whose body is no valid answer), `failed`
(every attempt failed, or the deadline came first)."""
WEBHOOK_RETRIES = Counter(
    "socketsvc_webhook_retries_total",
    "Webhook bot attempts repeated after a failed one (BOT=webhook)",
    ["reason"],
)
"""`reason`: `http_5xx`, `http_429`, `timeout` or `connect` (of the attempt that failed)."""
