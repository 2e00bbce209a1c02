"""The knowledge-base evaluation: both shipped knowledge bases meet the bounds on their labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rapidfuzz.utils import default_process

from socketsvc.bots import evaluation
from socketsvc.bots.base import BotContext
from socketsvc.bots.kb_bot import KnowledgeBaseBot
from socketsvc.bots.knowledge import KnowledgeBaseError, load_default_knowledge_base
from socketsvc.cli import main

QUOTED = ["Is my payment data secure?", "How do I change my email address?"]
"""The two questions issue 18 quotes: the default KB answered them with confidence."""


@pytest.mark.parametrize("name", evaluation.PACKAGED_KBS)
def test_shipped_knowledge_base_meets_the_bounds(name: str) -> None:
    kb, labels = evaluation.load_packaged(name)

    ev = evaluation.evaluate(kb, labels)

    assert ev.questions >= 150
    assert ev.out_of_scope >= 40
    labelled = {q.intent for q in labels}
    assert {i.name for i in kb.intents} <= labelled, "every intent has paraphrases"
    assert ev.recall >= evaluation.MIN_RECALL, evaluation.mistakes(ev)
    assert ev.false_answer_rate <= evaluation.MAX_FALSE_ANSWER_RATE, evaluation.mistakes(ev)
    assert ev.meets_bounds


@pytest.mark.parametrize("name", evaluation.PACKAGED_KBS)
def test_labels_are_not_copies_of_examples(name: str) -> None:
    kb, labels = evaluation.load_packaged(name)
    examples = {default_process(e) for i in kb.intents for e in i.examples}

    assert [q.text for q in labels if default_process(q.text) in examples] == []


@pytest.mark.parametrize("text", QUOTED)
async def test_quoted_questions_fall_back_on_the_default_kb(text: str) -> None:
    kb = load_default_knowledge_base()
    reply = await KnowledgeBaseBot(kb).reply(BotContext("c", "V"), text)

    assert not reply.matched
    assert reply.text == kb.fallback


async def test_the_shop_kb_answers_them() -> None:
    kb, _ = evaluation.load_packaged(evaluation.SHOP_KB_RESOURCE)
    bot = KnowledgeBaseBot(kb)

    got = [(await bot.reply(BotContext("c", "V"), text)).intent for text in QUOTED]

    assert got == ["payment-security", "account-email"]


def test_figures_are_defined_as_documented() -> None:
    kb = load_default_knowledge_base()
    labels = [
        evaluation.Labelled("how do I run the tests", "tests"),  # right
        evaluation.Labelled("how do I run the tests", "scaling"),  # wrong intent
        evaluation.Labelled("qwzx plorf", "install-run"),  # missed
        evaluation.Labelled("how do I scale it", None),  # out of scope, answered
        evaluation.Labelled("qwzx plorf", None),  # out of scope, fell back
    ]

    ev = evaluation.evaluate(kb, labels)

    assert (ev.in_scope, ev.out_of_scope, ev.answered, ev.correct) == (3, 2, 3, 1)
    assert (ev.wrong_intent, ev.out_of_scope_answered, ev.false_answers) == (1, 1, 2)
    assert ev.recall == pytest.approx(1 / 3)
    assert ev.false_answer_rate == pytest.approx(2 / 3)
    assert evaluation.at_threshold(evaluation.outcomes(kb, labels), 101).answered == 0


def test_labels_name_only_known_intents(tmp_path: Path) -> None:
    kb = load_default_knowledge_base()
    bad = json.dumps({"questions": [{"text": "hello", "intent": "greting"}]})

    with pytest.raises(KnowledgeBaseError) as info:
        evaluation.parse_labels(bad, kb, source="l.json")

    assert info.value.key == "questions[0].intent"
    assert "'greting' is not an intent" in str(info.value)
    with pytest.raises(KnowledgeBaseError, match="must not be empty"):
        evaluation.parse_labels('{"questions": []}', kb)
    with pytest.raises(KnowledgeBaseError, match=r"questions\[0\]"):
        evaluation.parse_labels('{"questions": [{"text": "x"}]}', kb)


def test_kb_eval_prints_both_knowledge_bases(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb-eval"]) == 0

    out = capsys.readouterr().out
    assert out.count("\nrecall ") == 2 and out.count("\nfalse-answer rate ") == 2
    assert "default_kb.json" in out and "shop_kb.json" in out
    assert out.count("bounds             meets") == 2


def test_kb_eval_on_a_file_and_its_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kb_path = tmp_path / "mine.json"
    kb_path.write_text(
        json.dumps(
            {
                "bot_name": "T",
                "greeting": "g",
                "fallback": "f",
                "intents": [{"name": "ping", "examples": ["ping the server"], "answer": "pong"}],
            }
        ),
        encoding="utf-8",
    )
    labels = {
        "questions": [
            {"text": "please ping the server", "intent": "ping"},
            {"text": "where is my parcel", "intent": "ping"},
        ]
    }
    (tmp_path / "mine.labels.json").write_text(json.dumps(labels), encoding="utf-8")

    assert main(["kb-eval", "--kb", str(kb_path), "--sweep", "--mistakes"]) == 1

    out = capsys.readouterr().out
    assert "recall             50.0% (1/2" in out
    assert "FAILS" in out and "'where is my parcel'" in out
    assert "threshold  recall  false-answer rate" in out
    assert main(["kb-eval", "--kb", str(tmp_path / "nowhere.json")]) == 2
    assert "cannot read file" in capsys.readouterr().err


HOLDOUT = Path(__file__).parent / "holdout"


@pytest.mark.parametrize("name", evaluation.PACKAGED_KBS)
def test_held_out_sets_are_valid_and_printed(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The held-out sets (never tuned on; docs/bot-knowledge-base.md reports their figures)."""
    kb_path = Path(evaluation.__file__).parent / name
    labels = HOLDOUT / name.replace(".json", ".holdout.json")

    main(["kb-eval", "--kb", str(kb_path), "--labels", str(labels)])

    out = capsys.readouterr().out
    assert f"labelled set       {labels}" in out
    assert "questions          40 (25 in scope, 15 out of scope)" in out
