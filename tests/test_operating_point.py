"""Operating points and calibration, against curves whose answer is known by hand."""

from __future__ import annotations

import doctest
import json
import math
import time
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from threattune import calibration, operating_point
from threattune.calibration import Calibrator, brier_score, fit_calibrator
from threattune.errors import ConfigError, DataError
from threattune.operating_point import (
    ANY_ATTACK,
    AlertBudget,
    MaxFalsePositiveRate,
    OperatingPoint,
    PrecisionRecallCurve,
    TargetPrecision,
    any_attack_score,
    apply_operating_point,
    choose_threshold,
    choose_thresholds,
    goal_from_dict,
    parse_goal,
    plot_operating_point,
    precision_recall_points,
    proportion_interval,
)

CLASSES = ["benign", "dos", "scan"]


def _brute_force(y, scores, goal, prior=None):
    """The goal's best threshold by trying every distinct score, slowly and plainly."""
    y = np.asarray(y, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    positives, negatives = int(y.sum()), int((~y).sum())
    best = None
    for threshold in sorted(set(scores.tolist()), reverse=True):
        alert = scores >= threshold
        tp, fp = int((alert & y).sum()), int((alert & ~y).sum())
        recall, fpr = tp / positives, fp / negatives
        if prior is None:
            precision, rate = tp / (tp + fp), (tp + fp) / y.size
        else:
            rate = prior * recall + (1 - prior) * fpr
            precision = prior * recall / rate
        if isinstance(goal, TargetPrecision):
            met = precision >= goal.precision - 1e-12
        elif isinstance(goal, MaxFalsePositiveRate):
            met = fpr <= goal.fpr + 1e-12
        else:
            met = rate * goal.events_per_day <= goal.alerts_per_day * (1 + 1e-12)
        if met and (best is None or recall > best[1]):
            best = (threshold, recall)
    return best


# --- choosing a threshold --------------------------------------------------------------------


def test_precision_goal_picks_highest_recall_that_meets_it() -> None:
    y = [1, 1, 0, 1, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]

    point = choose_threshold(y, scores, TargetPrecision(0.75))

    assert point.achievable
    assert point.threshold == 0.6
    assert (point.precision, point.recall) == (0.75, 1.0)
    assert (point.true_positives, point.false_positives) == (3, 1)
    assert (point.true_negatives, point.false_negatives) == (2, 0)
    assert point.fpr == pytest.approx(1 / 3)
    assert point.alert_rate == pytest.approx(4 / 6)


def test_equal_precision_prefers_the_higher_recall() -> None:
    point = choose_threshold([1, 1, 0, 1, 0, 0], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], "precision>=0.9")

    assert point.threshold == 0.8
    assert point.recall == pytest.approx(2 / 3)


def test_tied_scores_are_alerted_on_together() -> None:
    y = np.array([1, 1, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.8, 0.8, 0.3])

    strict = choose_threshold(y, scores, "precision>=0.9")
    loose = choose_threshold(y, scores, "precision>=0.75")

    assert strict.threshold == 0.9
    assert strict.recall == pytest.approx(1 / 3)
    assert loose.threshold == 0.8
    assert (loose.true_positives, loose.false_positives) == (3, 1)
    assert int((scores >= loose.threshold).sum()) == loose.alerts
    assert precision_recall_points(y, scores).thresholds.tolist() == [0.9, 0.8, 0.3]


def test_equal_recall_prefers_the_higher_threshold() -> None:
    point = choose_threshold([1, 0, 0], [0.9, 0.7, 0.5], MaxFalsePositiveRate(0.5))

    assert point.threshold == 0.9
    assert (point.recall, point.fpr) == (1.0, 0.0)


def test_unreachable_goal_returns_the_closest_point_not_an_error() -> None:
    y = [0, 1, 1, 0, 1]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]

    point = choose_threshold(y, scores, "precision>=0.99")

    assert not point.achievable
    assert point.threshold == 0.7
    assert point.precision == pytest.approx(2 / 3)
    assert point.recall == pytest.approx(2 / 3)


