"""Building a bot from the `BOT` setting."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from socketsvc.bots.base import BotContext
from socketsvc.bots.echo_bot import EchoBot
from socketsvc.bots.kb_bot import KnowledgeBaseBot
from socketsvc.bots.knowledge import KnowledgeBaseError
from socketsvc.bots.loader import load_bot

CTX = BotContext("c1", "Visitor")
FACTORY_MODULE = "socketsvc_test_custom_bot"


@pytest.fixture
def factory_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An importable module whose factories record how they were called."""
    (tmp_path / f"{FACTORY_MODULE}.py").write_text(
        textwrap.dedent(
            """
            from socketsvc.bots.echo_bot import EchoBot

            calls = []

            def make(**kwargs):
                calls.append(kwargs)
                bot = EchoBot(delay=kwargs["delay"])
                bot.name = "Custom"
                return bot

            def not_a_bot(**kwargs):
                return object()

            not_callable = 42
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield FACTORY_MODULE
    sys.modules.pop(FACTORY_MODULE, None)


async def test_kb_uses_the_packaged_default() -> None:
    bot = load_bot("kb")

    assert isinstance(bot, KnowledgeBaseBot)
    assert bot.name == "Sockety"
    assert bot.delay == 0.0
    assert (await bot.reply(CTX, "how do I run the tests")).intent == "tests"


async def test_kb_reads_kb_path(tmp_path: Path) -> None:
    path = tmp_path / "kb.json"
    path.write_text(
        json.dumps(
            {
                "bot_name": "Custom KB",
                "greeting": "Hi from a file.",
                "fallback": "Eh?",
                "intents": [{"name": "ping", "examples": ["ping"], "answer": "pong"}],
            }
        ),
        encoding="utf-8",
    )

    bot = load_bot(" kb ", kb_path=str(path), delay=0.25)

    assert isinstance(bot, KnowledgeBaseBot)
    assert (bot.name, bot.delay) == ("Custom KB", 0.25)
    assert await bot.greeting(CTX) == "Hi from a file."


def test_kb_with_bad_path_raises_knowledge_base_error(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeBaseError, match=r"missing\.json"):
        load_bot("kb", kb_path=str(tmp_path / "missing.json"))


async def test_echo() -> None:
    bot = load_bot("echo", delay=0.01)

    assert isinstance(bot, EchoBot)
    assert bot.delay == 0.01
    assert bot.name == "Echo"
    assert await bot.greeting(CTX) == "Echo bot here: I repeat what you say."
    reply = await bot.reply(CTX, "hello there")
    assert (reply.text, reply.matched, reply.handoff) == ("You said: hello there", True, False)
    await bot.close()


async def test_module_factory_gets_kb_path_and_delay(factory_module: str) -> None:
    bot = load_bot(f"{factory_module}:make", kb_path="/some/kb.json", delay=0.5)

    assert bot.name == "Custom"
    assert sys.modules[factory_module].calls == [{"kb_path": "/some/kb.json", "delay": 0.5}]
    assert (await bot.reply(CTX, "x")).text == "You said: x"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "unknown BOT setting ''"),
        ("bogus", "unknown BOT setting 'bogus'"),
        ("KB", "unknown BOT setting 'KB'"),
        (":make", "invalid BOT setting"),
        ("socketsvc.bots.loader:", "invalid BOT setting"),
        ("a:b:c", "invalid BOT setting"),
        ("no_such_module_for_bot_tests:make", "cannot import 'no_such_module_for_bot_tests'"),
        ("socketsvc.bots.echo_bot:missing", "has no attribute 'missing'"),
    ],
)
def test_bad_spec_is_a_value_error(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match="BOT setting") as info:
        load_bot(spec)

    assert message in str(info.value)


@pytest.mark.parametrize(
    ("factory", "message"),
    [("not_callable", "is not callable"), ("not_a_bot", "returned object, not a Bot")],
)
def test_factory_must_give_a_bot(factory_module: str, factory: str, message: str) -> None:
    with pytest.raises(ValueError, match="BOT setting") as info:
        load_bot(f"{factory_module}:{factory}")

    assert message in str(info.value)


async def test_openai_is_the_llm_bot_over_the_given_endpoint() -> None:
    from socketsvc.bots.openai_bot import LLMConfig, OpenAIBot

    class Endpoint:
        def stream(self, request: object) -> Any:
            raise NotImplementedError

        async def close(self) -> None:
            pass

    bot = load_bot("openai", llm=(LLMConfig(model="m"), Endpoint()))
    assert isinstance(bot, OpenAIBot) and bot.name == KnowledgeBaseBot.from_file().name
    with pytest.raises(ValueError, match="BOT=openai needs an LLM endpoint"):
        load_bot("openai")


async def test_webhook_is_the_webhook_bot_over_the_given_transport() -> None:
    from socketsvc.bots.base import NotifiedBot
    from socketsvc.bots.webhook_bot import WebhookBot, WebhookConfig

    class Transport:
        async def post(self, body: bytes, headers: object, timeout: float) -> Any:
            raise NotImplementedError

        async def close(self) -> None:
            pass

    bot = load_bot("webhook", webhook=(WebhookConfig(secret="s" * 16), Transport()))
    assert isinstance(bot, WebhookBot) and isinstance(bot, NotifiedBot)
    assert bot.name == KnowledgeBaseBot.from_file().name
    assert await bot.greeting(CTX) == KnowledgeBaseBot.from_file().kb.greeting
    with pytest.raises(ValueError, match="BOT=webhook needs BOT_WEBHOOK_URL"):
        load_bot("webhook")
