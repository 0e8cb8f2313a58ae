"""`threattune threshold` calibrates stored validation scores of any binary or multi-class model.

The model folders here hold only what the threshold path reads (``manifest.json`` and
``validation_scores.parquet``), as a phishing classifier's folder would: no flow features, no
trees.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from threattune.cli import app
from threattune.errors import ModelError
from threattune.flow_model import VALIDATION_SCORES
from threattune.operating_point import choose_threshold, stored_calibrator
from threattune.tuning import choose_operating_point, read_validation_scores


def _mail_folder(
    folder: Path, scores: np.ndarray, phishing: np.ndarray, *, columns: str = "both"
) -> Path:
    """A binary message-classifier folder: legitimate against phishing."""
    folder.mkdir(parents=True)
    manifest = {"task": "phishing", "benign_class": "legitimate"}
    if columns == "both":
        manifest["classes"] = ["legitimate", "phishing"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    frame = pd.DataFrame({"class": np.where(phishing, "phishing", "legitimate")})
    if columns == "both":
        frame["p:legitimate"] = 1.0 - scores
    frame["p:phishing"] = scores
    frame.to_parquet(folder / VALIDATION_SCORES, index=False)
    return folder


def _overconfident(seed: int, size: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """Scores sigmoid(3x), truth sigmoid(x): sigmoid calibration clearly helps."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=size) * 2
    truth = 1 / (1 + np.exp(-x))
    return 1 / (1 + np.exp(-3 * x)), rng.uniform(size=size) < truth


def _honest(seed: int, size: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.beta(0.5, 0.5, size=size)
    return scores, rng.uniform(size=size) < scores


def test_threshold_calibrates_when_it_helps_and_stores_it_with_the_point(tmp_path: Path) -> None:
    scores, phishing = _overconfident(0)
    folder = _mail_folder(tmp_path / "mail", scores, phishing)

    result = choose_operating_point(str(folder), "fpr<=0.02", output=tmp_path / "op")

    assert result.calibration.method == "sigmoid"
    assert result.score_name == "1 - P(legitimate)"
    stored = json.loads((folder / "manifest.json").read_text())["operating_point"]
    assert stored["calibration"]["method"] == "sigmoid"
    assert stored["score"] == "sigmoid-calibrated 1 - P(legitimate)"
    calibrator = stored_calibrator(stored)
    assert calibrator is not None and calibrator == result.calibration
    calibrated = calibrator.transform(scores)
    assert stored["threshold"] == pytest.approx(result.point.threshold)
    assert ((calibrated >= stored["threshold"]) == (scores >= stored["raw_threshold"])).all()
    raw = choose_threshold(phishing, scores, "fpr<=0.02")
    assert (result.point.true_positives, result.point.false_positives) == (
        raw.true_positives,
        raw.false_positives,
    )
    curve = json.loads(result.curve.read_text())
    assert curve["calibration"]["method"] == "sigmoid"


def test_threshold_keeps_scores_that_are_already_calibrated(tmp_path: Path) -> None:
    scores, phishing = _honest(1)
    folder = _mail_folder(tmp_path / "mail", scores, phishing)

    result = choose_operating_point(str(folder), "precision>=0.9", output=tmp_path / "op")

    stored = json.loads((folder / "manifest.json").read_text())["operating_point"]
    assert result.calibration.method == "none"
    assert stored["calibration"]["method"] == "none" and stored_calibrator(stored) is None
    assert result.point.threshold == pytest.approx(result.raw_threshold)
    assert stored["score"] == "1 - P(legitimate)"


def test_threshold_reads_a_folder_with_only_the_positive_probability(tmp_path: Path) -> None:
    scores, phishing = _overconfident(2)
    folder = _mail_folder(tmp_path / "mail", scores, phishing, columns="positive")

    read = read_validation_scores(folder)
    result = choose_operating_point(str(folder), "fpr<=0.05", output=tmp_path / "op", store=False)

    assert read.score_name == "P(phishing)"
    assert np.array_equal(read.is_attack, phishing)
    assert result.calibration.method == "sigmoid" and result.stored_in.startswith("nowhere")


def test_threshold_refuses_a_folder_without_a_benign_class(tmp_path: Path) -> None:
    scores, phishing = _honest(3, size=100)
    folder = _mail_folder(tmp_path / "mail", scores, phishing)
    (folder / "manifest.json").write_text(json.dumps({"task": "phishing"}))

    with pytest.raises(ModelError, match="names no benign class") as raised:
        choose_operating_point(str(folder), "fpr<=0.05", output=tmp_path / "op")
    assert raised.value.field == "benign_class"


def test_threshold_command_says_which_calibration_and_why(tmp_path: Path) -> None:
    scores, phishing = _overconfident(4)
    folder = _mail_folder(tmp_path / "mail", scores, phishing)
    runner = CliRunner()

    chosen = runner.invoke(app, ["threshold", "--model", str(folder), "--goal", "fpr<=0.02"])
    forced = runner.invoke(
        app,
        ["threshold", "--model", str(folder), "--goal", "fpr<=0.02", "--calibration", "none"],
    )
    wrong = runner.invoke(
        app,
        ["threshold", "--model", str(folder), "--goal", "fpr<=0.02", "--calibration", "beta"],
    )

    assert chosen.exit_code == 0, chosen.output
    assert "calibration: sigmoid calibration: 5-fold cross-validated Brier score" in chosen.output
    assert "standard errors" in chosen.output
    assert "threshold on the calibrated attack probability:" in chosen.output
    assert "(alerts where 1 - P(legitimate) >= " in chosen.output
    assert forced.exit_code == 0, forced.output
    assert "calibration: none calibration was asked for" in forced.output
    assert "threshold on 1 - P(legitimate):" in forced.output
    assert wrong.exit_code != 0 and "--calibration" in str(wrong.exception)
    history = json.loads((folder / "manifest.json").read_text())["operating_point_history"]
    assert history[-1]["calibration"]["method"] == "sigmoid"
