"""Evasion check: how many alerts turn benign when an attacker nudges what they control.

An attacker chooses packet sizes, byte counts, durations, timings and connection counts, within
limits. The check multiplies those features of each alerted attack flow by ``1 ± eps`` (±10 %
and ±25 %; every feature up or down, in random combinations and all together), clips the result
to the training range, rounds integer features, and counts the alerts that are no longer alerts.
Per attack class, the share that flips says how cheaply that attack evades the model; classes
are ranked easiest to evade first.

Which features an attacker controls is read from the column names: a fixed list for NSL-KDD,
name patterns for CICFlowMeter exports and other tables (see :func:`controlled_features`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from threattune.findings import Finding, Severity
from threattune.fingerprint import Fingerprint

__all__ = [
    "EPSILONS",
    "NSL_KDD_CONTROLLED",
    "AdversarialResult",
    "adversarial_findings",
    "controlled_features",
    "evasion_check",
]

logger = logging.getLogger(__name__)

EPSILONS = (0.10, 0.25)
"""Relative sizes of the perturbations tried."""

NSL_KDD_CONTROLLED = (
    "duration",
    "src_bytes",
    "dst_bytes",
    "wrong_fragment",
    "urgent",
    "hot",
    "count",
    "srv_count",
)
"""NSL-KDD features a remote attacker sets: sizes, duration, fragments and connection counts."""

_CONTROLLED_PATTERN = re.compile(
    r"(?i)(byte|length|size|duration|iat|packet|pkts?\b|segment|count|bulk|subflow|"
    r"active|idle|win)"
)
_NOT_CONTROLLED = re.compile(r"(?i)(flag|port|protocol|label|\bip\b|address|rate$|ratio)")
_DRAWS = 12


def controlled_features(fingerprint: Fingerprint) -> list[str]:
    """The numeric features an attacker can set, chosen by dataset and column name."""
    numeric = [c.name for c in fingerprint.columns if c.kind == "numeric"]
    if fingerprint.input_format.get("reader") == "nsl-kdd":
        return [name for name in NSL_KDD_CONTROLLED if name in numeric]
    return [
        name
        for name in numeric
        if _CONTROLLED_PATTERN.search(name) and not _NOT_CONTROLLED.search(name)
    ]


@dataclass
class AdversarialResult:
    """Per attack class and perturbation size: alerts tried and alerts that flipped to benign."""

    features: list[str]
    by_class: dict[str, dict[str, Any]] = field(default_factory=dict)

    def ranked(self) -> list[tuple[str, dict[str, Any]]]:
        """Classes, easiest to evade first (at the smallest perturbation, then the larger)."""
        keys = [f"flip_{int(e * 100)}" for e in EPSILONS]
        return sorted(self.by_class.items(), key=lambda item: tuple(-item[1][k] for k in keys))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, classes ranked."""
        return {"features": self.features, "by_class": dict(self.ranked())}


def evasion_check(
    features: pd.DataFrame,
    attack_classes: np.ndarray,
    alerts: Callable[[pd.DataFrame], np.ndarray],
    fingerprint: Fingerprint,
    *,
    epsilons: Sequence[float] = EPSILONS,
    max_rows: int = 2_000,
    draws: int = _DRAWS,
    seed: int = 0,
) -> AdversarialResult:
    """Perturb the controlled features of alerted attack rows and count the flips.

    ``features`` are segment rows the model alerts on, ``attack_classes`` their (true or
    predicted) attack class, and ``alerts`` the model's alert decision for a frame of features.
    At most ``max_rows`` rows are tried, drawn uniformly.
    """
    controlled = controlled_features(fingerprint)
    result = AdversarialResult(controlled)
    if not controlled or features.empty:
        return result

    rng = np.random.default_rng(seed)
    keep = np.sort(rng.permutation(len(features))[:max_rows])
    rows = features.iloc[keep].reset_index(drop=True)
    classes = np.asarray(attack_classes)[keep]
    ranges = {c.name: c for c in fingerprint.columns}
    base = rows[controlled].to_numpy(dtype=np.float64, na_value=np.nan)
    integral = [_is_integral(rows[name]) for name in controlled]
    low = np.array([_bound(ranges[n].minimum, -np.inf) for n in controlled])
    high = np.array([_bound(ranges[n].maximum, np.inf) for n in controlled])

    flipped: dict[float, np.ndarray] = {}
    for eps in epsilons:
        signs = [np.ones(len(controlled)), -np.ones(len(controlled))]
        signs += [rng.choice([-1.0, 1.0], size=len(controlled)) for _ in range(draws - 2)]
        any_flip = np.zeros(len(rows), dtype=bool)
        for sign in signs:
            moved = np.clip(base * (1.0 + eps * sign), low, high)
            moved[:, integral] = np.round(moved[:, integral])
            moved = np.where(np.isnan(base), base, moved)
            trial = rows.copy()
            trial[controlled] = moved
            any_flip |= ~alerts(trial)
        flipped[eps] = any_flip

    for name in sorted(set(classes)):
        members = classes == name
        entry: dict[str, Any] = {"alerts_tried": int(members.sum())}
        for eps in epsilons:
            entry[f"flip_{int(eps * 100)}"] = float(flipped[eps][members].mean())
        result.by_class[str(name)] = entry
    logger.info("evasion check on %d alerts over %d features", len(rows), len(controlled))
    return result


def adversarial_findings(
    result: AdversarialResult,
    reference: AdversarialResult | None = None,
    *,
    min_alerts: int = 10,
) -> list[Finding]:
    """One finding per attack class, severity by the share that flips at ±10 %.

    With a ``reference`` (the same check on the training rows), severity is the excess of the
    segment's flip rate over the reference's: a model that was always easy to evade for a class
    is reported at INFO with its rate, since the segment did not change that; attacks in the
    segment that sit closer to the decision boundary than in training rise above INFO.
    """
    found = []
    smallest, largest = (f"flip_{int(e * 100)}" for e in (EPSILONS[0], EPSILONS[-1]))
    for name, entry in result.ranked():
        if entry["alerts_tried"] < min_alerts:
            continue
        rate = entry[smallest]
        base = 0.0
        if reference is not None:
            base = reference.by_class.get(name, {}).get(smallest, 0.0)
            entry = {**entry, "reference_" + smallest: base}
        excess = rate - base
        severity = (
            Severity.HIGH
            if excess >= 0.5
            else Severity.MEDIUM
            if excess >= 0.2
            else Severity.LOW
            if excess >= 0.1
            else Severity.INFO
        )
        found.append(
            Finding(
                "evasion",
                severity,
                name,
                f"{rate:.0%} of {name} alerts turn benign when {', '.join(result.features[:4])}"
                f"{'...' if len(result.features) > 4 else ''} change by ±10 % "
                f"({entry[largest]:.0%} at ±25 %"
                + (f"; {base:.0%} of training alerts)" if reference is not None else ")"),
                dict(entry),
            )
        )
    return found


def _is_integral(values: pd.Series) -> bool:
    numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = numbers[np.isfinite(numbers)]
    return bool(finite.size and np.all(finite == np.round(finite)))


def _bound(value: float | None, default: float) -> float:
    return default if value is None else float(value)
