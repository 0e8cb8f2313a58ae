"""Label-free estimate of precision and benign false-positive rate on a new segment.

Nobody has labelled the segment yet, but the model's attack scores, calibrated on the validation
split, say how likely each flow is to be an attack. With ``p_i`` the calibrated probability that
flow ``i`` is an attack:

* expected true positives ``TP = sum(p_i)`` over alerts, false positives ``FP = sum(1 - p_i)``
  over alerts;
* expected benign flows ``N = sum(1 - p_i)`` over all flows;
* precision ``TP / alerts`` and benign FPR ``FP / N``.

The interval comes from a bootstrap that resamples flows and draws each flow's class from its
probability, so it covers both the sample and the label uncertainty. The estimate is only as
good as the calibration: it assumes that a score means on the segment what it meant on
validation. Where the segment has drifted that is not guaranteed, so compare with labels when
they exist (the diagnosis does when given them).

>>> import numpy as np
>>> p = np.array([0.9, 0.9, 0.1, 0.1])
>>> round(label_free_estimate(p, np.array([True, True, False, False])).precision, 2)
0.9
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from threattune.calibration import Calibrator, fit_calibrator
from threattune.findings import Finding, Severity

__all__ = ["Estimate", "estimate_findings", "fit_attack_calibrator", "label_free_estimate"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Estimate:
    """Estimated (and, with labels, true) alert quality on a segment."""

    rows: int
    alerts: int
    precision: float
    precision_ci: tuple[float, float]
    fpr: float
    fpr_ci: tuple[float, float]
    attack_share: float
    calibration: str
    validation_fpr: float | None = None
    validation_precision: float | None = None
    reference_fpr: float | None = None
    reference_precision: float | None = None
    true_precision: float | None = None
    true_fpr: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def fit_attack_calibrator(
    validation_classes: np.ndarray, validation_proba: np.ndarray, benign_index: int, classes: list
) -> Calibrator:
    """A calibrator of the any-attack score ``1 - P(benign)``, fitted on validation scores."""
    is_attack = np.asarray(validation_classes) != classes[benign_index]
    return fit_calibrator(1.0 - validation_proba[:, benign_index], is_attack, method="auto")


def label_free_estimate(
    attack_probability: np.ndarray,
    alerts: np.ndarray,
    *,
    bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    calibration: str = "",
) -> Estimate:
    """Expected precision and benign FPR from calibrated attack probabilities, with intervals."""
    p = np.clip(np.asarray(attack_probability, dtype=np.float64), 0.0, 1.0)
    alerts = np.asarray(alerts, dtype=bool)
    precision, fpr = _rates(p, alerts)

    rng = np.random.default_rng(seed)
    draws = np.full((max(bootstrap, 1), 2), np.nan)
    for b in range(bootstrap):
        rows = rng.integers(0, len(p), size=len(p))
        attack = rng.random(len(p)) < p[rows]
        flagged = alerts[rows]
        negatives = max(int((~attack).sum()), 1)
        draws[b] = (
            attack[flagged].mean() if flagged.any() else np.nan,
            (flagged & ~attack).sum() / negatives,
        )
    tail = (1 - confidence) / 2
    low, high = (np.full(2, np.nan),) * 2
    if len(p) and bootstrap:
        low, high = np.nanquantile(draws, [tail, 1 - tail], axis=0)
    return Estimate(
        rows=len(p),
        alerts=int(alerts.sum()),
        precision=precision,
        precision_ci=(float(low[0]), float(high[0])),
        fpr=fpr,
        fpr_ci=(float(low[1]), float(high[1])),
        attack_share=float(p.mean()) if len(p) else float("nan"),
        calibration=calibration,
    )


def _rates(p: np.ndarray, alerts: np.ndarray) -> tuple[float, float]:
    n_alerts = alerts.sum()
    precision = float(p[alerts].sum() / n_alerts) if n_alerts else float("nan")
    benign = (1.0 - p).sum()
    fpr = float((1.0 - p[alerts]).sum() / benign) if benign > 0 else float("nan")
    return precision, fpr


def estimate_findings(estimate: Estimate) -> list[Finding]:
    """A finding on the expected false-positive rate against the reference, and on the truth.

    The segment's estimate is compared with the same label-free estimate on the reference rows,
    so that a bias of the calibration cancels out; severity needs the segment's lower bound
    to exceed the reference figure by a factor and by a margin.
    """
    found = []
    reference = (
        estimate.reference_fpr if estimate.reference_fpr is not None else estimate.validation_fpr
    )
    low = estimate.fpr_ci[0]
    severity = Severity.INFO
    if reference is not None and np.isfinite(low):
        excess = low - reference
        if low > 5 * reference and excess > 0.02:
            severity = Severity.HIGH
        elif low > 2 * reference and excess > 0.005:
            severity = Severity.MEDIUM
    shown = "n/a" if reference is None else f"{reference:.2%}"
    validation = "n/a" if estimate.validation_fpr is None else f"{estimate.validation_fpr:.2%}"
    found.append(
        Finding(
            "estimated-fpr",
            severity,
            "segment",
            f"label-free estimate: benign FPR {estimate.fpr:.2%} "
            f"({estimate.fpr_ci[0]:.2%} to {estimate.fpr_ci[1]:.2%}; reference rows {shown}, "
            f"measured on validation {validation}), "
            f"precision {estimate.precision:.1%} "
            f"({estimate.precision_ci[0]:.1%} to {estimate.precision_ci[1]:.1%})",
            estimate.to_dict(),
        )
    )
    if estimate.true_fpr is not None:
        truth_severity = Severity.INFO
        if reference is not None and estimate.true_fpr > 2 * reference + 0.005:
            truth_severity = Severity.HIGH if estimate.true_fpr > 5 * reference else Severity.MEDIUM
        inside = estimate.fpr_ci[0] <= estimate.true_fpr <= estimate.fpr_ci[1]
        found.append(
            Finding(
                "measured-fpr",
                truth_severity,
                "segment",
                f"with labels: benign FPR {estimate.true_fpr:.2%}, precision "
                f"{estimate.true_precision:.1%}; the label-free interval "
                f"{'covers' if inside else 'misses'} the true FPR",
                {
                    "true_fpr": estimate.true_fpr,
                    "true_precision": estimate.true_precision,
                    "estimate_covers": inside,
                },
            )
        )
    return found
