"""A trained flow classifier on disk: trees, baseline, preprocessing, fingerprint, ATT&CK map.

A flow model is a folder that holds everything scoring needs and nothing that needs unpickling:

    manifest.json        task, classes, benign class, settings, versions, operating point
    preprocessing.json   the encoder fitted on the training split
    fingerprint.json     the input schema that scoring checks
    attack_mapping.json  class -> ATT&CK techniques, as the model was trained with
    trees.json           XGBoost model
    baseline.skops       the scikit-learn baseline
    validation_scores.parquet   the validation split's classes and probabilities, so that the
                         operating point can be chosen again without retraining
    reference_profile.json.gz   the training flows' feature distributions and predictions,
                         so that a drift diagnosis needs no training data

The same folder is the artifact behind the MLflow pyfunc model, so a registry version and a
local folder score identically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threattune import __version__
from threattune._jsonfile import read_json, write_json
from threattune.calibration import Calibrator
from threattune.errors import ModelError
from threattune.fingerprint import Fingerprint
from threattune.models.baseline import Baseline
from threattune.models.tabular import BoostedTrees
from threattune.operating_point import stored_calibrator
from threattune.preprocessing import FlowEncoder

logger = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "REFERENCE_PROFILE", "VALIDATION_SCORES", "Decisions", "FlowModel"]

FORMAT_VERSION = 1
VALIDATION_SCORES = "validation_scores.parquet"
REFERENCE_PROFILE = "reference_profile.json.gz"
_FILES = (
    "manifest.json",
    "preprocessing.json",
    "fingerprint.json",
    "attack_mapping.json",
    "trees.json",
    "baseline.skops",
)


@dataclass
class Decisions:
    """What a model decided for a batch of flows.

    ``attack_scores`` is 1 - P(benign), or the calibrated probability of an attack when the
    operating point stores a calibration: the score the threshold was applied to.
    """

    classes: np.ndarray
    scores: np.ndarray
    attack_scores: np.ndarray
    alerts: np.ndarray


@dataclass
class FlowModel:
    """A trained flow classifier with everything scoring needs.

    ``attack_mapping`` maps each class to its techniques as ``[{"id", "name", "tactics"}]``;
    ``operating_point`` is None (the most probable class wins) or a dict whose ``threshold``
    applies to the attack score, 1 - P(benign), calibrated first when the point stores a
    ``calibration`` (see :func:`threattune.operating_point.stored_calibrator`).
    """

    encoder: FlowEncoder
    trees: BoostedTrees
    baseline: Baseline | None
    fingerprint: Fingerprint
    classes: list[str]
    benign_class: str
    attack_mapping: dict[str, list[dict[str, Any]]]
    manifest: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None

    @property
    def benign_index(self) -> int:
        return self.classes.index(self.benign_class)

    @property
    def operating_point(self) -> dict[str, Any] | None:
        return self.manifest.get("operating_point")

    @property
    def calibrator(self) -> Calibrator | None:
        """The calibration of the attack score stored with the operating point, if any."""
        return stored_calibrator(self.operating_point)

    def encode(self, features: pd.DataFrame) -> np.ndarray:
        """The model's input matrix for checked features."""
        return self.encoder.transform(features)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Class probabilities of the boosted trees, one column per class."""
        return self.trees.predict_proba(self.encode(features))

    def baseline_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Class probabilities of the scikit-learn baseline."""
        if self.baseline is None:
            raise ModelError("this model was saved without its baseline")
        return self.baseline.predict_proba(self.encode(features), len(self.classes))

    def decide(self, proba: np.ndarray) -> Decisions:
        """Class, its probability, the attack score and the alert flag per flow.

        Without an operating point the most probable class wins; with one, a flow is an
        alert when its attack score reaches the threshold, and then takes the most probable
        attack class. When the point stores a calibration, the attack score is the calibrated
        probability of an attack and the threshold applies to it; otherwise 1 - P(benign).
        """
        point = self.operating_point
        attack_scores = 1.0 - proba[:, self.benign_index]
        calibrator = self.calibrator
        if calibrator is not None:
            attack_scores = calibrator.transform(attack_scores)
        if point is None:
            codes = proba.argmax(axis=1)
        else:
            attack_only = proba.copy()
            attack_only[:, self.benign_index] = -1.0
            codes = np.where(
                attack_scores >= float(point["threshold"]),
                attack_only.argmax(axis=1),
                self.benign_index,
            )
        labels = np.asarray(self.classes, dtype=object)[codes]
        return Decisions(
            classes=labels,
            scores=proba[np.arange(len(proba)), codes],
            attack_scores=attack_scores,
            alerts=codes != self.benign_index,
        )

    def technique_labels(self) -> dict[str, str]:
        """Per class, its technique IDs joined by ';' (empty for benign traffic)."""
        return {c: ";".join(t["id"] for t in self.attack_mapping.get(c, [])) for c in self.classes}

    def validation_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """The validation split's true classes and class probabilities, stored at training."""
        path = Path(self.folder or ".") / VALIDATION_SCORES
        if not path.is_file():
            raise ModelError(
                "the model holds no validation scores",
                path=path,
                fix="retrain the model with this version of threattune",
            )
        scores = pd.read_parquet(path)
        return scores["class"].to_numpy(), scores[[f"p:{c}" for c in self.classes]].to_numpy()

    def save(self, folder: Path) -> Path:
        """Write the model to ``folder`` (created; existing model files are replaced)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {
            **self.manifest,
            "format_version": FORMAT_VERSION,
            "threattune_version": __version__,
            "classes": self.classes,
            "benign_class": self.benign_class,
            "categorical_positions": [
                self.encoder.columns.index(c) for c in self.encoder.categorical
            ],
        }
        write_json(folder / "manifest.json", manifest)
        write_json(folder / "preprocessing.json", self.encoder.to_dict())
        write_json(folder / "fingerprint.json", self.fingerprint.to_dict())
        write_json(folder / "attack_mapping.json", self.attack_mapping)
        self.trees.save(folder / "trees.json")
        if self.baseline is not None:
            self.baseline.save(folder / "baseline.skops")
        self.manifest = manifest
        self.folder = folder
        return folder

    @classmethod
    def load(cls, folder: Path, *, with_baseline: bool = True) -> FlowModel:
        """Read a model written by :meth:`save`."""
        folder = Path(folder)
        if not (folder / "manifest.json").is_file():
            raise ModelError(
                "not a threattune flow model folder",
                path=folder,
                expected=", ".join(_FILES),
                found=", ".join(sorted(p.name for p in folder.iterdir()))
                if folder.is_dir()
                else "no such folder",
                fix="pass the folder that 'threattune train' wrote, or a models:/NAME@ALIAS URI",
            )
        manifest = read_json(folder / "manifest.json")
        if manifest.get("format_version", 0) > FORMAT_VERSION:
            raise ModelError(
                "the model was saved by a newer threattune",
                path=folder / "manifest.json",
                found=str(manifest.get("threattune_version")),
                fix="upgrade threattune",
            )
        classes = list(manifest["classes"])
        encoder = FlowEncoder.from_dict(read_json(folder / "preprocessing.json"))
        baseline = None
        if with_baseline and (folder / "baseline.skops").is_file():
            baseline = Baseline.load(
                folder / "baseline.skops", manifest["categorical_positions"], len(encoder.columns)
            )
        return cls(
            encoder=encoder,
            trees=BoostedTrees.load(folder / "trees.json", len(classes)),
            baseline=baseline,
            fingerprint=Fingerprint.from_dict(read_json(folder / "fingerprint.json")),
            classes=classes,
            benign_class=manifest["benign_class"],
            attack_mapping=read_json(folder / "attack_mapping.json"),
            manifest=manifest,
            folder=folder,
        )