def test_fpr_goal() -> None:
    rng = np.random.default_rng(3)
    benign = np.arange(200) / 200
    attacks = 0.9025 + np.arange(20) / 200
    y = np.r_[np.zeros(200), np.ones(20)]
    scores = np.r_[benign, attacks]
    order = rng.permutation(y.size)

    point = choose_threshold(y[order], scores[order], "fpr<=0.01")

    assert point.threshold == attacks[17]
    assert (point.false_positives, point.fpr) == (2, 0.01)
    assert (point.true_positives, point.recall) == (3, 0.15)
    assert point.goal == MaxFalsePositiveRate(0.01)


def test_goal_met_only_without_catching_attacks_is_flagged(caplog) -> None:
    y = np.r_[np.zeros(200), np.ones(20)]
    scores = np.r_[np.arange(200) / 200, 0.5 + np.arange(20) / 40]

    point = choose_threshold(y, scores, "fpr<=0.01")

    assert point.achievable
    assert (point.threshold, point.recall, point.false_positives) == (0.995, 0.0, 1)
    assert "alerting on no attack" in caplog.text


def test_alert_budget_arithmetic() -> None:
    y = np.zeros(1000, dtype=int)
    y[[0, 1, 2, 4, 6, 8, 10, 12, 14, 16]] = 1
    scores = (999 - np.arange(1000)) / 1000
    budget = AlertBudget(alerts_per_day=500, events_per_day=100_000)

    point = choose_threshold(y, scores, budget)

    assert budget.max_alert_rate == 0.005
    assert point.alerts == 5
    assert point.alerts_per_day == 500.0
    assert point.threshold == scores[4]
    assert (point.true_positives, point.recall) == (4, 0.4)
    assert choose_threshold(y, scores, "alerts<=599/day@100000").alerts == 5
    assert choose_threshold(y, scores, "alerts<=600/day@100000").alerts == 5
    assert choose_threshold(y, scores, "alerts<=700/day@100000").alerts == 7


def test_alert_budget_with_a_production_prior() -> None:
    y = np.zeros(1000, dtype=int)
    y[:100] = 1
    scores = (999 - np.arange(1000)) / 1000
    y[[100, 101]], y[[98, 99]] = 1, 0
    prior = 0.001

    point = choose_threshold(y, scores, "alerts<=10/day@10000", prior=prior)

    expected_rate = prior * point.recall + (1 - prior) * point.fpr
    assert point.alert_rate == pytest.approx(expected_rate)
    assert point.alerts_per_day == pytest.approx(expected_rate * 10_000)
    assert point.alerts_per_day <= 10
    assert point.threshold == _brute_force(y, scores, point.goal, prior=prior)[0]


def test_prior_reweights_precision_as_computed_by_hand() -> None:
    y = np.r_[np.ones(6), np.ones(2), np.zeros(5), np.ones(2), np.zeros(95)]
    scores = np.r_[np.full(6, 0.9), np.full(7, 0.8), np.full(97, 0.1)]

    point = choose_threshold(y, scores, "fpr<=0.05", prior=0.01)
    plain = choose_threshold(y, scores, "fpr<=0.05")

    assert point.threshold == plain.threshold == 0.8
    assert (point.recall, point.fpr) == (0.8, 0.05)
    assert point.precision == pytest.approx(0.008 / (0.008 + 0.0495))
    assert plain.precision == pytest.approx(8 / 13)
    assert point.alert_rate == pytest.approx(0.008 + 0.0495)
    low, high = point.precision_ci
    assert low < point.precision < high
    each = math.sqrt(0.95)
    tpr_low, tpr_high = proportion_interval(8, 10, confidence=each)
    fpr_low, fpr_high = proportion_interval(5, 100, confidence=each)
    assert low == pytest.approx(0.01 * tpr_low / (0.01 * tpr_low + 0.99 * fpr_high))
    assert high == pytest.approx(0.01 * tpr_high / (0.01 * tpr_high + 0.99 * fpr_low))


