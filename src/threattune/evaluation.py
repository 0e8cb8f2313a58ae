"""How well a flow model detects threats, measured the way a SOC reads it.

Per class: precision, recall, F1 and the class's ATT&CK techniques. Over all: accuracy, macro
F1, binary accuracy (benign against any attack), the detection rate of attacks and the
false-positive rate on benign traffic, which is what fills an analyst's queue.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_fscore_support,
)

from threattune.errors import DataError

logger = logging.getLogger(__name__)

__all__ = ["ClassMetrics", "Evaluation", "class_codes", "evaluate", "labelled_flows"]


@dataclass(frozen=True)
class ClassMetrics:
    """Detection quality for one class."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int
    techniques: str = ""


@dataclass
class Evaluation:
    """One model measured on one labelled set of flows."""

    dataset: str
    model: str
    n_flows: int
    classes: list[str]
    benign_class: str
    accuracy: float
    macro_f1: float
    binary_accuracy: float
    detection_rate: float
    benign_fpr: float
    average_precision: float
    per_class: list[ClassMetrics]
    confusion: list[list[int]]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    def metric(self, name: str) -> float:
        """An overall metric by name, for tables and MLflow."""
        return float(getattr(self, name))


def class_codes(
    labels: np.ndarray,
    classes: list[str],
    *,
    source: str,
    first_line: int = 1,
    field: str = "label",
) -> np.ndarray:
    """Position of each label in ``classes``; an unknown label is a :class:`DataError`.

    ``first_line`` is the file line of the first label, to name the line of a bad one.
    """
    lookup = {c: i for i, c in enumerate(classes)}
    codes = np.fromiter(
        (lookup.get(label, -1) for label in labels), dtype=np.int64, count=len(labels)
    )
    if (codes < 0).any():
        row = int(np.flatnonzero(codes < 0)[0])
        unknown = sorted({str(label) for label in np.asarray(labels)[codes < 0]})
        raise DataError(
            f"{len(unknown)} labels are not classes of the model",
            path=source,
            line=row + first_line,
            field=field,
            expected=", ".join(classes),
            found=", ".join(unknown[:10]),
            fix="map these labels to the model's classes in the task file, or retrain with them",
        )
    return codes


def evaluate(
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    benign_class: str,
    *,
    dataset: str,
    model: str,
    predicted: np.ndarray | None = None,
    techniques: dict[str, str] | None = None,
) -> Evaluation:
    """Measure predictions against true class codes.

    ``predicted`` defaults to the most probable class; pass the codes an operating point
    chose to measure that point instead.
    """
    benign = classes.index(benign_class)
    predicted = proba.argmax(axis=1) if predicted is None else predicted
    labels = list(range(len(classes)))

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, predicted, labels=labels, zero_division=0.0
    )
    present = support > 0
    is_attack = y_true != benign
    flagged = predicted != benign
    attack_score = 1.0 - proba[:, benign]
    average_precision = (
        float(average_precision_score(is_attack, attack_score))
        if 0 < is_attack.sum() < len(is_attack)
        else float("nan")
    )
    techniques = techniques or {}
    return Evaluation(
        dataset=dataset,
        model=model,
        n_flows=int(len(y_true)),
        classes=list(classes),
        benign_class=benign_class,
        accuracy=float((predicted == y_true).mean()),
        macro_f1=float(f1[present].mean()) if present.any() else float("nan"),
        binary_accuracy=float((flagged == is_attack).mean()),
        detection_rate=float(flagged[is_attack].mean()) if is_attack.any() else float("nan"),
        benign_fpr=float(flagged[~is_attack].mean()) if (~is_attack).any() else float("nan"),
        average_precision=average_precision,
        per_class=[
            ClassMetrics(
                name=c,
                precision=float(precision[i]),
                recall=float(recall[i]),
                f1=float(f1[i]),
                support=int(support[i]),
                techniques=techniques.get(c, ""),
            )
            for i, c in enumerate(classes)
        ],
        confusion=confusion_matrix(y_true, predicted, labels=labels).tolist(),
    )


def labelled_flows(model: Any, paths: list[Path]) -> tuple[pd.DataFrame, np.ndarray, str]:
    """Read labelled files the way ``model`` was trained: features, labels and a source name.

    Columns are checked against the model's fingerprint, so a file of another kind of flow
    fails with the missing columns named.
    """
    from threattune.sources import _tables
    from threattune.sources.flows import load_nsl_kdd

    source = ", ".join(str(p) for p in paths)
    input_format = model.fingerprint.input_format
    if input_format.get("reader") == "nsl-kdd":
        table = load_nsl_kdd(paths, granularity=input_format.get("granularity", "category"))
        return table.features, table.labels.to_numpy(), source

    label_column = input_format.get("label_column")
    features, labels = [], []
    for path in paths:
        frame = _tables.read_table(Path(path))
        if label_column not in frame.columns:
            raise DataError(
                "label column not found",
                path=path,
                field=label_column,
                expected=f"the column '{label_column}' the model was trained with",
                fix="evaluate on labelled flows; score unlabelled ones with 'threattune score'",
            )
        model.fingerprint.check_columns(frame.columns, path=path, allow_extra=True)
        part = frame[model.fingerprint.names].copy()
        model.fingerprint.check_types(part, path=path, first_line=2)
        for column in model.fingerprint.categorical:
            part[column] = part[column].astype(str).str.strip()
        file_labels = frame[label_column].astype(str).str.strip().to_numpy()
        class_codes(file_labels, model.classes, source=str(path), first_line=2, field=label_column)
        features.append(part)
        labels.append(file_labels)
    return pd.concat(features, ignore_index=True), np.concatenate(labels), source
