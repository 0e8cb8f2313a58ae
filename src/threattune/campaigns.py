"""Campaigns: the same lure sent again, grouped so that no campaign spans train and test.

Phishing arrives in campaigns: one template sent thousands of times with a new link, amount or
recipient name. A random split puts copies of one campaign on both sides and measures memory,
not detection. Here two messages belong to one campaign when

* their normalised text is identical (an exact duplicate), or
* the Jaccard similarity of their sets of word 5-shingles is at least ``threshold`` (0.8 by
  default). Candidate pairs come from 128 MinHash values cut into 16 bands of 8 rows
  (locality-sensitive hashing: a pair at Jaccard 0.8 shares a band with probability 0.95, a
  pair at 0.5 with probability 0.06), and each candidate's exact Jaccard is then computed.

Normalisation lower-cases, replaces URLs, e-mail addresses and digit runs by placeholders and
keeps word characters only, so a template re-sent with a new tracking link or amount stays one
campaign. Campaigns are closed transitively with union-find: a chain of near-duplicates is one
campaign. :func:`grouped_split` then assigns whole campaigns to train, validation and test.

>>> campaigns = group_campaigns(["Verify your account now at http://a.example/1 " * 3,
...                              "verify your ACCOUNT now at http://b.example/2 " * 3,
...                              "Lunch on Friday?"])
>>> campaigns.ids.tolist()
[0, 0, 1]
>>> split = grouped_split(["phishing"] * 3, campaigns.ids, test_fraction=0.3, seed=0)
>>> split.spanning(campaigns.ids)
0
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "Campaigns",
    "Split",
    "campaign_stats",
    "group_campaigns",
    "grouped_split",
    "normalise_text",
    "split_stats",
]

logger = logging.getLogger(__name__)

_URL = re.compile(r"(?:(?:https?|ftp)://|www\.)\S+", re.IGNORECASE)
_EMAIL = re.compile(r"\S+@\S+")
_DIGITS = re.compile(r"\d+")
_WORD = re.compile(r"\w+")
_SHINGLE_PRIME = np.uint64(1099511628211)
_CHARS_PER_WORD = 16
_ESTIMATE_SLACK = 0.15


def normalise_text(text: str, max_words: int | None = None) -> str:
    """Text as campaigns compare it: lower case, placeholders for links, addresses and numbers.

    Only the first ``max_words`` words are kept when it is given.

    >>> normalise_text("Pay $1,250 to bob@evil.example via https://x.example/a?id=9 NOW!")
    'pay 0 0 to emailaddr via urllink now'
    """
    if max_words is not None:
        text = text[: max_words * _CHARS_PER_WORD]
    text = text.lower()
    if "://" in text or "www." in text:
        text = _URL.sub(" urllink ", text)
    if "@" in text:
        text = _EMAIL.sub(" emailaddr ", text)
    words = _WORD.findall(_DIGITS.sub("0", text))
    return " ".join(words if max_words is None else words[:max_words])


@dataclass
class Campaigns:
    """The campaign of every message and how the grouping went.

    ``ids`` numbers campaigns from 0 in order of their first message; ``exact`` the groups of
    identical normalised text the same way. ``stats`` holds counts and group sizes (see
    :func:`campaign_stats`), the candidate pairs checked, and the settings used.
    """

    ids: np.ndarray
    exact: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)

    def sizes(self) -> np.ndarray:
        """The number of messages in each campaign, by campaign id."""
        return np.bincount(self.ids)


@dataclass
class Split:
    """Positions of the messages in train, validation and test.

    ``stats`` gives, per split, the number of messages and campaigns and the count per label.
    """

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)

    def parts(self) -> dict[str, np.ndarray]:
        """The three position arrays by split name."""
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def spanning(self, groups: Sequence[Any] | np.ndarray) -> int:
        """How many groups have messages in more than one split; 0 for a grouped split."""
        groups = np.asarray(groups)
        seen: dict[Any, str] = {}
        spanning = set()
        for name, positions in self.parts().items():
            for group in np.unique(groups[positions]).tolist():
                if seen.setdefault(group, name) != name:
                    spanning.add(group)
        return len(spanning)


class _UnionFind:
    """Disjoint sets over message positions, with path halving and union by size."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, item: int) -> int:
        parent = self.parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    def union(self, left: int, right: int) -> bool:
        left, right = self.find(left), self.find(right)
        if left == right:
            return False
        if self.size[left] < self.size[right]:
            left, right = right, left
        self.parent[right] = left
        self.size[left] += self.size[right]
        return True

    def labels(self) -> np.ndarray:
        """Set ids numbered from 0 in order of each set's first member."""
        roots = np.fromiter((self.find(i) for i in range(len(self.parent))), np.int64)
        _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
        rank = np.empty(len(first), np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(first))
        return rank[inverse]


def group_campaigns(
    texts: Sequence[str],
    *,
    threshold: float = 0.8,
    shingle_words: int = 5,
    permutations: int = 128,
    bands: int = 16,
    max_words: int = 1000,
    seed: int = 0,
) -> Campaigns:
    """Group messages into campaigns of exact and near-duplicate text.

    Parameters
    ----------
    texts:
        The message texts (subject and body).
    threshold:
        The Jaccard similarity of word shingle sets at which two messages are one campaign.
    shingle_words:
        Words per shingle; messages shorter than this form one shingle of all their words.
    permutations, bands:
        MinHash values per message and LSH bands they are cut into (``permutations`` must be a
        multiple of ``bands``).
    max_words:
        Only the first this many words of a message are shingled, bounding the cost of very
        long messages.
    """
    if permutations % bands:
        raise ValueError("permutations must be a multiple of bands")
    started = time.perf_counter()
    normalised = [normalise_text(text, max_words) for text in texts]
    exact = _exact_groups(normalised)
    sets = _UnionFind(len(normalised))
    first_of: dict[int, int] = {}
    for position, group in enumerate(exact.tolist()):
        sets.union(first_of.setdefault(group, position), position)

    words, starts = _word_hashes(normalised)
    shingles, owner = _shingles(words, starts, shingle_words)
    signatures, usable = _minhash(shingles, owner, len(normalised), permutations, seed)
    shingle_sets = _ShingleSets(shingles, owner, len(normalised))
    checked, merged = _lsh_unions(signatures, usable, bands, threshold, sets, shingle_sets)

    ids = sets.labels()
    stats = campaign_stats(ids)
    stats.update(
        exact_duplicate_messages=int(len(exact) - len(np.unique(exact))),
        candidate_pairs=checked,
        near_duplicate_unions=merged,
        threshold=threshold,
        shingle_words=shingle_words,
        permutations=permutations,
        bands=bands,
        seconds=round(time.perf_counter() - started, 2),
    )
    logger.info(
        "%d messages in %d campaigns (%d exact duplicates, %d near-duplicate unions) in %.1f s",
        len(ids),
        stats["campaigns"],
        stats["exact_duplicate_messages"],
        merged,
        stats["seconds"],
    )
    return Campaigns(ids=ids, exact=exact, stats=stats)


def campaign_stats(ids: Sequence[int] | np.ndarray) -> dict[str, Any]:
    """Counts and size distribution of the campaigns in ``ids`` (one campaign id per message)."""
    ids = np.asarray(ids)
    if len(ids) == 0:
        return {"messages": 0, "campaigns": 0}
    _, sizes = np.unique(ids, return_counts=True)
    multi = sizes[sizes > 1]
    return {
        "messages": int(len(ids)),
        "campaigns": int(len(sizes)),
        "singletons": int((sizes == 1).sum()),
        "multi_message_campaigns": int(len(multi)),
        "messages_in_multi": int(multi.sum()),
        "largest": int(sizes.max()),
        "size_p50": float(np.percentile(sizes, 50)),
        "size_p99": float(np.percentile(sizes, 99)),
        "largest_10": sorted(sizes.tolist(), reverse=True)[:10],
    }


def grouped_split(
    labels: Sequence[Any] | np.ndarray,
    groups: Sequence[Any] | np.ndarray,
    test_fraction: float = 0.15,
    validation_fraction: float = 0.15,
    seed: int = 0,
) -> Split:
    """Split messages so that each group lies wholly in train, validation or test.

    Stratified by label as far as groups allow: each group counts under its most common label,
    groups are visited in a seeded random order, and each goes to the split furthest below its
    share of that label. Shares are met to within about one group's size.

    >>> split = grouped_split(["ham", "ham", "phishing", "phishing"], [0, 0, 1, 2], 0.5, 0.0)
    >>> len(split.train) + len(split.test), split.spanning([0, 0, 1, 2])
    (4, 0)
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    if len(labels) != len(groups):
        raise ValueError("labels and groups differ in length")
    if not (0 <= test_fraction < 1 and 0 <= validation_fraction < 1):
        raise ValueError("fractions must lie in [0, 1)")
    if test_fraction + validation_fraction >= 1:
        raise ValueError("test and validation fractions leave nothing to train on")

    group_codes = np.unique(groups, return_inverse=True)[1]
    label_names, label_codes = np.unique(labels, return_inverse=True)
    counts = np.zeros((group_codes.max() + 1 if len(groups) else 0, len(label_names)), np.int64)
    np.add.at(counts, (group_codes, label_codes), 1)
    major, sizes = counts.argmax(axis=1), counts.sum(axis=1)

    shares = np.array([1 - test_fraction - validation_fraction, validation_fraction, test_fraction])
    totals = np.bincount(major, weights=sizes, minlength=len(label_names))
    target = totals[:, None] * shares[None, :]
    filled = np.zeros_like(target)
    where = np.empty(len(sizes), np.int64)
    for group in np.random.default_rng(seed).permutation(len(sizes)).tolist():
        label = major[group]
        deficit = np.where(shares > 0, target[label] - filled[label], -np.inf)
        where[group] = int(np.argmax(deficit))
        filled[label, where[group]] += sizes[group]

    assigned = where[group_codes]
    parts = [np.flatnonzero(assigned == index) for index in range(3)]
    split = Split(*parts)
    split.stats = split_stats(split, labels, groups)
    return split


def split_stats(
    split: Split, labels: Sequence[Any] | np.ndarray, groups: Sequence[Any] | np.ndarray
) -> dict[str, Any]:
    """Messages, campaigns and messages per label in each part of ``split``."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    stats: dict[str, Any] = {}
    for name, positions in split.parts().items():
        names, counts = np.unique(labels[positions], return_counts=True)
        stats[name] = {
            "messages": int(len(positions)),
            "campaigns": int(len(np.unique(groups[positions]))),
            "labels": {str(k): int(v) for k, v in zip(names, counts, strict=True)},
        }
    return stats


def _exact_groups(normalised: list[str]) -> np.ndarray:
    digests = [hashlib.blake2b(text.encode(), digest_size=8).digest() for text in normalised]
    keys = np.frombuffer(b"".join(digests), dtype=np.uint64)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def _word_hashes(normalised: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A stable 64-bit hash per word, all messages end to end, and where each message starts."""
    lengths = np.fromiter((text.count(" ") + 1 if text else 0 for text in normalised), np.int64)
    words = " ".join(text for text in normalised if text).split(" ") if lengths.any() else []
    codes, vocabulary = pd.factorize(np.asarray(words, dtype=object))
    digests = b"".join(
        hashlib.blake2b(word.encode(), digest_size=8).digest() for word in vocabulary
    )
    table = np.frombuffer(digests, dtype=np.uint64)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    return table[codes], starts


def _shingles(words: np.ndarray, starts: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every ``size``-word shingle and the message each belongs to."""
    lengths = np.diff(starts)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    hashes = words.copy()
    span = np.ones(len(words), np.int64)
    with np.errstate(over="ignore"):
        for offset in range(1, size):
            shifted = np.zeros_like(words)
            shifted[:-offset] = words[offset:]
            ends_in_message = np.zeros(len(words), bool)
            ends_in_message[:-offset] = owner[offset:] == owner[:-offset]
            hashes = np.where(ends_in_message, hashes * _SHINGLE_PRIME + shifted, hashes)
            span += ends_in_message
    position = np.arange(len(words)) - starts[owner]
    full = span == size
    short = (lengths[owner] < size) & (position == 0)
    keep = full | short
    return hashes[keep], owner[keep]


def _minhash(
    shingles: np.ndarray, owner: np.ndarray, messages: int, permutations: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures (messages x permutations) and which messages have any shingle."""
    signatures = np.full((messages, permutations), np.iinfo(np.uint64).max, np.uint64)
    usable = np.bincount(owner, minlength=messages) > 0
    if len(shingles) == 0:
        return signatures, usable

    segment_starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    rng = np.random.default_rng(seed)
    salts = rng.integers(0, 2**63, size=permutations, dtype=np.uint64)
    multipliers = rng.integers(0, 2**63, size=permutations, dtype=np.uint64) * 2 + 1
    with np.errstate(over="ignore"):
        for index in range(permutations):
            values = (shingles ^ salts[index]) * multipliers[index]
            values ^= values >> np.uint64(31)
            signatures[usable, index] = np.minimum.reduceat(values, segment_starts)
    return signatures, usable


class _ShingleSets:
    """Each message's distinct shingles, sorted, for exact Jaccard similarity of a pair."""

    def __init__(self, shingles: np.ndarray, owner: np.ndarray, messages: int) -> None:
        order = np.lexsort((shingles, owner))
        shingles, owner = shingles[order], owner[order]
        distinct = np.r_[True, (shingles[1:] != shingles[:-1]) | (owner[1:] != owner[:-1])]
        self.values = shingles[distinct]
        counts = np.bincount(owner[distinct], minlength=messages)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])

    def jaccard(self, left: int, right: int) -> float:
        a = self.values[self.offsets[left] : self.offsets[left + 1]]
        b = self.values[self.offsets[right] : self.offsets[right + 1]]
        shared = len(np.intersect1d(a, b, assume_unique=True))
        return shared / (len(a) + len(b) - shared)


def _lsh_unions(
    signatures: np.ndarray,
    usable: np.ndarray,
    bands: int,
    threshold: float,
    sets: _UnionFind,
    shingle_sets: _ShingleSets,
) -> tuple[int, int]:
    """Join messages that share a band and whose shingle sets reach ``threshold`` Jaccard.

    Each bucket's members are paired with its first member and with their neighbour in the
    bucket, which keeps the work linear in the bucket size; union-find closes the rest. Pairs
    whose signatures agree far below the threshold, or already joined, are not checked.
    """
    positions = np.flatnonzero(usable)
    rows = signatures.shape[1] // bands
    checked = merged = 0
    for band in range(bands):
        keys = np.zeros(len(positions), np.uint64)
        with np.errstate(over="ignore"):
            for column in range(band * rows, (band + 1) * rows):
                keys = (keys ^ signatures[positions, column]) * _SHINGLE_PRIME
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        new_bucket = np.r_[True, ordered[1:] != ordered[:-1]]
        heads = order[np.maximum.accumulate(np.where(new_bucket, np.arange(len(order)), 0))]
        member = np.flatnonzero(~new_bucket)
        left = positions[np.concatenate([heads[member], order[member - 1]])]
        right = positions[np.concatenate([order[member], order[member]])]
        if len(left) == 0:
            continue
        agreement = (signatures[left] == signatures[right]).mean(axis=1)
        plausible = agreement >= threshold - _ESTIMATE_SLACK
        for a, b in zip(left[plausible].tolist(), right[plausible].tolist(), strict=True):
            if a == b or sets.find(a) == sets.find(b):
                continue
            checked += 1
            if shingle_sets.jaccard(a, b) >= threshold:
                merged += sets.union(a, b)
    return checked, merged
