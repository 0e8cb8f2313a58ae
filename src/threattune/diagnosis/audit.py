"""Pipeline audit: did the segment's export change, rather than its traffic?

Many "drifts" are an upstream change: a renamed column, milliseconds instead of seconds,
kilobytes instead of bytes, a new protocol label, a numeric column that now holds text. The
audit compares the segment's columns and values with the model's fingerprint and reference
profile and names the column of every mismatch.

:class:`SegmentAudit` collects what reading the segment saw (columns, text in numeric columns,
unseen categories and out-of-range values through :class:`~threattune.fingerprint.InputCheck`);
:func:`audit_findings` adds unit changes, missing-value changes and version differences.
"""

from __future__ import annotations

import difflib
import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from threattune import __version__
from threattune.diagnosis.profile import ReferenceProfile, numeric_values
from threattune.findings import Finding, Severity
from threattune.fingerprint import Fingerprint, InputCheck
from threattune.preprocessing import PREPROCESSING_VERSION

__all__ = ["UNIT_FACTORS", "SegmentAudit", "audit_findings", "unit_change"]

logger = logging.getLogger(__name__)

UNIT_FACTORS: dict[str, float] = {
    "x1000 (e.g. s to ms, KB to bytes)": 1e3,
    "x1e6 (e.g. s to us, MB to bytes)": 1e6,
    "x1024 (KiB to bytes)": 1024.0,
    "x1048576 (MiB to bytes)": 1048576.0,
    "x60 (minutes to seconds)": 60.0,
    "x3600 (hours to seconds)": 3600.0,
}
"""Factors a unit change multiplies a column by; their inverses are checked too."""

_UNIT_TOLERANCE = 0.25
_MIN_NONZERO = 20


@dataclass
class SegmentAudit:
    """What reading a segment saw, column by column, before any feature was compared."""

    fingerprint: Fingerprint
    columns: list[str] = field(default_factory=list)
    text_values: dict[str, int] = field(default_factory=dict)
    check: InputCheck | None = None

    def __post_init__(self) -> None:
        if self.check is None:
            self.check = InputCheck(self.fingerprint)

    @property
    def missing(self) -> list[str]:
        """Feature columns of the model that the segment lacks."""
        present = set(self.columns)
        return [name for name in self.fingerprint.names if name not in present]

    @property
    def extra(self) -> list[str]:
        """Segment columns that are neither features nor known passthrough columns."""
        known = set(self.fingerprint.names) | set(self.fingerprint.passthrough)
        return [name for name in self.columns if name not in known]

    def features(self, batch: pd.DataFrame) -> pd.DataFrame:
        """The model's features of one batch, typed as scoring types them, never refusing.

        Missing columns become all-missing, text in a numeric column becomes missing (and is
        counted), categories are stripped text.
        """
        if not self.columns:
            self.columns = [str(c) for c in batch.columns]
        out = pd.DataFrame(index=batch.index)
        for profile in self.fingerprint.columns:
            name = profile.name
            if name not in batch.columns:
                out[name] = np.nan if profile.kind == "numeric" else None
                continue
            values = batch[name]
            if profile.kind == "categorical":
                out[name] = values.astype(str).str.strip().where(values.notna(), None)
                continue
            numbers = numeric_values(values, name=name, errors="coerce")
            text = int((np.isnan(numbers) & values.notna().to_numpy()).sum())
            if text and not pd.api.types.is_numeric_dtype(values.dtype):
                self.text_values[name] = self.text_values.get(name, 0) + text
            out[name] = numbers
        assert self.check is not None
        self.check.observe(out)
        return out

    def findings(self) -> list[Finding]:
        """Missing, extra and text-holding columns, unseen categories, out-of-range values."""
        found = []
        extra = self.extra
        for name in self.missing:
            close = difflib.get_close_matches(name, extra, n=1, cutoff=0.6)
            hint = f"; renamed to '{close[0]}'?" if close else ""
            found.append(
                Finding(
                    "missing-column",
                    Severity.CRITICAL,
                    name,
                    f"the segment has no column '{name}'; the model sees it as missing{hint}",
                    {"renamed_to": close[0] if close else None},
                )
            )
        if extra:
            found.append(
                Finding(
                    "extra-column",
                    Severity.LOW if self.missing else Severity.INFO,
                    ", ".join(extra[:5]),
                    f"{len(extra)} segment columns are not features of the model and are ignored",
                    {"columns": extra[:50]},
                )
            )
        rows = self.check.rows if self.check else 0
        for name, count in self.text_values.items():
            share = count / max(rows, 1)
            found.append(
                Finding(
                    "type-change",
                    Severity.HIGH if share > 0.01 else Severity.MEDIUM,
                    name,
                    f"{count} values ({share:.2%}) of the numeric column '{name}' are text; "
                    "the model sees them as missing",
                    {"rows": count, "share": share},
                )
            )
        assert self.check is not None
        missing = set(self.missing)
        return found + [f for f in self.check.findings() if f.subject not in missing]


