"""Choose a trained model's operating point again, for a new goal, without retraining.

The validation split's probabilities are stored with every model, so a SOC lead who asks for
fewer alerts gets a new threshold in seconds: ``threattune threshold --model M --goal
precision>=0.99``. The point is written back where the model lives: into a model folder's
manifest (the previous point kept in its history), or as a tag of the registry version, which
scoring reads when it loads ``models:/NAME@ALIAS``.

Before the threshold is set, the any-attack score is calibrated where that helps: none, sigmoid
or isotonic, chosen on the same validation split by cross-validated Brier score
(:func:`threattune.calibration.choose_calibration`). The calibration is stored with the point,
and scoring applies it before the threshold, so reported attack scores are probabilities and the
threshold is on their scale. The calibrated map keeps the order of the scores, so the events the
point alerts on are the ones it would alert on uncalibrated.

Nothing here reads the model itself: only ``manifest.json`` (``benign_class``, optionally
``classes``) and ``validation_scores.parquet`` (a ``class`` column with each event's true class
and a ``p:CLASS`` column per class), so a flow model and a message classifier are tuned alike.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from threattune import tracking
from threattune._jsonfile import read_json, write_json
from threattune.calibration import Calibrator, choose_calibration
from threattune.errors import DataError, ModelError
from threattune.flow_model import VALIDATION_SCORES
from threattune.operating_point import (
    OperatingPoint,
    choose_threshold,
    plot_operating_point,
    precision_recall_points,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CalibrationChoice",
    "ThresholdResult",
    "ValidationScores",
    "choose_operating_point",
    "read_validation_scores",
]

CalibrationChoice = Literal["auto", "none", "sigmoid", "isotonic"]


@dataclass(frozen=True)
class ValidationScores:
    """A model's stored validation split: each event's true class and its attack score.

    ``attack_score`` is 1 - P(benign class), or P(positive class) when the file holds only
    the positive class's probability.
    """

    folder: Path
    benign_class: str
    labels: NDArray[Any]
    attack_score: NDArray[np.float64]
    score_name: str

    @property
    def is_attack(self) -> NDArray[np.bool_]:
        """True for every event whose true class is not the benign class."""
        return self.labels != self.benign_class


@dataclass
class ThresholdResult:
    """A newly chosen operating point, its calibration and where it was stored.

    ``point`` is on the calibrated scale (the raw one when ``calibration.method`` is
    ``"none"``); ``raw_threshold`` is the lowest raw score the point alerts on.
    """

    point: OperatingPoint
    stored_in: str
    figure: Path
    curve: Path
    calibration: Calibrator
    raw_threshold: float
    score_name: str


def read_validation_scores(folder: Path | str) -> ValidationScores:
    """The validation split stored in a model folder, whatever the model reads."""
    folder = Path(folder)
    manifest = read_json(folder / "manifest.json")
    benign = manifest.get("benign_class")
    if not benign:
        raise ModelError(
            "the model's manifest names no benign class",
            path=folder / "manifest.json",
            field="benign_class",
            expected="the class that raises no alert, such as BENIGN or legitimate",
            found=repr(benign),
            fix="retrain the model with this version of threattune",
        )
    path = folder / VALIDATION_SCORES
    if not path.is_file():
        raise ModelError(
            "the model holds no validation scores",
            path=path,
            fix="retrain the model with this version of threattune",
        )
    frame = pd.read_parquet(path)
    columns = [c for c in frame.columns if str(c).startswith("p:")]
    if "class" not in frame.columns or not columns:
        raise ModelError(
            "the validation scores lack their columns",
            path=path,
            field="class",
            expected="a 'class' column and a 'p:CLASS' column per class",
            found=", ".join(map(str, frame.columns[:8])) or "no columns",
            fix="retrain the model with this version of threattune",
        )
    benign = str(benign)
    named = [c[2:] for c in columns if c[2:] != benign]
    classes = [str(c) for c in manifest.get("classes") or [benign, *named]]
    labels = frame["class"].astype(str).to_numpy()
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise DataError(
            "validation scores hold classes the model does not know",
            path=path,
            field="class",
            expected=f"one of {classes}",
            found=", ".join(unknown[:5]),
            fix="retrain the model with this version of threattune",
        )

    others = [c for c in columns if c != f"p:{benign}"]
    if f"p:{benign}" in columns:
        score = 1.0 - frame[f"p:{benign}"].to_numpy(dtype=np.float64)
        name = f"1 - P({benign})"
    elif len(others) == 1:
        score = frame[others[0]].to_numpy(dtype=np.float64)
        name = f"P({others[0][2:]})"
    else:
        raise ModelError(
            "the validation scores hold no probability of the benign class",
            path=path,
            field=f"p:{benign}",
            expected=f"a 'p:{benign}' column, or a single positive-class column",
            found=", ".join(columns[:8]),
            fix="retrain the model with this version of threattune",
        )
    return ValidationScores(folder, benign, labels, score, name)


def choose_operating_point(
    reference: str,
    goal: str,
    *,
    output: Path,
    prior: float | None = None,
    store: bool = True,
    calibration: CalibrationChoice = "auto",
) -> ThresholdResult:
    """Choose the any-attack threshold for ``goal`` on the model's stored validation scores.

    ``calibration="auto"`` calibrates the scores first where cross-validation on the same
    split says it helps; ``"none"``, ``"sigmoid"`` or ``"isotonic"`` forces a method.
    """
    scores = read_validation_scores(tracking.resolve_model(reference))
    is_attack = scores.is_attack
    raw = scores.attack_score
    calibrator = choose_calibration(raw, is_attack, method=calibration)
    calibrated = calibrator.transform(raw)

    # The point, its curve and the figure, on the validation split only.
    point = choose_threshold(is_attack, calibrated, goal, prior=prior)
    alerted = calibrated >= point.threshold
    raw_threshold = float(raw[alerted].min()) if alerted.any() else float("inf")
    curve = precision_recall_points(is_attack, calibrated, prior=prior)
    output.mkdir(parents=True, exist_ok=True)
    figure = plot_operating_point(curve, point, output / "operating-point.png")
    curve_path = output / "operating-point.json"
    curve_path.write_text(
        json.dumps(
            {
                "point": point.to_dict(),
                "calibration": calibrator.to_dict(),
                "raw_threshold": raw_threshold if np.isfinite(raw_threshold) else None,
                "curve": curve.to_dict(max_points=2_000),
            },
            indent=2,
        )
    )

    stored_in = "nowhere (--no-store)"
    if store:
        stored = point.to_dict() | {
            "chosen_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "score": scores.score_name
            if calibrator.method == "none"
            else f"{calibrator.method}-calibrated {scores.score_name}",
            "raw_threshold": raw_threshold if np.isfinite(raw_threshold) else None,
            "calibration": calibrator.to_dict(),
        }
        if str(reference).startswith("models:/"):
            stored_in = "registry version " + tracking.store_operating_point(str(reference), stored)
        else:
            _store_in_folder(scores.folder, stored)
            stored_in = str(scores.folder / "manifest.json")
    return ThresholdResult(
        point, stored_in, figure, curve_path, calibrator, raw_threshold, scores.score_name
    )


def _store_in_folder(folder: Path, point: dict[str, Any]) -> None:
    """Replace the folder's operating point, keeping earlier ones in its history."""
    manifest_path = Path(folder) / "manifest.json"
    manifest = read_json(manifest_path)
    history = manifest.get("operating_point_history", [])
    if manifest.get("operating_point"):
        history.append(manifest["operating_point"])
    manifest["operating_point"] = point
    manifest["operating_point_history"] = history
    write_json(manifest_path, manifest)
