"""Turning the `BOT` setting into a bot instance."""

from __future__ import annotations

import importlib
from typing import cast

from .base import Bot
from .echo_bot import EchoBot
from .kb_bot import KnowledgeBaseBot
from .openai_bot import ChatCompletions, LLMConfig, OpenAIBot
from .webhook_bot import WebhookBot, WebhookConfig, WebhookTransport

_EXPECTED = "expected 'kb', 'openai', 'webhook', 'echo' or 'package.module:factory'"


def load_bot(
    spec: str,
    *,
    kb_path: str | None = None,
    delay: float = 0.0,
    llm: tuple[LLMConfig, ChatCompletions] | None = None,
    webhook: tuple[WebhookConfig, WebhookTransport] | None = None,
) -> Bot:
    """Build the bot named by the `BOT` setting.

    `spec` is `"kb"` (the knowledge-base bot on `kb_path`, or the packaged default KB when
    None; also for `"workers:NAME"`, where it greets and is the fallback), `"openai"` (the LLM
    bot over `llm`'s endpoint, with the same knowledge base as its retrieval context), `"webhook"`
    (the webhook bot over `webhook`'s transport; the knowledge-base bot greets and is its
    fallback), `"echo"`,
    or `"package.module:factory"`: the factory is called as
    `factory(kb_path=kb_path, delay=delay)` and must return a `Bot`. Raises `ValueError`
    for an unknown spec, an import that fails or a factory that returns something else;
    an invalid knowledge base raises `KnowledgeBaseError` (also a `ValueError`).
    """
    spec = spec.strip()
    if spec == "kb" or spec.startswith("workers:"):
        # With external workers (`workers:NAME`) the kb bot greets and is the fallback.
        return KnowledgeBaseBot.from_file(kb_path, delay=delay)
    if spec == "openai":
        if llm is None:
            raise ValueError("BOT=openai needs an LLM endpoint (LLM_BASE_URL and LLM_MODEL)")
        config, completions = llm
        return OpenAIBot(KnowledgeBaseBot.from_file(kb_path), config, completions)
    if spec == "webhook":
        if webhook is None:
            raise ValueError("BOT=webhook needs BOT_WEBHOOK_URL and BOT_WEBHOOK_SECRET")
        return WebhookBot(KnowledgeBaseBot.from_file(kb_path), *webhook)
    if spec == "echo":
        return EchoBot(delay=delay)
    if ":" not in spec:
        raise ValueError(f"unknown BOT setting {spec!r}: {_EXPECTED}")
    return _from_factory(spec, kb_path=kb_path, delay=delay)


def _from_factory(spec: str, *, kb_path: str | None, delay: float) -> Bot:
    module_name, _, attr_path = spec.partition(":")
    if not module_name or not attr_path or ":" in attr_path:
        raise ValueError(f"invalid BOT setting {spec!r}: {_EXPECTED}")
    try:
        target: object = importlib.import_module(module_name)
    except Exception as exc:
        raise ValueError(f"BOT setting {spec!r}: cannot import {module_name!r}: {exc}") from exc
    for attr in attr_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError:
            raise ValueError(
                f"BOT setting {spec!r}: {module_name!r} has no attribute {attr_path!r}"
            ) from None
    if not callable(target):
        raise ValueError(f"BOT setting {spec!r}: {attr_path!r} is not callable")
    bot = target(kb_path=kb_path, delay=delay)
    missing = [m for m in ("greeting", "reply", "close") if not callable(getattr(bot, m, None))]
    if missing or not isinstance(getattr(bot, "name", None), str):
        raise ValueError(
            f"BOT setting {spec!r}: the factory returned {type(bot).__name__}, not a Bot "
            "(needs a str `name` and async `greeting`, `reply` and `close`)"
        )
    return cast(Bot, bot)
