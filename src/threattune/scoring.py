"""Scoring flows with a trained model: streamed in batches, checked against the fingerprint.

Each flow gets its class, the probability of that class, the attack score (1 - P(benign), or
the calibrated probability of an attack when the operating point stores a calibration, the
scale its threshold is on), whether it is an alert at the model's operating point, and the
class's ATT&CK techniques.
Files stream through in batches, so memory stays flat whatever their size, and the output is
written to a temporary file that replaces the target only when every row has been scored: a
failed run leaves an earlier output untouched.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from threattune.errors import ConfigError, DataError
from threattune.findings import Finding
from threattune.fingerprint import InputCheck
from threattune.flow_model import FlowModel
from threattune.sources import _tables
from threattune.sources.flows import NSL_KDD_COLUMNS, NSL_KDD_FEATURES

if TYPE_CHECKING:
    from threattune.cascade import Cascade

logger = logging.getLogger(__name__)

__all__ = [
    "OUTPUT_FORMATS",
    "ScoringSummary",
    "headerless_names",
    "iter_input",
    "prepare_features",
    "score_features",
    "score_file",
    "score_frame",
]

OUTPUT_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
SCORE_COLUMNS = ("class", "score", "attack_score", "alert", "techniques")


@dataclass
class ScoringSummary:
    """What a scoring run did."""

    input: str
    output: str
    rows: int = 0
    alerts: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0
    stage_one_alerts: int | None = None
    """With a cascade: stage one's alerts, before stage two filtered them to ``alerts``."""

    @property
    def flows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input, "output": self.output, "rows": self.rows,
            "alerts": self.alerts, "stage_one_alerts": self.stage_one_alerts,
            "by_class": self.by_class, "seconds": self.seconds,
            "findings": [f.to_dict() for f in self.findings],
        }  # fmt: skip


def score_frame(
    model: FlowModel,
    frame: pd.DataFrame,
    *,
    path: str = "<input>",
    first_line: int = 1,
    passthrough: list[str] | None = None,
) -> pd.DataFrame:
    """Score a DataFrame of flows whose columns include the model's features.

    Returns the ``passthrough`` columns, then class, score, attack_score, alert, techniques.
    """
    if passthrough is None:
        passthrough = model.fingerprint.check_columns(frame.columns, path=path, allow_extra=True)
    features = prepare_features(model, frame, path=path, first_line=first_line)
    return score_features(model, features, frame[passthrough] if passthrough else None)


def prepare_features(
    model: FlowModel, frame: pd.DataFrame, *, path: str = "<input>", first_line: int = 1
) -> pd.DataFrame:
    """The model's feature columns of ``frame``, typed and cleaned as in training."""
    fingerprint = model.fingerprint
    features = frame[fingerprint.names].copy()
    fingerprint.check_types(features, path=path, first_line=first_line)
    for column in fingerprint.categorical:
        features[column] = _stripped_categories(features[column])
    return features


