"""Choose a trained model's operating point again, for a new goal, without retraining.

The validation split's probabilities are stored with every model, so a SOC lead who asks for
fewer alerts gets a new threshold in seconds: ``threattune threshold --model M --goal
precision>=0.99``. The point is written back where the model lives: into a model folder's
manifest (the previous point kept in its history), or as a tag of the registry version, which
scoring reads when it loads ``models:/NAME@ALIAS``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from threattune import tracking
from threattune._jsonfile import read_json, write_json
from threattune.evaluation import class_codes
from threattune.flow_model import FlowModel
from threattune.operating_point import (
    OperatingPoint,
    choose_threshold,
    plot_operating_point,
    precision_recall_points,
)

logger = logging.getLogger(__name__)

__all__ = ["ThresholdResult", "choose_operating_point"]


@dataclass
class ThresholdResult:
    """A newly chosen operating point and where it was stored."""

    point: OperatingPoint
    stored_in: str
    figure: Path
    curve: Path


def choose_operating_point(
    reference: str,
    goal: str,
    *,
    output: Path,
    prior: float | None = None,
    store: bool = True,
) -> ThresholdResult:
    """Choose the any-attack threshold for ``goal`` on the model's stored validation scores."""
    model = tracking.open_model(reference, with_baseline=False)
    labels, proba = model.validation_scores()
    codes = class_codes(labels, model.classes, source=str(model.folder))
    is_attack = codes != model.benign_index
    attack_score = 1.0 - proba[:, model.benign_index]

    # The point, its curve and the figure, on the validation split only.
    point = choose_threshold(is_attack, attack_score, goal, prior=prior)
    curve = precision_recall_points(is_attack, attack_score, prior=prior)
    output.mkdir(parents=True, exist_ok=True)
    figure = plot_operating_point(curve, point, output / "operating-point.png")
    curve_path = output / "operating-point.json"
    curve_path.write_text(
        json.dumps({"point": point.to_dict(), "curve": curve.to_dict(max_points=2_000)}, indent=2)
    )

    stored_in = "nowhere (--no-store)"
    if store:
        stored = point.to_dict() | {"chosen_at": datetime.now(UTC).isoformat(timespec="seconds")}
        if str(reference).startswith("models:/"):
            stored_in = "registry version " + tracking.store_operating_point(str(reference), stored)
        else:
            _store_in_folder(model, stored)
            stored_in = str(model.folder / "manifest.json")
    return ThresholdResult(point, stored_in, figure, curve_path)


def _store_in_folder(model: FlowModel, point: dict[str, Any]) -> None:
    """Replace the folder's operating point, keeping earlier ones in its history."""
    manifest_path = Path(model.folder) / "manifest.json"
    manifest = read_json(manifest_path)
    history = manifest.get("operating_point_history", [])
    if manifest.get("operating_point"):
        history.append(manifest["operating_point"])
    manifest["operating_point"] = point
    manifest["operating_point_history"] = history
    write_json(manifest_path, manifest)
