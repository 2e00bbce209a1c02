"""Loading and validating knowledge-base files."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from socketsvc.bots.knowledge import (
    Intent,
    KnowledgeBase,
    KnowledgeBaseError,
    load_default_knowledge_base,
    load_knowledge_base,
    parse_knowledge_base,
)

MINIMAL: dict[str, Any] = {
    "bot_name": "Tester",
    "greeting": "Hello from the tests.",
    "fallback": "Pardon?",
    "intents": [
        {"name": "ping", "examples": ["ping", "are you there"], "answer": "pong"},
        {"name": "human", "examples": ["human"], "answer": "Hold on.", "action": "handoff"},
    ],
}


def write_kb(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "kb.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_default_knowledge_base_is_valid_and_sized() -> None:
    kb = load_default_knowledge_base()

    assert kb.bot_name == "Sockety"
    assert kb.threshold == 45.0
    assert 12 <= len(kb.intents) <= 20
    for intent in kb.intents:
        assert 4 <= len(intent.examples) <= 12, intent.name
    assert [i.name for i in kb.intents if i.action == "handoff"] == ["human"]
    assert kb.source.endswith("default_kb.json")


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    path = write_kb(tmp_path, MINIMAL)

    kb = load_knowledge_base(path)

    assert kb == KnowledgeBase(
        bot_name="Tester",
        greeting="Hello from the tests.",
        fallback="Pardon?",
        offer_human="Would you like to talk to a human? Just say yes.",
        handoff_reply="OK, I'm handing you over to a human agent.",
        decline_reply="No problem, ask me anything else.",
        threshold=45.0,
        affirmative=("yes", "yes please", "sure", "ok", "please do"),
        negative=("no", "no thanks", "not now"),
        intents=(
            Intent(name="ping", examples=("ping", "are you there"), answer="pong", action=None),
            Intent(name="human", examples=("human",), answer="Hold on.", action="handoff"),
        ),
        source=str(path),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        kb.threshold = 10  # type: ignore[misc]


def test_explicit_optional_keys_are_used() -> None:
    data = {
        **MINIMAL,
        "threshold": 90.5,
        "affirmative": ["da"],
        "negative": ["nyet"],
        "offer_human": "Human?",
        "handoff_reply": "Handing over.",
        "decline_reply": "Fine.",
    }

    kb = parse_knowledge_base(json.dumps(data), source="inline")

    assert (kb.threshold, kb.affirmative, kb.negative) == (90.5, ("da",), ("nyet",))
    assert (kb.offer_human, kb.handoff_reply, kb.decline_reply) == (
        "Human?",
        "Handing over.",
        "Fine.",
    )
    assert kb.source == "inline"


Mutation = Callable[[dict[str, Any]], None]


def _set(key: str, value: object) -> Mutation:
    return lambda d: d.__setitem__(key, value)


def _set_intent(index: int, key: str, value: object) -> Mutation:
    return lambda d: d["intents"][index].__setitem__(key, value)


def _del(key: str) -> Mutation:
    return lambda d: d.__delitem__(key)


def _del_intent(index: int, key: str) -> Mutation:
    return lambda d: d["intents"][index].__delitem__(key)


@pytest.mark.parametrize(
    ("mutate", "key", "problem"),
    [
        (_del("greeting"), "greeting", "missing required key"),
        (_del("intents"), "intents", "missing required key"),
        (_del_intent(1, "answer"), "intents[1].answer", "missing required key"),
        (_set("colour", "blue"), "colour", "unknown key"),
        (_set_intent(0, "answr", "x"), "intents[0].answr", "unknown key"),
        (_set("greeting", 5), "greeting", "must be a string, got int"),
        (_set("fallback", "   "), "fallback", "must not be empty"),
        (_set("threshold", "high"), "threshold", "must be a number, got string"),
        (_set("threshold", True), "threshold", "must be a number, got boolean"),
        (_set("threshold", 101), "threshold", "between 0 and 100, got 101"),
        (_set("threshold", -0.5), "threshold", "between 0 and 100, got -0.5"),
        (_set("affirmative", "yes"), "affirmative", "must be a list of strings, got string"),
        (_set("negative", []), "negative", "must not be empty"),
        (_set("intents", {}), "intents", "must be a list of objects, got object"),
        (_set("intents", []), "intents", "must not be empty"),
        (_set_intent(0, "examples", []), "intents[0].examples", "must not be empty"),
        (_set_intent(0, "examples", "ping"), "intents[0].examples", "must be a list"),
        (_set_intent(0, "examples", ["ok", None]), "intents[0].examples[1]", "got null"),
        (_set_intent(0, "examples", ["ok", "?!"]), "intents[0].examples[1]", "letter or digit"),
        (_set_intent(1, "name", "ping"), "intents[1].name", "duplicate intent name 'ping'"),
        (_set_intent(0, "name", "accept-human"), "intents[0].name", "reserved"),
        (_set_intent(0, "action", "escalate"), "intents[0].action", 'must be null or "handoff"'),
        (lambda d: d["intents"].append(["x"]), "intents[2]", "must be an object, got list"),
    ],
)
def test_invalid_file_names_the_problem(
    tmp_path: Path, mutate: Mutation, key: str, problem: str
) -> None:
    data = copy.deepcopy(MINIMAL)
    mutate(data)
    path = write_kb(tmp_path, data)

    with pytest.raises(KnowledgeBaseError) as info:
        load_knowledge_base(path)

    assert info.value.key == key
    assert info.value.source == str(path)
    assert problem in info.value.problem
    assert str(path) in str(info.value)
    assert key in str(info.value)


def test_top_level_must_be_an_object(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeBaseError, match="must be an object, got list"):
        load_knowledge_base(write_kb(tmp_path, [MINIMAL]))


def test_duplicate_json_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_text('{"bot_name": "A", "bot_name": "B"}', encoding="utf-8")

    with pytest.raises(KnowledgeBaseError) as info:
        load_knowledge_base(path)

    assert (info.value.key, info.value.problem) == ("bot_name", "duplicate key")


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"bot_name": ', encoding="utf-8")

    with pytest.raises(KnowledgeBaseError, match=r"broken\.json: not valid JSON"):
        load_knowledge_base(path)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.json"

    with pytest.raises(KnowledgeBaseError, match=r"nowhere\.json: cannot read file"):
        load_knowledge_base(path)


def test_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="<memory>"):
        parse_knowledge_base("null")
