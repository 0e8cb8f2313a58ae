"""The scikit-learn baseline that runs beside every flow model.

A regularised logistic regression on standardised, log-scaled numeric features and one-hot
categories: cheap, well understood, and a floor the boosted trees must clearly beat to earn
their complexity. It saves through skops, which loads without unpickling arbitrary objects.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from threattune._skops import sio
from threattune.errors import ModelError

logger = logging.getLogger(__name__)

__all__ = ["Baseline"]


class Baseline:
    """Logistic regression over the encoded flow matrix.

    ``categorical`` holds the positions of categorical codes in the matrix; the other columns
    are numeric and pass through a signed ``log1p`` so that byte counts and rates, which span
    many orders of magnitude, do not swamp the linear model.
    """

    def __init__(self, categorical: list[int], n_features: int, *, max_iter: int = 150) -> None:
        self.categorical = list(categorical)
        self.numeric = [i for i in range(n_features) if i not in set(categorical)]
        self.max_iter = max_iter
        self.pipeline: Pipeline | None = None

    def _log_scale(self, x: np.ndarray) -> np.ndarray:
        scaled = x.astype(np.float64, copy=True)
        numeric = scaled[:, self.numeric]
        scaled[:, self.numeric] = np.sign(numeric) * np.log1p(np.abs(numeric))
        return scaled

    def fit(self, x: np.ndarray, y: np.ndarray, *, seed: int = 0) -> Baseline:
        """Fit on the encoded training matrix and class codes (balanced class weights)."""
        columns = ColumnTransformer(
            [
                (
                    "numeric",
                    Pipeline(
                        [
                            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                            ("scale", StandardScaler()),
                        ]
                    ),
                    self.numeric,
                ),
                (
                    "categorical",
                    Pipeline(
                        [
                            (
                                "impute",
                                SimpleImputer(
                                    strategy="constant", fill_value=-1.0, keep_empty_features=True
                                ),
                            ),
                            ("onehot", OneHotEncoder(handle_unknown="ignore")),
                        ]
                    ),
                    self.categorical,
                ),
            ]
        )
        self.pipeline = Pipeline(
            [
                ("columns", columns),
                (
                    "model",
                    LogisticRegression(
                        C=1.0, max_iter=self.max_iter, class_weight="balanced", random_state=seed
                    ),
                ),
            ]
        )
        # One BLAS thread: the solver's small products gain nothing from more, and on a busy
        # machine extra threads make it several times slower.
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.pipeline.fit(self._log_scale(x), y)
        return self

    def predict_proba(self, x: np.ndarray, n_classes: int) -> np.ndarray:
        """Class probabilities with one column per class code, absent classes at zero."""
        if self.pipeline is None:
            raise ModelError("the baseline is not fitted")
        proba = self.pipeline.predict_proba(self._log_scale(x))
        full = np.zeros((len(x), n_classes), dtype=np.float32)
        full[:, self.pipeline.classes_] = proba
        return full

    def save(self, path: Path) -> None:
        """Save through skops."""
        if self.pipeline is None:
            raise ModelError("the baseline is not fitted")
        sio.dump(self.pipeline, path)

    @classmethod
    def load(cls, path: Path, categorical: list[int], n_features: int) -> Baseline:
        """Load a baseline saved by :meth:`save`, trusting only scikit-learn and numpy types."""
        if not path.is_file():
            raise ModelError("baseline model file not found", path=path)
        untrusted = [
            t
            for t in sio.get_untrusted_types(file=path)
            if not t.startswith(("sklearn.", "numpy."))
        ]
        if untrusted:
            raise ModelError(
                "the baseline file holds types threattune does not load",
                path=path,
                found=", ".join(untrusted),
                fix="retrain the model with this version of threattune",
            )
        model = cls(categorical, n_features)
        model.pipeline = sio.load(path, trusted=sio.get_untrusted_types(file=path))
        return model
