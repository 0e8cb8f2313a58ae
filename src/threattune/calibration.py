"""Probability calibration: make a score of 0.9 mean "an attack nine times out of ten".

A classifier's scores rank events well long before they are honest probabilities. A SOC that
reads an alert's score as a likelihood, or that sets a threshold on one data set and expects it
to hold on another, needs calibrated scores. :func:`fit_calibrator` learns a monotone map from
raw scores to probabilities on a validation split:

* ``"isotonic"``: a non-decreasing step-wise linear map (flexible, needs many examples);
* ``"sigmoid"``: Platt scaling, ``p = 1 / (1 + exp(-(a * x + b)))``, where ``x`` is the logit of
  the score when every score lies in [0, 1] and the score itself otherwise;
* ``"none"``: the scores as they are;
* ``"auto"``: the one of the above with the lowest cross-validated Brier score on the given
  validation scores; the returned :class:`Calibrator` says which and why.

:func:`choose_calibration` is the stricter choice that ``threattune threshold`` makes before
it sets an alert threshold on the calibrated scale: a method must beat the uncalibrated scores
by more than the noise of the cross-validation (a paired test over the events), and the map it
returns is strictly increasing, so calibration never merges two distinct scores and an operating
point alerts on the same events before and after it.

A :class:`Calibrator` is stored as plain JSON (isotonic as its breakpoints, sigmoid as ``a`` and
``b``), never as a pickle, so a model bundle stays readable and safe to load.

Multi-class models are calibrated on their **any-attack score**, ``1 - P(benign)``: the score
the alert threshold is set on. Fit with
``fit_calibrator(any_attack_score(proba, classes, benign), labels != benign)`` (see
:mod:`threattune.operating_point`) and pass the calibrator to ``apply_operating_point``. The
choice of attack class is left to the uncalibrated class probabilities.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> truth = rng.uniform(size=4000)
>>> y = (rng.uniform(size=4000) < truth).astype(int)
>>> calibrator = fit_calibrator(truth**3, y, method="sigmoid")
>>> calibrator.method
'sigmoid'
>>> Calibrator.from_dict(calibrator.to_dict()) == calibrator
True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import StratifiedKFold

from threattune.errors import ConfigError, DataError

__all__ = [
    "CRITERIA",
    "METHODS",
    "Calibrator",
    "CalibrationMethod",
    "brier_score",
    "choose_calibration",
    "fit_calibrator",
    "log_loss",
]

logger = logging.getLogger(__name__)

CalibrationMethod = Literal["isotonic", "sigmoid", "none"]
METHODS: tuple[str, ...] = ("none", "sigmoid", "isotonic")
"""Calibration methods, simplest first; ``"auto"`` prefers the simpler one on a tie."""

CRITERIA: tuple[str, ...] = ("brier", "log_loss")
"""Cross-validated losses :func:`choose_calibration` can choose by."""

_LOGIT_CLIP = 1e-9
_CV_FOLDS = 5
_RAMP = 1e-6
"""Largest change :func:`choose_calibration` makes to an isotonic map to make it strictly
increasing."""


@dataclass(frozen=True)
class Calibrator:
    """A fitted monotone map from raw scores to probabilities of the positive class.

    Parameters
    ----------
    method:
        ``"isotonic"``, ``"sigmoid"`` or ``"none"``.
    x, y:
        Isotonic breakpoints: scores and the probabilities they map to, linear in between and
        constant beyond the ends.
    a, b, on_logit:
        Sigmoid parameters, and whether the sigmoid reads the logit of the score.
    reason:
        Why this method was chosen, in one sentence.
    cv_scores:
        Cross-validated ``{"brier": ..., "log_loss": ...}`` per method tried by ``"auto"``.
    criterion:
        The cross-validated loss that chose the method (``"brier"`` or ``"log_loss"``), or
        empty when the method was named rather than chosen.
    """

    method: CalibrationMethod
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 1.0
    b: float = 0.0
    on_logit: bool = False
    reason: str = ""
    cv_scores: dict[str, dict[str, float]] = field(default_factory=dict, compare=False)
    criterion: str = field(default="", compare=False)

    def transform(self, scores: ArrayLike) -> NDArray[np.float64]:
        """Calibrated probabilities for raw ``scores``."""
        values = np.asarray(scores, dtype=np.float64)

        if self.method == "none":
            return values.copy()
        if self.method == "isotonic":
            return np.interp(values, np.asarray(self.x), np.asarray(self.y))
        return _sigmoid(self.a * _sigmoid_input(values, self.on_logit) + self.b)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        out: dict[str, Any] = {"method": self.method, "reason": self.reason}
        if self.method == "isotonic":
            out.update(x=list(self.x), y=list(self.y))
        elif self.method == "sigmoid":
            out.update(a=self.a, b=self.b, on_logit=self.on_logit)
        out["cv_scores"] = {name: dict(scores) for name, scores in self.cv_scores.items()}
        if self.criterion:
            out["criterion"] = self.criterion
        return out

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> Calibrator:
        """Read a calibrator written by :meth:`to_dict`."""
        method = stored.get("method")
        if method not in METHODS:
            raise DataError(
                "stored calibrator has an unknown method",
                field="method",
                expected=" or ".join(repr(name) for name in METHODS),
                found=repr(method),
                fix="store the calibrator with Calibrator.to_dict()",
            )

        try:
            common = {
                "reason": str(stored.get("reason", "")),
                "cv_scores": {
                    str(name): {str(k): float(v) for k, v in scores.items()}
                    for name, scores in stored.get("cv_scores", {}).items()
                },
                "criterion": str(stored.get("criterion", "")),
            }
            if method == "isotonic":
                x = tuple(float(v) for v in stored["x"])
                y = tuple(float(v) for v in stored["y"])
                if len(x) != len(y) or not x:
                    raise ValueError("x and y differ in length or are empty")
                return cls("isotonic", x=x, y=y, **common)
            if method == "sigmoid":
                return cls(
                    "sigmoid",
                    a=float(stored["a"]),
                    b=float(stored["b"]),
                    on_logit=bool(stored["on_logit"]),
                    **common,
                )
            return cls("none", **common)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(
                f"stored {method} calibrator is incomplete or malformed",
                field="calibrator",
                expected=_STORED_FORM[method],
                found=f"{type(exc).__name__}: {exc}",
                fix="store the calibrator with Calibrator.to_dict()",
            ) from exc


_STORED_FORM = {
    "isotonic": "'x' and 'y': equal-length non-empty lists of numbers",
    "sigmoid": "'a' and 'b' numbers and 'on_logit' true or false",
    "none": "no parameters",
}


def fit_calibrator(
    scores: ArrayLike,
    y: ArrayLike,
    method: Literal["auto", "isotonic", "sigmoid", "none"] = "auto",
    *,
    random_state: int = 0,
) -> Calibrator:
    """Fit a :class:`Calibrator` of raw ``scores`` to binary labels ``y`` (1 = attack).

    ``"auto"`` runs stratified cross-validation (up to five folds) on these scores and keeps the
    method with the lowest mean Brier score, the simpler one on a tie. Brier is the criterion
    because it is bounded: isotonic maps can output exactly 0 or 1, and one such miss can
    dominate a log-loss. Log-loss is reported alongside in ``cv_scores`` and ``reason``.
    """
    values, labels = _binary(scores, y)
    if method not in ("auto", *METHODS):
        raise ConfigError(
            "unknown calibration method",
            field="method",
            expected="'auto', 'isotonic', 'sigmoid' or 'none'",
            found=repr(method),
            fix="pick one of the expected methods",
        )

    if method != "auto":
        calibrator = _fit(values, labels, method)
        return replace(calibrator, reason=f"{method} calibration was asked for")

    cv_scores = _cross_validate(values, labels, random_state)
    ranked = sorted(cv_scores, key=lambda name: (cv_scores[name]["brier"], METHODS.index(name)))
    best = ranked[0]
    others = ", ".join(f"{name} {cv_scores[name]['brier']:.4g}" for name in ranked[1:])
    reason = (
        f"{best} had the lowest {cv_scores[best]['folds']:.0f}-fold cross-validated Brier score "
        f"{cv_scores[best]['brier']:.4g} (log-loss {cv_scores[best]['log_loss']:.4g})"
        + (f"; others: {others}" if others else "")
    )
    logger.info("calibration: %s", reason)

    return replace(_fit(values, labels, best), reason=reason, cv_scores=cv_scores)


def choose_calibration(
    scores: ArrayLike,
    y: ArrayLike,
    *,
    method: Literal["auto", "isotonic", "sigmoid", "none"] = "auto",
    criterion: Literal["brier", "log_loss"] = "brier",
    min_standard_errors: float = 2.0,
    random_state: int = 0,
) -> Calibrator:
    """Calibrate ``scores`` (probabilities of the positive class) only where it helps.

    Stratified cross-validation (up to five folds) predicts every event with each method fitted
    on the other folds. With ``method="auto"``, the method with the lowest mean ``criterion``
    loss is kept only when it beats the uncalibrated scores by at least
    ``min_standard_errors`` standard errors of the paired per-event difference; otherwise the
    scores stay as they are (``"none"``). A named method is used whatever the numbers say, and
    they are still reported. The chosen map is refitted on all events and made strictly
    increasing (an isotonic map's flat steps rise by at most 1e-6; a sigmoid must have a
    positive slope), so that it keeps the order of every pair of distinct scores. ``reason``
    gives the numbers.

    Brier is the default criterion because it is bounded: a map that outputs exactly 0 or 1
    (isotonic can) is not ruled out by one miss, as it would be under log-loss.
    """
    if method not in ("auto", *METHODS):
        raise ConfigError(
            "unknown calibration method",
            field="method",
            expected="'auto', 'isotonic', 'sigmoid' or 'none'",
            found=repr(method),
            fix="pick one of the expected methods",
        )
    values, labels = _binary(scores, y)
    if criterion not in CRITERIA:
        raise ConfigError(
            "unknown calibration criterion",
            field="criterion",
            expected=" or ".join(repr(name) for name in CRITERIA),
            found=repr(criterion),
            fix="choose by 'brier' or 'log_loss'",
        )
    if values.min() < 0.0 or values.max() > 1.0:
        raise DataError(
            "scores to calibrate are not probabilities",
            field="scores",
            expected="scores between 0 and 1",
            found=f"scores from {values.min():.4g} to {values.max():.4g}",
            fix="calibrate a probability such as 1 - P(benign), or use fit_calibrator",
        )

    predicted, folds = _out_of_fold(values, labels, random_state)
    losses = {name: _event_losses(p, labels, criterion) for name, p in predicted.items()}
    cv_scores = {
        name: {
            "brier": brier_score(p, labels),
            "log_loss": log_loss(p, labels),
            "folds": float(folds),
        }
        for name, p in predicted.items()
    }
    fitted = {name: _fit(values, labels, name) for name in METHODS if name != "none"}
    if method == "sigmoid" and fitted["sigmoid"].a <= 0.0:
        raise DataError(
            "a sigmoid fitted to these scores would reverse their order",
            field="scores",
            expected="scores that rise with the share of positives",
            found=f"slope {fitted['sigmoid'].a:.4g}",
            fix="check which class the scores belong to, or use method 'auto'",
        )
    eligible = [
        name for name in ("sigmoid", "isotonic") if name != "sigmoid" or fitted["sigmoid"].a > 0.0
    ]
    best = min(eligible, key=lambda name: (cv_scores[name][criterion], METHODS.index(name)))
    compared = best if method in ("auto", "none") else method
    gain = losses["none"] - losses[compared]
    error = float(gain.std(ddof=1) / math.sqrt(gain.size)) if gain.size > 1 else 0.0
    mean_gain = float(gain.mean())
    helps = mean_gain > 0.0 and mean_gain >= min_standard_errors * error
    chosen = method if method != "auto" else (best if helps else "none")

    name = _CRITERION_NAMES[criterion]
    others = ", ".join(
        f"{other} {cv_scores[other][criterion]:.4g}" for other in METHODS if other != compared
    )
    detail = (
        f"{folds}-fold cross-validated {name} {cv_scores[compared][criterion]:.4g} for "
        f"{compared} against {cv_scores['none'][criterion]:.4g} uncalibrated, a gain of "
        f"{mean_gain:.3g} ({_ratio(mean_gain, error)} standard errors; "
        f"{min_standard_errors:g} needed)"
    )
    if method != "auto":
        reason = f"{method} calibration was asked for; {detail}; others: {others}"
    elif helps:
        reason = f"{best} calibration: {detail}; others: {others}"
    else:
        reason = f"no calibration: {detail}; others: {others}"
    logger.info("calibration: %s", reason)

    if chosen == "none":
        calibrator = Calibrator("none")
    elif chosen == "isotonic":
        calibrator = _strictly_increasing(fitted["isotonic"])
    else:
        calibrator = fitted["sigmoid"]
    return replace(calibrator, reason=reason, cv_scores=cv_scores, criterion=criterion)


_CRITERION_NAMES = {"brier": "Brier score", "log_loss": "log-loss"}


def _ratio(gain: float, error: float) -> str:
    if error > 0.0:
        return f"{gain / error:.1f}"
    return "inf" if gain > 0.0 else "0"


def _event_losses(
    probabilities: NDArray[np.float64], labels: NDArray[np.int8], criterion: str
) -> NDArray[np.float64]:
    p = probabilities
    if criterion == "brier":
        return (p - labels) ** 2
    clipped = np.clip(p, 1e-15, 1.0 - 1e-15)
    return -(labels * np.log(clipped) + (1 - labels) * np.log1p(-clipped))


def _strictly_increasing(calibrator: Calibrator) -> Calibrator:
    """The isotonic map with each breakpoint raised by a ramp of at most ``_RAMP``.

    Isotonic regression is flat between its steps, which would give distinct scores the same
    probability and merge them at any threshold; the ramp keeps their order.
    """
    y = np.asarray(calibrator.y)
    if y.size < 2:
        return calibrator
    ramped = (1.0 - _RAMP) * y + _RAMP * np.linspace(0.0, 1.0, y.size)
    return replace(calibrator, y=tuple(float(v) for v in ramped))


def brier_score(probabilities: ArrayLike, y: ArrayLike) -> float:
    """Mean squared difference between probabilities and binary labels (lower is better)."""
    p = np.asarray(probabilities, dtype=np.float64)
    return float(np.mean((p - np.asarray(y, dtype=np.float64)) ** 2))


def log_loss(probabilities: ArrayLike, y: ArrayLike, *, clip: float = 1e-15) -> float:
    """Mean negative log-likelihood of binary labels, probabilities clipped to [clip, 1-clip]."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), clip, 1.0 - clip)
    labels = np.asarray(y, dtype=np.float64)
    return float(-np.mean(labels * np.log(p) + (1.0 - labels) * np.log1p(-p)))