@pytest.mark.parametrize(
    "goal", ["precision>=0.8", "precision>=0.95", "fpr<=0.02", "alerts<=40/day@1000"]
)
@pytest.mark.parametrize("prior", [None, 0.02])
def test_agrees_with_brute_force_on_tied_scores(goal: str, prior: float | None) -> None:
    rng = np.random.default_rng(11)
    y = rng.uniform(size=600) < 0.2
    scores = np.round(np.clip(rng.normal(0.35 + 0.4 * y, 0.2), 0, 1), 2)

    point = choose_threshold(y, scores, goal, prior=prior)
    expected = _brute_force(y, scores, parse_goal(goal), prior=prior)

    assert expected is not None and point.achievable
    assert point.threshold == expected[0]
    assert point.recall == pytest.approx(expected[1])


def test_confidence_intervals_match_scipy() -> None:
    for successes, trials in [(8, 10), (0, 25), (25, 25), (3, 1000)]:
        exact = stats.binomtest(successes, trials).proportion_ci(0.95, method="exact")
        wilson = stats.binomtest(successes, trials).proportion_ci(0.95, method="wilson")

        assert proportion_interval(successes, trials, method="clopper-pearson") == pytest.approx(
            (exact.low, exact.high)
        )
        assert proportion_interval(successes, trials) == pytest.approx((wilson.low, wilson.high))

    assert proportion_interval(0, 0) == (0.0, 1.0)


def test_operating_point_intervals_use_the_asked_method() -> None:
    point = choose_threshold(
        [1, 1, 0, 1, 0, 0],
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
        "precision>=0.75",
        interval="clopper-pearson",
        confidence=0.9,
    )

    assert point.recall_ci == proportion_interval(3, 3, confidence=0.9, method="clopper-pearson")
    assert point.fpr_ci == proportion_interval(1, 3, confidence=0.9, method="clopper-pearson")
    assert point.precision_ci == proportion_interval(3, 4, confidence=0.9, method="clopper-pearson")


def test_operating_point_round_trips_through_json() -> None:
    y = np.r_[np.ones(6), np.ones(2), np.zeros(5), np.ones(2), np.zeros(95)]
    scores = np.r_[np.full(6, 0.9), np.full(7, 0.8), np.full(97, 0.1)]
    for goal in ["precision>=0.6", "fpr<=0.05", "alerts<=200/day@5000000"]:
        point = choose_threshold(y, scores, goal, prior=0.01, positive="dos")

        restored = OperatingPoint.from_dict(json.loads(json.dumps(point.to_dict())))

        assert restored == point
        assert isinstance(restored.precision_ci, tuple)


def test_bad_inputs_raise_data_errors() -> None:
    with pytest.raises(DataError, match="differ in length"):
        choose_threshold([1, 0], [0.1, 0.2, 0.3], "fpr<=0.1")
    with pytest.raises(DataError, match="NaN or infinite"):
        choose_threshold([1, 0], [0.1, float("nan")], "fpr<=0.1")
    with pytest.raises(DataError, match="not binary"):
        choose_threshold([1, 2], [0.1, 0.2], "fpr<=0.1")
    with pytest.raises(DataError, match="both attacks and benign"):
        choose_threshold([1, 1], [0.1, 0.2], "fpr<=0.1")
    with pytest.raises(ConfigError, match="prior is out of range"):
        choose_threshold([1, 0], [0.1, 0.2], "fpr<=0.1", prior=1.0)
    with pytest.raises(ConfigError, match="unknown confidence interval method"):
        choose_threshold([1, 0], [0.1, 0.2], "fpr<=0.1", interval="agresti")
    with pytest.raises(ConfigError, match="confidence is out of range"):
        choose_threshold([1, 0], [0.1, 0.2], "fpr<=0.1", confidence=95)


