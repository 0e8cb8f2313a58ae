"""The verdict store: what analysts decided about the alerts a model raised.

A :class:`Verdict` says that an analyst judged one alert of one model version to be a
true positive, a false positive or a benign true positive (real activity, but expected), and
optionally why (a root-cause category such as ``backup-job``). Verdicts train the second-stage
false-positive filter and feed monitoring, so the store is strict about what goes in:

* A file is validated whole before anything is written, then written in one transaction. A file
  with a bad row stores nothing and raises :class:`ImportRejected`, a :class:`DataError` that
  names the file, line and field; what the store held before stays as it was.
* Importing is idempotent. A verdict is identified by its natural key: alert id, model version,
  analyst and time. Re-importing a file changes nothing; a row whose key is stored but whose
  content (verdict, root cause, note, extra fields) differs is an *update*: it is counted and
  listed in the :class:`ImportSummary`, and the replaced content is kept in a revisions table.
* The key is a UNIQUE constraint, so two processes importing the same file at once cannot store
  a verdict twice; a writer that loses the race retries and finds its verdicts unchanged.

Times are timezone-aware and stored in UTC; a time written without a zone is taken as UTC.
Precision is one microsecond. The store speaks SQLAlchemy Core, so any URL SQLAlchemy knows
works: ``sqlite:///verdicts.db`` (WAL mode, foreign keys on) or
``postgresql+pg8000://user@host/db``.

>>> store = VerdictStore("sqlite://")
>>> summary = store.import_records(
...     [{"alert_id": "a-1", "model_version": "models:/threattune-nsl-kdd/3", "verdict": "FP",
...       "root_cause": "Backup job", "analyst": "kim", "time": "2025-03-01T09:30:00"}]
... )
>>> (summary.inserted, store.list()[0].verdict, store.list()[0].root_cause)
(1, 'false-positive', 'backup-job')
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import time as _time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine

from threattune.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

__all__ = [
    "BENIGN_TRUE_POSITIVE",
    "FALSE_POSITIVE",
    "IMPORT_FORMATS",
    "SCHEMA_VERSION",
    "TRUE_POSITIVE",
    "VERDICTS",
    "ImportRejected",
    "ImportSummary",
    "Verdict",
    "VerdictChange",
    "VerdictStore",
    "normalise_verdict",
]

TRUE_POSITIVE = "true-positive"
FALSE_POSITIVE = "false-positive"
BENIGN_TRUE_POSITIVE = "benign-true-positive"
VERDICTS = (TRUE_POSITIVE, FALSE_POSITIVE, BENIGN_TRUE_POSITIVE)
SCHEMA_VERSION = 1
IMPORT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

_VERDICT_ALIASES = {
    "tp": TRUE_POSITIVE,
    "fp": FALSE_POSITIVE,
    "btp": BENIGN_TRUE_POSITIVE,
    "benign-positive": BENIGN_TRUE_POSITIVE,
}
_REQUIRED = ("alert_id", "model_version", "verdict", "analyst", "time")
_OPTIONAL = ("root_cause", "note")
_COLUMN_ALIASES = {
    "alert": "alert_id",
    "model": "model_version",
    "timestamp": "time",
    "verdict_time": "time",
    "root_cause_category": "root_cause",
    "category": "root_cause",
    "notes": "note",
    "comment": "note",
}
_MAX_KEY_CHARS = 512
_BATCH_ROWS = 500
_WRITE_ATTEMPTS = 5
_LOGGED_CHANGES = 20
_SQLITE_BUSY_SECONDS = 60
_PG_SCHEMA_LOCK = 0x7468726561747475  # "threattu": serialises schema creation on PostgreSQL
_WRITE_OPTION = "threattune_write"


# --- verdicts --------------------------------------------------------------------------------


def normalise_verdict(value: str) -> str:
    """The canonical spelling of a verdict, from the spellings SOC tools and analysts use.

    >>> [normalise_verdict(v) for v in ("TP", "FALSE_POSITIVE", "benign true positive")]
    ['true-positive', 'false-positive', 'benign-true-positive']
    """
    if not isinstance(value, str):
        raise DataError(
            "a verdict must be text",
            field="verdict",
            expected=" or ".join(VERDICTS),
            found=f"{type(value).__name__} {value!r}",
        )
    spelled = re.sub(r"(?<=[a-z])(?=[A-Z])", "-", value.strip()).lower()
    spelled = re.sub(r"[\s_\-]+", "-", spelled)
    canonical = _VERDICT_ALIASES.get(spelled, spelled)
    if canonical not in VERDICTS:
        raise DataError(
            "unknown verdict",
            field="verdict",
            expected=f"one of {', '.join(VERDICTS)} (or tp, fp, btp)",
            found=repr(value),
            fix="record only decided alerts, with one of the three verdicts",
        )
    return canonical


@dataclass(frozen=True)
class Verdict:
    """One analyst's decision about one alert raised by one model version.

    Values are checked and normalised on construction: the verdict to its canonical spelling,
    the model version without a ``models:/`` prefix, the root cause to a lower-case
    hyphenated category, the time to UTC (a time without a zone is taken as UTC). ``extra``
    holds anything else worth keeping as JSON: the predicted class, the score, the host, a
    snapshot of the alert's features. Bad values raise :class:`DataError` naming the field.

    >>> v = Verdict("a-7", "threattune-nsl-kdd/3", "btp", "kim", "2025-03-01 09:30+01:00")
    >>> v.verdict, v.time.isoformat()
    ('benign-true-positive', '2025-03-01T08:30:00+00:00')
    """

    alert_id: str
    model_version: str
    verdict: str
    analyst: str
    time: datetime
    root_cause: str | None = None
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        model_version = _key_text(self.model_version, "model_version")
        model_version = model_version.removeprefix("models:/").strip()
        if "@" in model_version or not model_version:
            raise DataError(
                "a verdict must name a model version, not an alias",
                field="model_version",
                expected="NAME/VERSION or models:/NAME/VERSION",
                found=repr(self.model_version),
                fix="record the version the alias pointed to when the alert was raised",
            )

        set_value = object.__setattr__
        set_value(self, "alert_id", _key_text(self.alert_id, "alert_id"))
        set_value(self, "model_version", model_version)
        set_value(self, "verdict", normalise_verdict(self.verdict))
        set_value(self, "analyst", _key_text(self.analyst, "analyst"))
        set_value(self, "time", _parse_time(self.time, "time"))
        set_value(self, "root_cause", _root_cause(self.root_cause))
        set_value(self, "note", _optional_text(self.note, "note"))
        set_value(self, "extra", _json_object(self.extra, "extra"))

    @property
    def key(self) -> tuple[str, str, str, datetime]:
        """The natural key: alert id, model version, analyst, time."""
        return (self.alert_id, self.model_version, self.analyst, self.time)

    @property
    def content_hash(self) -> str:
        """SHA-256 of what the key does not cover; a change of it is an update."""
        content = [self.verdict, self.root_cause, self.note, self.extra]
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, the time in ISO 8601 with its UTC offset."""
        return {
            "alert_id": self.alert_id,
            "model_version": self.model_version,
            "verdict": self.verdict,
            "root_cause": self.root_cause,
            "note": self.note,
            "analyst": self.analyst,
            "time": self.time.isoformat(),
            "extra": self.extra,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Verdict:
        """A verdict from a row of a file or a JSON object.

        Column names are matched loosely (``Alert ID`` is ``alert_id``; ``alert``, ``model``,
        ``timestamp``, ``category``, ``notes`` are accepted). A column ``extra`` holds a JSON
        object; every other non-empty column is kept in ``extra`` under its own name, as text
        when it comes from a CSV cell and with its JSON type when it comes from JSON.
        """
        fields: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for name, value in record.items():
            canonical = _column_name(str(name))
            if canonical in fields:
                raise DataError(
                    "two columns give the same field",
                    field=canonical,
                    expected="one column per field",
                    found=f"{canonical!r} given twice (one spelling is {name!r})",
                    fix="keep one of the two columns",
                )
            if canonical in _REQUIRED or canonical in _OPTIONAL:
                fields[canonical] = value
            elif canonical == "extra":
                for key, item in _json_object(value, "extra").items():
                    _add_extra(extra, key, item)
            elif not _blank(value):
                _add_extra(extra, str(name).strip(), value)

        for name in _REQUIRED:
            if _blank(fields.get(name)):
                raise DataError(
                    f"the {name.replace('_', ' ')} is missing",
                    field=name,
                    expected=_EXPECTED[name],
                    found="an empty value" if name in fields else "no such column",
                    fix=f"fill in the {name.replace('_', ' ')} of every verdict",
                )
        return cls(**fields, extra=extra)


@dataclass(frozen=True)
class VerdictChange:
    """A stored verdict whose content an import replaced."""

    line: int
    before: Verdict
    after: Verdict

    @property
    def fields(self) -> list[str]:
        """The names of the fields that changed."""
        names = ("verdict", "root_cause", "note", "extra")
        return [n for n in names if getattr(self.before, n) != getattr(self.after, n)]


@dataclass
class ImportSummary:
    """What an import did; ``inserted + unchanged + updated`` is the number of verdicts read."""

    source: str
    inserted: int = 0
    unchanged: int = 0
    updated: int = 0
    rejected: int = 0
    changes: list[VerdictChange] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        """Verdicts read from the source, rejected ones included."""
        return self.inserted + self.unchanged + self.updated + self.rejected

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; each change with its line, key and changed fields."""
        return {
            "source": self.source, "inserted": self.inserted, "unchanged": self.unchanged,
            "updated": self.updated, "rejected": self.rejected, "seconds": self.seconds,
            "changes": [
                {"line": c.line, "alert_id": c.after.alert_id, "analyst": c.after.analyst,
                 "time": c.after.time.isoformat(), "fields": c.fields,
                 "before": c.before.verdict, "after": c.after.verdict}
                for c in self.changes
            ],
        }  # fmt: skip


class ImportRejected(DataError):
    """A source with bad rows; nothing from it was stored.

    The error's location is the first bad row; ``problems`` holds one :class:`DataError` per
    bad row, and ``summary`` counts them as ``rejected``.
    """

    def __init__(self, problems: list[DataError], summary: ImportSummary) -> None:
        first = problems[0]
        lines = ", ".join(str(p.line) for p in problems[:10])
        more = ", ..." if len(problems) > 10 else ""
        message = first.message
        if len(problems) > 1:
            message += f" ({len(problems)} bad rows, on lines {lines}{more})"
        fix = f"{first.fix}; " if first.fix else ""
        super().__init__(
            f"{message}; nothing from this file was stored",
            path=first.path,
            line=first.line,
            field=first.field,
            expected=first.expected,
            found=first.found,
            fix=f"{fix}then import the whole file again"
            if fix
            else "correct the rows named, then import the whole file again",
        )
        self.problems = problems
        self.summary = summary

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems, self.summary))


# --- the store -------------------------------------------------------------------------------


class _UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored in UTC: ``timestamptz`` on PostgreSQL, naive UTC text on SQLite."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_metadata = sa.MetaData()
_schema_versions = sa.Table(
    "verdict_schema_version",
    _metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", _UTCDateTime, nullable=False),
)
_verdicts = sa.Table(
    "verdicts",
    _metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("alert_id", sa.String, nullable=False),
    sa.Column("model_version", sa.String, nullable=False),
    sa.Column("analyst", sa.String, nullable=False),
    sa.Column("time", _UTCDateTime, nullable=False),
    sa.Column("verdict", sa.String, nullable=False),
    sa.Column("root_cause", sa.String),
    sa.Column("note", sa.Text),
    sa.Column("extra", sa.JSON, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("source", sa.String),
    sa.Column("recorded_at", _UTCDateTime, nullable=False),
    sa.UniqueConstraint("alert_id", "model_version", "analyst", "time", name="uq_verdict_key"),
    sa.CheckConstraint(
        "verdict IN ('true-positive', 'false-positive', 'benign-true-positive')",
        name="ck_verdict_value",
    ),
    sa.Index("ix_verdicts_model_time", "model_version", "time"),
)
_revisions = sa.Table(
    "verdict_revisions",
    _metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column(
        "verdict_id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        sa.ForeignKey("verdicts.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("verdict", sa.String, nullable=False),
    sa.Column("root_cause", sa.String),
    sa.Column("note", sa.Text),
    sa.Column("extra", sa.JSON, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("source", sa.String),
    sa.Column("recorded_at", _UTCDateTime, nullable=False),
    sa.Column("replaced_at", _UTCDateTime, nullable=False),
    sa.Column("replaced_by", sa.String),
)


class _ConcurrentChange(Exception):
    """Another writer changed a verdict between this transaction's read and its write."""


def _batch_written(verdicts_written: int) -> None:
    """Called inside the import transaction after each batch; a seam for tests."""


class VerdictStore:
    """Verdicts in a database named by a SQLAlchemy URL; the schema is created on first use.

    ``sqlite:///verdicts.db`` is a file relative to the working directory, ``sqlite://`` a
    private in-memory store, ``postgresql+pg8000://user:password@host/db`` a shared one.

    >>> with VerdictStore("sqlite://") as store:
    ...     store.count()
    0
    """

    def __init__(self, url: str = "sqlite:///verdicts.db") -> None:
        self.url = url
        self._engine: Engine | None = None

    def __repr__(self) -> str:
        return f"VerdictStore({_safe_url(self.url)!r})"

    def __enter__(self) -> VerdictStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the store's database connections."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, connected and with the schema in place."""
        if self._engine is None:
            engine = _create_engine(self.url)
            try:
                _ensure_schema(engine, self.url)
            except BaseException:
                engine.dispose()
                raise
            self._engine = engine
        return self._engine

    # --- writing ------------------------------------------------------------------------------

    def import_file(self, path: str | Path) -> ImportSummary:
        """Import a CSV/TSV file with a header row or a JSON-lines file, all or nothing.

        Every row is checked before anything is written; a file with a bad row raises
        :class:`ImportRejected` and stores nothing. Re-importing a file changes nothing.
        """
        path = Path(path)
        kind = IMPORT_FORMATS.get(path.suffix.lower())
        if kind is None:
            raise DataError(
                "unknown verdict file type",
                path=path,
                expected=f"a file ending in {', '.join(IMPORT_FORMATS)}",
                found=repr(path.suffix or path.name),
                fix="save the verdicts as CSV with a header row, or as JSON lines",
            )
        if not path.is_file():
            raise DataError(
                "verdict file not found",
                path=path,
                expected="an existing file",
                found="nothing",
                fix="check the path",
            )

        try:
            with path.open(encoding="utf-8-sig", newline="") as stream:
                if kind == "jsonl":
                    records = list(_read_jsonl(stream, path))
                else:
                    records = list(_read_csv(stream, path, "\t" if kind == "tsv" else ","))
        except UnicodeDecodeError as error:
            raise DataError(
                "the file is not UTF-8 text",
                path=path,
                expected="UTF-8",
                found=f"byte 0x{error.object[error.start]:02x} at offset {error.start}",
                fix="save the file as UTF-8",
            ) from error
        return self._import(records, str(path))

    def import_records(
        self, records: Iterable[Mapping[str, Any] | Verdict], *, source: str = "<records>"
    ) -> ImportSummary:
        """Import verdicts given as objects or mappings, all or nothing, like a file.

        ``source`` names them in errors and in the store; the "line" of an error is the
        1-based position of the record.
        """
        numbered = [(position, record) for position, record in enumerate(records, start=1)]
        return self._import(numbered, source)

    def _import(self, records: Sequence[tuple[int, Any]], source: str) -> ImportSummary:
        started = _time.perf_counter()
        summary = ImportSummary(source=source)
        rows, duplicates, problems = _check_records(records, source)
        if problems:
            summary.rejected = len(problems)
            summary.seconds = _time.perf_counter() - started
            raise ImportRejected(problems, summary)

        engine = self.engine
        for attempt in range(1, _WRITE_ATTEMPTS + 1):
            summary = ImportSummary(source=source, unchanged=duplicates)
            try:
                with _writing(engine) as connection:
                    _write(connection, rows, summary)
                break
            except (exc.IntegrityError, _ConcurrentChange) as error:
                if attempt == _WRITE_ATTEMPTS:
                    raise DataError(
                        "other writers kept changing the same verdicts; nothing was stored",
                        path=source,
                        found=str(getattr(error, "orig", error)),
                        fix="import the file again",
                    ) from error
                logger.info("another writer stored some of these verdicts first; retrying")
                _time.sleep(0.05 * attempt)
            except exc.OperationalError as error:
                raise DataError(
                    "the verdict store could not be written; nothing was stored",
                    path=source,
                    found=str(error.orig),
                    fix=f"check that {_safe_url(self.url)} is reachable and writable, "
                    "then import again",
                ) from error

        summary.seconds = _time.perf_counter() - started
        logger.info(
            "%s: %d verdicts inserted, %d unchanged, %d updated",
            source, summary.inserted, summary.unchanged, summary.updated,
        )  # fmt: skip
        for change in summary.changes[:_LOGGED_CHANGES]:
            logger.warning(
                "%s:%d: alert %s by %s at %s updated (%s): %s -> %s",
                source, change.line, change.after.alert_id, change.after.analyst,
                change.after.time.isoformat(), ", ".join(change.fields),
                change.before.verdict, change.after.verdict,
            )  # fmt: skip
        if summary.updated > _LOGGED_CHANGES:
            logger.warning(
                "%s: %d more verdicts updated; see the summary's changes",
                source, summary.updated - _LOGGED_CHANGES,
            )  # fmt: skip
        return summary

    # --- reading ------------------------------------------------------------------------------

    def list(
        self,
        model_version: str | None = None,
        verdict: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        *,
        analyst: str | None = None,
        limit: int | None = 10_000,
        newest_first: bool = False,
    ) -> list[Verdict]:
        """Stored verdicts in time order, filtered; ``since`` is inclusive, ``until`` not.

        ``limit=None`` returns them all.
        """
        query = sa.select(_verdicts).where(*_filters(model_version, verdict, since, until, analyst))
        order = (
            (_verdicts.c.time.desc(), _verdicts.c.id.desc())
            if newest_first
            else (_verdicts.c.time, _verdicts.c.id)
        )
        query = query.order_by(*order)
        if limit is not None:
            query = query.limit(_positive(limit, "limit"))

        with self.engine.connect() as connection:
            return [_verdict_from_row(row) for row in connection.execute(query)]

    def count(
        self,
        model_version: str | None = None,
        verdict: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        *,
        analyst: str | None = None,
    ) -> int:
        """How many stored verdicts match the filters of :meth:`list`."""
        query = sa.select(sa.func.count()).select_from(_verdicts)
        query = query.where(*_filters(model_version, verdict, since, until, analyst))
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def to_frame(
        self,
        model_version: str | None = None,
        verdict: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        *,
        analyst: str | None = None,
        limit: int | None = None,
        flatten_extra: bool = False,
    ) -> pd.DataFrame:
        """Stored verdicts as a DataFrame, one row each, ``time`` as UTC timestamps.

        ``extra`` is a column of dicts, or with ``flatten_extra`` one ``extra.KEY`` column per
        key (nested keys joined with dots), ready as features of a false-positive filter.
        """
        import pandas as pd

        found = self.list(model_version, verdict, since, until, analyst=analyst, limit=limit)
        columns = list(Verdict.__dataclass_fields__)
        frame = pd.DataFrame([{n: getattr(v, n) for n in columns} for v in found], columns=columns)
        frame["time"] = pd.to_datetime(frame["time"], utc=True)

        if flatten_extra and len(frame):
            extra = pd.json_normalize(frame.pop("extra").tolist(), sep=".")
            extra.columns = [f"extra.{name}" for name in extra.columns]
            frame = pd.concat([frame, extra], axis=1)
        return frame

    def stats(
        self, model_version: str | None = None, *, confidence: float = 0.95
    ) -> dict[str, Any]:
        """Counts per verdict and root cause, and the false-positive share, per model version.

        Counts are of alerts: an alert judged more than once (by two analysts, or again later)
        counts once, with its latest verdict. The false-positive share is
        ``fp / (tp + fp + btp)`` with a Wilson interval at ``confidence``; it is None when
        there are no verdicts. ``verdicts`` counts stored rows.
        """
        from threattune.operating_point import proportion_interval

        rank = sa.func.row_number().over(
            partition_by=(_verdicts.c.alert_id, _verdicts.c.model_version),
            order_by=(_verdicts.c.time.desc(), _verdicts.c.id.desc()),
        )
        latest = (
            sa.select(
                _verdicts.c.model_version, _verdicts.c.verdict, _verdicts.c.root_cause,
                rank.label("position"),
            )
            .where(*_filters(model_version, None, None, None, None))
            .subquery()
        )  # fmt: skip
        grouped = (
            sa.select(
                latest.c.model_version, latest.c.verdict, latest.c.root_cause, sa.func.count()
            )
            .where(latest.c.position == 1)
            .group_by(latest.c.model_version, latest.c.verdict, latest.c.root_cause)
        )
        rows = (
            sa.select(_verdicts.c.model_version, sa.func.count())
            .where(*_filters(model_version, None, None, None, None))
            .group_by(_verdicts.c.model_version)
        )

        with self.engine.connect() as connection:
            counts = [tuple(row) for row in connection.execute(grouped)]
            stored = {str(row[0]): int(row[1]) for row in connection.execute(rows)}

        def summarise(selected: list[tuple[Any, ...]], verdicts: int) -> dict[str, Any]:
            by_verdict = dict.fromkeys(VERDICTS, 0)
            by_root_cause: dict[str, int] = {}
            for _, verdict, root_cause, n in selected:
                by_verdict[verdict] += int(n)
                if root_cause is not None:
                    by_root_cause[root_cause] = by_root_cause.get(root_cause, 0) + int(n)
            alerts = sum(by_verdict.values())
            false_positives = by_verdict[FALSE_POSITIVE]
            share: dict[str, Any] = {"share": None, "low": None, "high": None}
            if alerts:
                low, high = proportion_interval(false_positives, alerts, confidence=confidence)
                share = {"share": false_positives / alerts, "low": low, "high": high}
            return {
                "verdicts": verdicts,
                "alerts": alerts,
                "by_verdict": by_verdict,
                "by_root_cause": dict(sorted(by_root_cause.items(), key=lambda i: (-i[1], i[0]))),
                "without_root_cause": alerts - sum(by_root_cause.values()),
                "false_positive_share": {**share, "confidence": confidence},
            }

        result = summarise(counts, sum(stored.values()))
        result["by_model_version"] = {
            version: summarise([c for c in counts if c[0] == version], stored[version])
            for version in sorted(stored)
        }
        return result

    def export(
        self,
        path: str | Path,
        model_version: str | None = None,
        verdict: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        *,
        analyst: str | None = None,
    ) -> int:
        """Write the matching verdicts to CSV/TSV or JSON lines (by suffix); return how many.

        The file is written beside its target and renamed over it only when complete. CSV
        keeps ``extra`` as one JSON column, so an exported file imports back unchanged.
        """
        path = Path(path)
        kind = IMPORT_FORMATS.get(path.suffix.lower())
        if kind is None:
            raise ConfigError(
                "unknown export file type",
                path=path,
                expected=f"a file ending in {', '.join(IMPORT_FORMATS)}",
                found=repr(path.suffix or path.name),
            )
        found = self.list(model_version, verdict, since, until, analyst=analyst, limit=None)

        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
                _write_verdicts(stream, kind, found)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        logger.info("exported %d verdicts to %s", len(found), path)
        return len(found)


# --- reading files ---------------------------------------------------------------------------


def _read_csv(stream: Any, path: Path, delimiter: str) -> Iterator[tuple[int, Any]]:
    """(line, record) for each data row; a ragged or unreadable row becomes a DataError."""
    reader = csv.reader(stream, delimiter=delimiter)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise DataError(
            "the verdict file is empty",
            path=path,
            line=1,
            expected="a header row naming the columns",
            found="nothing",
            fix=f"start the file with a header: {','.join(_REQUIRED + _OPTIONAL)}",
        ) from None
    except csv.Error as error:
        raise DataError("unreadable header", path=path, line=1, found=str(error)) from error
    _check_header(header, path)

    line = reader.line_num
    while True:
        start = line + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield start, DataError(
                "unreadable CSV row", path=path, line=start, found=str(error),
                fix="check the quoting of this row",
            )  # fmt: skip
            return
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            yield (
                start,
                DataError(
                    "the row does not have one cell per column",
                    path=path,
                    line=start,
                    expected=f"{len(header)} cells",
                    found=f"{len(cells)} cells",
                    fix="quote cells that contain the delimiter",
                ),
            )
            continue
        yield start, dict(zip(header, cells, strict=True))


def _check_header(header: list[str], path: Path) -> None:
    seen: dict[str, str] = {}
    for name in header:
        canonical = _column_name(name)
        if canonical in seen:
            raise DataError(
                "two columns give the same field",
                path=path,
                line=1,
                field=canonical,
                expected="one column per field",
                found=f"{seen[canonical]!r} and {name!r}",
                fix="keep one of the two columns",
            )
        seen[canonical] = name
    missing = [name for name in _REQUIRED if name not in seen]
    if missing:
        raise DataError(
            "the header lacks required columns",
            path=path,
            line=1,
            field=missing[0],
            expected=", ".join(_REQUIRED),
            found=", ".join(header) or "an empty header",
            fix=f"add the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
        )


def _read_jsonl(stream: Any, path: Path) -> Iterator[tuple[int, Any]]:
    for line, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            yield line, DataError(
                "invalid JSON", path=path, line=line, expected="one JSON object per line",
                found=f"{error.msg} at column {error.colno}",
            )  # fmt: skip
            continue
        if not isinstance(record, dict):
            yield line, DataError(
                "each line must be a JSON object", path=path, line=line,
                expected="an object such as {\"alert_id\": ...}",
                found=type(record).__name__,
            )  # fmt: skip
            continue
        yield line, record


def _check_records(
    records: Sequence[tuple[int, Any]], source: str
) -> tuple[list[tuple[int, Verdict]], int, list[DataError]]:
    """Verdicts with their lines, unique by key; how many exact repeats; the bad rows."""
    unique: dict[tuple[str, str, str, datetime], tuple[int, Verdict]] = {}
    duplicates = 0
    problems: list[DataError] = []
    for line, record in records:
        try:
            if isinstance(record, DataError):
                raise record
            if isinstance(record, Verdict):
                verdict = record
            elif isinstance(record, Mapping):
                verdict = Verdict.from_record(record)
            else:
                raise DataError(
                    "a verdict record must be a mapping or a Verdict",
                    expected="a dict of fields",
                    found=type(record).__name__,
                )
        except DataError as error:
            problems.append(_located(error, source, line))
            continue

        earlier = unique.get(verdict.key)
        if earlier is None:
            unique[verdict.key] = (line, verdict)
        elif earlier[1].content_hash == verdict.content_hash:
            duplicates += 1
        else:
            changed = VerdictChange(line, earlier[1], verdict).fields
            problems.append(
                DataError(
                    f"the same alert, model version, analyst and time is on line {earlier[0]} "
                    "with a different verdict",
                    path=source,
                    line=line,
                    field=changed[0],
                    expected=f"{changed[0]} as on line {earlier[0]}",
                    found=f"{getattr(verdict, changed[0])!r}",
                    fix="keep one of the two rows",
                )
            )
    return list(unique.values()), duplicates, problems


# --- writing ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _writing(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction; on SQLite it holds the write lock from the start."""
    with engine.connect() as connection:
        connection.execution_options(**{_WRITE_OPTION: True})
        with connection.begin():
            yield connection


def _write(connection: Connection, rows: list[tuple[int, Verdict]], summary: ImportSummary) -> None:
    now = datetime.now(UTC)
    for start in range(0, len(rows), _BATCH_ROWS):
        batch = rows[start : start + _BATCH_ROWS]
        stored = _stored(connection, [verdict for _, verdict in batch])
        inserts: list[dict[str, Any]] = []
        for line, verdict in batch:
            current = stored.get(verdict.key)
            if current is None:
                inserts.append(_row_values(verdict, summary.source, now))
            elif current.content_hash == verdict.content_hash:
                summary.unchanged += 1
            else:
                _revise(connection, current, verdict, summary.source, now)
                summary.changes.append(VerdictChange(line, _verdict_from_row(current), verdict))
                summary.updated += 1
        if inserts:
            connection.execute(sa.insert(_verdicts), inserts)
            summary.inserted += len(inserts)
        _batch_written(summary.inserted + summary.updated)


def _stored(connection: Connection, batch: list[Verdict]) -> dict[tuple, sa.Row]:
    alert_ids = sorted({verdict.alert_id for verdict in batch})
    query = sa.select(_verdicts).where(_verdicts.c.alert_id.in_(alert_ids))
    found = {}
    for row in connection.execute(query):
        found[(row.alert_id, row.model_version, row.analyst, row.time)] = row
    return found


def _revise(
    connection: Connection, current: sa.Row, verdict: Verdict, source: str, now: datetime
) -> None:
    """Keep the stored content as a revision and replace it, if no one else did meanwhile."""
    connection.execute(
        sa.insert(_revisions).values(
            verdict_id=current.id, verdict=current.verdict, root_cause=current.root_cause,
            note=current.note, extra=current.extra, content_hash=current.content_hash,
            source=current.source, recorded_at=current.recorded_at, replaced_at=now,
            replaced_by=source,
        )
    )  # fmt: skip
    values = _row_values(verdict, source, now)
    result = connection.execute(
        sa.update(_verdicts)
        .where(_verdicts.c.id == current.id, _verdicts.c.content_hash == current.content_hash)
        .values({name: values[name] for name in (*_OPTIONAL, "verdict", "extra",
                                                  "content_hash", "source", "recorded_at")})
    )  # fmt: skip
    if result.rowcount != 1:
        raise _ConcurrentChange(f"verdict {current.id} changed during the import")


def _row_values(verdict: Verdict, source: str, now: datetime) -> dict[str, Any]:
    return {
        "alert_id": verdict.alert_id,
        "model_version": verdict.model_version,
        "analyst": verdict.analyst,
        "time": verdict.time,
        "verdict": verdict.verdict,
        "root_cause": verdict.root_cause,
        "note": verdict.note,
        "extra": verdict.extra,
        "content_hash": verdict.content_hash,
        "source": source,
        "recorded_at": now,
    }


def _verdict_from_row(row: sa.Row) -> Verdict:
    return Verdict(
        alert_id=row.alert_id,
        model_version=row.model_version,
        verdict=row.verdict,
        analyst=row.analyst,
        time=row.time,
        root_cause=row.root_cause,
        note=row.note,
        extra=row.extra,
    )


def _write_verdicts(stream: Any, kind: str, found: list[Verdict]) -> None:
    if kind == "jsonl":
        for verdict in found:
            stream.write(json.dumps(verdict.to_dict(), ensure_ascii=False) + "\n")
        return

    columns = ["alert_id", "model_version", "verdict", "root_cause", "note", "analyst", "time"]
    writer = csv.writer(stream, delimiter="\t" if kind == "tsv" else ",")
    writer.writerow([*columns, "extra"])
    for verdict in found:
        record = verdict.to_dict()
        cells = ["" if record[name] is None else record[name] for name in columns]
        writer.writerow([*cells, json.dumps(verdict.extra, ensure_ascii=False)])


# --- engine and schema -----------------------------------------------------------------------


def _create_engine(url: str) -> Engine:
    try:
        parsed = sa.make_url(url)
    except exc.ArgumentError as error:
        raise ConfigError(
            "not a database URL",
            field="url",
            expected="a SQLAlchemy URL such as sqlite:///verdicts.db or "
            "postgresql+pg8000://user@host/db",
            found=repr(url),
        ) from error

    sqlite = parsed.get_backend_name() == "sqlite"
    options: dict[str, Any] = {"json_serializer": _dump_json}
    if sqlite:
        options["connect_args"] = {"timeout": _SQLITE_BUSY_SECONDS}
    else:
        options["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(parsed, **options)
    except (exc.NoSuchModuleError, ImportError) as error:
        raise ConfigError(
            "the database driver of this URL is not installed",
            field="url",
            expected="a URL whose driver is installed",
            found=f"{_safe_url(url)} ({error})",
            fix="install the driver (pip install pg8000) and use postgresql+pg8000://...",
        ) from error

    if sqlite:
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    """WAL and foreign keys on; transactions begun by :func:`_sqlite_begin`, not the driver."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_SECONDS * 1000}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    """Writers take SQLite's write lock at BEGIN, so two importers queue instead of failing."""
    writing = connection.get_execution_options().get(_WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


def _ensure_schema(engine: Engine, url: str) -> None:
    """Create the tables if missing and record the schema version; refuse a newer schema."""
    try:
        with _writing(engine) as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_SCHEMA_LOCK)))
            _metadata.create_all(connection, checkfirst=True)
            versions = connection.execute(sa.select(_schema_versions.c.version)).scalars().all()
            if not versions:
                connection.execute(
                    sa.insert(_schema_versions).values(
                        version=SCHEMA_VERSION, applied_at=datetime.now(UTC)
                    )
                )
                logger.info("created verdict store schema %d at %s", SCHEMA_VERSION, _safe_url(url))
            elif max(versions) > SCHEMA_VERSION:
                raise DataError(
                    "the verdict store was written by a newer threattune",
                    field="verdict_schema_version",
                    expected=f"schema version {SCHEMA_VERSION} or older",
                    found=f"schema version {max(versions)} at {_safe_url(url)}",
                    fix="upgrade threattune",
                )
    except (exc.OperationalError, exc.InterfaceError) as error:
        raise ConfigError(
            "cannot open the verdict store",
            field="url",
            expected="a reachable database the user may create tables in",
            found=f"{_safe_url(url)}: {getattr(error, 'orig', error)}",
            fix="check the URL, that the folder of a SQLite file exists, and the credentials",
        ) from error


