"""Ranking a visitor's text against a knowledge base's examples, with a confidence that knows
when the knowledge base does not cover the question (see docs/bot-knowledge-base.md).

Texts are split into words (`rapidfuzz.utils.default_process`: lower case, punctuation as
spaces), filler words dropped (`STOPWORDS`) and the rest stemmed (Snowball, English). A query
word the knowledge base does not know is mapped to the known word it is a typo of
(`rapidfuzz.fuzz.ratio` at `TYPO_CUTOFF` or more, same first letter: "knowlege" ->
"knowledge"; see `Ranker._typo`).

Examples are ranked with BM25 (`bm25s`, one document per example). The best example's
confidence (0..100) is how much of the question it explains: the share of the question's
word weight (BM25's idf; a word the knowledge base does not know weighs `UNKNOWN_WEIGHT` times
the rarest known word) that the example's intent knows, scaled by typo similarity, times the
share of the example's own weight that the question contains, raised to `EXAMPLE_WEIGHT`.
"Is my payment data secure?" against "is it secure" explains "secure" and "data" but not
"payment", which the knowledge base has never seen, so it stays under the threshold.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import bm25s
import snowballstemmer
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA
from rapidfuzz.utils import default_process

from .knowledge import Intent

TYPO_CUTOFF: Final = 75.0
"""Lowest `fuzz.ratio` between an unknown query word and a known word to take it as a typo."""
SHORT_TYPO_CUTOFF: Final = 80.0
"""The same for 4-letter words: a letter added or left out, not replaced."""
TYPO_MIN_LENGTH: Final = 4
"""Shorter unknown words are corrected only for swapped letters ("car" is not "cart")."""
EXAMPLE_WEIGHT: Final = 0.5
"""Exponent of the example-coverage factor: how much an example's unasked words lower the
confidence (0: not at all; 1: as much as unexplained question words)."""
UNKNOWN_WEIGHT: Final = 2.0
"""A word the knowledge base does not know weighs this much times the rarest known word."""
CANDIDATES: Final = 5
"""How many top BM25 examples are scored for confidence."""

_STOPWORD_TEXT: Final = """
a an and are as at be but by for if in into is it its of on or such that the their then there
these they this to was will with i me my mine myself we our ours you your yours he she him her
his them do does did doing done can could would should shall may might must have has had having
am been being how what when where which who whom whose why just so also about any some please get
got very really here now up out from than too let lets s t d ll m re ve exactly actually
basically anyway maybe thing things something anything way kind sort one ones hi hello hey ok
okay oh well
"""
STOPWORDS: Final = frozenset(_STOPWORD_TEXT.split())
"""Words that say nothing about a question's topic (question words, pronouns, auxiliaries,
fillers). Greetings are here too: "hi, how do I pay?" is about paying; a text made only of
such words is compared whole (see `Ranker.rank`)."""

_STOPWORDS: Final = sorted(STOPWORDS)
_STEMMER: Final = snowballstemmer.stemmer("english")


def words(text: str) -> list[str]:
    """The topic words of `text`: normalized, without `STOPWORDS` and numbers, not stemmed."""
    return [w for w in default_process(text).split() if w not in STOPWORDS and not w.isdigit()]


@functools.lru_cache(maxsize=8192)
def stem(word: str) -> str:
    """The Snowball (English) stem of one normalized word (cached: the stemmer is pure Python)."""
    result = _STEMMER.stemWord(word)
    return str(result)


@dataclass(frozen=True)
class Candidate:
    """An intent's best example for a text, its BM25 score and its confidence (0..100)."""

    intent: Intent
    example: str
    bm25: float
    confidence: float