# --- goals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "goal"),
    [
        ("precision>=0.99", TargetPrecision(0.99)),
        (" Precision >= 0.9 ", TargetPrecision(0.9)),
        ("fpr<=0.01", MaxFalsePositiveRate(0.01)),
        ("alerts<=200/day@5000000", AlertBudget(200, 5_000_000)),
        ("alerts <= 200 / day @ 5_000_000", AlertBudget(200, 5_000_000)),
        ("alerts<=12.5/day@1e6", AlertBudget(12.5, 1e6)),
    ],
)
def test_goal_strings_parse_and_print_back(text: str, goal: object) -> None:
    parsed = parse_goal(text)

    assert parsed == goal
    assert parse_goal(str(parsed)) == parsed
    assert goal_from_dict(json.loads(json.dumps(parsed.to_dict()))) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("recall>=0.9", r"cannot read the operating-point goal(.|\n)*expected: 'precision>=P'"),
        ("precision>0.99", "cannot read the operating-point goal"),
        ("alerts<=200/day", r"expected: .*'alerts<=N/day@EVENTS_PER_DAY'"),
        ("fpr<=abc", r"fpr in the goal is not a number(.|\n)*found:    'abc'"),
        ("precision>=1.5", r"precision is out of range(.|\n)*expected: 0.0 < precision <= 1.0"),
        ("fpr<=-0.1", "fpr is out of range"),
        ("alerts<=0/day@1000", "alerts_per_day is out of range"),
        ("alerts<=10/day@0", "events_per_day is out of range"),
    ],
)
def test_goal_parsing_errors_say_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_goal(text)

    assert caught.value.expected


def test_stored_goal_of_unknown_kind_is_a_data_error() -> None:
    with pytest.raises(DataError, match="unknown kind"):
        goal_from_dict({"kind": "recall", "recall": 0.9})


# --- curve and plot --------------------------------------------------------------------------


def test_curve_to_dict_is_json_and_thins_to_max_points() -> None:
    rng = np.random.default_rng(5)
    y = rng.uniform(size=5000) < 0.1
    curve = precision_recall_points(y, rng.uniform(size=5000) + y)

    full = json.loads(json.dumps(curve.to_dict()))
    thin = curve.to_dict(max_points=100)
    restored = PrecisionRecallCurve.from_dict(full)

    assert len(full["thresholds"]) == curve.thresholds.size == 5000
    assert len(thin["thresholds"]) == 100
    assert thin["thresholds"][0] == full["thresholds"][0]
    assert thin["recall"][-1] == 1.0
    assert np.array_equal(restored.precision, curve.precision)


def test_plot_writes_a_png(tmp_path) -> None:
    rng = np.random.default_rng(2)
    y = rng.uniform(size=500) < 0.3
    scores = rng.uniform(size=500) + 0.5 * y
    curve = precision_recall_points(y, scores)
    point = choose_threshold(y, scores, "precision>=0.8")

    path = plot_operating_point(curve, point, tmp_path / "plots" / "pr.png")

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- multi-class -----------------------------------------------------------------------------


def _multiclass():
    rng = np.random.default_rng(7)
    labels = rng.choice(CLASSES, size=3000, p=[0.8, 0.1, 0.1])
    logits = rng.normal(size=(3000, 3)) + 2.5 * (labels[:, None] == np.array(CLASSES))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, proba


def test_any_attack_threshold_is_set_on_one_minus_benign() -> None:
    labels, proba = _multiclass()

    points = choose_thresholds(labels, proba, CLASSES, "benign", "precision>=0.9")
    direct = choose_threshold(labels != "benign", 1 - proba[:, 0], "precision>=0.9")

    assert list(points) == [ANY_ATTACK]
    assert points[ANY_ATTACK] == replace(direct, positive=ANY_ATTACK)
    assert np.array_equal(any_attack_score(proba, CLASSES, "benign"), 1 - proba[:, 0])


def test_per_class_thresholds_are_one_against_the_rest() -> None:
    labels, proba = _multiclass()

    points = choose_thresholds(
        labels,
        proba,
        CLASSES,
        "benign",
        {"dos": "fpr<=0.01", "scan": "precision>=0.9"},
        per_class=True,
        prior={"dos": 0.001, "scan": 0.01},
    )

    assert sorted(points) == ["dos", "scan"]
    assert points["dos"] == choose_threshold(
        labels == "dos", proba[:, 1], "fpr<=0.01", prior=0.001, positive="dos"
    )
    assert points["scan"].goal == TargetPrecision(0.9)


