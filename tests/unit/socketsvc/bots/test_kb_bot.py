"""The knowledge-base bot: matching, fallbacks and the human offer."""

from __future__ import annotations

import asyncio

import pytest
from rapidfuzz.utils import default_process

from socketsvc.bots.base import BotContext, BotReply
from socketsvc.bots.kb_bot import OFFER_REPLY_CUTOFF, KnowledgeBaseBot
from socketsvc.bots.knowledge import load_default_knowledge_base, parse_knowledge_base

KB = load_default_knowledge_base()
ANSWERS = {intent.name: intent.answer for intent in KB.intents}
ALL_EXAMPLES = [(i.name, example) for i in KB.intents for example in i.examples]

# A reworded question with at least one typo for every intent of the default KB.
PARAPHRASES = {
    "greeting": "helo there",
    "thanks": "thanx a lot",
    "goodbye": "goodby, see you latter",
    "capabilities": "so what can i aks you?",
    "what-is": "waht is socketsvc exactly?",
    "install-run": "how do i instal and run it",
    "tests": "how can I run the testsuite",
    "human": "I want to talk to a humna",
    "agent-login": "how do agents sing in to the console?",
    "transports": "does it suport websockets",
    "message-delivery": "can my mesages get lost?",
    "reconnect": "what happens if i loose my connection",
    "scaling": "how does it scael horizontally",
    "configuration": "which enviroment variables can i set",
    "customize-bot": "can i use my own knowlege base",
    "security": "how are visitors authenticatd",
    "health-metrics": "is there a helth check endpoint",
}
UNRELATED = [
    "qwzx plorf vbnm",
    "asdfghjkl",
    "",
    "?!?",
    "what's the weather in paris",
    "can you order me a pizza",
    "who won the football match",
    "reset my password",
]


def ctx(fallbacks: int = 0, *, offered: bool = False) -> BotContext:
    return BotContext("c1", "Visitor", consecutive_fallbacks=fallbacks, human_offered=offered)


@pytest.fixture
def bot() -> KnowledgeBaseBot:
    return KnowledgeBaseBot(KB)


def test_every_intent_has_a_paraphrase() -> None:
    assert set(PARAPHRASES) == set(ANSWERS)
    examples = {default_process(e) for _, e in ALL_EXAMPLES}
    assert not examples & {default_process(p) for p in PARAPHRASES.values()}


@pytest.mark.parametrize(("intent", "example"), ALL_EXAMPLES)
async def test_each_example_matches_its_intent(
    bot: KnowledgeBaseBot, intent: str, example: str
) -> None:
    reply = await bot.reply(ctx(), example)

    assert (reply.intent, reply.matched, reply.score) == (intent, True, 100.0)
    assert reply.text == ANSWERS[intent]


@pytest.mark.parametrize(("intent", "text"), sorted(PARAPHRASES.items()))
async def test_paraphrase_with_typo_matches(bot: KnowledgeBaseBot, intent: str, text: str) -> None:
    reply = await bot.reply(ctx(), text)

    assert reply.intent == intent
    assert reply.matched
    assert KB.threshold <= reply.score <= 100
    assert reply.text == ANSWERS[intent]


@pytest.mark.parametrize("text", UNRELATED)
async def test_unrelated_text_falls_back(bot: KnowledgeBaseBot, text: str) -> None:
    reply = await bot.reply(ctx(), text)

    assert reply == BotReply(text=KB.fallback, matched=False)


@pytest.mark.parametrize("previous", [1, 2, 5])
async def test_repeated_fallback_offers_a_human(bot: KnowledgeBaseBot, previous: int) -> None:
    reply = await bot.reply(ctx(previous), "qwzx plorf")

    assert reply == BotReply(
        text=f"{KB.fallback} {KB.offer_human}", matched=False, offer_human=True
    )


async def test_human_intent_hands_off(bot: KnowledgeBaseBot) -> None:
    reply = await bot.reply(ctx(), "can I speak to a real person please")

    assert (reply.intent, reply.handoff, reply.offer_human) == ("human", True, False)
    assert reply.text == ANSWERS["human"]


