"""Measuring a knowledge base on a labelled set of questions (`socketsvc kb-eval`).

A labelled set is a JSON file beside its knowledge base (`default_kb.json` ->
`default_kb.labels.json`): `{"knowledge_base": "default_kb.json", "questions": [{"text":
"...", "intent": "tests"}, {"text": "...", "intent": "none"}]}`. `intent` is the intent the
question should be answered with, or `"none"` when the knowledge base does not cover it and
the bot must fall back. docs/bot-knowledge-base.md defines the figures.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Final

from .kb_bot import KnowledgeBaseBot
from .knowledge import (
    DEFAULT_KB_RESOURCE,
    KnowledgeBase,
    KnowledgeBaseError,
    load_knowledge_base,
    parse_knowledge_base,
)

_PACKAGE: Final = "socketsvc.bots"
SHOP_KB_RESOURCE: Final = "shop_kb.json"
PACKAGED_KBS: Final = (DEFAULT_KB_RESOURCE, SHOP_KB_RESOURCE)
"""The knowledge bases shipped in `socketsvc.bots`, each with its labelled set."""
NONE: Final = "none"
"""The label of a question the knowledge base does not cover."""
MIN_RECALL: Final = 0.80
MAX_FALSE_ANSWER_RATE: Final = 0.05
"""The bounds every shipped knowledge base must meet on its labelled set."""


@dataclass(frozen=True)
class Labelled:
    """One question and the intent it should get (None: the bot must fall back)."""

    text: str
    intent: str | None


@dataclass(frozen=True)
class Outcome:
    """What the bot made of one labelled question."""

    question: Labelled
    intent: str | None
    """The intent answered, None for a fallback."""
    confidence: float
    """The best intent's confidence, answered or not."""
    best: str | None
    """The best intent whatever its confidence."""


@dataclass(frozen=True)
class Evaluation:
    """The figures of one knowledge base on its labelled set at one threshold."""

    threshold: float
    outcomes: tuple[Outcome, ...]

    @property
    def questions(self) -> int:
        return len(self.outcomes)

    @property
    def in_scope(self) -> int:
        return sum(o.question.intent is not None for o in self.outcomes)

    @property
    def out_of_scope(self) -> int:
        return self.questions - self.in_scope

    @property
    def answered(self) -> int:
        return sum(o.intent is not None for o in self.outcomes)

    @property
    def correct(self) -> int:
        """In-scope questions answered with their labelled intent."""
        return sum(o.intent is not None and o.intent == o.question.intent for o in self.outcomes)

    @property
    def wrong_intent(self) -> int:
        """In-scope questions answered with another intent."""
        return sum(
            o.intent is not None and o.question.intent not in (None, o.intent)
            for o in self.outcomes
        )

    @property
    def out_of_scope_answered(self) -> int:
        """Out-of-scope questions answered (they should have fallen back)."""
        return sum(o.intent is not None and o.question.intent is None for o in self.outcomes)

    @property
    def false_answers(self) -> int:
        return self.wrong_intent + self.out_of_scope_answered

    @property
    def recall(self) -> float:
        """correct / in-scope questions."""
        return self.correct / self.in_scope if self.in_scope else 0.0

    @property
    def false_answer_rate(self) -> float:
        """false answers / answers given (0 when nothing was answered)."""
        return self.false_answers / self.answered if self.answered else 0.0

    @property
    def meets_bounds(self) -> bool:
        return self.recall >= MIN_RECALL and self.false_answer_rate <= MAX_FALSE_ANSWER_RATE


def labels_path_for(kb_path: str) -> str:
    """`x/kb.json` -> `x/kb.labels.json`: where a knowledge base's labelled set lives."""
    root, ext = os.path.splitext(kb_path)
    return f"{root}.labels{ext or '.json'}"


def parse_labels(text: str, kb: KnowledgeBase, *, source: str = "<memory>") -> list[Labelled]:
    """Validate a labelled set against `kb`: every label is one of its intents or "none"."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KnowledgeBaseError(source, "", f"not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise KnowledgeBaseError(source, "questions", "must be a list of objects")
    names = {intent.name for intent in kb.intents}
    labelled: list[Labelled] = []
    for i, item in enumerate(data["questions"]):
        key = f"questions[{i}]"
        if not isinstance(item, dict) or set(item) != {"text", "intent"}:
            raise KnowledgeBaseError(source, key, 'must be {"text": ..., "intent": ...}')
        text_, intent = item["text"], item["intent"]
        if not isinstance(text_, str) or not text_.strip():
            raise KnowledgeBaseError(source, f"{key}.text", "must be a non-empty string")
        if intent != NONE and intent not in names:
            raise KnowledgeBaseError(
                source, f"{key}.intent", f"{intent!r} is not an intent of {kb.source} nor 'none'"
            )
        labelled.append(Labelled(text_, None if intent == NONE else intent))
    if not labelled:
        raise KnowledgeBaseError(source, "questions", "must not be empty")
    return labelled


def load_labels(path: str, kb: KnowledgeBase) -> list[Labelled]:
    """Read and validate the labelled set at `path` for `kb`."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise KnowledgeBaseError(path, "", f"cannot read file ({exc.strerror or exc})") from exc
    return parse_labels(text, kb, source=path)


