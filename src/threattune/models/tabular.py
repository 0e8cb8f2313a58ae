"""Gradient-boosted trees on flow features (XGBoost), the main model for flows and host logs.

XGBoost is the family because the same model trains on one machine and, through
``xgboost.spark``, on a Spark cluster. Models save as XGBoost's own JSON, which loads without
unpickling anything.
"""

from __future__ import annotations

import difflib
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import xgboost as xgb

from threattune.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)

__all__ = ["BoostedTrees", "BoostedTreesSettings", "class_weights"]


@dataclass(frozen=True)
class BoostedTreesSettings:
    """The settings of one boosted-trees fit; validation chooses among a few of them."""

    max_depth: int = 8
    learning_rate: float = 0.1
    max_rounds: int = 400
    early_stopping_rounds: int = 25
    min_child_weight: float = 1.0
    subsample: float = 0.9
    colsample_bytree: float = 0.8
    class_weight: str = "balanced-sqrt"

    def __post_init__(self) -> None:
        ranges = {
            "max_depth": (1, 20, int),
            "learning_rate": (1e-4, 1.0, float),
            "max_rounds": (1, 10_000, int),
            "early_stopping_rounds": (1, 1_000, int),
            "min_child_weight": (0.0, 1e6, float),
            "subsample": (0.05, 1.0, float),
            "colsample_bytree": (0.05, 1.0, float),
        }
        for name, (low, high, kind) in ranges.items():
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or (kind is int and not float(value).is_integer())
                or not low <= value <= high
            ):
                raise ConfigError(
                    "boosted-trees setting out of range",
                    field=f"model.{name}",
                    expected=f"{'a whole number' if kind is int else 'a number'} from {low} "
                    f"to {high}",
                    found=repr(value),
                )
        if self.class_weight not in {"none", "balanced", "balanced-sqrt"}:
            raise ConfigError(
                "unknown class weighting",
                field="model.class_weight",
                expected="none, balanced or balanced-sqrt",
                found=self.class_weight,
            )

    def with_overrides(self, overrides: dict[str, Any]) -> BoostedTreesSettings:
        """A copy with ``overrides`` applied; unknown names are a :class:`ConfigError`."""
        known = set(asdict(self))
        unknown = sorted(set(overrides) - known)
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=1)
            raise ConfigError(
                "unknown boosted-trees setting",
                field=f"model.{unknown[0]}",
                expected=", ".join(sorted(known)),
                fix=f"did you mean '{close[0]}'?" if close else None,
            )
        return replace(self, **overrides)


def _threads() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def class_weights(y: np.ndarray, n_classes: int, scheme: str) -> np.ndarray:
    """Per-row weights that counter class imbalance, with mean 1.

    ``balanced`` weighs each class by the inverse of its frequency; ``balanced-sqrt`` by the
    square root of that, which helps rare classes without flooding benign traffic with alerts.
    """
    if scheme == "none":
        return np.ones(len(y), dtype=np.float32)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    per_class = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    if scheme == "balanced-sqrt":
        per_class = np.sqrt(per_class)
    weights = per_class[y]
    return (weights / weights.mean()).astype(np.float32)


class BoostedTrees:
    """A multi-class (or binary) XGBoost classifier over the encoded flow matrix."""

    def __init__(self, n_classes: int, settings: BoostedTreesSettings | None = None) -> None:
        self.n_classes = n_classes
        self.settings = settings or BoostedTreesSettings()
        self.booster: xgb.Booster | None = None
        self.best_rounds: int | None = None
        self.best_score: float | None = None

    def _params(self, seed: int) -> dict[str, Any]:
        s = self.settings
        params: dict[str, Any] = {
            "tree_method": "hist",
            "max_depth": s.max_depth,
            "eta": s.learning_rate,
            "min_child_weight": s.min_child_weight,
            "subsample": s.subsample,
            "colsample_bytree": s.colsample_bytree,
            "nthread": _threads(),
            "seed": seed,
        }
        if self.n_classes == 2:
            params |= {"objective": "binary:logistic", "eval_metric": "logloss"}
        else:
            params |= {
                "objective": "multi:softprob",
                "num_class": self.n_classes,
                "eval_metric": "mlogloss",
            }
        return params

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        x_valid: np.ndarray,
        y_valid: np.ndarray,
        *,
        seed: int = 0,
    ) -> BoostedTrees:
        """Fit with early stopping on the validation split; ``y`` holds class codes."""
        weights = class_weights(y, self.n_classes, self.settings.class_weight)
        valid_weights = class_weights(y_valid, self.n_classes, self.settings.class_weight)
        train = xgb.QuantileDMatrix(x, label=y, weight=weights)
        valid = xgb.DMatrix(x_valid, label=y_valid, weight=valid_weights)
        self.booster = xgb.train(
            self._params(seed),
            train,
            num_boost_round=self.settings.max_rounds,
            evals=[(valid, "validation")],
            early_stopping_rounds=self.settings.early_stopping_rounds,
            verbose_eval=False,
        )
        self.best_rounds = int(self.booster.best_iteration) + 1
        self.best_score = float(self.booster.best_score)
        self.booster = self.booster[: self.best_rounds]
        logger.info(
            "boosted trees %s: %d rounds, validation loss %.5f",
            self.settings,
            self.best_rounds,
            self.best_score,
        )
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, one column per class code."""
        if self.booster is None:
            raise ModelError("the boosted-trees model is not fitted")
        scores = self.booster.inplace_predict(x, validate_features=False)
        if self.n_classes == 2:
            scores = np.column_stack([1.0 - scores, scores])
        return np.asarray(scores, dtype=np.float32)

    def save(self, path: Path) -> None:
        """Save as XGBoost JSON."""
        if self.booster is None:
            raise ModelError("the boosted-trees model is not fitted")
        self.booster.save_model(str(path))

    @classmethod
    def load(cls, path: Path, n_classes: int) -> BoostedTrees:
        """Load a model saved by :meth:`save`."""
        if not path.is_file():
            raise ModelError("boosted-trees model file not found", path=path)
        model = cls(n_classes)
        model.booster = xgb.Booster()
        try:
            model.booster.load_model(str(path))
        except xgb.core.XGBoostError as exc:
            raise ModelError(f"not an XGBoost model: {exc}", path=path) from exc
        model.booster.set_param({"nthread": _threads()})
        return model
