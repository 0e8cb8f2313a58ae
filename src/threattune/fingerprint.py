"""What a model expects of its input, stored with the model and checked on every input.

A fingerprint records the feature columns and their types, each categorical column's
vocabulary and each numeric column's value range as seen in training, how the input files were
read, and the preprocessing version. Scoring refuses input whose columns or types do not match
(naming the column and line) and reports values the model never saw as findings, so a pipeline
that changed upstream is caught before it silently degrades detection.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threattune.errors import SchemaMismatch
from threattune.findings import Finding, Severity
from threattune.preprocessing import PREPROCESSING_VERSION

__all__ = ["ColumnProfile", "Fingerprint", "InputCheck"]


@dataclass(frozen=True)
class ColumnProfile:
    """One feature column as training saw it."""

    name: str
    kind: str
    minimum: float | None = None
    maximum: float | None = None
    p01: float | None = None
    p99: float | None = None
    missing_fraction: float = 0.0
    vocabulary: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        out["missing_fraction"] = self.missing_fraction
        if self.kind == "categorical":
            out["vocabulary"] = list(self.vocabulary)
        else:
            out |= {"min": self.minimum, "max": self.maximum, "p01": self.p01, "p99": self.p99}
        return out

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> ColumnProfile:
        return cls(
            name=spec["name"],
            kind=spec["kind"],
            minimum=spec.get("min"),
            maximum=spec.get("max"),
            p01=spec.get("p01"),
            p99=spec.get("p99"),
            missing_fraction=spec.get("missing_fraction", 0.0),
            vocabulary=tuple(spec.get("vocabulary", ())),
        )


@dataclass(frozen=True)
class Fingerprint:
    """The input schema of a model: columns, types, vocabularies, ranges, reader settings.

    ``input_format`` says how files were read in training (``{"reader": "nsl-kdd"}`` for
    headerless NSL-KDD files, ``{"reader": "table", "delimiter": ","}`` for files with a
    header); ``passthrough`` lists non-feature columns that may appear in input (identifiers,
    the label) and are carried to the output rather than refused.
    """

    columns: tuple[ColumnProfile, ...]
    input_format: dict[str, Any] = field(default_factory=dict)
    passthrough: tuple[str, ...] = ()
    preprocessing_version: str = PREPROCESSING_VERSION

    @classmethod
    def from_features(
        cls,
        features: pd.DataFrame,
        feature_types: dict[str, str],
        *,
        input_format: dict[str, Any],
        passthrough: Iterable[str] = (),
    ) -> Fingerprint:
        """Profile the training features."""
        profiles = []
        for column, kind in feature_types.items():
            values = features[column]
            missing = float(values.isna().mean())
            if kind == "categorical":
                vocabulary = tuple(sorted(values.dropna().astype(str).unique()))
                profiles.append(
                    ColumnProfile(column, kind, missing_fraction=missing, vocabulary=vocabulary)
                )
                continue
            finite = values.to_numpy(dtype=np.float64, na_value=np.nan)
            finite = finite[np.isfinite(finite)]
            if finite.size == 0:
                profiles.append(ColumnProfile(column, kind, missing_fraction=missing))
                continue
            p01, p99 = np.quantile(finite, [0.01, 0.99])
            profiles.append(
                ColumnProfile(
                    column,
                    kind,
                    minimum=float(finite.min()),
                    maximum=float(finite.max()),
                    p01=float(p01),
                    p99=float(p99),
                    missing_fraction=missing,
                )
            )
        return cls(tuple(profiles), dict(input_format), tuple(passthrough))

    @property
    def names(self) -> list[str]:
        """The feature column names, in model order."""
        return [c.name for c in self.columns]

    @property
    def categorical(self) -> list[str]:
        """The categorical feature columns."""
        return [c.name for c in self.columns if c.kind == "categorical"]

    @property
    def digest(self) -> str:
        """A short hash of the columns, types and vocabularies, to compare two models' inputs."""
        canon = [(c.name, c.kind, list(c.vocabulary)) for c in self.columns]
        return hashlib.sha256(json.dumps(canon).encode()).hexdigest()[:16]

    def check_columns(
        self, columns: Iterable[str], *, path: str | Path, allow_extra: bool = False
    ) -> list[str]:
        """Raise :class:`SchemaMismatch` for missing or unexpected columns.

        Returns the input's passthrough columns (present, not features).
        """
        columns = list(columns)
        present = set(columns)
        missing = [c for c in self.names if c not in present]
        if missing:
            shown = ", ".join(missing[:10]) + (
                f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            )
            raise SchemaMismatch(
                f"{len(missing)} of the model's {len(self.names)} feature columns are missing",
                path=path,
                field=missing[0],
                expected=f"columns {', '.join(self.names[:6])}, ...",
                found=f"no column {shown}",
                fix="score with a model trained on this kind of flow, or rename the columns "
                "to the model's names (threattune models show lists them)",
            )
        features = set(self.names)
        extra = [c for c in columns if c not in features and c not in self.passthrough]
        if extra and not allow_extra:
            raise SchemaMismatch(
                f"{len(extra)} columns are not features of the model",
                path=path,
                field=extra[0],
                expected="only the model's feature columns and its known identifier columns",
                found=", ".join(extra[:10]),
                fix="drop those columns, or pass --ignore-extra-columns to carry them through",
            )
        return [c for c in columns if c not in features]

    def check_types(self, frame: pd.DataFrame, *, path: str | Path, first_line: int) -> None:
        """Raise :class:`SchemaMismatch` when a numeric feature column holds text."""
        for profile in self.columns:
            if profile.kind != "numeric":
                continue
            values = frame[profile.name]
            if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
                continue
            converted = pd.to_numeric(
                values.astype(str)
                .str.strip()
                .str.replace(r"(?i)^(-?)inf(inity)?$", r"\1inf", regex=True),
                errors="coerce",
            )
            bad = converted.isna() & values.notna() & (values.astype(str).str.strip() != "")
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise SchemaMismatch(
                    "a numeric feature column holds text",
                    path=path,
                    line=first_line + row,
                    field=profile.name,
                    expected="a number, as in training",
                    found=repr(values.iloc[row]),
                    fix="fix the upstream export; this model cannot read text in this column",
                )
            frame[profile.name] = converted

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready fingerprint."""
        return {
            "digest": self.digest,
            "preprocessing_version": self.preprocessing_version,
            "input_format": self.input_format,
            "passthrough": list(self.passthrough),
            "columns": [c.to_dict() for c in self.columns],
        }

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> Fingerprint:
        """Rebuild a fingerprint saved by :meth:`to_dict`."""
        return cls(
            tuple(ColumnProfile.from_dict(c) for c in spec["columns"]),
            dict(spec.get("input_format", {})),
            tuple(spec.get("passthrough", ())),
            spec.get("preprocessing_version", PREPROCESSING_VERSION),
        )


@dataclass
class InputCheck:
    """Counts, over the batches of one input, the values a model never saw in training."""

    fingerprint: Fingerprint
    rows: int = 0
    unseen: dict[str, dict[str, int]] = field(default_factory=dict)
    out_of_range: dict[str, int] = field(default_factory=dict)

    def observe(self, frame: pd.DataFrame) -> None:
        """Count unseen categories and values outside the training range in one batch."""
        self.rows += len(frame)
        for profile in self.fingerprint.columns:
            values = frame[profile.name]
            if profile.kind == "categorical":
                seen = values.value_counts(dropna=True)
                seen = seen[seen > 0]
                novel = seen[~seen.index.astype(str).isin(profile.vocabulary)]
                if not novel.empty:
                    counts = self.unseen.setdefault(profile.name, {})
                    for value, count in novel.head(20).items():
                        counts[str(value)] = counts.get(str(value), 0) + int(count)
            elif profile.minimum is not None:
                numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
                outside = int(
                    (
                        np.isfinite(numbers)
                        & ((numbers < profile.minimum) | (numbers > profile.maximum))
                    ).sum()
                )
                if outside:
                    self.out_of_range[profile.name] = (
                        self.out_of_range.get(profile.name, 0) + outside
                    )

    def findings(self) -> list[Finding]:
        """What was seen, most severe first."""
        found = []
        for column, counts in self.unseen.items():
            total = sum(counts.values())
            share = total / max(self.rows, 1)
            found.append(
                Finding(
                    "unseen-category",
                    Severity.HIGH
                    if share > 0.05
                    else Severity.MEDIUM
                    if share > 0.001
                    else Severity.LOW,
                    column,
                    f"{total} values ({share:.2%}) never seen in training; the model treats "
                    "them as missing",
                    {"rows": total, "share": share, "examples": dict(list(counts.items())[:10])},
                )
            )
        for column, count in self.out_of_range.items():
            share = count / max(self.rows, 1)
            found.append(
                Finding(
                    "out-of-range",
                    Severity.MEDIUM if share > 0.01 else Severity.LOW,
                    column,
                    f"{count} values ({share:.2%}) outside the training range",
                    {"rows": count, "share": share},
                )
            )
        return sorted(found, key=lambda f: f.severity, reverse=True)