def load_packaged(name: str) -> tuple[KnowledgeBase, list[Labelled]]:
    """A knowledge base shipped in `socketsvc.bots` and its labelled set."""
    folder = resources.files(_PACKAGE)
    kb = parse_knowledge_base(folder.joinpath(name).read_text("utf-8"), source=f"{_PACKAGE}/{name}")
    labels_name = os.path.basename(labels_path_for(name))
    labels = parse_labels(
        folder.joinpath(labels_name).read_text("utf-8"), kb, source=f"{_PACKAGE}/{labels_name}"
    )
    return kb, labels


def load_pair(kb_path: str, labels_path: str | None = None) -> tuple[KnowledgeBase, list[Labelled]]:
    """The knowledge base at `kb_path` and its labelled set (beside it unless given)."""
    kb = load_knowledge_base(kb_path)
    return kb, load_labels(labels_path or labels_path_for(kb_path), kb)


def outcomes(kb: KnowledgeBase, labels: Iterable[Labelled]) -> list[Outcome]:
    """Ask the bot every question once; the threshold is applied by `evaluate`."""
    bot = KnowledgeBaseBot(kb)
    result: list[Outcome] = []
    for question in labels:
        best = bot.best(question.text)
        result.append(
            Outcome(
                question=question,
                intent=None,
                confidence=0.0 if best is None else best.score,
                best=None if best is None else best.intent.name,
            )
        )
    return result


def evaluate(
    kb: KnowledgeBase, labels: Iterable[Labelled], threshold: float | None = None
) -> Evaluation:
    """The figures at `threshold` (the knowledge base's own when None)."""
    return at_threshold(outcomes(kb, labels), kb.threshold if threshold is None else threshold)


def at_threshold(raw: Sequence[Outcome], threshold: float) -> Evaluation:
    """Apply `threshold` to outcomes computed once by `outcomes`."""
    return Evaluation(
        threshold=threshold,
        outcomes=tuple(
            Outcome(o.question, o.best if o.confidence >= threshold else None, o.confidence, o.best)
            for o in raw
        ),
    )


def sweep(
    raw: Sequence[Outcome], thresholds: Iterable[float] = range(0, 101, 2)
) -> list[Evaluation]:
    """The figures at each threshold, to calibrate one."""
    return [at_threshold(raw, t) for t in thresholds]


def report(kb: KnowledgeBase, labels_source: str, ev: Evaluation) -> str:
    """The lines `socketsvc kb-eval` prints for one knowledge base."""
    verdict = "meets" if ev.meets_bounds else "FAILS"
    return "\n".join(
        [
            f"knowledge base     {kb.source}",
            f"labelled set       {labels_source}",
            f"questions          {ev.questions} ({ev.in_scope} in scope, "
            f"{ev.out_of_scope} out of scope)",
            f"threshold          {ev.threshold:g}",
            f"answered           {ev.answered}",
            f"recall             {ev.recall:.1%} ({ev.correct}/{ev.in_scope} in-scope questions "
            "answered with their intent)",
            f"false-answer rate  {ev.false_answer_rate:.1%} ({ev.false_answers}/{ev.answered} "
            f"answers: {ev.out_of_scope_answered} out of scope, {ev.wrong_intent} wrong intent)",
            f"bounds             {verdict} recall >= {MIN_RECALL:.0%}, "
            f"false-answer rate <= {MAX_FALSE_ANSWER_RATE:.0%}",
        ]
    )


def mistakes(ev: Evaluation) -> list[str]:
    """One line per question the bot got wrong (missed or falsely answered)."""
    lines = []
    for o in ev.outcomes:
        want = o.question.intent or NONE
        got = o.intent or NONE
        if want != got:
            lines.append(
                f"  {want:>22} -> {got:<22} {o.confidence:5.1f} (best {o.best or NONE}) "
                f"{o.question.text!r}"
            )
    return lines
