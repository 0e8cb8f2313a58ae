"""The TF-IDF and logistic-regression baseline that runs beside the fine-tuned text model.

Word 1-2 grams and character 3-5 grams (within word boundaries), both with sublinear term
frequency and a minimum document frequency, feed a class-balanced logistic regression. The
regularisation strength ``C`` is chosen by the F1 of the positive class (phishing) on the
validation split, never on test. The model saves through skops, which loads without unpickling
arbitrary objects, and explains itself by its most heavily weighted n-grams per class.

Text is normalised first (see :func:`normalise_for_model`): lower case, a space on each side of
every punctuation mark, and ``0`` for every digit run. The public Enron and Ling-Spam corpora
are tokenised that way already (``let ' s``), so without it the model tells those sources from
raw mail by their spacing; masking digits keeps years and dates in the text from standing in
for the era.

>>> model = TextBaseline(c_grid=(1.0,), min_df=1).fit(
...     ["verify your account now", "lunch on friday", "confirm your password now", "see you"],
...     ["phishing", "legitimate", "phishing", "legitimate"],
...     validation_texts=["verify your password", "friday lunch"],
...     validation_labels=["phishing", "legitimate"],
... )
>>> model.predict(["please verify your password now"]).tolist()
['phishing']
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
from sklearn.pipeline import FeatureUnion, Pipeline

from threattune._skops import sio
from threattune.errors import DataError, ModelError

__all__ = ["TextBaseline", "binary_scores", "normalise_for_model"]

logger = logging.getLogger(__name__)

_PUNCTUATION = re.compile(r"([^\w\s])")
_DIGIT_RUNS = re.compile(r"\d+")
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")
_TRUSTED_BUILTINS = frozenset({"builtins.dict", "builtins.list", "builtins.tuple"})


def normalise_for_model(text: str) -> str:
    """Text with the formatting differences between corpora taken out.

    >>> normalise_for_model("Let's meet at 10:30, OK?")
    "let ' s meet at 0 : 0 , ok ?"
    """
    text = _DIGIT_RUNS.sub("0", _PUNCTUATION.sub(r" \1 ", text.lower()))
    return " ".join(text.split())


def binary_scores(
    truth: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Precision, recall, F1, false-positive rate and ROC AUC of scores against truth.

    >>> binary_scores([True, False, True, False], [0.9, 0.2, 0.4, 0.6])["fpr"]
    0.5
    """
    truth = np.asarray(truth, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    predicted = scores >= threshold
    negatives = int((~truth).sum())
    both = 0 < truth.sum() < len(truth)
    return {
        "messages": int(len(truth)),
        "positives": int(truth.sum()),
        "precision": float(precision_score(truth, predicted, zero_division=0)),
        "recall": float(recall_score(truth, predicted, zero_division=0)),
        "f1": float(f1_score(truth, predicted, zero_division=0)),
        "fpr": float((predicted & ~truth).sum() / negatives) if negatives else float("nan"),
        "auc": float(roc_auc_score(truth, scores)) if both else float("nan"),
    }


class TextBaseline:
    """TF-IDF word and character n-grams into a logistic regression.

    Parameters
    ----------
    positive:
        The label whose F1 chooses ``C`` and whose probability :meth:`positive_proba` returns.
    c_grid:
        The values of ``C`` tried; the one with the best validation F1 wins (the smaller on a
        tie, favouring the more regularised model).
    max_chars:
        Only the first this many characters of a message are read; the lure is up front.
    min_df:
        A word or character n-gram must appear in this many training messages to count.
    max_features:
        The most n-grams kept per analyser (word and character), by training frequency.
    normalise:
        Apply :func:`normalise_for_model` before the n-grams are counted.
    """

    def __init__(
        self,
        *,
        positive: str = "phishing",
        c_grid: Sequence[float] = (0.25, 1.0, 4.0, 16.0, 64.0),
        max_chars: int = 3000,
        min_df: int = 3,
        max_features: int = 200_000,
        normalise: bool = True,
        seed: int = 0,
    ) -> None:
        self.positive = positive
        self.c_grid = tuple(float(c) for c in c_grid)
        self.max_chars = max_chars
        self.min_df = min_df
        self.max_features = max_features
        self.normalise = normalise
        self.seed = seed
        self.pipeline: Pipeline | None = None
        self.c: float | None = None
        self.validation_f1: dict[float, float] = {}

    @property
    def classes(self) -> list[str]:
        """The labels, in the column order of :meth:`predict_proba`."""
        return [str(label) for label in self._fitted().classes_]

    def _texts(self, texts: Sequence[str]) -> list[str]:
        cut = [text[: self.max_chars] for text in texts]
        return [normalise_for_model(text) for text in cut] if self.normalise else cut

    def _features(self) -> FeatureUnion:
        common: dict[str, Any] = {
            "sublinear_tf": True,
            "min_df": self.min_df,
            "max_features": self.max_features,
            "dtype": np.float32,
            "lowercase": not self.normalise,
        }
        return FeatureUnion(
            [
                ("word", TfidfVectorizer(ngram_range=(1, 2), **common)),
                ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), **common)),
            ]
        )

    def _regression(self, c: float, multiclass: bool) -> LogisticRegression:
        return LogisticRegression(
            C=c,
            class_weight="balanced",
            solver="lbfgs" if multiclass else "liblinear",
            max_iter=1000,
            random_state=self.seed,
        )

    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[str] | np.ndarray,
        *,
        validation_texts: Sequence[str],
        validation_labels: Sequence[str] | np.ndarray,
    ) -> TextBaseline:
        """Fit the n-grams on ``texts`` and choose ``C`` by validation F1 of the positive class."""
        labels, validation_labels = np.asarray(labels), np.asarray(validation_labels)
        if self.positive not in set(labels.tolist()):
            raise DataError(
                f"no training message is labelled {self.positive!r}",
                field="labels",
                expected=f"messages labelled {self.positive!r} and others",
                found=", ".join(sorted(set(labels.tolist()))),
            )
        started = time.perf_counter()
        features = self._features()
        train_matrix = features.fit_transform(self._texts(texts))
        validation_matrix = features.transform(self._texts(validation_texts))
        logger.info(
            "%d n-grams from %d messages in %.1f s",
            train_matrix.shape[1],
            train_matrix.shape[0],
            time.perf_counter() - started,
        )

        multiclass = len(set(labels.tolist())) > 2
        truth = validation_labels == self.positive
        best: tuple[float, float, LogisticRegression] | None = None
        for c in sorted(self.c_grid):
            regression = self._regression(c, multiclass)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                regression.fit(train_matrix, labels)
            column = list(regression.classes_).index(self.positive)
            scores = regression.predict_proba(validation_matrix)[:, column]
            f1 = float(f1_score(truth, scores >= 0.5, zero_division=0))
            self.validation_f1[c] = f1
            logger.info("C=%g: validation F1 %.4f", c, f1)
            if best is None or f1 > best[0]:
                best = (f1, c, regression)

        assert best is not None
        self.c = best[1]
        self.pipeline = Pipeline([("features", features), ("model", best[2])])
        logger.info("chose C=%g in %.1f s", self.c, time.perf_counter() - started)
        if len(self.c_grid) > 1 and self.c in (min(self.c_grid), max(self.c_grid)):
            logger.warning("C=%g is at the edge of the grid; a wider grid may do better", self.c)
        return self

    def _fitted(self) -> Pipeline:
        if self.pipeline is None:
            raise ModelError("the text baseline is not fitted")
        return self.pipeline

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, one column per label in :attr:`classes` order."""
        return self._fitted().predict_proba(self._texts(texts))

    def positive_proba(self, texts: Sequence[str]) -> np.ndarray:
        """The probability that each message is of the positive class (phishing)."""
        return self.predict_proba(texts)[:, self.classes.index(self.positive)]

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """The most probable label of each message."""
        return self._fitted().predict(self._texts(texts))

    def top_features(self, k: int = 20) -> dict[str, list[tuple[str, float]]]:
        """The ``k`` n-grams weighing most towards each class, with their weights.

        Names carry their analyser: ``word__verify your`` or ``char__ogin``.
        """
        pipeline = self._fitted()
        names = pipeline.named_steps["features"].get_feature_names_out()
        coefficients = pipeline.named_steps["model"].coef_
        classes = self.classes
        if coefficients.shape[0] == 1:
            rows = {classes[1]: coefficients[0], classes[0]: -coefficients[0]}
        else:
            rows = dict(zip(classes, coefficients, strict=True))
        top = {}
        for label, weights in rows.items():
            order = np.argsort(-weights)[:k]
            top[label] = [(str(names[i]), round(float(weights[i]), 4)) for i in order]
        return top

    def save(self, path: str | Path) -> Path:
        """Save the fitted model through skops; returns the path."""
        path = Path(path)
        state = {
            "pipeline": self._fitted(),
            "positive": self.positive,
            "c": self.c,
            "c_grid": list(self.c_grid),
            "validation_f1": [[c, f1] for c, f1 in self.validation_f1.items()],
            "max_chars": self.max_chars,
            "min_df": self.min_df,
            "max_features": self.max_features,
            "normalise": self.normalise,
            "seed": self.seed,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        sio.dump(state, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TextBaseline:
        """Load a model saved by :meth:`save`, trusting only scikit-learn, numpy and scipy."""
        path = Path(path)
        if not path.is_file():
            raise ModelError("text baseline file not found", path=path)
        found = sio.get_untrusted_types(file=path)
        untrusted = [
            name
            for name in found
            if not name.startswith(_TRUSTED_PREFIXES) and name not in _TRUSTED_BUILTINS
        ]
        if untrusted:
            raise ModelError(
                "the text baseline file holds types threattune does not load",
                path=path,
                found=", ".join(untrusted),
                fix="retrain the text baseline with this version of threattune",
            )
        state = sio.load(path, trusted=found)
        model = cls(
            positive=state["positive"],
            c_grid=state["c_grid"],
            max_chars=state["max_chars"],
            min_df=state["min_df"],
            max_features=state["max_features"],
            normalise=state["normalise"],
            seed=state["seed"],
        )
        model.pipeline = state["pipeline"]
        model.c = state["c"]
        model.validation_f1 = {float(c): float(f1) for c, f1 in state["validation_f1"]}
        return model