async def test_other_intents_do_not_hand_off(bot: KnowledgeBaseBot) -> None:
    for intent in KB.intents:
        reply = await bot.reply(ctx(), intent.examples[0])
        assert reply.handoff is (intent.name == "human"), intent.name


@pytest.mark.parametrize("text", ["yes", "Yes please!", "ok", "OK.", "sure thing", "yess", "yeah"])
async def test_yes_after_offer_hands_off(bot: KnowledgeBaseBot, text: str) -> None:
    reply = await bot.reply(ctx(2, offered=True), text)

    assert reply.text == KB.handoff_reply
    assert (reply.matched, reply.intent, reply.handoff) == (True, "accept-human", True)
    assert reply.score >= OFFER_REPLY_CUTOFF


@pytest.mark.parametrize("text", ["no", "No thanks.", "not now", "nope", "no thank u"])
async def test_no_after_offer_declines(bot: KnowledgeBaseBot, text: str) -> None:
    reply = await bot.reply(ctx(2, offered=True), text)

    assert reply.text == KB.decline_reply
    assert (reply.matched, reply.intent, reply.handoff) == (True, "decline-human", False)


async def test_yes_without_offer_is_not_consent(bot: KnowledgeBaseBot) -> None:
    reply = await bot.reply(ctx(), "yes")

    assert reply.intent != "accept-human"
    assert not reply.handoff


async def test_question_after_offer_is_answered(bot: KnowledgeBaseBot) -> None:
    reply = await bot.reply(ctx(2, offered=True), "ok, how do I run the tests?")

    assert (reply.intent, reply.handoff) == ("tests", False)


async def test_unclear_answer_to_offer_falls_back_with_offer(bot: KnowledgeBaseBot) -> None:
    reply = await bot.reply(ctx(2, offered=True), "mmm")

    assert (reply.matched, reply.offer_human, reply.handoff) == (False, True, False)


async def test_greeting_name_and_close(bot: KnowledgeBaseBot) -> None:
    assert bot.name == "Sockety"
    assert await bot.greeting(ctx()) == KB.greeting
    await bot.close()


async def test_exact_example_wins_a_tie() -> None:
    kb = parse_knowledge_base(
        """{"bot_name": "T", "greeting": "g", "fallback": "f", "intents": [
            {"name": "long", "examples": ["run the tests now"], "answer": "long"},
            {"name": "short", "examples": ["run the tests"], "answer": "short"}]}"""
    )
    bot = KnowledgeBaseBot(kb)

    assert (await bot.reply(ctx(), "run the tests")).intent == "short"
    assert (await bot.reply(ctx(), "run the tests now")).intent == "long"


async def test_threshold_is_respected() -> None:
    text = """{"bot_name": "T", "greeting": "g", "fallback": "f", "threshold": %s,
        "intents": [{"name": "ping", "examples": ["ping the server"], "answer": "pong"}]}"""
    strict = KnowledgeBaseBot(parse_knowledge_base(text % 100))
    lenient = KnowledgeBaseBot(parse_knowledge_base(text % 50))

    assert not (await strict.reply(ctx(), "ping the sever")).matched
    assert (await strict.reply(ctx(), "Ping the server!")).matched
    assert (await lenient.reply(ctx(), "ping the sever")).intent == "ping"


async def test_delay_is_awaited() -> None:
    bot = KnowledgeBaseBot(KB, delay=0.05)
    loop = asyncio.get_running_loop()

    started = loop.time()
    reply = await bot.reply(ctx(), "hello")

    assert loop.time() - started >= 0.05
    assert reply.intent == "greeting"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(KnowledgeBaseBot(KB, delay=1).reply(ctx(), "hi"), 0.01)


def test_negative_delay_is_rejected() -> None:
    with pytest.raises(ValueError, match="delay"):
        KnowledgeBaseBot(KB, delay=-1)