def unit_change(reference: np.ndarray, current: np.ndarray) -> tuple[str, float] | None:
    """The unit factor that maps the reference's non-zero values onto the segment's, if any.

    The median and both quartiles of the non-zero absolute values must all have moved by the
    same known factor (within 25 %), so that a genuine change of traffic is not mistaken for a
    change of unit.

    >>> rng = np.random.default_rng(0)
    >>> seconds = rng.lognormal(0, 1, 500)
    >>> unit_change(seconds, seconds * 1000)[0]
    'x1000 (e.g. s to ms, KB to bytes)'
    """
    ref = np.abs(reference[np.isfinite(reference) & (reference != 0)])
    cur = np.abs(current[np.isfinite(current) & (current != 0)])
    if ref.size < _MIN_NONZERO or cur.size < _MIN_NONZERO:
        return None

    ratios = np.quantile(cur, [0.25, 0.5, 0.75]) / np.quantile(ref, [0.25, 0.5, 0.75])
    if not np.all(ratios > 0):
        return None
    for name, factor in UNIT_FACTORS.items():
        for direction, value in (("", factor), ("/", 1.0 / factor)):
            if np.all(np.abs(np.log(ratios / value)) < math.log1p(_UNIT_TOLERANCE)):
                label = name if not direction else "/" + name.removeprefix("x")
                return label, float(ratios[1])
    return None


def audit_findings(
    audit: SegmentAudit,
    profile: ReferenceProfile,
    segment: pd.DataFrame,
    *,
    model_manifest: dict[str, Any] | None = None,
) -> list[Finding]:
    """Every pipeline finding: the audit's own, unit changes, missing values and versions."""
    found = [_by_chance(f, profile.n_rows) for f in audit.findings()]
    missing = set(audit.missing)

    for column in audit.fingerprint.columns:
        name = column.name
        if name in missing or column.kind != "numeric" or name not in profile.sample:
            continue
        current = segment[name].to_numpy(dtype=np.float64, na_value=np.nan)
        reference = numeric_values(profile.sample[name], name=name, errors="coerce")
        change = unit_change(reference, current)
        if change is not None:
            label, ratio = change
            found.append(
                Finding(
                    "unit-change",
                    Severity.HIGH,
                    name,
                    f"'{name}' looks rescaled {label}: its median non-zero value moved "
                    f"{ratio:.4g}x; check the export's units",
                    {"factor": label, "median_ratio": ratio},
                )
            )
        found += _missing_values(name, column.missing_fraction, current)
    for name in audit.fingerprint.categorical:
        if name in missing:
            continue
        values = segment[name]
        found += _missing_values(name, 0.0, np.where(values.isna(), np.nan, 0.0))

    found += _versions(audit.fingerprint, model_manifest or {})
    return sorted(found, key=lambda f: f.severity, reverse=True)


def _missing_values(name: str, reference_share: float, current: np.ndarray) -> list[Finding]:
    if current.size == 0:
        return []
    share = float(np.isnan(current).mean())
    if share - reference_share < 0.05:
        return []
    return [
        Finding(
            "missing-values",
            Severity.HIGH if share - reference_share > 0.25 else Severity.MEDIUM,
            name,
            f"'{name}' is missing in {share:.1%} of segment rows "
            f"({reference_share:.1%} in training)",
            {"share": share, "reference_share": reference_share},
        )
    ]


def _versions(fingerprint: Fingerprint, manifest: dict[str, Any]) -> list[Finding]:
    found = []
    if fingerprint.preprocessing_version != PREPROCESSING_VERSION:
        found.append(
            Finding(
                "preprocessing-version",
                Severity.HIGH,
                "preprocessing",
                f"the model was trained with preprocessing {fingerprint.preprocessing_version}, "
                f"this installation encodes with {PREPROCESSING_VERSION}",
                {"model": fingerprint.preprocessing_version, "installed": PREPROCESSING_VERSION},
            )
        )
    trained_with = manifest.get("threattune_version")
    if trained_with and trained_with != __version__:
        found.append(
            Finding(
                "software-version",
                Severity.INFO,
                "threattune",
                f"the model was saved by threattune {trained_with}; this is {__version__}",
                {"model": trained_with, "installed": __version__},
            )
        )
    return found


def _by_chance(finding: Finding, reference_rows: int) -> Finding:
    """INFO for as many new values as sampling alone would give.

    A fresh sample of ``n`` rows from the training distribution exceeds the training range of
    a continuous feature about ``2n / (N + 1)`` times (``N`` training rows); a handful of
    unseen categories in a large segment is just as expected for rare services.
    """
    rows = int(finding.evidence.get("rows", 0))
    share = float(finding.evidence.get("share", 0.0))
    if finding.kind == "out-of-range":
        expected = 2.0 * rows / max(share, 1e-12) / (reference_rows + 1) if share else 0.0
        chance = rows <= expected + 3.0 * math.sqrt(expected) + 3
    elif finding.kind == "unseen-category":
        chance = rows <= 3 and share < 0.001
    else:
        return finding
    if not chance:
        return finding
    return replace(
        finding,
        severity=Severity.INFO,
        message=finding.message + " (as many as sampling alone gives)",
    )
