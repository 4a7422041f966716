"""Plain text rules of the offline provider: words, stems, sentences, a token estimate and
a small hashed bag-of-words embedding.

The rules are pure functions of their text, and a provider sees the same documents and
snippets in call after call, so stems and embeddings are kept (bounded LRU caches): a
re-ranked corpus costs its query, not its documents.

Nothing here understands language. Words are lowercased runs of letters and digits; a
stem drops a few English endings (``charged`` -> ``charg``, ``refunds`` -> ``refund``);
the embedding hashes each stem (BLAKE2b, so it is the same in every process) into one of
:data:`DIMENSIONS` signed buckets and normalises the vector, so the cosine of two texts
grows with the stems they share.

Example:
    >>> round(similarity("I was charged twice", "refund a double charge"), 2) > 0
    True
    >>> estimate_tokens("four words right here")
    6
"""

from __future__ import annotations

import functools
import hashlib
import math
import operator
import re
from collections.abc import Iterable
from typing import Final

DIMENSIONS: Final = 256
"""Length of an embedding vector."""

TOKENS_PER_WORD: Final = 4 / 3
"""The token estimate: about 0.75 English words per token, rounded up."""

_STOPWORDS = """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves please thanks thank hi hello dear get got also may might must shall us let"""
STOPWORDS: Final = frozenset(_STOPWORDS.split())
"""Words that carry no content for the rules (English function words and greetings)."""

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_ENDINGS: Final = ("ing", "ed", "es", "s", "ly", "e")


def words(text: str) -> list[str]:
    """Lowercased words, in order (apostrophes kept inside a word)."""
    return _WORD.findall(text.lower())


@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """``word`` without one common English ending, if enough is left (at least 3 letters)."""
    for ending in _ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            if ending == "s" and word.endswith("ss"):
                return word
            return word[: -len(ending)]
    return word


def content_stems(text: str, *, drop: Iterable[str] = ()) -> list[str]:
    """Stems of the words that carry content (stopwords and ``drop`` left out), in order."""
    if not drop:
        return list(_content_stems(text))
    skip = STOPWORDS.union(drop)
    return [stem(w) for w in words(text) if w not in skip and len(w) > 1]


@functools.lru_cache(maxsize=4096)
def _content_stems(text: str) -> tuple[str, ...]:
    return tuple(stem(w) for w in words(text) if w not in STOPWORDS and len(w) > 1)


def sentences(text: str) -> list[str]:
    """Sentences: split after ``.``, ``!`` or ``?`` followed by a capital or a digit, and
    at line breaks."""
    out: list[str] = []
    for line in text.splitlines():
        out.extend(part.strip() for part in _SENTENCE.split(line.strip()) if part.strip())
    return out


def estimate_tokens(text: str) -> int:
    """Tokens of ``text`` by the documented approximation: words x 4/3, rounded up."""
    return math.ceil(len(text.split()) * TOKENS_PER_WORD)


def embed(text: str) -> list[float]:
    """The hashed bag-of-words vector of ``text`` (unit length; all zeros for no content)."""
    return list(_embedding(text))


@functools.lru_cache(maxsize=4096)
def _embedding(text: str) -> tuple[float, ...]:
    vector = [0.0] * DIMENSIONS
    for item in _content_stems(text):
        bucket, sign = _bucket(item)
        vector[bucket] += sign
    norm = math.sqrt(sum(v * v for v in vector))
    return tuple(v / norm for v in vector) if norm else tuple(vector)


@functools.lru_cache(maxsize=65536)
def _bucket(item: str) -> tuple[int, float]:
    """A stem's bucket and sign, from its BLAKE2b digest (the same in every process)."""
    digest = hashlib.blake2b(item.encode(), digest_size=8).digest()
    return int.from_bytes(digest[:4], "big") % DIMENSIONS, 1.0 if digest[4] & 1 else -1.0


@functools.lru_cache(maxsize=4096)
def _nonzero(text: str) -> dict[int, float]:
    """The embedding's buckets that are not zero (a text has a few stems, the vector
    :data:`DIMENSIONS` buckets)."""
    return {bucket: v for bucket, v in enumerate(_embedding(text)) if v}


def cosine(a: list[float], b: list[float]) -> float:
    """The cosine of two unit vectors (0 when either is all zeros)."""
    if len(a) != len(b):
        raise ValueError(f"vectors of {len(a)} and {len(b)} dimensions")
    total: float = sum(map(operator.mul, a, b))
    return total


def similarity(a: str, b: str) -> float:
    """How much two texts share, by the cosine of their embeddings (-1 to 1, 0 = nothing).

    The same float as :func:`cosine` of the two :func:`embed` vectors: the same products,
    added in the same order, without the buckets where either is zero (adding a zero
    product changes no sum)."""
    x, y = _nonzero(a), _nonzero(b)
    return sum((x[bucket] * y[bucket] for bucket in sorted(x.keys() & y.keys())), 0.0)
