"""Loading and validating a knowledge-base JSON file (see docs/bot-knowledge-base.md)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, Literal, NoReturn

_PACKAGE: Final = "socketsvc.bots"
DEFAULT_KB_RESOURCE: Final = "default_kb.json"
"""File name of the packaged default knowledge base inside `socketsvc.bots`."""

HANDOFF: Final = "handoff"
ACCEPT_HUMAN: Final = "accept-human"
DECLINE_HUMAN: Final = "decline-human"
RESERVED_INTENTS: Final = frozenset({ACCEPT_HUMAN, DECLINE_HUMAN})
"""Intent names the bot itself reports for answers to a human offer."""

_DEFAULTS: Final[Mapping[str, Any]] = {
    "offer_human": "Would you like to talk to a human? Just say yes.",
    "handoff_reply": "OK, I'm handing you over to a human agent.",
    "decline_reply": "No problem, ask me anything else.",
    "threshold": 45,
    "affirmative": ["yes", "yes please", "sure", "ok", "please do"],
    "negative": ["no", "no thanks", "not now"],
}
_REQUIRED: Final = ("bot_name", "greeting", "fallback", "intents")
_INTENT_REQUIRED: Final = ("name", "examples", "answer")
_INTENT_KEYS: Final = frozenset({*_INTENT_REQUIRED, "action"})


class KnowledgeBaseError(ValueError):
    """A knowledge-base file is missing, unreadable or invalid."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        """Where the problem is, e.g. `intents[2].examples[0]` (empty for the whole file)."""
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"invalid knowledge base {where}: {problem}")


@dataclass(frozen=True)
class Intent:
    """One thing the bot can answer: example phrasings and the answer."""

    name: str
    examples: tuple[str, ...]
    answer: str
    action: Literal["handoff"] | None = None
    """`"handoff"` when answering this intent hands the conversation to a human."""


@dataclass(frozen=True)
class KnowledgeBase:
    """A validated knowledge base."""

    bot_name: str
    greeting: str
    fallback: str
    offer_human: str
    handoff_reply: str
    decline_reply: str
    threshold: float
    """Minimum confidence (0..100, `ranking.Ranker`) for a match."""
    affirmative: tuple[str, ...]
    negative: tuple[str, ...]
    intents: tuple[Intent, ...]
    source: str = "<memory>"
    """Where the knowledge base was loaded from (for messages)."""


def load_knowledge_base(path: str | os.PathLike[str]) -> KnowledgeBase:
    """Read and validate the knowledge-base JSON file at `path`."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise KnowledgeBaseError(source, "", f"cannot read file ({exc.strerror or exc})") from exc
    return parse_knowledge_base(text, source=source)


def load_default_knowledge_base() -> KnowledgeBase:
    """The knowledge base packaged with socketsvc (`socketsvc/bots/default_kb.json`)."""
    text = resources.files(_PACKAGE).joinpath(DEFAULT_KB_RESOURCE).read_text("utf-8")
    return parse_knowledge_base(text, source=f"{_PACKAGE}/{DEFAULT_KB_RESOURCE}")


def parse_knowledge_base(text: str, *, source: str = "<memory>") -> KnowledgeBase:
    """Validate knowledge-base JSON text; `source` names it in error messages."""
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKeyError as exc:
        raise KnowledgeBaseError(source, exc.key, "duplicate key") from None
    except json.JSONDecodeError as exc:
        raise KnowledgeBaseError(source, "", f"not valid JSON ({exc})") from None
    return _Validator(source).knowledge_base(data)


class _DuplicateKeyError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


class _Validator:
    """Checks decoded JSON and builds the dataclasses, naming the offending key on errors."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> NoReturn:
        raise KnowledgeBaseError(self.source, key, problem)

    def knowledge_base(self, data: object) -> KnowledgeBase:
        obj = self.mapping(data, "", _REQUIRED, frozenset({*_REQUIRED, *_DEFAULTS}))
        merged = {**_DEFAULTS, **obj}
        intents = self.intents(merged["intents"])
        return KnowledgeBase(
            bot_name=self.text(merged["bot_name"], "bot_name"),
            greeting=self.text(merged["greeting"], "greeting"),
            fallback=self.text(merged["fallback"], "fallback"),
            offer_human=self.text(merged["offer_human"], "offer_human"),
            handoff_reply=self.text(merged["handoff_reply"], "handoff_reply"),
            decline_reply=self.text(merged["decline_reply"], "decline_reply"),
            threshold=self.threshold(merged["threshold"]),
            affirmative=self.phrases(merged["affirmative"], "affirmative"),
            negative=self.phrases(merged["negative"], "negative"),
            intents=intents,
            source=self.source,
        )

    def mapping(
        self, data: object, key: str, required: tuple[str, ...], allowed: frozenset[str]
    ) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail(key, f"must be an object, got {_type_name(data)}")
        prefix = f"{key}." if key else ""
        for name in required:
            if name not in data:
                self.fail(f"{prefix}{name}", "missing required key")
        for name in data:
            if name not in allowed:
                self.fail(f"{prefix}{name}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return data

    def text(self, value: object, key: str) -> str:
        if not isinstance(value, str):
            self.fail(key, f"must be a string, got {_type_name(value)}")
        if not value.strip():
            self.fail(key, "must not be empty")
        return value

    def phrases(self, value: object, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.fail(key, f"must be a list of strings, got {_type_name(value)}")
        if not value:
            self.fail(key, "must not be empty")
        result = tuple(self.text(item, f"{key}[{i}]") for i, item in enumerate(value))
        for i, phrase in enumerate(result):
            if not any(ch.isalnum() for ch in phrase):
                self.fail(f"{key}[{i}]", "must contain at least one letter or digit")
        return result

    def threshold(self, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail("threshold", f"must be a number, got {_type_name(value)}")
        if not 0 <= value <= 100:
            self.fail("threshold", f"must be between 0 and 100, got {value}")
        return float(value)

    def intents(self, value: object) -> tuple[Intent, ...]:
        if not isinstance(value, list):
            self.fail("intents", f"must be a list of objects, got {_type_name(value)}")
        if not value:
            self.fail("intents", "must not be empty")
        intents = tuple(self.intent(item, f"intents[{i}]") for i, item in enumerate(value))
        seen: dict[str, int] = {}
        for i, intent in enumerate(intents):
            first = seen.setdefault(intent.name, i)
            if first != i:
                self.fail(
                    f"intents[{i}].name",
                    f"duplicate intent name {intent.name!r} (also used by intents[{first}])",
                )
        return intents

    def intent(self, data: object, key: str) -> Intent:
        obj = self.mapping(data, key, _INTENT_REQUIRED, _INTENT_KEYS)
        name = self.text(obj["name"], f"{key}.name")
        if name in RESERVED_INTENTS:
            self.fail(f"{key}.name", f"{name!r} is reserved for answers to a human offer")
        action = obj.get("action")
        if action is not None and action != HANDOFF:
            self.fail(f"{key}.action", f'must be null or "{HANDOFF}", got {action!r}')
        return Intent(
            name=name,
            examples=self.phrases(obj["examples"], f"{key}.examples"),
            answer=self.text(obj["answer"], f"{key}.answer"),
            action=HANDOFF if action == HANDOFF else None,
        )


def _type_name(value: object) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )
