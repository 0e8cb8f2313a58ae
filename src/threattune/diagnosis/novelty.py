"""Novelty: segment rows unlike any training row of the class the model gives them.

A model can only be trusted on traffic that resembles what it learnt from. The novelty score of
a row is its distance to its ``k``-th nearest reference row *of the class the model predicts for
it*, in a feature space where every feature weighs about the same. A high score says "the model
calls this benign (or DoS), but no benign (or DoS) flow in training looked like it": a candidate
for a new attack, a mislabelled flow or a broken pipeline, which an analyst should look at.

The threshold is the 95th percentile of the reference rows' own (leave-one-out) scores, so about
5 % of training-like traffic is flagged by chance; a segment flagging far more has changed.

The detector works on matrices: :class:`TabularSpace` turns flow features into one, and any other
space (text embeddings, say) can feed :class:`NoveltyDetector` the same way.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> reference = pd.DataFrame({"bytes": rng.lognormal(5, 1, 2000), "proto": ["tcp"] * 2000})
>>> space = TabularSpace.fit(reference, categorical=["proto"])
>>> detector = NoveltyDetector.fit(space.transform(reference), np.zeros(2000, int))
>>> far = pd.DataFrame({"bytes": [1e9], "proto": ["tcp"]})
>>> bool(detector.flag(space.transform(far), np.zeros(1, int))[0])
True
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from threattune.diagnosis.profile import category_labels, numeric_values
from threattune.errors import DataError
from threattune.findings import Finding, Severity

__all__ = [
    "FALSE_POSITIVE_RATE",
    "NoveltyDetector",
    "NoveltyResult",
    "TabularSpace",
    "novelty_findings",
]

logger = logging.getLogger(__name__)

FALSE_POSITIVE_RATE = 0.05
"""Share of reference rows above the novelty threshold: the chance flag rate."""

_MAX_CATEGORIES = 30
_CLIP = 50.0
_MIN_CLASS_ROWS = 20


@dataclass(frozen=True)
class TabularSpace:
    """Flow features as a matrix where each feature counts about equally.

    Numeric features are log-compressed (``sign(x) * log1p(|x|)``, since byte counts and
    durations span many orders of magnitude), then centred on the reference median and scaled by
    the reference spread. Categorical features become one-hot columns of their most frequent
    reference categories, scaled so that two different categories are one unit apart.
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    centre: np.ndarray
    scale: np.ndarray
    vocabularies: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def fit(cls, reference: pd.DataFrame, categorical: Sequence[str]) -> TabularSpace:
        """Learn centres, spreads and vocabularies from reference rows."""
        categorical = tuple(c for c in reference.columns if c in set(categorical))
        numeric = tuple(c for c in reference.columns if c not in set(categorical))
        compressed = _compress(reference, numeric)
        centre = np.nanmedian(compressed, axis=0) if numeric else np.zeros(0)
        q25, q75 = np.nanpercentile(compressed, [25, 75], axis=0) if numeric else (np.zeros(0),) * 2
        scale = (q75 - q25) / 1.349
        spread = np.nanstd(compressed, axis=0) if numeric else np.zeros(0)
        scale = np.where(scale > 1e-9, scale, np.where(spread > 1e-9, spread, 1.0))
        centre = np.nan_to_num(centre)
        vocabularies = {}
        for name in categorical:
            counts = pd.Series(category_labels(reference[name])).value_counts()
            vocabularies[name] = tuple(counts.index[:_MAX_CATEGORIES].astype(str))
        return cls(numeric, categorical, centre, scale, vocabularies)

    @property
    def width(self) -> int:
        """Columns of the matrix."""
        return len(self.numeric) + sum(len(v) for v in self.vocabularies.values())

    def transform(self, rows: pd.DataFrame) -> np.ndarray:
        """The float32 matrix of ``rows``; a missing value sits at the reference centre."""
        parts = []
        if self.numeric:
            scaled = (_compress(rows, self.numeric) - self.centre) / self.scale
            parts.append(np.clip(np.nan_to_num(scaled, nan=0.0), -_CLIP, _CLIP))
        for name in self.categorical:
            labels = category_labels(rows[name])
            vocabulary = self.vocabularies[name]
            onehot = np.zeros((len(rows), len(vocabulary)), dtype=np.float64)
            codes = pd.Categorical(labels, categories=vocabulary).codes
            known = codes >= 0
            onehot[np.flatnonzero(known), codes[known]] = np.sqrt(0.5)
            parts.append(onehot)
        if not parts:
            raise DataError("no features to place rows in", expected="at least one feature")
        return np.hstack(parts).astype(np.float32)


def _compress(rows: pd.DataFrame, numeric: Sequence[str]) -> np.ndarray:
    matrix = np.column_stack(
        [numeric_values(rows[name], name=name, errors="coerce") for name in numeric]
    )
    matrix[~np.isfinite(matrix)] = np.nan
    return np.sign(matrix) * np.log1p(np.abs(matrix))


@dataclass(eq=False)
class NoveltyDetector:
    """Per-class ``k``-th nearest-neighbour distance to reference rows, with a 5 % threshold.

    Classes with fewer than 20 reference rows share the pooled neighbours of all reference rows.
    """

    k: int
    thresholds: dict[int, float]
    pooled_threshold: float
    reference_scores: np.ndarray
    _indexes: dict[int, NearestNeighbors] = field(default_factory=dict, repr=False)
    _pooled: NearestNeighbors | None = field(default=None, repr=False)

    @classmethod
    def fit(
        cls,
        reference: np.ndarray,
        classes: np.ndarray,
        *,
        k: int = 5,
        false_positive_rate: float = FALSE_POSITIVE_RATE,
    ) -> NoveltyDetector:
        """Index the reference rows by class and set each class's threshold.

        ``classes`` are the class codes the model gives the reference rows. Each reference row
        is scored against the others (leave one out) and the threshold is the
        ``1 - false_positive_rate`` quantile of those scores.
        """
        reference = np.asarray(reference, dtype=np.float32)
        classes = np.asarray(classes)
        if len(reference) <= k:
            raise DataError(
                "too few reference rows for a novelty score",
                expected=f"more than {k} rows",
                found=str(len(reference)),
            )

        pooled = NearestNeighbors(n_neighbors=k + 1).fit(reference)
        pooled_scores = pooled.kneighbors(reference)[0][:, k]
        scores = pooled_scores.copy()
        indexes: dict[int, NearestNeighbors] = {}
        thresholds: dict[int, float] = {}
        quantile = 1.0 - false_positive_rate
        for code in np.unique(classes):
            members = np.flatnonzero(classes == code)
            if len(members) < _MIN_CLASS_ROWS:
                continue
            index = NearestNeighbors(n_neighbors=k + 1).fit(reference[members])
            own = index.kneighbors(reference[members])[0][:, k]
            scores[members] = own
            indexes[int(code)] = index
            thresholds[int(code)] = float(np.quantile(own, quantile))
        detector = cls(
            k=k,
            thresholds=thresholds,
            pooled_threshold=float(np.quantile(pooled_scores, quantile)),
            reference_scores=scores,
        )
        detector._indexes, detector._pooled = indexes, pooled
        return detector

    def score(self, rows: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Each row's distance to its ``k``-th nearest reference row of its class."""
        rows = np.asarray(rows, dtype=np.float32)
        classes = np.asarray(classes)
        out = np.empty(len(rows), dtype=np.float64)
        pooled = np.ones(len(rows), dtype=bool)
        for code, index in self._indexes.items():
            members = np.flatnonzero(classes == code)
            if members.size:
                out[members] = index.kneighbors(rows[members], n_neighbors=self.k)[0][:, -1]
                pooled[members] = False
        if pooled.any() and self._pooled is not None:
            found = self._pooled.kneighbors(rows[pooled], n_neighbors=self.k)[0][:, -1]
            out[pooled] = found
        return out

    def threshold_for(self, classes: np.ndarray) -> np.ndarray:
        """The threshold that applies to each row, by its class."""
        lookup = np.vectorize(lambda c: self.thresholds.get(int(c), self.pooled_threshold))
        return lookup(np.asarray(classes)).astype(np.float64) if len(classes) else np.zeros(0)

    def flag(self, rows: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Whether each row scores above its class's threshold."""
        return self.score(rows, classes) > self.threshold_for(classes)


@dataclass
class NoveltyResult:
    """What the novelty score found on a segment.

    ``examples`` are the most novel rows (features, predicted class, score) for an analyst;
    ``by_label``, with labels, gives per true label its rows, the share flagged and whether the
    label was absent from training.
    """

    n_rows: int
    flagged: int
    reference_rate: float
    by_class: dict[str, dict[str, float]]
    examples: list[dict[str, Any]]
    scores: np.ndarray = field(repr=False)
    flags: np.ndarray = field(repr=False)
    reference_scores: np.ndarray = field(repr=False)
    threshold: float = float("nan")
    by_label: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Share of segment rows flagged."""
        return self.flagged / max(self.n_rows, 1)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (without the per-row scores)."""
        return {
            "n_rows": self.n_rows,
            "flagged": self.flagged,
            "rate": self.rate,
            "reference_rate": self.reference_rate,
            "pooled_threshold": self.threshold,
            "by_class": self.by_class,
            "by_label": self.by_label,
            "examples": self.examples,
        }


def novelty_findings(result: NoveltyResult) -> list[Finding]:
    """Findings of a novelty result: the segment's flag rate, and unseen labels."""
    rate, base = result.rate, result.reference_rate
    se = np.sqrt(base * (1 - base) / max(result.n_rows, 1))
    excess = rate - base
    if excess > max(0.15, 4 * se):
        severity = Severity.HIGH
    elif excess > max(0.05, 4 * se):
        severity = Severity.MEDIUM
    elif excess > max(0.02, 4 * se):
        severity = Severity.LOW
    else:
        severity = Severity.INFO
    worst = sorted(result.by_class.items(), key=lambda item: -item[1]["rate"])
    named = ", ".join(f"{c} {v['rate']:.0%}" for c, v in worst[:3] if v["rows"])
    found = [
        Finding(
            "novelty",
            severity,
            "segment",
            f"{rate:.1%} of segment rows are unlike any training row of their predicted class "
            f"(chance rate {base:.0%}); by predicted class: {named}",
            {
                "rate": rate,
                "reference_rate": base,
                "flagged": result.flagged,
                "rows": result.n_rows,
                "by_class": result.by_class,
            },
        )
    ]
    for label, entry in result.by_label.items():
        if not entry["novel"]:
            continue
        share = entry["rows"] / max(result.n_rows, 1)
        found.append(
            Finding(
                "novel-class",
                Severity.HIGH if share > 0.01 else Severity.MEDIUM,
                label,
                f"label '{label}' never occurred in training: {entry['rows']} rows "
                f"({share:.1%}), {entry['flag_rate']:.0%} flagged by the novelty score, "
                f"{entry['alert_rate']:.0%} alerted by the model",
                dict(entry),
            )
        )
    return found