def _stripped_categories(values: pd.Series) -> pd.Categorical:
    """The values as a categorical of stripped text, missing kept missing.

    Works on the distinct values only, so a million flows with a handful of services cost
    little more than the handful.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        distinct = values.cat.categories
    else:
        codes, distinct = pd.factorize(values, use_na_sentinel=True)
    stripped = pd.Index(distinct).astype(str).str.strip()
    categories, inverse = np.unique(np.asarray(stripped, dtype=object), return_inverse=True)
    recoded = np.where(codes < 0, -1, inverse[np.maximum(codes, 0)] if len(inverse) else -1)
    return pd.Categorical.from_codes(recoded, categories=categories)


def score_features(
    model: FlowModel,
    features: pd.DataFrame,
    passthrough: pd.DataFrame | None = None,
    cascade: Cascade | None = None,
) -> pd.DataFrame:
    """Score prepared features; ``passthrough`` columns lead the output.

    With a ``cascade`` (whose stage one is ``model``), ``alert`` is the cascade's final alert
    and stage_one_alert, stage_two_score and guarded follow (see
    :meth:`~threattune.cascade.CascadeDecisions.columns`).
    """
    proba = model.predict_proba(features)
    decisions = model.decide(proba)
    techniques = model.technique_labels()
    out = passthrough.reset_index(drop=True) if passthrough is not None else pd.DataFrame()
    out["class"] = decisions.classes
    out["score"] = decisions.scores
    out["attack_score"] = decisions.attack_scores
    out["alert"] = decisions.alerts
    out["techniques"] = pd.Series(decisions.classes).map(techniques).to_numpy()
    if cascade is not None:
        for name, values in cascade.decide(features, proba).columns().items():
            out[name] = values
    return out


def iter_input(
    model: FlowModel,
    path: Path,
    *,
    batch_rows: int = 65_536,
    delimiter: str = ",",
) -> Iterator[tuple[int, pd.DataFrame]]:
    """Stream an input file as (first line number, batch), read as the model expects."""
    path = Path(path)
    names = headerless_names(model, path, delimiter=delimiter)
    has_header = names is None
    line = 2 if has_header else 1
    for batch in _tables.iter_batches(
        path,
        names=names,
        delimiter=delimiter,
        batch_rows=batch_rows,
        numeric_columns=[c.name for c in model.fingerprint.columns if c.kind == "numeric"],
        categorical_columns=model.fingerprint.categorical,
    ):
        yield line, batch
        line += len(batch)


def headerless_names(model: FlowModel, path: Path, *, delimiter: str = ",") -> list[str] | None:
    """Column names for a headerless NSL-KDD file read by an NSL-KDD model, else None.

    Such files hold the 41 features, optionally followed by the attack name and difficulty; a
    file whose first line starts with the first feature's name has a header and needs none.
    """
    if model.fingerprint.input_format.get("reader") != "nsl-kdd" or _tables.is_parquet(path):
        return None
    _tables.check_readable(path)
    first = next(csv.reader([_tables.first_line(path)], delimiter=delimiter))
    if first[0].strip() == NSL_KDD_FEATURES[0]:
        return None
    widths = {len(NSL_KDD_FEATURES): NSL_KDD_FEATURES, len(NSL_KDD_COLUMNS): NSL_KDD_COLUMNS}
    if len(first) not in widths:
        raise DataError(
            "not an NSL-KDD file",
            path=path,
            line=1,
            expected="41 features, optionally followed by the attack name and difficulty",
            found=f"{len(first)} fields",
            fix="export the flows with the model's 41 NSL-KDD features, or add a header",
        )
    return list(widths[len(first)])


def score_file(
    model: FlowModel,
    input_path: Path,
    output_path: Path,
    *,
    batch_rows: int = 65_536,
    delimiter: str = ",",
    allow_extra: bool = False,
    progress: bool = False,
    cascade: Cascade | None = None,
) -> ScoringSummary:
    """Score every flow of a CSV or Parquet file and write CSV, JSON lines or Parquet.

    Each row starts with its alert id, ``FILE:ROW`` (file name, 0-based row), the id under
    which analysts record verdicts and the cascade finds them (unless the input carries its
    own ``alert_id`` column).

    With a ``cascade`` whose stage one is ``model``, stage two filters the alerts (two-stage
    scoring; see :func:`score_features`).
    """
    input_path, output_path = Path(input_path), Path(output_path)
    kind = OUTPUT_FORMATS.get(output_path.suffix.lower())
    if kind is None:
        raise ConfigError(
            "unknown output format",
            path=output_path,
            expected="a file ending in .csv, .jsonl or .parquet",
            found=output_path.suffix or "no suffix",
        )
    if output_path.resolve() == input_path.resolve():
        raise ConfigError("the output would overwrite the input", path=output_path)

    summary = ScoringSummary(input=str(input_path), output=str(output_path))
    check = InputCheck(model.fingerprint)
    counts: Counter[str] = Counter()
    output_path.parent.mkdir(parents=True, exist_ok=True)
    partial = output_path.with_name(f".{output_path.name}.partial-{os.getpid()}")
    started = time.perf_counter()
    bar = _progress(input_path) if progress else None
    writer = _Writer(kind, partial)
    passthrough: list[str] | None = None
    try:
        for first_line, batch in iter_input(
            model, input_path, batch_rows=batch_rows, delimiter=delimiter
        ):
            if passthrough is None:
                passthrough = model.fingerprint.check_columns(
                    batch.columns, path=input_path, allow_extra=allow_extra
                )
            features = prepare_features(model, batch, path=str(input_path), first_line=first_line)
            check.observe(features)
            scored = score_features(
                model, features, batch[passthrough] if passthrough else None, cascade
            )
            if "alert_id" not in scored.columns:
                start = summary.rows
                rows = range(start, start + len(scored))
                scored.insert(0, "alert_id", [f"{input_path.name}:{row}" for row in rows])
            writer.write(scored)
            summary.rows += len(scored)
            counts.update(scored["class"].value_counts().to_dict())
            summary.alerts += int(scored["alert"].sum())
            if cascade is not None:
                summary.stage_one_alerts = (summary.stage_one_alerts or 0) + int(
                    scored["stage_one_alert"].sum()
                )
            if bar is not None:
                bar.update(len(scored))
        writer.close()
        if summary.rows == 0:
            raise DataError(
                "the file has a header but no rows",
                path=input_path,
                line=2,
                expected="at least one flow",
                fix="check the export that wrote the file; an earlier output is left as it was",
            )
        partial.replace(output_path)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    finally:
        if bar is not None:
            bar.close()

    summary.seconds = time.perf_counter() - started
    summary.by_class = dict(counts.most_common())
    summary.findings = check.findings()
    logger.info(
        "scored %d flows in %.1f s (%.0f flows/s), %d alerts",
        summary.rows,
        summary.seconds,
        summary.flows_per_second,
        summary.alerts,
    )
    return summary


def _progress(path: Path) -> Any:
    from tqdm import tqdm

    return tqdm(desc=f"scoring {path.name}", unit=" flows", unit_scale=True, leave=False)


class _Writer:
    """Writes scored batches as CSV, JSON lines or Parquet, opened on the first batch."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self._writer: Any = None
        self._handle: Any = None

    def write(self, frame: pd.DataFrame) -> None:
        if self.kind == "jsonl":
            if self._handle is None:
                self._handle = self.path.open("w", encoding="utf-8")
            clean = frame.astype(object).where(frame.notna(), None)
            for record in clean.to_dict(orient="records"):
                self._handle.write(json.dumps(record, default=str, allow_nan=False) + "\n")
            return
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            self._writer = (
                pacsv.CSVWriter(str(self.path), table.schema)
                if self.kind == "csv"
                else pq.ParquetWriter(str(self.path), table.schema)
            )
        self._writer.write_table(
            table.cast(self._writer.schema) if self.kind == "parquet" else table
        )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if not self.path.exists():
            self.path.touch()
