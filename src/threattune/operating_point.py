"""Operating points: the alert threshold that meets a SOC's stated goal.

A classifier gives every event a score; the operating point decides which scores raise an
alert. Analysts state what they can live with, and :func:`choose_threshold` finds, on a
validation split, the threshold that meets it while catching the most attacks:

* :class:`TargetPrecision`: at least this share of alerts are real attacks
  (``"precision>=0.99"``);
* :class:`MaxFalsePositiveRate`: at most this share of benign events raise an alert
  (``"fpr<=0.01"``);
* :class:`AlertBudget`: at most this many alerts a day at a stated event rate
  (``"alerts<=200/day@5000000"``).

Conventions. An event is an alert when ``score >= threshold``. Thresholds are only ever the
distinct score values of the validation split, so tied scores are alerted on together. Among the
thresholds that meet the goal, the one with the highest recall wins, and among equal recalls the
highest threshold (the fewest false positives). When no threshold meets the goal the result says
so (``achievable=False``) and holds the point closest to the goal; the caller decides.

Production prior. A validation split is often richer in attacks than production traffic, which
flatters precision and inflates the alert rate. Give ``prior``, the expected share of attacks in
production, and precision and alert rate are re-weighted from recall (TPR) and FPR, which do not
depend on the class mix::

    precision = prior * TPR / (prior * TPR + (1 - prior) * FPR)
    alert rate = prior * TPR + (1 - prior) * FPR

Multi-class models alert on the **any-attack score**, ``1 - P(benign)``; the alert's class is the
most probable attack class (:func:`apply_operating_point`).

Stored points. A point is stored as the dict of :meth:`OperatingPoint.to_dict`, with
``"calibration"`` (a :class:`~threattune.calibration.Calibrator` dict) when its threshold was set
on calibrated scores; :func:`stored_calibrator` reads it back, and scoring must calibrate the
any-attack score with it before comparing it with the threshold. A point without the key is on
the raw score, as points were before calibration was stored with them.

>>> point = choose_threshold([1, 1, 0, 1, 0, 0], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], "precision>=0.75")
>>> point.threshold, point.precision, point.recall
(0.6, 0.75, 1.0)
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from threattune.calibration import Calibrator
from threattune.errors import ConfigError, DataError

__all__ = [
    "ANY_ATTACK",
    "AlertBudget",
    "Goal",
    "Interval",
    "MaxFalsePositiveRate",
    "OperatingPoint",
    "PrecisionRecallCurve",
    "TargetPrecision",
    "any_attack_score",
    "apply_operating_point",
    "choose_threshold",
    "choose_thresholds",
    "goal_from_dict",
    "parse_goal",
    "plot_operating_point",
    "precision_recall_points",
    "proportion_interval",
    "stored_calibrator",
]

logger = logging.getLogger(__name__)

ANY_ATTACK = "any-attack"
"""The key of the single operating point that alerts on ``1 - P(benign)``."""

Interval = Literal["wilson", "clopper-pearson"]

_GOAL_FORMS = "'precision>=P', 'fpr<=F' or 'alerts<=N/day@EVENTS_PER_DAY'"
_TOLERANCE = 1e-9


# --- goals -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetPrecision:
    """At least ``precision`` of alerts are real attacks.

    >>> str(TargetPrecision(0.99))
    'precision>=0.99'
    """

    precision: float
    kind: ClassVar[str] = "precision"

    def __post_init__(self) -> None:
        _check_range("precision", self.precision, low=0.0, high=1.0, low_open=True)
        object.__setattr__(self, "precision", float(self.precision))

    def shortfall(self, curve: PrecisionRecallCurve) -> NDArray[np.float64]:
        """How far each threshold of ``curve`` falls short of the goal (0 where met)."""
        return np.maximum(self.precision - curve.precision, 0.0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :func:`goal_from_dict` reads it back."""
        return {"kind": self.kind, "precision": self.precision}

    def __str__(self) -> str:
        return f"precision>={self.precision!r}"


