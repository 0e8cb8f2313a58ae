"""Diagnosis of a new network segment: what changed since the model was trained.

The reference side is a :class:`ReferenceProfile`, built from the training rows and stored with
the model; :func:`detect_drift` compares a segment with it and returns a :class:`DriftReport` of
per-feature statistics and :class:`~threattune.findings.Finding` objects. :func:`diagnose` runs
every check on a segment (pipeline audit, drift, novelty, label-free estimate, evasion) and
returns a :class:`Diagnosis` whose findings are ranked by severity.
"""

from __future__ import annotations

from threattune.diagnosis.diagnose import Diagnosis, diagnose
from threattune.diagnosis.drift import (
    DomainClassifierResult,
    DriftReport,
    DriftThresholds,
    detect_drift,
    domain_classifier_drift,
    prediction_drift,
)
from threattune.diagnosis.profile import CategoricalProfile, NumericProfile, ReferenceProfile

__all__ = [
    "CategoricalProfile",
    "Diagnosis",
    "DomainClassifierResult",
    "DriftReport",
    "DriftThresholds",
    "NumericProfile",
    "ReferenceProfile",
    "detect_drift",
    "diagnose",
    "domain_classifier_drift",
    "prediction_drift",
]
