"""The summary the service keeps of a ``threattune diagnose`` report (``diagnosis.json``).

The whole report can be megabytes (per-feature tables, examples); the dashboard and the
metrics need a few numbers per diagnosis: the worst severity, how many findings of each
severity, the share of tested features that drift and which, the domain classifier's AUC, the
novelty rate and the label-free precision and false-positive estimates. A mail model's report
has no feature table; its domain classifier AUC comes from the embedding check instead.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from threattune.errors import DataError
from threattune.service.metrics import SEVERITY_LEVELS
from threattune.service.store import plain_json

__all__ = ["summarise_diagnosis"]

_TOP_FINDINGS = 5
_TOP_FEATURES = 10


def summarise_diagnosis(report: Any) -> dict[str, Any]:
    """The summary of a diagnosis report as ``threattune diagnose`` writes it.

    Raises :class:`DataError` naming the field when ``report`` is not such a report.
    """
    if not isinstance(report, dict):
        raise DataError(
            "a diagnosis report is a JSON object",
            field="body",
            expected="the diagnosis.json that 'threattune diagnose' writes",
            found=type(report).__name__,
        )
    severity = report.get("severity")
    if severity not in SEVERITY_LEVELS:
        raise DataError(
            "not a diagnosis report: no known severity",
            field="severity",
            expected=" / ".join(SEVERITY_LEVELS),
            found=repr(severity),
            fix="send the diagnosis.json that 'threattune diagnose' wrote, unchanged",
        )
    findings = report.get("findings")
    if not isinstance(findings, list):
        raise DataError(
            "not a diagnosis report: no list of findings",
            field="findings",
            expected="a list of findings",
            found=type(findings).__name__,
            fix="send the diagnosis.json that 'threattune diagnose' wrote, unchanged",
        )
    findings = [f for f in findings if isinstance(f, dict)]
    by_severity = Counter(str(f.get("severity")) for f in findings)
    drift = _mapping(report.get("drift"))
    features = [f for f in drift.get("features") or [] if isinstance(f, dict)]
    tested = [f for f in features if f.get("status") not in ("untested", "missing", None)]
    drifted = sorted(
        (f for f in features if f.get("status") == "drift"),
        key=lambda f: -(_number(f.get("psi")) or 0.0),
    )
    multivariate = _mapping(drift.get("multivariate"))
    embedding = _mapping(_mapping(report.get("text")).get("embedding"))
    novelty = _mapping(report.get("novelty"))
    estimate = _mapping(report.get("estimate"))
    summary = {
        "severity": severity,
        "unit": str(report.get("unit") or "rows")[:20],
        "rows_read": _number(report.get("rows_read")),
        "rows_diagnosed": _number(report.get("rows_diagnosed")),
        "findings": len(findings),
        "findings_by_severity": {s: by_severity.get(s, 0) for s in SEVERITY_LEVELS},
        "top_findings": [
            {
                "severity": str(f.get("severity")),
                "kind": str(f.get("kind"))[:80],
                "subject": str(f.get("subject"))[:200],
                "message": str(f.get("message"))[:500],
            }
            for f in findings[:_TOP_FINDINGS]
        ],
        "features_tested": len(tested),
        "features_drifted": len(drifted),
        "drifted_share": len(drifted) / len(tested) if tested else None,
        "drifted_features": [str(f.get("feature"))[:200] for f in drifted[:_TOP_FEATURES]],
        "multivariate_auc": _number(multivariate.get("auc", embedding.get("auc"))),
        "novelty_rate": _number(novelty.get("rate")),
        "novelty_reference_rate": _number(novelty.get("reference_rate")),
        "estimated_precision": _number(estimate.get("precision")),
        "estimated_fpr": _number(estimate.get("fpr")),
        "validation_fpr": _number(estimate.get("validation_fpr")),
        "current": str(report.get("current", ""))[:500],
    }
    return plain_json(summary)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
