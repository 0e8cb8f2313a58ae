"""Network flows from NSL-KDD, CICFlowMeter exports and a user's own labelled tables.

Every loader returns a :class:`FlowTable`: the feature columns a model may learn from, the class
of each flow, context columns kept for reports (attack name, difficulty, identifiers), the
columns that were dropped and why, and data-quality findings. Identifier columns that leak the
label (flow ids, addresses, ports, timestamps) are dropped by default and named in the report.

>>> import pandas as pd
>>> frame = pd.DataFrame({"bytes": [10, 20], "proto": ["tcp", "udp"], "label": ["benign", "dos"]})
>>> table = flow_table_from_frame(frame, label_column="label", source="example")
>>> table.feature_types
{'bytes': 'numeric', 'proto': 'categorical'}
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from threattune.errors import ConfigError, DataError
from threattune.findings import Finding, Severity
from threattune.sources import _tables

logger = logging.getLogger(__name__)

__all__ = [
    "CICFLOWMETER_IDENTIFIERS",
    "FlowTable",
    "NSL_KDD_CATEGORIES",
    "NSL_KDD_COLUMNS",
    "flow_table_from_frame",
    "infer_feature_types",
    "load_cicflowmeter",
    "load_labelled_table",
    "load_nsl_kdd",
    "nsl_kdd_category",
]

NSL_KDD_FEATURES: tuple[str, ...] = (
    "duration", "protocol_type", "service", "flag", "src_bytes", "dst_bytes", "land",
    "wrong_fragment", "urgent", "hot", "num_failed_logins", "logged_in", "num_compromised",
    "root_shell", "su_attempted", "num_root", "num_file_creations", "num_shells",
    "num_access_files", "num_outbound_cmds", "is_host_login", "is_guest_login", "count",
    "srv_count", "serror_rate", "srv_serror_rate", "rerror_rate", "srv_rerror_rate",
    "same_srv_rate", "diff_srv_rate", "srv_diff_host_rate", "dst_host_count",
    "dst_host_srv_count", "dst_host_same_srv_rate", "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate", "dst_host_srv_diff_host_rate", "dst_host_serror_rate",
    "dst_host_srv_serror_rate", "dst_host_rerror_rate", "dst_host_srv_rerror_rate",
)  # fmt: skip
NSL_KDD_COLUMNS: tuple[str, ...] = (*NSL_KDD_FEATURES, "attack", "difficulty")
NSL_KDD_CATEGORICAL = ("protocol_type", "service", "flag")

# The 22 training attacks follow the official KDD'99 training_attack_types file; the 17 that
# occur only in the test files follow the mapping in common use (no official file covers them).
_NSL_KDD_ATTACKS: dict[str, tuple[str, ...]] = {
    "DoS": (
        "back", "land", "neptune", "pod", "smurf", "teardrop",
        "apache2", "mailbomb", "processtable", "udpstorm",
    ),
    "Probe": ("ipsweep", "nmap", "portsweep", "satan", "mscan", "saint"),
    "R2L": (
        "ftp_write", "guess_passwd", "imap", "multihop", "phf", "spy", "warezclient",
        "warezmaster", "named", "sendmail", "snmpgetattack", "snmpguess", "xlock", "xsnoop",
        "worm",
    ),
    "U2R": (
        "buffer_overflow", "loadmodule", "perl", "rootkit",
        "httptunnel", "ps", "sqlattack", "xterm",
    ),
}  # fmt: skip
NSL_KDD_CATEGORIES: dict[str, str] = {"normal": "normal"} | {
    attack: category for category, attacks in _NSL_KDD_ATTACKS.items() for attack in attacks
}

CICFLOWMETER_LABEL = "Label"
CICFLOWMETER_IDENTIFIERS: dict[str, str] = {
    "id": "row id within an upstream per-day file",
    "Flow ID": "identifier: addresses and ports of one flow",
    "Src IP": "identifier: source address leaks the attacking host",
    "Dst IP": "identifier: destination address leaks the victim host",
    "Src Port": "identifier: ephemeral source port",
    "Dst Port": "identifier: destination port leaks the attacked service in this capture",
    "Timestamp": "identifier: each attack ran at a known time of the capture",
    "Attempted Category": "label metadata, not a feature",
}

_ADDRESS = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$|^[0-9a-fA-F:]+:[0-9a-fA-F:]+$")
_MAX_CATEGORIES = 1_000
_ID_NAME = re.compile(
    r"(?i)(^|[_\s.-])(id|uid|uuid|index|idx|row|record|seq|serial)$|^(id|no|nr)[_\s.-]"
)


@dataclass
class FlowTable:
    """Flows ready for a model: features, classes, context and what was dropped.

    Attributes
    ----------
    features:
        One row per flow, one column per feature; numeric columns are floats.
    labels:
        The class of each flow, or None for unlabelled flows.
    feature_types:
        ``"numeric"`` or ``"categorical"`` per feature column.
    context:
        Columns kept beside the features for reports, never learnt from.
    dropped:
        Columns left out of the features, with the reason for each.
    findings:
        Data-quality findings met while loading.
    source:
        Where the flows came from, for messages and reports.
    """

    features: pd.DataFrame
    labels: pd.Series | None
    feature_types: dict[str, str]
    context: pd.DataFrame = field(default_factory=pd.DataFrame)
    dropped: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.features)

    @property
    def classes(self) -> list[str]:
        """The classes present, sorted."""
        return sorted(self.labels.unique()) if self.labels is not None else []

    def subset(self, rows: np.ndarray) -> FlowTable:
        """The flows at positional ``rows``, sharing types and findings."""
        return FlowTable(
            features=self.features.iloc[rows].reset_index(drop=True),
            labels=None if self.labels is None else self.labels.iloc[rows].reset_index(drop=True),
            feature_types=self.feature_types,
            context=self.context.iloc[rows].reset_index(drop=True)
            if not self.context.empty
            else self.context,
            dropped=self.dropped,
            findings=self.findings,
            source=self.source,
        )


def require_label_column(frame: pd.DataFrame, path: Path, label_column: str) -> None:
    """Raise a :class:`DataError` naming the file and its columns when the label is missing."""
    if label_column not in frame.columns:
        raise DataError(
            "label column not found",
            path=path,
            field=label_column,
            expected=f"a column named '{label_column}'",
            found=", ".join(frame.columns[:8]) + (", ..." if frame.shape[1] > 8 else ""),
            fix="pass --label-column with the name of the column that holds the class",
        )


def describe_paths(paths: Sequence[Path]) -> str:
    """Files named for messages: one path, a few names, or a folder and a count."""
    if len(paths) == 1:
        return str(paths[0])
    parents = {p.parent for p in paths}
    if len(paths) > 3 and len(parents) == 1:
        return f"{next(iter(parents))}/ ({len(paths)} files)"
    return ", ".join(str(p) for p in paths)


def nsl_kdd_category(attack: str) -> str | None:
    """The NSL-KDD category (normal, DoS, Probe, R2L, U2R) of an attack name, or None."""
    return NSL_KDD_CATEGORIES.get(attack.strip().rstrip("."))


def load_nsl_kdd(paths: Sequence[Path] | Path, *, granularity: str = "category") -> FlowTable:
    """Load NSL-KDD files (headerless: 41 features, the attack name and the difficulty).

    ``granularity`` is ``"category"`` for the five classes normal, DoS, Probe, R2L and U2R,
    ``"binary"`` for normal against attack, or ``"attack"`` for the attack names themselves.
    """
    if granularity not in {"category", "binary", "attack"}:
        raise ConfigError(
            "unknown NSL-KDD granularity",
            field="granularity",
            expected="category, binary or attack",
            found=granularity,
        )
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]

    frames = []
    for path in paths:
        frame = _tables.read_csv_frame(path, names=NSL_KDD_COLUMNS)
        attacks = frame["attack"].astype(str).str.strip().str.rstrip(".")
        categories = attacks.map(NSL_KDD_CATEGORIES)
        unknown = categories.isna()
        if unknown.any():
            row = int(np.flatnonzero(unknown.to_numpy())[0])
            raise DataError(
                "unknown NSL-KDD attack name",
                path=path,
                line=row + 1,
                field="attack",
                expected="one of the 39 NSL-KDD attack names or 'normal'",
                found=repr(attacks.iloc[row]),
                fix="check the file is NSL-KDD, or use a task file with a label column",
            )
        frame["attack"] = attacks
        frame["category"] = categories
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)

    labels = {"category": frame["category"], "attack": frame["attack"]}.get(
        granularity, frame["category"].where(frame["category"] == "normal", "attack")
    )
    features = frame[list(NSL_KDD_FEATURES)].copy()
    feature_types = {c: "categorical" if c in NSL_KDD_CATEGORICAL else "numeric" for c in features}
    segments = [(str(p), len(f)) for p, f in zip(paths, frames, strict=True)]
    features = _coerce(features, feature_types, origin=RowOrigin(segments, first_line=1))
    return FlowTable(
        features=features,
        labels=labels.astype(str).rename("class"),
        feature_types=feature_types,
        context=frame[["attack", "category", "difficulty"]],
        dropped={
            "attack": "label: the attack name",
            "difficulty": "label metadata: how many reference learners got the record right",
        },
        findings=_quality_findings(features, feature_types),
        source=describe_paths(paths),
    )


def load_cicflowmeter(
    paths: Sequence[Path] | Path,
    *,
    label_column: str = CICFLOWMETER_LABEL,
    keep_columns: Sequence[str] = (),
    deduplicate: bool = True,
    delimiter: str = ",",
) -> FlowTable:
    """Load CICFlowMeter CSV exports (CICIDS2017 and the like) into a flow table.

    Infinity becomes missing (CICFlowMeter writes it for rates over a zero duration);
    identifier columns that leak the label are dropped unless named in ``keep_columns``;
    exact duplicate flows (once identifiers are gone) are dropped when ``deduplicate``.
    """
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    frames = [_tables.read_table(path, delimiter=delimiter) for path in paths]
    for path, frame in zip(paths, frames, strict=True):
        require_label_column(frame, path, label_column)
    frame = pd.concat(frames, ignore_index=True)

    drop = {c: why for c, why in CICFLOWMETER_IDENTIFIERS.items() if c in frame.columns}
    for column in keep_columns:
        drop.pop(column, None)
    return flow_table_from_frame(
        frame,
        label_column=label_column,
        source=describe_paths(paths),
        drop_columns=drop,
        deduplicate=deduplicate,
        origin=RowOrigin([(str(p), len(f)) for p, f in zip(paths, frames, strict=True)]),
    )


def load_labelled_table(
    path: Path,
    *,
    label_column: str,
    drop_columns: Sequence[str] = (),
    categorical: Sequence[str] | None = None,
    delimiter: str = ",",
) -> FlowTable:
    """Load a user's own labelled CSV or Parquet file of flows.

    Feature types are inferred (see :func:`infer_feature_types`) unless ``categorical`` names
    the categorical columns; columns that look like identifiers are dropped and reported.
    """
    path = Path(path)
    frame = _tables.read_table(path, delimiter=delimiter)
    require_label_column(frame, path, label_column)
    missing = [c for c in drop_columns if c not in frame.columns]
    if missing:
        raise ConfigError(
            "column to drop not found",
            path=path,
            field=missing[0],
            fix="check the spelling of drop_columns against the file's header",
        )
    return flow_table_from_frame(
        frame,
        label_column=label_column,
        source=str(path),
        drop_columns={c: "dropped by the task" for c in drop_columns},
        categorical=categorical,
    )


def flow_table_from_frame(
    frame: pd.DataFrame,
    *,
    label_column: str | None,
    source: str,
    drop_columns: dict[str, str] | None = None,
    categorical: Sequence[str] | None = None,
    deduplicate: bool = False,
    origin: RowOrigin | None = None,
) -> FlowTable:
    """Build a :class:`FlowTable` from a DataFrame of flows with an optional label column.

    ``origin`` says which file and line each row came from, for error messages.
    """
    origin = origin or RowOrigin([(source, len(frame))])
    dropped = dict(drop_columns or {})
    feature_frame = frame.drop(columns=[*dropped, *([label_column] if label_column else [])])

    if categorical is None:
        feature_types, inferred_drops = infer_feature_types(feature_frame)
        dropped |= inferred_drops
    else:
        unknown = [c for c in categorical if c not in feature_frame.columns]
        if unknown:
            raise ConfigError("categorical column not found", path=source, field=unknown[0])
        feature_types = {
            c: "categorical" if c in categorical else "numeric" for c in feature_frame.columns
        }
    features = _coerce(feature_frame[list(feature_types)], feature_types, origin=origin)

    labels = None
    if label_column is not None:
        raw = frame[label_column]
        if raw.isna().any():
            path, line = origin.locate(int(np.flatnonzero(raw.isna().to_numpy())[0]))
            raise DataError(
                "a flow has no label",
                path=path,
                line=line,
                field=label_column,
                fix="label every flow or drop the unlabelled rows",
            )
        labels = raw.astype(str).str.strip().rename("class")
    findings = _quality_findings(features, feature_types)

    if deduplicate:
        keyed = features.assign(__class=labels) if labels is not None else features
        duplicated = keyed.duplicated().to_numpy()
        if duplicated.any():
            findings.append(
                Finding(
                    "duplicate-flows",
                    Severity.LOW,
                    source,
                    f"{int(duplicated.sum())} flows repeat another flow exactly once "
                    "identifiers are dropped; kept once so no copy spans train and test",
                    {"dropped_rows": int(duplicated.sum())},
                )
            )
            keep = ~duplicated
            features = features[keep].reset_index(drop=True)
            labels = labels[keep].reset_index(drop=True) if labels is not None else None
            frame = frame[keep].reset_index(drop=True)

    context_columns = [c for c in dropped if c in frame.columns]
    for column, why in dropped.items():
        findings.append(Finding("dropped-column", Severity.INFO, column, why))
    return FlowTable(
        features=features,
        labels=labels,
        feature_types=feature_types,
        context=frame[context_columns].reset_index(drop=True),
        dropped=dropped,
        findings=findings,
        source=source,
    )


def infer_feature_types(frame: pd.DataFrame) -> tuple[dict[str, str], dict[str, str]]:
    """Guess each column's type, and which columns are identifiers rather than features.

    Numbers are numeric; text with at most 1,000 distinct values is categorical; text that
    looks like addresses or timestamps, or has a distinct value on most rows, is dropped.
    Returns the feature types and the dropped columns with their reasons.
    """
    feature_types: dict[str, str] = {}
    dropped: dict[str, str] = {}
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            if _looks_like_row_id(str(column), values):
                dropped[column] = "identifier: a row or record number, distinct on most rows"
            else:
                feature_types[column] = "numeric"
            continue
        text = values.dropna().astype(str)
        sample = text.head(1_000)
        numeric = pd.to_numeric(
            sample.str.replace(r"^\s*-?inf(inity)?\s*$", "inf", regex=True, case=False),
            errors="coerce",
        )
        distinct = text.nunique()
        if len(sample) and numeric.notna().mean() > 0.99:
            feature_types[column] = "numeric"
        elif len(sample) and sample.str.match(_ADDRESS).mean() > 0.9:
            dropped[column] = "identifier: looks like network addresses"
        elif len(sample) and _looks_like_time(sample):
            dropped[column] = "identifier: looks like timestamps"
        elif distinct > _MAX_CATEGORIES or (len(text) > 50 and distinct > 0.5 * len(text)):
            dropped[column] = f"identifier: {distinct} distinct text values"
        else:
            feature_types[column] = "categorical"
    return feature_types, dropped


def _looks_like_row_id(name: str, values: pd.Series) -> bool:
    """An integer column named like an id whose values are distinct on most rows."""
    if not _ID_NAME.search(name) or pd.api.types.is_bool_dtype(values):
        return False
    present = values.dropna()
    if present.empty or not np.all(np.mod(present.to_numpy(dtype=float), 1) == 0):
        return False
    return bool(present.nunique() > 0.5 * len(present))


def _looks_like_time(sample: pd.Series) -> bool:
    if not sample.str.contains(r"\d{1,4}[-/:]\d{1,2}", regex=True).all():
        return False
    parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() > 0.9)


@dataclass(frozen=True)
class RowOrigin:
    """Which file and line each row of a concatenated frame came from.

    ``segments`` lists (file, rows) in order; ``first_line`` is the line of a file's first
    row (2 below a header, 1 for headerless files).
    """

    segments: list[tuple[str, int]]
    first_line: int = 2

    def locate(self, row: int) -> tuple[str, int]:
        """The file and line of positional ``row``."""
        for path, rows in self.segments:
            if row < rows:
                return path, row + self.first_line
            row -= rows
        return self.segments[-1][0], row + self.first_line


def _coerce(
    features: pd.DataFrame, feature_types: dict[str, str], *, origin: RowOrigin
) -> pd.DataFrame:
    """Numeric columns as float64 (infinity as missing), categorical ones as text."""
    out = {}
    for column, kind in feature_types.items():
        values = features[column]
        if kind == "categorical":
            out[column] = values.astype(str).str.strip().where(values.notna(), None)
            continue
        if not pd.api.types.is_numeric_dtype(values):
            converted = pd.to_numeric(values, errors="coerce")
            bad = converted.isna() & values.notna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                path, line = origin.locate(row)
                raise DataError(
                    "a numeric column holds text",
                    path=path,
                    line=line,
                    field=column,
                    expected="a number",
                    found=repr(values.iloc[row]),
                    fix="fix the value, or declare the column categorical in the task file",
                )
            values = converted
        numbers = values.astype("float64")
        out[column] = numbers.where(np.isfinite(numbers), np.nan)
    return pd.DataFrame(out, index=features.index)


def _quality_findings(features: pd.DataFrame, feature_types: dict[str, str]) -> list[Finding]:
    findings = []
    for column in features.columns:
        values = features[column]
        missing = float(values.isna().mean())
        if values.nunique(dropna=True) <= 1:
            findings.append(
                Finding(
                    "constant-column",
                    Severity.INFO,
                    column,
                    "the column has one value on every row and cannot help a model",
                    {"value": None if values.dropna().empty else str(values.dropna().iloc[0])},
                )
            )
        if missing > 0:
            findings.append(
                Finding(
                    "missing-values",
                    Severity.LOW if missing < 0.05 else Severity.MEDIUM,
                    column,
                    f"{missing:.1%} of the values are missing or infinite; trees treat them "
                    "as missing",
                    {"fraction": missing, "kind": feature_types[column]},
                )
            )
    return findings