def test_per_class_needs_examples_of_every_attack_class() -> None:
    labels, proba = _multiclass()
    labels[labels == "scan"] = "dos"

    with pytest.raises(DataError, match="no validation examples of class 'scan'"):
        choose_thresholds(labels, proba, CLASSES, "benign", "fpr<=0.01", per_class=True)
    with pytest.raises(DataError, match="classes the model does not know"):
        choose_thresholds(np.append(labels[:-1], "worm"), proba, CLASSES, "benign", "fpr<=0.01")
    with pytest.raises(ConfigError, match="benign class is not among"):
        choose_thresholds(labels, proba, CLASSES, "normal", "fpr<=0.01")


def _fixed_point(threshold: float, positive: str = ANY_ATTACK) -> OperatingPoint:
    return OperatingPoint(
        threshold=threshold,
        goal=TargetPrecision(0.9),
        achievable=True,
        precision=1.0,
        recall=1.0,
        fpr=0.0,
        alert_rate=0.1,
        true_positives=1,
        false_positives=0,
        true_negatives=1,
        false_negatives=0,
        precision_ci=(0.5, 1.0),
        recall_ci=(0.5, 1.0),
        fpr_ci=(0.0, 0.5),
        positive=positive,
    )


def test_apply_any_attack_point_on_a_small_matrix() -> None:
    proba = np.array(
        [
            [0.90, 0.05, 0.05],  # any-attack 0.10: benign
            [0.50, 0.20, 0.30],  # any-attack 0.50: alert, scan
            [0.40, 0.35, 0.25],  # any-attack 0.60: alert, dos
            [0.55, 0.45, 0.00],  # any-attack 0.45: just below, benign
            [0.00, 0.50, 0.50],  # tie between attacks: first attack class
        ]
    )

    predicted = apply_operating_point(proba, CLASSES, "benign", _fixed_point(0.5))
    same = apply_operating_point(proba, CLASSES, "benign", {ANY_ATTACK: _fixed_point(0.5)})

    assert predicted.tolist() == ["benign", "scan", "dos", "benign", "dos"]
    assert same.tolist() == predicted.tolist()


def test_apply_per_class_points_on_a_small_matrix() -> None:
    proba = np.array(
        [
            [0.50, 0.30, 0.20],  # dos 0.30 < 0.4, scan 0.20 >= 0.2: scan
            [0.30, 0.45, 0.25],  # both pass: dos is more probable
            [0.70, 0.20, 0.10],  # neither: benign
        ]
    )
    points = {"dos": _fixed_point(0.4, "dos"), "scan": _fixed_point(0.2, "scan")}

    predicted = apply_operating_point(proba, CLASSES, "benign", points)

    assert predicted.tolist() == ["scan", "dos", "benign"]
    with pytest.raises(ConfigError, match="do not cover every attack class"):
        apply_operating_point(proba, CLASSES, "benign", {"dos": points["dos"]})
    with pytest.raises(ConfigError, match="any-attack score only"):
        apply_operating_point(proba, CLASSES, "benign", points, calibrator=Calibrator("none"))


def test_apply_uses_the_calibrated_any_attack_score() -> None:
    proba = np.array([[0.7, 0.2, 0.1], [0.4, 0.3, 0.3]])
    halve = Calibrator("isotonic", x=(0.0, 1.0), y=(0.0, 0.5))

    plain = apply_operating_point(proba, CLASSES, "benign", _fixed_point(0.25))
    calibrated = apply_operating_point(
        proba, CLASSES, "benign", _fixed_point(0.25), calibrator=halve
    )

    assert plain.tolist() == ["dos", "dos"]
    assert calibrated.tolist() == ["benign", "dos"]


def test_apply_is_vectorised() -> None:
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(8), size=500_000)
    classes = [f"c{i}" for i in range(8)]

    started = time.perf_counter()
    predicted = apply_operating_point(proba, classes, "c0", _fixed_point(0.9))
    elapsed = time.perf_counter() - started

    assert predicted.shape == (500_000,)
    assert elapsed < 2.0


# --- calibration -----------------------------------------------------------------------------


