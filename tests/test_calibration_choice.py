"""Choosing a calibration only where it helps: known answers for sigmoid, isotonic and none."""

from __future__ import annotations

import json

import numpy as np
import pytest

from threattune.calibration import Calibrator, brier_score, choose_calibration, fit_calibrator
from threattune.errors import ConfigError, DataError


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def _platt(seed: int, size: int = 6000) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose true probability is exactly sigmoid(2 * logit(score) + 1)."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.01, 0.99, size=size)
    truth = 1.0 / (1.0 + np.exp(-(2.0 * _logit(scores) + 1.0)))
    return scores, (rng.uniform(size=size) < truth).astype(int)


def _step(seed: int, size: int = 6000) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose true probability jumps from 0.1 to 0.9 at 0.5: no sigmoid of the logit
    fits it, a monotone step does."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(size=size)
    truth = np.where(scores < 0.5, 0.1, 0.9)
    return scores, (rng.uniform(size=size) < truth).astype(int)


def _calibrated(seed: int, size: int = 6000) -> tuple[np.ndarray, np.ndarray]:
    """Scores that already are the probability of the positive class."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(size=size)
    return scores, (rng.uniform(size=size) < scores).astype(int)


def test_sigmoid_wins_when_the_truth_is_a_sigmoid_of_the_score() -> None:
    scores, y = _platt(0)

    chosen = choose_calibration(scores, y)

    assert chosen.method == "sigmoid"
    assert chosen.a == pytest.approx(2.0, abs=0.2)
    assert chosen.b == pytest.approx(1.0, abs=0.15)
    assert chosen.criterion == "brier"
    assert chosen.reason.startswith("sigmoid calibration: 5-fold cross-validated Brier score")
    assert "standard errors" in chosen.reason
    assert chosen.cv_scores["sigmoid"]["brier"] < chosen.cv_scores["none"]["brier"]
    held_out, held_y = _platt(1)
    assert brier_score(chosen.transform(held_out), held_y) < brier_score(held_out, held_y) - 0.005


def test_isotonic_wins_when_the_truth_is_a_step() -> None:
    scores, y = _step(2)

    chosen = choose_calibration(scores, y)

    assert chosen.method == "isotonic"
    assert chosen.reason.startswith("isotonic calibration:")
    low, high = chosen.transform([0.2, 0.8])
    assert low == pytest.approx(0.1, abs=0.03) and high == pytest.approx(0.9, abs=0.03)


def test_none_wins_when_the_scores_are_already_probabilities() -> None:
    scores, y = _calibrated(3)

    chosen = choose_calibration(scores, y)

    assert chosen.method == "none"
    assert chosen.reason.startswith("no calibration:")
    assert np.array_equal(chosen.transform(scores), scores)
    assert set(chosen.cv_scores) == {"none", "sigmoid", "isotonic"}


def test_log_loss_can_be_the_criterion() -> None:
    scores, y = _platt(4)

    chosen = choose_calibration(scores, y, criterion="log_loss")

    assert chosen.method == "sigmoid" and chosen.criterion == "log_loss"
    assert "log-loss" in chosen.reason


def test_chosen_isotonic_map_keeps_the_order_of_distinct_scores() -> None:
    """A threshold on the calibrated scale then alerts on exactly what it did before."""
    scores, y = _step(5)
    plain = fit_calibrator(scores, y, method="isotonic")

    chosen = choose_calibration(scores, y, method="isotonic")

    ordered = np.sort(np.unique(scores))
    mapped = chosen.transform(ordered)
    assert np.all(np.diff(mapped) > 0)
    assert np.all(np.diff(plain.transform(ordered)) >= 0)
    assert np.abs(mapped - plain.transform(ordered)).max() <= 1e-6


def test_named_method_is_used_and_still_reported() -> None:
    scores, y = _calibrated(6)

    chosen = choose_calibration(scores, y, method="sigmoid")

    assert chosen.method == "sigmoid"
    assert chosen.reason.startswith("sigmoid calibration was asked for; 5-fold")


def test_chosen_calibration_round_trips_through_json() -> None:
    for scores, y in (_platt(7), _step(8), _calibrated(9)):
        chosen = choose_calibration(scores, y)
        restored = Calibrator.from_dict(json.loads(json.dumps(chosen.to_dict())))
        assert restored == chosen and restored.criterion == chosen.criterion
        assert np.array_equal(restored.transform(scores), chosen.transform(scores))


def test_choice_errors_name_what_was_expected() -> None:
    scores, y = _platt(10, size=200)
    with pytest.raises(ConfigError, match="unknown calibration criterion"):
        choose_calibration(scores, y, criterion="accuracy")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown calibration method"):
        choose_calibration(scores, y, method="beta")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="not probabilities"):
        choose_calibration(scores * 4.0, y)
    with pytest.raises(DataError, match="reverse their order"):
        choose_calibration(scores, 1 - y, method="sigmoid")