@dataclass(frozen=True)
class MaxFalsePositiveRate:
    """At most ``fpr`` of benign events raise an alert.

    >>> str(MaxFalsePositiveRate(0.01))
    'fpr<=0.01'
    """

    fpr: float
    kind: ClassVar[str] = "fpr"

    def __post_init__(self) -> None:
        _check_range("fpr", self.fpr, low=0.0, high=1.0)
        object.__setattr__(self, "fpr", float(self.fpr))

    def shortfall(self, curve: PrecisionRecallCurve) -> NDArray[np.float64]:
        """How far each threshold of ``curve`` falls short of the goal (0 where met)."""
        return np.maximum(curve.fpr - self.fpr, 0.0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :func:`goal_from_dict` reads it back."""
        return {"kind": self.kind, "fpr": self.fpr}

    def __str__(self) -> str:
        return f"fpr<={self.fpr!r}"


@dataclass(frozen=True)
class AlertBudget:
    """At most ``alerts_per_day`` alerts when ``events_per_day`` events are scored.

    The alert rate (share of events at or above the threshold) times ``events_per_day`` must not
    exceed the budget. Without a ``prior`` the rate is the validation split's; give the production
    prior when the split's share of attacks differs from production.

    >>> budget = AlertBudget(alerts_per_day=200, events_per_day=5_000_000)
    >>> str(budget), budget.max_alert_rate
    ('alerts<=200/day@5000000', 4e-05)
    """

    alerts_per_day: float
    events_per_day: float
    kind: ClassVar[str] = "alerts"

    def __post_init__(self) -> None:
        _check_range("alerts_per_day", self.alerts_per_day, low=0.0, low_open=True)
        _check_range("events_per_day", self.events_per_day, low=0.0, low_open=True)
        object.__setattr__(self, "alerts_per_day", float(self.alerts_per_day))
        object.__setattr__(self, "events_per_day", float(self.events_per_day))

    @property
    def max_alert_rate(self) -> float:
        """The highest share of events that may raise an alert."""
        return self.alerts_per_day / self.events_per_day

    def shortfall(self, curve: PrecisionRecallCurve) -> NDArray[np.float64]:
        """Excess alerts per day of each threshold, relative to the budget (0 where met)."""
        excess = curve.alerts_per_day(self.events_per_day) - self.alerts_per_day
        return np.maximum(excess, 0.0) / self.alerts_per_day

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :func:`goal_from_dict` reads it back."""
        return {
            "kind": self.kind,
            "alerts_per_day": self.alerts_per_day,
            "events_per_day": self.events_per_day,
        }

    def __str__(self) -> str:
        return f"alerts<={_number(self.alerts_per_day)}/day@{_number(self.events_per_day)}"


Goal = TargetPrecision | MaxFalsePositiveRate | AlertBudget

_GOAL_PATTERN = re.compile(
    r"""^\s*(?:
        (?P<precision>precision)\s*>=\s*(?P<p>\S+?)
      | (?P<fpr>fpr)\s*<=\s*(?P<f>\S+?)
      | (?P<alerts>alerts)\s*<=\s*(?P<n>[^/\s]+?)\s*/\s*day\s*@\s*(?P<events>\S+?)
    )\s*$""",
    re.VERBOSE | re.IGNORECASE,
)


def parse_goal(text: str | Goal) -> Goal:
    """Read a goal from its command-line form; a goal object is returned as it is.

    >>> parse_goal("alerts<=200/day@5_000_000")
    AlertBudget(alerts_per_day=200.0, events_per_day=5000000.0)
    """
    if isinstance(text, TargetPrecision | MaxFalsePositiveRate | AlertBudget):
        return text

    match = _GOAL_PATTERN.match(str(text))
    if match is None:
        raise ConfigError(
            "cannot read the operating-point goal",
            field="goal",
            expected=_GOAL_FORMS,
            found=repr(text),
            fix="write the goal as e.g. 'precision>=0.99', 'fpr<=0.01' or "
            "'alerts<=200/day@5000000'",
        )

    if match["precision"]:
        return TargetPrecision(_parse_number("precision", match["p"], text))
    if match["fpr"]:
        return MaxFalsePositiveRate(_parse_number("fpr", match["f"], text))
    return AlertBudget(
        alerts_per_day=_parse_number("alerts_per_day", match["n"], text),
        events_per_day=_parse_number("events_per_day", match["events"], text),
    )


def goal_from_dict(stored: Mapping[str, Any]) -> Goal:
    """Read a goal written by its ``to_dict``."""
    kind = stored.get("kind")
    try:
        if kind == TargetPrecision.kind:
            return TargetPrecision(float(stored["precision"]))
        if kind == MaxFalsePositiveRate.kind:
            return MaxFalsePositiveRate(float(stored["fpr"]))
        if kind == AlertBudget.kind:
            return AlertBudget(float(stored["alerts_per_day"]), float(stored["events_per_day"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"stored {kind} goal is incomplete or malformed",
            field="goal",
            expected="the dict written by the goal's to_dict()",
            found=repr(dict(stored)),
        ) from exc
    raise DataError(
        "stored goal has an unknown kind",
        field="goal.kind",
        expected="'precision', 'fpr' or 'alerts'",
        found=repr(kind),
    )


# --- curve -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PrecisionRecallCurve:
    """Counts at every distinct score of a validation split, highest threshold first.

    ``true_positives[i]`` and ``false_positives[i]`` count the events with
    ``score >= thresholds[i]``. Precision and alert rate are re-weighted to ``prior`` when it is
    given (see the module notes).
    """

    thresholds: NDArray[np.float64]
    true_positives: NDArray[np.int64]
    false_positives: NDArray[np.int64]
    positives: int
    negatives: int
    prior: float | None = None

    @property
    def recall(self) -> NDArray[np.float64]:
        """True-positive rate at each threshold."""
        return self.true_positives / max(self.positives, 1)

    @property
    def fpr(self) -> NDArray[np.float64]:
        """False-positive rate (share of benign events alerted on) at each threshold."""
        return self.false_positives / max(self.negatives, 1)

    @property
    def precision(self) -> NDArray[np.float64]:
        """Share of alerts that are attacks at each threshold (at ``prior`` when given)."""
        if self.prior is None:
            return self.true_positives / (self.true_positives + self.false_positives)
        attack = self.prior * self.recall
        alerts = attack + (1.0 - self.prior) * self.fpr
        return np.divide(attack, alerts, out=np.zeros_like(attack), where=alerts > 0)

    @property
    def alert_rate(self) -> NDArray[np.float64]:
        """Share of all events alerted on at each threshold (at ``prior`` when given)."""
        if self.prior is None:
            return (self.true_positives + self.false_positives) / (self.positives + self.negatives)
        return self.prior * self.recall + (1.0 - self.prior) * self.fpr

    def alerts_per_day(self, events_per_day: float) -> NDArray[np.float64]:
        """Expected alerts per day at each threshold when ``events_per_day`` are scored."""
        if self.prior is None:
            alerts = (self.true_positives + self.false_positives) * float(events_per_day)
            return alerts / (self.positives + self.negatives)
        return self.alert_rate * float(events_per_day)

    def to_dict(self, max_points: int | None = None) -> dict[str, Any]:
        """A JSON-ready dict of lists, thinned to at most ``max_points`` evenly spread points
        (the first and last threshold always kept)."""
        keep = np.arange(self.thresholds.size)
        if max_points is not None and max_points >= 2 and keep.size > max_points:
            keep = np.unique(np.linspace(0, keep.size - 1, max_points).round().astype(int))
        return {
            "thresholds": self.thresholds[keep].tolist(),
            "precision": self.precision[keep].tolist(),
            "recall": self.recall[keep].tolist(),
            "fpr": self.fpr[keep].tolist(),
            "alert_rate": self.alert_rate[keep].tolist(),
            "true_positives": self.true_positives[keep].tolist(),
            "false_positives": self.false_positives[keep].tolist(),
            "positives": self.positives,
            "negatives": self.negatives,
            "prior": self.prior,
        }

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> PrecisionRecallCurve:
        """Read a curve written by :meth:`to_dict` (thinned curves stay thinned)."""
        try:
            return cls(
                thresholds=np.asarray(stored["thresholds"], dtype=np.float64),
                true_positives=np.asarray(stored["true_positives"], dtype=np.int64),
                false_positives=np.asarray(stored["false_positives"], dtype=np.int64),
                positives=int(stored["positives"]),
                negatives=int(stored["negatives"]),
                prior=None if stored.get("prior") is None else float(stored["prior"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                "stored precision-recall curve is incomplete or malformed",
                field="curve",
                expected="the dict written by PrecisionRecallCurve.to_dict()",
                found=f"{type(exc).__name__}: {exc}",
            ) from exc


def precision_recall_points(
    y_true: ArrayLike, scores: ArrayLike, *, prior: float | None = None
) -> PrecisionRecallCurve:
    """The precision-recall curve of binary labels (1 = attack) and scores.

    One point per distinct score, alerting on ``score >= threshold``.

    >>> curve = precision_recall_points([1, 0, 1, 0], [0.9, 0.8, 0.8, 0.1])
    >>> curve.thresholds.tolist(), curve.precision.tolist()
    ([0.9, 0.8, 0.1], [1.0, 0.6666666666666666, 0.5])
    """
    labels, values = _binary_inputs(y_true, scores)
    if prior is not None:
        _check_range("prior", prior, low=0.0, high=1.0, low_open=True, high_open=True)

    order = np.argsort(values, kind="stable")[::-1]
    ranked = values[order]
    attacks = labels[order].astype(np.int64)
    last_of_each = np.r_[np.flatnonzero(ranked[:-1] != ranked[1:]), ranked.size - 1]
    true_positives = np.cumsum(attacks)[last_of_each]
    false_positives = (last_of_each + 1) - true_positives

    positives = int(attacks.sum())
    curve = PrecisionRecallCurve(
        thresholds=ranked[last_of_each],
        true_positives=true_positives,
        false_positives=false_positives,
        positives=positives,
        negatives=int(labels.size - positives),
        prior=None if prior is None else float(prior),
    )
    for array in (curve.thresholds, curve.true_positives, curve.false_positives):
        array.flags.writeable = False
    return curve


# --- operating point -------------------------------------------------------------------------


@dataclass(frozen=True)
class OperatingPoint:
    """A chosen threshold and how it performs on the validation split.

    Rates are point estimates with confidence intervals (``interval`` method at ``confidence``).
    With a ``prior``, precision and alert rate are the production estimates and the precision
    interval combines the recall and FPR intervals, each at ``sqrt(confidence)``, so that the
    pair, drawn from independent attacks and benign events, covers at ``confidence``.
    ``positive`` names what counts as an attack: a class name, ``"any-attack"`` or None.
    """

    threshold: float
    goal: Goal
    achievable: bool
    precision: float
    recall: float
    fpr: float
    alert_rate: float
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int
    precision_ci: tuple[float, float]
    recall_ci: tuple[float, float]
    fpr_ci: tuple[float, float]
    interval: Interval = "wilson"
    confidence: float = 0.95
    prior: float | None = None
    positive: str | None = None
    alerts_per_day: float | None = field(default=None)

    @property
    def positives(self) -> int:
        """Attacks in the validation split."""
        return self.true_positives + self.false_negatives

    @property
    def negatives(self) -> int:
        """Benign events in the validation split."""
        return self.false_positives + self.true_negatives

    @property
    def alerts(self) -> int:
        """Validation events at or above the threshold."""
        return self.true_positives + self.false_positives

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        return {
            "threshold": self.threshold,
            "goal": self.goal.to_dict(),
            "goal_text": str(self.goal),
            "achievable": self.achievable,
            "precision": self.precision,
            "recall": self.recall,
            "fpr": self.fpr,
            "alert_rate": self.alert_rate,
            "alerts_per_day": self.alerts_per_day,
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "true_negatives": self.true_negatives,
            "false_negatives": self.false_negatives,
            "precision_ci": list(self.precision_ci),
            "recall_ci": list(self.recall_ci),
            "fpr_ci": list(self.fpr_ci),
            "interval": self.interval,
            "confidence": self.confidence,
            "prior": self.prior,
            "positive": self.positive,
        }

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> OperatingPoint:
        """Read an operating point written by :meth:`to_dict`."""
        try:
            return cls(
                threshold=float(stored["threshold"]),
                goal=goal_from_dict(stored["goal"]),
                achievable=bool(stored["achievable"]),
                precision=float(stored["precision"]),
                recall=float(stored["recall"]),
                fpr=float(stored["fpr"]),
                alert_rate=float(stored["alert_rate"]),
                true_positives=int(stored["true_positives"]),
                false_positives=int(stored["false_positives"]),
                true_negatives=int(stored["true_negatives"]),
                false_negatives=int(stored["false_negatives"]),
                precision_ci=_pair(stored["precision_ci"]),
                recall_ci=_pair(stored["recall_ci"]),
                fpr_ci=_pair(stored["fpr_ci"]),
                interval=stored.get("interval", "wilson"),
                confidence=float(stored.get("confidence", 0.95)),
                prior=_optional_float(stored.get("prior")),
                positive=stored.get("positive"),
                alerts_per_day=_optional_float(stored.get("alerts_per_day")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                "stored operating point is incomplete or malformed",
                field="operating_point",
                expected="the dict written by OperatingPoint.to_dict()",
                found=f"{type(exc).__name__}: {exc}",
            ) from exc


def choose_threshold(
    y_true_binary: ArrayLike,
    scores: ArrayLike,
    goal: Goal | str,
    *,
    prior: float | None = None,
    interval: Interval = "wilson",
    confidence: float = 0.95,
    positive: str | None = None,
) -> OperatingPoint:
    """The threshold that meets ``goal`` with the highest recall (ties: highest threshold).

    ``y_true_binary`` is 1 for an attack and 0 for benign; an event is an alert when
    ``score >= threshold``. When no threshold meets the goal, the point closest to it is
    returned with ``achievable=False``. ``prior`` is the expected share of attacks in
    production; see the module notes.
    """
    target = parse_goal(goal)
    _check_interval(interval, confidence)
    curve = precision_recall_points(y_true_binary, scores, prior=prior)

    shortfall = target.shortfall(curve)
    met = shortfall <= _TOLERANCE
    achievable = bool(met.any())
    if achievable:
        index = int(np.argmax(np.where(met, curve.true_positives, -1)))
    else:
        order = np.lexsort((np.arange(shortfall.size), -curve.true_positives, shortfall))
        index = int(order[0])

    point = _point_at(curve, index, target, achievable, interval, confidence, positive)
    if not achievable:
        logger.warning(
            "no threshold meets %s%s; closest: threshold %.6g, precision %.4g, recall %.4g, "
            "fpr %.4g",
            target,
            f" for {positive}" if positive else "",
            point.threshold,
            point.precision,
            point.recall,
            point.fpr,
        )
    elif point.true_positives == 0:
        logger.warning("%s is met only by alerting on no attack at all", target)
    else:
        logger.info(
            "threshold %.6g meets %s: precision %.4g, recall %.4g, fpr %.4g",
            point.threshold,
            target,
            point.precision,
            point.recall,
            point.fpr,
        )
    return point


def _point_at(
    curve: PrecisionRecallCurve,
    index: int,
    goal: Goal,
    achievable: bool,
    interval: Interval,
    confidence: float,
    positive: str | None,
) -> OperatingPoint:
    tp = int(curve.true_positives[index])
    fp = int(curve.false_positives[index])

    recall_ci = proportion_interval(tp, curve.positives, confidence=confidence, method=interval)
    fpr_ci = proportion_interval(fp, curve.negatives, confidence=confidence, method=interval)
    if curve.prior is None:
        precision_ci = proportion_interval(tp, tp + fp, confidence=confidence, method=interval)
    else:
        each = math.sqrt(confidence)
        tpr_lo, tpr_hi = proportion_interval(tp, curve.positives, confidence=each, method=interval)
        fpr_lo, fpr_hi = proportion_interval(fp, curve.negatives, confidence=each, method=interval)
        precision_ci = (
            _reweighted_precision(curve.prior, tpr_lo, fpr_hi),
            _reweighted_precision(curve.prior, tpr_hi, fpr_lo),
        )

    return OperatingPoint(
        threshold=float(curve.thresholds[index]),
        goal=goal,
        achievable=achievable,
        precision=float(curve.precision[index]),
        recall=float(curve.recall[index]),
        fpr=float(curve.fpr[index]),
        alert_rate=float(curve.alert_rate[index]),
        true_positives=tp,
        false_positives=fp,
        true_negatives=curve.negatives - fp,
        false_negatives=curve.positives - tp,
        precision_ci=precision_ci,
        recall_ci=recall_ci,
        fpr_ci=fpr_ci,
        interval=interval,
        confidence=confidence,
        prior=curve.prior,
        positive=positive,
        alerts_per_day=(
            float(curve.alerts_per_day(goal.events_per_day)[index])
            if isinstance(goal, AlertBudget)
            else None
        ),
    )


def proportion_interval(
    successes: int, trials: int, *, confidence: float = 0.95, method: Interval = "wilson"
) -> tuple[float, float]:
    """Two-sided confidence interval of a binomial proportion; (0, 1) when there are no trials.

    >>> [round(v, 4) for v in proportion_interval(8, 10)]
    [0.4902, 0.9433]
    """
    _check_interval(method, confidence)
    if trials <= 0:
        return (0.0, 1.0)

    alpha = 1.0 - confidence
    if method == "wilson":
        z = float(stats.norm.ppf(1.0 - alpha / 2.0))
        share = successes / trials
        shrink = 1.0 + z * z / trials
        centre = (share + z * z / (2.0 * trials)) / shrink
        spread = share * (1.0 - share) / trials + z * z / (4.0 * trials * trials)
        half = z / shrink * math.sqrt(spread)
        return (max(0.0, centre - half), min(1.0, centre + half))

    failures = trials - successes
    low = 0.0 if successes == 0 else stats.beta.ppf(alpha / 2.0, successes, failures + 1)
    high = 1.0 if failures == 0 else stats.beta.ppf(1.0 - alpha / 2.0, successes + 1, failures)
    return (float(low), float(high))


def stored_calibrator(point: Mapping[str, Any] | None) -> Calibrator | None:
    """The calibrator a stored operating point's threshold applies after, or None.

    None means the threshold is on the raw score (no ``"calibration"`` key, or method
    ``"none"``).

    >>> stored_calibrator({"threshold": 0.5}) is None
    True
    >>> stored_calibrator({"threshold": 0.5, "calibration": {"method": "sigmoid", "a": 2.0,
    ...                    "b": 0.0, "on_logit": True}}).method
    'sigmoid'
    """
    if not point or point.get("calibration") is None:
        return None
    stored = point["calibration"]
    if not isinstance(stored, Mapping):
        raise DataError(
            "stored operating point has a malformed calibration",
            field="operating_point.calibration",
            expected="the dict written by Calibrator.to_dict()",
            found=type(stored).__name__,
            fix="choose the operating point again with 'threattune threshold'",
        )
    calibrator = Calibrator.from_dict(stored)
    return None if calibrator.method == "none" else calibrator


# --- multi-class -----------------------------------------------------------------------------


def any_attack_score(
    proba: ArrayLike, classes: Sequence[Any], benign_class: Any
) -> NDArray[np.float64]:
    """``1 - P(benign)`` for each row of a class-probability matrix.

    >>> any_attack_score([[0.7, 0.2, 0.1]], ["benign", "dos", "scan"], "benign").round(3)
    array([0.3])
    """
    matrix, benign = _matrix(proba, classes, benign_class)
    return 1.0 - matrix[:, benign]


def choose_thresholds(
    y_true_labels: ArrayLike,
    proba_matrix: ArrayLike,
    classes: Sequence[Any],
    benign_class: Any,
    goal: Goal | str | Mapping[str, Goal | str],
    per_class: bool = False,
    *,
    prior: float | Mapping[str, float] | None = None,
    interval: Interval = "wilson",
    confidence: float = 0.95,
) -> dict[str, OperatingPoint]:
    """Operating points of a multi-class model, keyed by ``"any-attack"`` or class name.

    With ``per_class=False`` a single point is set on the any-attack score ``1 - P(benign)``
    (one alert budget, one precision target for all attacks). With ``per_class=True`` each attack
    class gets its own point on ``P(class)``, one class against the rest; ``goal`` and ``prior``
    may then be mappings from class name to a goal and a production prior. A goal applies to each
    class on its own, so a shared alert budget belongs on the any-attack point.
    Keys are ``str(class)``.
    """
    labels = np.asarray(y_true_labels).ravel()
    matrix, benign = _matrix(proba_matrix, classes, benign_class)
    names = [str(name) for name in classes]
    if labels.size != matrix.shape[0]:
        raise DataError(
            "labels and probability rows differ in number",
            field="y_true_labels",
            expected=f"{matrix.shape[0]} labels, one per row",
            found=f"{labels.size} labels",
        )
    label_names = labels.astype(str)
    unknown = np.setdiff1d(np.unique(label_names), names)
    if unknown.size:
        raise DataError(
            "labels hold classes the model does not know",
            field="y_true_labels",
            expected=f"one of {names}",
            found=f"{unknown[:5].tolist()}",
            fix="map the labels onto the model's classes before choosing thresholds",
        )

    if not per_class:
        if isinstance(goal, Mapping) or isinstance(prior, Mapping):
            raise ConfigError(
                "a per-class goal or prior was given for the any-attack operating point",
                field="goal" if isinstance(goal, Mapping) else "prior",
                expected="a single goal and a single prior",
                found="a mapping by class",
                fix="pass per_class=True or give one goal and one prior",
            )
        point = choose_threshold(
            label_names != names[benign],
            1.0 - matrix[:, benign],
            goal,
            prior=prior,
            interval=interval,
            confidence=confidence,
            positive=ANY_ATTACK,
        )
        return {ANY_ATTACK: point}

    points: dict[str, OperatingPoint] = {}
    for column, name in enumerate(names):
        if column == benign:
            continue
        if not (label_names == name).any():
            raise DataError(
                f"no validation examples of class {name!r} to set its threshold on",
                field="y_true_labels",
                expected=f"at least one event labelled {name!r}",
                found="none",
                fix="add examples of the class to the validation split or use per_class=False",
            )
        points[name] = choose_threshold(
            label_names == name,
            matrix[:, column],
            _for_class(goal, name, "goal"),
            prior=_for_class(prior, name, "prior"),
            interval=interval,
            confidence=confidence,
            positive=name,
        )
    return points


def apply_operating_point(
    proba: ArrayLike,
    classes: Sequence[Any],
    benign_class: Any,
    point: OperatingPoint | Mapping[str, OperatingPoint],
    *,
    calibrator: Calibrator | None = None,
) -> NDArray[Any]:
    """Predicted labels of class-probability rows at an operating point (vectorised).

    Any-attack point (a single :class:`OperatingPoint`, or a mapping holding ``"any-attack"``):
    a row is an alert when ``1 - P(benign)`` (calibrated when a calibrator is given) is at least
    the threshold, and its class is the most probable attack class; otherwise it is benign.
    Per-class points (a mapping from every attack class name): a row alerts for each class whose
    probability reaches that class's threshold and takes the most probable of those; a row that
    reaches none is benign.

    >>> point = choose_threshold([1, 0], [0.6, 0.2], "fpr<=0")
    >>> apply_operating_point([[0.3, 0.5, 0.2], [0.8, 0.1, 0.1]], ["ok", "dos", "scan"], "ok",
    ...                       point).tolist()
    ['dos', 'ok']
    """
    matrix, benign = _matrix(proba, classes, benign_class)
    labels = np.asarray(classes)
    attack_columns = np.array([c for c in range(len(classes)) if c != benign], dtype=np.intp)
    if attack_columns.size == 0:
        return np.full(matrix.shape[0], labels[benign])

    single = point.get(ANY_ATTACK) if isinstance(point, Mapping) else point
    if single is not None:
        score = 1.0 - matrix[:, benign]
        if calibrator is not None:
            score = calibrator.transform(score)
        alert = score >= single.threshold
        best = attack_columns[np.argmax(matrix[:, attack_columns], axis=1)]
        return labels[np.where(alert, best, benign)]

    if calibrator is not None:
        raise ConfigError(
            "a calibrator applies to the any-attack score only",
            field="calibrator",
            expected="no calibrator with per-class operating points",
            found="a calibrator",
            fix="drop the calibrator or use the any-attack operating point",
        )
    thresholds = _class_thresholds(
        cast(Mapping[str, OperatingPoint], point), [str(labels[c]) for c in attack_columns]
    )

    attack_proba = matrix[:, attack_columns]
    passing = attack_proba >= thresholds
    best = np.argmax(np.where(passing, attack_proba, -np.inf), axis=1)
    return labels[np.where(passing.any(axis=1), attack_columns[best], benign)]


# --- plot ------------------------------------------------------------------------------------


def plot_operating_point(
    curve: PrecisionRecallCurve, point: OperatingPoint, path: str | Path
) -> Path:
    """Write a PNG of the precision-recall curve with the chosen point and its intervals."""
    from matplotlib.figure import Figure

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)

    figure = Figure(figsize=(6.4, 4.8), layout="constrained")
    axes = figure.add_subplot()
    axes.plot(curve.recall, curve.precision, drawstyle="steps-post", color="C0", label="validation")
    if isinstance(point.goal, TargetPrecision):
        axes.axhline(point.goal.precision, color="grey", linestyle="--", linewidth=1, label="goal")
    axes.errorbar(
        point.recall,
        point.precision,
        xerr=[
            [max(point.recall - point.recall_ci[0], 0.0)],
            [max(point.recall_ci[1] - point.recall, 0.0)],
        ],
        yerr=[
            [max(point.precision - point.precision_ci[0], 0.0)],
            [max(point.precision_ci[1] - point.precision, 0.0)],
        ],
        fmt="o",
        color="C3" if point.achievable else "C1",
        capsize=3,
        label=f"threshold {point.threshold:.4g}",
    )
    axes.set_xlim(0.0, 1.02)
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("recall (share of attacks alerted on)")
    axes.set_ylabel("precision (share of alerts that are attacks)")
    status = "met" if point.achievable else "not achievable, closest point"
    prior = f", prior {point.prior:.3g}" if point.prior is not None else ""
    axes.set_title(f"{point.positive or 'attack'}: {point.goal} ({status}{prior})", fontsize=10)
    axes.legend(loc="lower left", fontsize=8)
    axes.grid(alpha=0.3)

    figure.savefig(target, format="png", dpi=100)
    logger.info("operating point plot written to %s", target)
    return target


# --- helpers ---------------------------------------------------------------------------------


def _binary_inputs(
    y_true: ArrayLike, scores: ArrayLike
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    labels = np.asarray(y_true).ravel()
    values = np.asarray(scores, dtype=np.float64).ravel()
    if labels.size != values.size:
        raise DataError(
            "labels and scores differ in length",
            field="scores",
            expected=f"{labels.size} scores, one per label",
            found=f"{values.size} scores",
        )
    if labels.dtype != np.bool_ and not np.isin(labels, (0, 1)).all():
        raise DataError(
            "labels are not binary",
            field="y_true",
            expected="1 (attack) or 0 (benign), or booleans",
            found=f"values such as {np.unique(labels)[:5].tolist()}",
            fix="map labels to 1 for attack and 0 for benign",
        )
    if not np.isfinite(values).all():
        raise DataError(
            "scores contain NaN or infinite values",
            field="scores",
            expected="finite numbers",
            found=f"{int((~np.isfinite(values)).sum())} non-finite scores",
            fix="drop or repair the events whose score is missing",
        )
    binary = labels.astype(bool)
    attacks = int(binary.sum())
    if attacks == 0 or attacks == binary.size:
        raise DataError(
            "a threshold needs both attacks and benign events in the validation split",
            field="y_true",
            expected="at least one attack and one benign event",
            found=f"{attacks} attacks among {binary.size} events",
            fix="choose the threshold on a validation split that holds both",
        )
    return binary, values


def _matrix(
    proba: ArrayLike, classes: Sequence[Any], benign_class: Any
) -> tuple[NDArray[np.float64], int]:
    matrix = np.asarray(proba, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != len(classes):
        raise DataError(
            "class probabilities do not match the classes",
            field="proba",
            expected=f"a 2-D array with {len(classes)} columns, one per class",
            found=f"shape {matrix.shape}",
        )
    names = [str(name) for name in classes]
    if str(benign_class) not in names:
        raise ConfigError(
            "the benign class is not among the model's classes",
            field="benign_class",
            expected=f"one of {names}",
            found=repr(benign_class),
        )
    return matrix, names.index(str(benign_class))


def _class_thresholds(
    points: Mapping[str, OperatingPoint], attack_names: list[str]
) -> NDArray[np.float64]:
    missing = [name for name in attack_names if name not in points]
    if missing:
        raise ConfigError(
            "per-class operating points do not cover every attack class",
            field="point",
            expected=f"a point for each of {attack_names}",
            found=f"none for {missing}",
            fix="choose thresholds with per_class=True on the same classes, or use the "
            "any-attack point",
        )
    return np.array([points[name].threshold for name in attack_names], dtype=np.float64)


def _for_class(setting: Any, name: str, what: str) -> Any:
    if not isinstance(setting, Mapping):
        return setting
    if name not in setting:
        raise ConfigError(
            f"no {what} given for class {name!r}",
            field=what,
            expected=f"a {what} for every attack class",
            found=f"{what}s for {sorted(setting)}",
        )
    return setting[name]


def _check_interval(method: str, confidence: float) -> None:
    if method not in ("wilson", "clopper-pearson"):
        raise ConfigError(
            "unknown confidence interval method",
            field="interval",
            expected="'wilson' or 'clopper-pearson'",
            found=repr(method),
        )
    _check_range("confidence", confidence, low=0.0, high=1.0, low_open=True, high_open=True)


def _reweighted_precision(prior: float, tpr: float, fpr: float) -> float:
    attack = prior * tpr
    alerts = attack + (1.0 - prior) * fpr
    return attack / alerts if alerts > 0 else 0.0


def _check_range(
    name: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        too_low = True
    if too_low or too_high:
        left = "" if low is None else f"{low} {'<' if low_open else '<='} "
        right = "" if high is None else f" {'<' if high_open else '<='} {high}"
        raise ConfigError(
            f"{name} is out of range",
            field=name,
            expected=f"{left}{name}{right}",
            found=repr(value),
        )


def _parse_number(name: str, text: str, goal: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(
            f"{name} in the goal is not a number",
            field="goal",
            expected=f"a number for {name} in {_GOAL_FORMS}",
            found=f"{text!r} in {goal!r}",
        ) from None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _pair(values: Sequence[float]) -> tuple[float, float]:
    low, high = values
    return (float(low), float(high))


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