def _miscalibrated(seed: int, size: int = 8000):
    """Overconfident scores: the true attack probability is sigmoid(x - 1), the score
    sigmoid(3x - 2)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=size)
    y = (rng.uniform(size=size) < 1 / (1 + np.exp(-(x - 1)))).astype(int)
    return 1 / (1 + np.exp(-(3 * x - 2))), y


@pytest.mark.parametrize("method", ["isotonic", "sigmoid", "auto"])
def test_calibration_improves_brier_on_held_out_scores(method: str) -> None:
    train_scores, train_y = _miscalibrated(1)
    test_scores, test_y = _miscalibrated(2)

    calibrator = fit_calibrator(train_scores, train_y, method=method)

    before = brier_score(test_scores, test_y)
    after = brier_score(calibrator.transform(test_scores), test_y)
    assert after < before - 0.01


def test_auto_says_which_method_it_chose_and_why() -> None:
    scores, y = _miscalibrated(3)

    calibrator = fit_calibrator(scores, y, method="auto")

    assert calibrator.method in ("isotonic", "sigmoid")
    assert calibrator.reason.startswith(f"{calibrator.method} had the lowest")
    assert "Brier" in calibrator.reason
    assert set(calibrator.cv_scores) == {"none", "sigmoid", "isotonic"}
    best = min(calibrator.cv_scores.values(), key=lambda scores: scores["brier"])
    assert calibrator.cv_scores[calibrator.method] == best


def test_auto_keeps_scores_that_are_already_calibrated() -> None:
    rng = np.random.default_rng(4)
    scores = rng.uniform(size=3000)
    y = (rng.uniform(size=3000) < scores).astype(int)

    calibrator = fit_calibrator(scores, y, method="auto")

    assert brier_score(calibrator.transform(scores), y) <= brier_score(scores, y) + 0.002


@pytest.mark.parametrize("method", ["isotonic", "sigmoid", "none", "auto"])
def test_calibrator_round_trips_through_json(method: str) -> None:
    scores, y = _miscalibrated(5, size=2000)
    calibrator = fit_calibrator(scores, y, method=method)

    stored = json.dumps(calibrator.to_dict())
    restored = Calibrator.from_dict(json.loads(stored))

    assert restored == calibrator
    assert restored.reason == calibrator.reason
    assert np.array_equal(restored.transform(scores), calibrator.transform(scores))
    assert "pickle" not in stored


def test_sigmoid_reads_raw_scores_outside_zero_one() -> None:
    rng = np.random.default_rng(6)
    margin = rng.normal(size=20_000) * 4
    y = (rng.uniform(size=20_000) < 1 / (1 + np.exp(-margin / 4))).astype(int)

    sigmoid = fit_calibrator(margin, y, method="sigmoid")
    auto = fit_calibrator(margin, y, method="auto")

    assert not sigmoid.on_logit
    assert sigmoid.a == pytest.approx(0.25, abs=0.03)
    assert sigmoid.b == pytest.approx(0.0, abs=0.1)
    assert "none" not in auto.cv_scores


def test_calibration_errors() -> None:
    with pytest.raises(ConfigError, match="unknown calibration method"):
        fit_calibrator([0.1, 0.9], [0, 1], method="beta")
    with pytest.raises(DataError, match="both attacks and benign"):
        fit_calibrator([0.1, 0.9], [1, 1], method="sigmoid")
    with pytest.raises(DataError, match="too few examples"):
        fit_calibrator([0.1, 0.5, 0.9], [0, 0, 1], method="auto")
    with pytest.raises(DataError, match="stored isotonic calibrator is incomplete"):
        Calibrator.from_dict({"method": "isotonic", "x": [0.0, 1.0]})
    with pytest.raises(DataError, match="unknown method"):
        Calibrator.from_dict({"method": "pickle"})


# --- documentation ---------------------------------------------------------------------------


@pytest.mark.parametrize("module", [operating_point, calibration])
def test_docstring_examples_run(module) -> None:
    result = doctest.testmod(module)

    assert result.attempted > 0
    assert result.failed == 0
