"""Findings: what a check found, as objects with a severity rather than log lines.

Data-quality checks at load time, fingerprint checks at scoring time and the diagnosis of a new
segment all report :class:`Finding` objects, so that a report, a service or a test can rank,
filter and count them.

>>> f = Finding("dropped-column", Severity.INFO, "Flow ID", "identifier column dropped")
>>> f.severity >= Severity.INFO
True
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Finding", "Severity", "worst"]


class Severity(enum.IntEnum):
    """How much a finding matters, ordered so that findings sort and compare."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Finding:
    """One thing a check found.

    Parameters
    ----------
    kind:
        A short machine-readable name of the check, such as ``"unseen-category"``.
    severity:
        How much it matters.
    subject:
        What it is about: a column, a class, a file.
    message:
        One sentence a SOC engineer can read.
    evidence:
        Numbers that back the finding (counts, statistics, thresholds).
    """

    kind: str
    severity: Severity
    subject: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, severity as its lower-case name."""
        out = asdict(self)
        out["severity"] = str(self.severity)
        return out


def worst(findings: list[Finding]) -> Severity | None:
    """The highest severity among ``findings``, or None when there are none."""
    return max((f.severity for f in findings), default=None)
