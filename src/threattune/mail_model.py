"""A trained email classifier on disk: the fine-tuned transformer, its baseline and evidence.

A mail model is a folder of plain files; nothing in it needs unpickling:

    manifest.json        task, classes, benign and positive class, settings, split, metrics,
                         operating point, versions; ``"kind": "mail"``
    transformer/         the fine-tuned encoder and tokenizer (safetensors), head and settings
    baseline.skops       the TF-IDF and logistic-regression baseline
    fingerprint.json     what scoring expects: text normalisation, tokenizer, vocabulary, cut
    attack_mapping.json  class -> ATT&CK techniques, as the model was trained with
    validation_scores.parquet   the validation split's labels and probabilities, so that the
                         operating point can be chosen again without retraining
    reference_embeddings.npz    pooled embeddings, token lengths and scores of validation
                         messages, so that a drift diagnosis of new mail needs no training data

The same folder is the artifact behind the MLflow pyfunc model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threattune import __version__
from threattune._jsonfile import read_json, write_json
from threattune.errors import ModelError
from threattune.lures import (
    deceptive_links,
    header_flags,
    lure_technique,
    risky_attachments,
    suspicious_urls,
)
from threattune.models.text import TextClassifier
from threattune.models.text_baseline import TextBaseline, normalise_for_model
from threattune.operating_point import stored_calibrator
from threattune.sources.mail import Message

__all__ = [
    "KIND",
    "MAX_TEXT_CHARS",
    "REFERENCE_EMBEDDINGS",
    "TEXT_NORMALISATION",
    "MailDecisions",
    "MailModel",
    "message_text",
]

logger = logging.getLogger(__name__)

KIND = "mail"
FORMAT_VERSION = 1
MAX_TEXT_CHARS = 20_000
TEXT_NORMALISATION = "subject+body, whitespace-joined, normalise_for_model v1"
VALIDATION_SCORES = "validation_scores.parquet"
REFERENCE_EMBEDDINGS = "reference_embeddings.npz"


def message_text(message: Message) -> str:
    """What the model reads of a message: its subject and body, normalised.

    >>> from threattune.sources.mail import parse_message
    >>> message_text(parse_message(b"Subject: Win $1000\\n\\nClick   here"))
    'win $ 0 click here'
    """
    return normalise_for_model(" ".join(f"{message.subject}\n{message.text}".split()))


@dataclass
class MailDecisions:
    """What a model decided for a batch of messages."""

    classes: np.ndarray
    scores: np.ndarray
    positive_scores: np.ndarray
    alerts: np.ndarray


@dataclass
class MailModel:
    """A fine-tuned transformer over messages, with its baseline, operating point and mapping."""

    classifier: TextClassifier
    baseline: TextBaseline | None
    manifest: dict[str, Any]
    attack_mapping: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None

    kind = KIND

    @property
    def classes(self) -> list[str]:
        return list(self.classifier.classes)

    @property
    def benign_class(self) -> str:
        return str(self.manifest["benign_class"])

    @property
    def positive_class(self) -> str:
        return str(self.manifest.get("positive_class", "phishing"))

    @property
    def benign_index(self) -> int:
        return self.classes.index(self.benign_class)

    @property
    def operating_point(self) -> dict[str, Any] | None:
        return self.manifest.get("operating_point")

    # -- scoring ----------------------------------------------------------------------------

    def predict_proba(self, texts: Sequence[str], *, int8: bool = True) -> np.ndarray:
        """Class probabilities of normalised texts (see :func:`message_text`)."""
        return self.classifier.predict_proba(texts, int8=int8)

    def baseline_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities of the TF-IDF baseline, in :attr:`classes` order."""
        if self.baseline is None:
            raise ModelError("this model was saved without its baseline")
        proba = self.baseline.predict_proba(texts)
        order = [self.baseline.classes.index(c) for c in self.classes]
        return proba[:, order]

    def decide(self, proba: np.ndarray) -> MailDecisions:
        """Class, its probability, the threat score and the alert flag per message.

        The threat score is one minus the probability of the benign class; with an operating
        point a message is an alert when its threat score reaches the threshold, and then
        takes the most probable threat class. When the point stores a calibration (chosen by
        ``threattune threshold``), the threat score is calibrated first.
        """
        threat = 1.0 - proba[:, self.benign_index]
        point = self.operating_point
        calibrator = stored_calibrator(point)
        if calibrator is not None:
            threat = calibrator.transform(threat)
        if point is None:
            codes = proba.argmax(axis=1)
        else:
            others = proba.copy()
            others[:, self.benign_index] = -1.0
            codes = np.where(
                threat >= float(point["threshold"]), others.argmax(axis=1), self.benign_index
            )
        return MailDecisions(
            classes=np.asarray(self.classes, dtype=object)[codes],
            scores=proba[np.arange(len(proba)), codes],
            positive_scores=threat,
            alerts=codes != self.benign_index,
        )

    def score_messages(
        self, messages: Sequence[Message], *, int8: bool = True, proba: np.ndarray | None = None
    ) -> pd.DataFrame:
        """One row per message: who, what, the decision, its technique and the evidence.

        Columns: source, message_id, date, from_address, subject, class, score, threat_score,
        alert, technique, urls (defanged), suspicious_urls, signals (header flags) and
        attachments. ``proba``: the messages' class probabilities when already at hand.
        """
        if proba is None:
            proba = self.predict_proba([message_text(m) for m in messages], int8=int8)
        decisions = self.decide(proba)
        techniques = self.technique_labels()
        rows = []
        for message, label, score, threat, alert in zip(
            messages,
            decisions.classes,
            decisions.scores,
            decisions.positive_scores,
            decisions.alerts,
            strict=True,
        ):
            technique = techniques.get(str(label), "")
            if alert and label == self.positive_class:
                technique = lure_technique(message)
            rows.append({
                "source": str(message.source),
                "message_id": message.message_id,
                "date": message.date.isoformat() if message.date else None,
                "from_address": message.from_address,
                "subject": message.subject,
                "class": str(label),
                "score": float(score),
                "threat_score": float(threat),
                "alert": bool(alert),
                "technique": technique,
                "urls": list(message.defanged_urls),
                "suspicious_urls": [
                    str(u)
                    for u in [*deceptive_links(message.shown_links), *suspicious_urls(message.urls)]
                ],
                "signals": header_flags(message),
                "attachments": [
                    f"{a.filename or '(unnamed)'} ({a.content_type}, {a.size} bytes"
                    + (", risky)" if a in risky_attachments([a]) else ")")
                    for a in message.attachments
                ],
            })  # fmt: skip
        return pd.DataFrame(rows, columns=_SCORE_COLUMNS)

    def technique_labels(self) -> dict[str, str]:
        """Per class, its technique IDs joined by ';' (empty for legitimate mail)."""
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

    def reference_embeddings(self) -> dict[str, np.ndarray]:
        """Pooled embeddings, token lengths and threat scores of validation messages."""
        path = Path(self.folder or ".") / REFERENCE_EMBEDDINGS
        if not path.is_file():
            raise ModelError(
                "the model holds no reference embeddings",
                path=path,
                fix="retrain the model with this version of threattune",
            )
        with np.load(path) as stored:
            return {name: stored[name] for name in stored.files}

    # -- storage ----------------------------------------------------------------------------

    def save(self, folder: Path) -> Path:
        """Write the model to ``folder`` (created; existing model files are replaced)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {
            **self.manifest,
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "threattune_version": __version__,
            "classes": self.classes,
        }
        self.classifier.save(folder / "transformer")
        if self.baseline is not None:
            self.baseline.save(folder / "baseline.skops")
        write_json(folder / "manifest.json", manifest)
        write_json(folder / "fingerprint.json", self.fingerprint)
        write_json(folder / "attack_mapping.json", self.attack_mapping)
        self.manifest = manifest
        self.folder = folder
        return folder

    @classmethod
    def load(cls, folder: Path, *, with_baseline: bool = True) -> MailModel:
        """Read a model written by :meth:`save`."""
        folder = Path(folder)
        manifest_path = folder / "manifest.json"
        if not manifest_path.is_file():
            raise ModelError(
                "not a threattune mail model folder",
                path=folder,
                expected="manifest.json, transformer/, baseline.skops",
                fix="pass the folder that 'threattune train phishing' wrote, or a models:/ URI",
            )
        manifest = read_json(manifest_path)
        if manifest.get("kind") != KIND:
            raise ModelError(
                "the folder holds a model of another kind",
                path=manifest_path,
                field="kind",
                expected=KIND,
                found=str(manifest.get("kind", "flow")),
            )
        if manifest.get("format_version", 0) > FORMAT_VERSION:
            raise ModelError(
                "the model was saved by a newer threattune",
                path=manifest_path,
                found=str(manifest.get("threattune_version")),
                fix="upgrade threattune",
            )
        baseline = None
        if with_baseline and (folder / "baseline.skops").is_file():
            baseline = TextBaseline.load(folder / "baseline.skops")
        return cls(
            classifier=TextClassifier.load(folder / "transformer"),
            baseline=baseline,
            manifest=manifest,
            attack_mapping=read_json(folder / "attack_mapping.json"),
            fingerprint=read_json(folder / "fingerprint.json"),
            folder=folder,
        )


def is_mail_model(folder: Path) -> bool:
    """True when ``folder`` holds a mail model rather than a flow model."""
    path = Path(folder) / "manifest.json"
    return path.is_file() and read_json(path).get("kind") == KIND


_SCORE_COLUMNS = [
    "source", "message_id", "date", "from_address", "subject", "class", "score",
    "threat_score", "alert", "technique", "urls", "suspicious_urls", "signals", "attachments",
]  # fmt: skip