def _safe_url(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return "<not a URL>"


# --- values ----------------------------------------------------------------------------------

_EXPECTED = {
    "alert_id": "the id of the alert the verdict is about",
    "model_version": "NAME/VERSION or models:/NAME/VERSION of the model that raised the alert",
    "verdict": f"one of {', '.join(VERDICTS)} (or tp, fp, btp)",
    "analyst": "who gave the verdict",
    "time": "an ISO 8601 time such as 2025-03-01T09:30:00Z (no zone means UTC)",
}


def _column_name(name: str) -> str:
    canonical = re.sub(r"[\s\-.]+", "_", name.strip().lower())
    return _COLUMN_ALIASES.get(canonical, canonical)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _key_text(value: Any, name: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise DataError(
            f"the {name.replace('_', ' ')} must be text",
            field=name,
            expected=_EXPECTED[name],
            found=f"{type(value).__name__} {value!r}",
        )
    text = value.strip()
    if not text or len(text) > _MAX_KEY_CHARS:
        raise DataError(
            f"the {name.replace('_', ' ')} is {'empty' if not text else 'too long'}",
            field=name,
            expected=f"{_EXPECTED[name]}, at most {_MAX_KEY_CHARS} characters",
            found=repr(value) if not text else f"{len(text)} characters",
            fix=f"fill in the {name.replace('_', ' ')}" if not text else None,
        )
    return text


def _optional_text(value: Any, name: str) -> str | None:
    if _blank(value):
        return None
    if not isinstance(value, str):
        raise DataError(
            f"the {name.replace('_', ' ')} must be text",
            field=name,
            expected="text or nothing",
            found=f"{type(value).__name__} {value!r}",
        )
    return value.strip()


def _root_cause(value: Any) -> str | None:
    text = _optional_text(value, "root_cause")
    if text is None:
        return None
    category = re.sub(r"[\s_]+", "-", text.lower())
    if len(category) > _MAX_KEY_CHARS:
        raise DataError(
            "the root cause is too long",
            field="root_cause",
            expected=f"a short category such as backup-job, at most {_MAX_KEY_CHARS} characters",
            found=f"{len(category)} characters",
            fix="put the explanation in the note and keep a category here",
        )
    return category


def _parse_time(value: Any, name: str) -> datetime:
    """An aware UTC datetime from a datetime or ISO 8601 text; naive means UTC."""
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            parsed = None
        if parsed is None or not re.search(r"\d[Tt ]\d", text):
            raise DataError(
                "not a date and time" if parsed is None else "a date without a time",
                field=name,
                expected=_EXPECTED["time"],
                found=repr(value),
                fix="write the time as ISO 8601, e.g. 2025-03-01T09:30:00Z",
            )
        value = parsed
    elif not isinstance(value, datetime):
        found = "a date without a time" if isinstance(value, date) else type(value).__name__
        raise DataError(
            "not a date and time",
            field=name,
            expected=_EXPECTED["time"],
            found=f"{found} {value!r}",
        )
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _json_object(value: Any, name: str) -> dict[str, Any]:
    """A JSON object as plain Python values, keys as text; from a mapping or JSON text."""
    if _blank(value):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise DataError(
                "invalid JSON",
                field=name,
                expected='a JSON object such as {"score": 0.93}',
                found=f"{error.msg} at column {error.colno}",
                fix=f"the {name} column holds extra fields as one JSON object; write one, or "
                "leave it empty",
            ) from error
    if not isinstance(value, Mapping):
        raise DataError(
            "extra fields must be a JSON object",
            field=name,
            expected='a JSON object such as {"score": 0.93}',
            found=type(value).__name__,
        )
    try:
        return json.loads(_dump_json(dict(value)))
    except (TypeError, ValueError) as error:
        raise DataError(
            "extra fields must be plain JSON values",
            field=name,
            expected="text, numbers, booleans, null, lists and objects (finite numbers only)",
            found=str(error),
        ) from error


def _add_extra(extra: dict[str, Any], key: str, value: Any) -> None:
    if key in extra:
        raise DataError(
            "an extra field is given twice",
            field=key,
            expected="each extra field once, as a column or inside 'extra'",
            found=f"{key!r} both as a column and inside 'extra'",
        )
    extra[key] = value


def _dump_json(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, allow_nan=False, ensure_ascii=False, default=_json_default
    )


def _json_default(value: Any) -> Any:
    """numpy scalars and times, which alerts often carry, as plain JSON values."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    item = getattr(value, "item", None)
    if callable(item):
        converted = item()
        if isinstance(converted, float) and not math.isfinite(converted):
            raise ValueError(f"out of range float value {converted!r}")
        return converted
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _located(error: DataError, source: str, line: int) -> DataError:
    if error.path is not None and error.line is not None:
        return error
    return DataError(
        error.message,
        path=source,
        line=line,
        field=error.field,
        expected=error.expected,
        found=error.found,
        fix=error.fix,
    )


def _filters(
    model_version: str | None,
    verdict: str | None,
    since: datetime | str | None,
    until: datetime | str | None,
    analyst: str | None,
) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = []
    try:
        if model_version is not None:
            version = model_version.strip().removeprefix("models:/").strip()
            conditions.append(_verdicts.c.model_version == version)
        if verdict is not None:
            conditions.append(_verdicts.c.verdict == normalise_verdict(verdict))
        if analyst is not None:
            conditions.append(_verdicts.c.analyst == analyst.strip())
        if since is not None:
            conditions.append(_verdicts.c.time >= _parse_time(since, "since"))
        if until is not None:
            conditions.append(_verdicts.c.time < _parse_time(until, "until"))
    except DataError as error:
        raise ConfigError(
            error.message, field=error.field, expected=error.expected, found=error.found
        ) from error
    return conditions


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"{name} must be a whole number, 0 or more",
            field=name,
            expected="an int >= 0 or None",
            found=repr(value),
        )
    return value