def _fit(values: NDArray[np.float64], labels: NDArray[np.int8], method: str) -> Calibrator:
    if method == "none":
        return Calibrator("none")
    if method == "isotonic":
        model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        model.fit(values, labels.astype(np.float64))
        x = tuple(float(v) for v in model.X_thresholds_)
        y = tuple(float(v) for v in model.y_thresholds_)
        return Calibrator("isotonic", x=x, y=y)
    on_logit = bool(values.size and values.min() >= 0.0 and values.max() <= 1.0)
    a, b = _fit_sigmoid(_sigmoid_input(values, on_logit), labels, on_logit)
    return Calibrator("sigmoid", a=a, b=b, on_logit=on_logit)


def _fit_sigmoid(
    x: NDArray[np.float64], labels: NDArray[np.int8], on_logit: bool
) -> tuple[float, float]:
    """Platt scaling: maximum likelihood with Platt's smoothed targets, which keep a and b
    finite when the classes separate perfectly."""
    positives = int(labels.sum())
    negatives = labels.size - positives
    targets = np.where(labels == 1, (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0))

    def loss(params: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        z = params[0] * x + params[1]
        value = float(np.sum(np.logaddexp(0.0, z) - targets * z))
        residual = _sigmoid(z) - targets
        return value, np.array([float(residual @ x), float(residual.sum())])

    base_rate = float(targets.mean())
    start = [1.0, 0.0] if on_logit else [0.0, math.log(base_rate / (1.0 - base_rate))]
    result = minimize(loss, np.array(start), jac=True, method="L-BFGS-B")
    if not result.success:
        logger.warning("sigmoid calibration did not fully converge: %s", result.message)
    return float(result.x[0]), float(result.x[1])


def _cross_validate(
    values: NDArray[np.float64], labels: NDArray[np.int8], random_state: int
) -> dict[str, dict[str, float]]:
    predicted, folds = _out_of_fold(values, labels, random_state)
    return {
        name: {
            "brier": brier_score(predicted[name], labels),
            "log_loss": log_loss(predicted[name], labels),
            "folds": float(folds),
        }
        for name in predicted
    }


def _out_of_fold(
    values: NDArray[np.float64], labels: NDArray[np.int8], random_state: int
) -> tuple[dict[str, NDArray[np.float64]], int]:
    """Each method's prediction of every event, fitted on the other folds; and the fold count."""
    smallest = int(min(labels.sum(), labels.size - labels.sum()))
    if smallest < 2:
        raise DataError(
            "too few examples of one class to choose a calibration method",
            field="y",
            expected="at least 2 attacks and 2 benign events",
            found=f"{int(labels.sum())} attacks, {int(labels.size - labels.sum())} benign",
            fix="calibrate on a larger validation split or name the method explicitly",
        )

    folds = min(_CV_FOLDS, smallest)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    is_probability = bool(values.min() >= 0.0 and values.max() <= 1.0)
    candidates = [name for name in METHODS if name != "none" or is_probability]
    predicted = {name: np.empty_like(values) for name in candidates}
    for train, test in splitter.split(values.reshape(-1, 1), labels):
        for name in candidates:
            predicted[name][test] = _fit(values[train], labels[train], name).transform(values[test])
    return predicted, folds


def _binary(scores: ArrayLike, y: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
    values = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(y).ravel()
    if values.size != labels.size:
        raise DataError(
            "scores and labels differ in length",
            field="scores",
            expected=f"{labels.size} scores, one per label",
            found=f"{values.size} scores",
        )
    if not np.isfinite(values).all():
        raise DataError(
            "scores contain NaN or infinite values",
            field="scores",
            expected="finite numbers",
            found=f"{int((~np.isfinite(values)).sum())} non-finite scores",
            fix="drop or repair the events whose score is missing",
        )
    if not np.isin(labels, (0, 1)).all():
        raise DataError(
            "labels are not binary",
            field="y",
            expected="0 (benign) or 1 (attack), or booleans",
            found=f"values such as {np.unique(labels)[:5].tolist()}",
            fix="map labels to 1 for attack and 0 for benign",
        )
    binary = labels.astype(np.int8)
    if binary.min(initial=1) == binary.max(initial=0) or values.size == 0:
        raise DataError(
            "calibration needs both attacks and benign events",
            field="y",
            expected="at least one 0 and one 1",
            found=f"{int(binary.sum())} attacks among {binary.size} events",
            fix="calibrate on a validation split that holds both classes",
        )
    return values, binary


def _sigmoid_input(values: NDArray[np.float64], on_logit: bool) -> NDArray[np.float64]:
    if not on_logit:
        return values
    clipped = np.clip(values, _LOGIT_CLIP, 1.0 - _LOGIT_CLIP)
    return np.log(clipped) - np.log1p(-clipped)


def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.exp(-np.logaddexp(0.0, -z))