class Ranker:
    """BM25 over every example of the intents, with typo correction and a confidence."""

    def __init__(self, intents: Sequence[Intent]) -> None:
        self._owners: list[Intent] = []
        self._examples: list[str] = []
        docs: list[list[str]] = []
        for intent in intents:
            for example in intent.examples:
                self._owners.append(intent)
                self._examples.append(example)
                docs.append([stem(w) for w in words(example)])
        self._docs = [frozenset(d) for d in docs]
        df: dict[str, int] = {}
        for doc in self._docs:
            for term in doc:
                df[term] = df.get(term, 0) + 1
        n = len(docs)
        self._idf = {t: _idf(n, c) for t, c in df.items()}
        self._unknown_idf = _idf(n, 0) * UNKNOWN_WEIGHT
        self._intent_terms: dict[str, frozenset[str]] = {}
        for owner, doc in zip(self._owners, self._docs, strict=True):
            self._intent_terms[owner.name] = self._intent_terms.get(owner.name, frozenset()) | doc
        self._surface: dict[str, str] = {}
        for example in self._examples:
            for w in words(example):
                self._surface.setdefault(w, stem(w))
        self._surface_list = sorted(self._surface)
        self._by_length: dict[int, list[str]] = {}
        self._by_initial: dict[str, list[str]] = {}
        for w in (*_STOPWORDS, *self._surface_list):
            self._by_length.setdefault(len(w), []).append(w)
        for w in self._surface_list:
            self._by_initial.setdefault(w[0], []).append(w)
        self._normalized = [default_process(e) for e in self._examples]
        self._bm25 = bm25s.BM25()
        # An empty document keeps bm25s happy for examples made only of stopwords ("hi there").
        self._bm25.index([d or [""] for d in docs], show_progress=False)
        self._vocab = set(df)

    def query_terms(self, text: str) -> list[tuple[str | None, float]]:
        """Each topic word of `text` as (known stem or None, similarity 0..1).

        An unknown word becomes the known word it is a typo of (`fuzz.ratio` >= `TYPO_CUTOFF`,
        or two letters swapped in a 3-letter word), or two known words it glues together
        ("testsuite"); a typo of a stopword ("waht") is dropped.
        """
        terms: list[tuple[str | None, float]] = []
        for w in words(text):
            s = stem(w)
            if s in self._vocab:
                terms.append((s, 1.0))
                continue
            fixed = self._typo(w)
            if fixed is None:
                terms.extend(self._split(w))
            elif fixed[0] not in STOPWORDS:
                terms.append((self._surface[fixed[0]], fixed[1]))
        return terms

    def _typo(self, word: str) -> tuple[str, float] | None:
        """The known or filler word `word` is a typo of, with `fuzz.ratio` / 100, or None.

        Two swapped letters count at any length. Otherwise the word must have 4 letters or more;
        a known word must start with the same letter (typos rarely hit the first one: "down" is
        not "own") and reach `TYPO_CUTOFF` (`SHORT_TYPO_CUTOFF` for 4 letters: a letter added or
        left out, not replaced: "plus" is not "plug"); a filler word (which drops the word)
        only `TYPO_CUTOFF`. A tie goes to the filler word.
        """
        if len(word) < 3:
            return None
        for known in self._by_length.get(len(word), ()):
            if sorted(known) == sorted(word) and OSA.distance(known, word) == 1:
                return known, fuzz.ratio(known, word) / 100.0
        if len(word) < TYPO_MIN_LENGTH:
            return None
        cutoff = SHORT_TYPO_CUTOFF if len(word) == TYPO_MIN_LENGTH else TYPO_CUTOFF
        near = process.extractOne(
            word, self._by_initial.get(word[0], ()), scorer=fuzz.ratio, score_cutoff=cutoff
        )
        filler = process.extractOne(word, _STOPWORDS, scorer=fuzz.ratio, score_cutoff=TYPO_CUTOFF)
        if filler is not None and (near is None or filler[1] >= near[1]):
            return filler[0], filler[1] / 100.0
        return None if near is None else (near[0], near[1] / 100.0)

    def _split(self, word: str) -> list[tuple[str | None, float]]:
        for i in range(TYPO_MIN_LENGTH - 1, len(word) - TYPO_MIN_LENGTH + 2):
            head, tail = word[:i], word[i:]
            if head in self._surface and tail in self._surface:
                return [(self._surface[head], 1.0), (self._surface[tail], 1.0)]
        return [(None, 0.0)]

    def rank(self, text: str) -> list[Candidate]:
        """The best example of each of the top intents for `text`, best first.

        A text without topic words ("hi there", "what can you do") is compared whole with
        every example by `fuzz.ratio`, which is then its confidence.
        """
        terms = self.query_terms(text)
        known = [t for t, _ in terms if t is not None]
        if not terms:
            return self._whole(text)
        if not known:
            return []
        scores = self._bm25.get_scores(known)
        order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
        best: dict[str, Candidate] = {}
        for index in order:
            if float(scores[index]) <= 0 or len(best) >= CANDIDATES:
                break
            owner = self._owners[index]
            if owner.name in best:
                continue
            best[owner.name] = Candidate(
                intent=owner,
                example=self._examples[index],
                bm25=float(scores[index]),
                confidence=self._confidence(terms, owner.name, self._docs[index]),
            )
        return sorted(best.values(), key=lambda c: (-c.confidence, -c.bm25))

    def _whole(self, text: str) -> list[Candidate]:
        query = default_process(text)
        if not query:
            return []
        found = process.extract(
            query, self._normalized, scorer=fuzz.ratio, processor=None, limit=CANDIDATES
        )
        best: dict[str, Candidate] = {}
        for _, score, index in found:
            owner = self._owners[index]
            best.setdefault(owner.name, Candidate(owner, self._examples[index], 0.0, score))
        return list(best.values())

    def _confidence(
        self, terms: Iterable[tuple[str | None, float]], intent: str, doc: frozenset[str]
    ) -> float:
        vocabulary = self._intent_terms[intent]
        asked = explained = 0.0
        hit: set[str] = set()
        for term, similarity in terms:
            weight = self._unknown_idf if term is None else self._idf[term]
            asked += weight
            if term is not None and term in vocabulary:
                explained += weight * similarity
                hit.add(term)
        own = sum(self._idf[t] for t in doc)
        covered = sum(self._idf[t] for t in doc & hit)
        example_share = covered / own if own else 0.0
        return 100.0 * (explained / asked) * math.pow(example_share, EXAMPLE_WEIGHT)


def _idf(documents: int, frequency: int) -> float:
    """BM25's (Lucene) idf of a term found in `frequency` of `documents` documents."""
    return float(math.log(1 + (documents - frequency + 0.5) / (frequency + 0.5)))
