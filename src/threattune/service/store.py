"""What the service keeps: alerts, diagnosis summaries, served model versions, keys, sessions.

One database named by a SQLAlchemy URL holds everything, the analysts' verdicts included
(:class:`~threattune.verdicts.VerdictStore` on the same URL): ``sqlite:///service.db`` by
default (WAL mode, ``synchronous=FULL``, so a committed alert survives a crash or a restart) or
``postgresql+pg8000://user@host/db``. Every write is one transaction committed before the
service answers, so what a client saw acknowledged is stored.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine

from threattune.errors import ConfigError, DataError
from threattune.verdicts import VerdictStore

logger = logging.getLogger(__name__)

__all__ = [
    "SCHEMA_VERSION",
    "AlertRecord",
    "ApiKeyRecord",
    "DiagnosisRecord",
    "ServiceStore",
    "ServedVersionRecord",
]

SCHEMA_VERSION = 1
_SQLITE_BUSY_SECONDS = 30
_WRITE_OPTION = "threattune_service_write"
_PG_SCHEMA_LOCK = 0x7474736572766963  # "ttservic": serialises schema creation on PostgreSQL


class _UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp kept in UTC: ``timestamptz`` on PostgreSQL, naive UTC on SQLite."""

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


_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_metadata = sa.MetaData()
_schema_versions = sa.Table(
    "service_schema_version",
    _metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", _UTCDateTime, nullable=False),
)
_alerts = sa.Table(
    "service_alerts",
    _metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("alert_id", sa.String(64), nullable=False, unique=True),
    sa.Column("scored_at", _UTCDateTime, nullable=False),
    sa.Column("hour", sa.Integer, nullable=False),
    sa.Column("model_name", sa.String, nullable=False),
    sa.Column("model_version", sa.String, nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("alert_class", sa.String, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("attack_score", sa.Float),
    sa.Column("technique", sa.String, nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),
    sa.Index("ix_service_alerts_hour", "hour"),
    sa.Index("ix_service_alerts_version_hour", "model_version", "hour"),
)
_diagnoses = sa.Table(
    "service_diagnoses",
    _metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("received_at", _UTCDateTime, nullable=False),
    sa.Column("diagnosed_at", _UTCDateTime, nullable=False),
    sa.Column("model_name", sa.String, nullable=False),
    sa.Column("model_version", sa.String, nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),
    sa.Index("ix_service_diagnoses_version_time", "model_version", "diagnosed_at"),
)
_served = sa.Table(
    "service_model_versions",
    _metadata,
    sa.Column("model_version", sa.String, primary_key=True),
    sa.Column("model_name", sa.String, nullable=False),
    sa.Column("version", sa.String, nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("reference", sa.String, nullable=False),
    sa.Column("first_loaded_at", _UTCDateTime, nullable=False),
    sa.Column("last_loaded_at", _UTCDateTime, nullable=False),
    sa.Column("operating_point", sa.JSON),
    sa.Column("classes", sa.JSON, nullable=False),
)
_keys = sa.Table(
    "service_api_keys",
    _metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("scopes", sa.String, nullable=False),
    sa.Column("kdf", sa.String, nullable=False),
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("digest", sa.String(128), nullable=False),
    sa.Column("created_at", _UTCDateTime, nullable=False),
    sa.Column("revoked_at", _UTCDateTime),
)
_sessions = sa.Table(
    "service_sessions",
    _metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(32), sa.ForeignKey("service_api_keys.key_id"), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("created_at", _UTCDateTime, nullable=False),
    sa.Column("expires_at", _UTCDateTime, nullable=False),
    sa.Column("used_at", _UTCDateTime),
)


@dataclass(frozen=True)
class AlertRecord:
    """One alert a served model raised: which model version, what class, why, on what.

    ``summary`` is a short JSON description an analyst reads first: for a flow its protocol,
    service and byte counts and the columns the client sent along; for an email its subject,
    sender and defanged URLs.
    """

    alert_id: str
    scored_at: datetime
    model_name: str
    model_version: str
    kind: str
    alert_class: str
    score: float
    technique: str
    summary: dict[str, Any] = field(default_factory=dict, hash=False)
    attack_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; the time in ISO 8601 UTC."""
        return {
            "alert_id": self.alert_id,
            "time": self.scored_at.isoformat(),
            "model": self.model_name,
            "model_version": self.model_version,
            "kind": self.kind,
            "class": self.alert_class,
            "score": self.score,
            "attack_score": self.attack_score,
            "technique": self.technique,
            "summary": self.summary,
        }


@dataclass(frozen=True)
class DiagnosisRecord:
    """The summary of one diagnosis report, filed under the model version it diagnosed."""

    diagnosed_at: datetime
    received_at: datetime
    model_name: str
    model_version: str
    severity: str
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "diagnosed_at": self.diagnosed_at.isoformat(),
            "received_at": self.received_at.isoformat(),
            "model": self.model_name,
            "model_version": self.model_version,
            "severity": self.severity,
            "summary": self.summary,
        }


@dataclass(frozen=True)
class ServedVersionRecord:
    """A model version the service has served, with its operating point when last loaded."""

    model_version: str
    model_name: str
    version: str
    kind: str
    reference: str
    first_loaded_at: datetime
    last_loaded_at: datetime
    operating_point: dict[str, Any] | None
    classes: list[str]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "model_version": self.model_version,
            "model": self.model_name,
            "version": self.version,
            "kind": self.kind,
            "reference": self.reference,
            "first_loaded_at": self.first_loaded_at.isoformat(),
            "last_loaded_at": self.last_loaded_at.isoformat(),
            "operating_point": self.operating_point,
            "classes": self.classes,
        }


@dataclass(frozen=True)
class ApiKeyRecord:
    """A stored API key: its public id, name and scopes, and the salted hash of its secret."""

    key_id: str
    name: str
    scopes: frozenset[str]
    kdf: str
    salt: str
    digest: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        """Whether the key still opens the service."""
        return self.revoked_at is None


class ServiceStore:
    """The service's database; the schema is created on first use.

    >>> store = ServiceStore("sqlite://")
    >>> store.count_alerts()
    0
    """

    def __init__(self, url: str = "sqlite:///service.db") -> None:
        self.url = url
        self._engine: Engine | None = None
        self._verdicts: VerdictStore | None = None

    def __repr__(self) -> str:
        return f"ServiceStore({safe_url(self.url)!r})"

    def __enter__(self) -> ServiceStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection, the verdict store's included."""
        if self._verdicts is not None:
            self._verdicts.close()
            self._verdicts = None
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

    @property
    def verdicts(self) -> VerdictStore:
        """The analysts' verdicts, in the same database."""
        if self._verdicts is None:
            self._verdicts = VerdictStore(self.url)
        return self._verdicts

    def journal_mode(self) -> str:
        """SQLite's journal mode (``wal``), or the backend's name for other databases."""
        with self.engine.connect() as connection:
            if connection.dialect.name != "sqlite":
                return connection.dialect.name
            return str(connection.exec_driver_sql("PRAGMA journal_mode").scalar_one()).lower()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        try:
            with self.engine.connect().execution_options(**{_WRITE_OPTION: True}) as connection:
                with connection.begin():
                    yield connection
        except (exc.OperationalError, exc.InterfaceError) as error:
            raise DataError(
                "the service store could not be written; nothing was stored",
                field="store",
                found=f"{safe_url(self.url)}: {getattr(error, 'orig', error)}",
                fix="check that the database is reachable and writable, then send again",
            ) from error

    # --- alerts -----------------------------------------------------------------------------

    def add_alerts(self, alerts: Sequence[AlertRecord]) -> int:
        """Store alerts in one transaction, committed when this returns; returns how many."""
        if not alerts:
            return 0
        rows = [
            {
                "alert_id": a.alert_id,
                "scored_at": a.scored_at,
                "hour": hour_of(a.scored_at),
                "model_name": a.model_name,
                "model_version": a.model_version,
                "kind": a.kind,
                "alert_class": a.alert_class,
                "score": float(a.score),
                "attack_score": None if a.attack_score is None else float(a.attack_score),
                "technique": a.technique,
                "summary": a.summary,
            }
            for a in alerts
        ]
        with self._writing() as connection:
            connection.execute(sa.insert(_alerts), rows)
        return len(rows)

    def alerts(
        self,
        *,
        model_version: str | None = None,
        alert_class: str | None = None,
        limit: int = 100,
    ) -> list[AlertRecord]:
        """Stored alerts, newest first."""
        query = sa.select(_alerts).order_by(_alerts.c.id.desc()).limit(max(0, int(limit)))
        if model_version is not None:
            query = query.where(_alerts.c.model_version == model_version)
        if alert_class is not None:
            query = query.where(_alerts.c.alert_class == alert_class)
        with self.engine.connect() as connection:
            return [_alert_from_row(row) for row in connection.execute(query)]

    def alert(self, alert_id: str) -> AlertRecord | None:
        """One stored alert by its id, or None."""
        query = sa.select(_alerts).where(_alerts.c.alert_id == alert_id)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else _alert_from_row(row)

    def model_versions_of(self, alert_ids: Sequence[str]) -> dict[str, str]:
        """The model version that raised each of ``alert_ids`` that is stored."""
        found: dict[str, str] = {}
        ids = list(dict.fromkeys(alert_ids))
        with self.engine.connect() as connection:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                query = sa.select(_alerts.c.alert_id, _alerts.c.model_version).where(
                    _alerts.c.alert_id.in_(chunk)
                )
                found.update({str(r[0]): str(r[1]) for r in connection.execute(query)})
        return found

    def count_alerts(self) -> int:
        """How many alerts are stored."""
        with self.engine.connect() as connection:
            query = sa.select(sa.func.count()).select_from(_alerts)
            return int(connection.execute(query).scalar_one())

    def alert_volume(self, since_hour: int) -> list[tuple[int, str, str, int]]:
        """(hour, class, technique, alerts) for every hour from ``since_hour`` (hours since
        the epoch, UTC)."""
        query = (
            sa.select(_alerts.c.hour, _alerts.c.alert_class, _alerts.c.technique, sa.func.count())
            .where(_alerts.c.hour >= since_hour)
            .group_by(_alerts.c.hour, _alerts.c.alert_class, _alerts.c.technique)
        )
        with self.engine.connect() as connection:
            return [(int(h), str(c), str(t), int(n)) for h, c, t, n in connection.execute(query)]

    # --- diagnoses --------------------------------------------------------------------------

    def add_diagnosis(self, record: DiagnosisRecord) -> None:
        """Store one diagnosis summary, committed when this returns."""
        with self._writing() as connection:
            connection.execute(
                sa.insert(_diagnoses).values(
                    received_at=record.received_at,
                    diagnosed_at=record.diagnosed_at,
                    model_name=record.model_name,
                    model_version=record.model_version,
                    severity=record.severity,
                    summary=record.summary,
                )
            )

    def diagnoses(
        self, *, model_version: str | None = None, limit: int = 500
    ) -> list[DiagnosisRecord]:
        """Stored diagnosis summaries, oldest first (the newest ``limit``)."""
        query = sa.select(_diagnoses).order_by(
            _diagnoses.c.diagnosed_at.desc(), _diagnoses.c.id.desc()
        )
        if model_version is not None:
            query = query.where(_diagnoses.c.model_version == model_version)
        with self.engine.connect() as connection:
            rows = list(connection.execute(query.limit(max(0, int(limit)))))
        return [
            DiagnosisRecord(
                diagnosed_at=row.diagnosed_at,
                received_at=row.received_at,
                model_name=row.model_name,
                model_version=row.model_version,
                severity=row.severity,
                summary=row.summary,
            )
            for row in reversed(rows)
        ]

    # --- served model versions --------------------------------------------------------------

    def record_served_version(
        self,
        *,
        model_name: str,
        version: str,
        kind: str,
        reference: str,
        operating_point: dict[str, Any] | None,
        classes: Sequence[str],
    ) -> None:
        """Remember that a model version was loaded, with its operating point."""
        now = datetime.now(UTC)
        model_version = f"{model_name}/{version}"
        values = {
            "model_name": model_name,
            "version": version,
            "kind": kind,
            "reference": reference,
            "last_loaded_at": now,
            "operating_point": plain_json(operating_point),
            "classes": list(classes),
        }
        with self._writing() as connection:
            key = _served.c.model_version == model_version
            if connection.execute(sa.select(_served.c.model_version).where(key)).first():
                connection.execute(sa.update(_served).where(key).values(**values))
            else:
                connection.execute(
                    sa.insert(_served).values(
                        model_version=model_version, first_loaded_at=now, **values
                    )
                )

    def served_versions(self) -> list[ServedVersionRecord]:
        """Every model version the service has loaded, most recently loaded first."""
        query = sa.select(_served).order_by(_served.c.last_loaded_at.desc())
        with self.engine.connect() as connection:
            return [
                ServedVersionRecord(
                    model_version=row.model_version,
                    model_name=row.model_name,
                    version=row.version,
                    kind=row.kind,
                    reference=row.reference,
                    first_loaded_at=row.first_loaded_at,
                    last_loaded_at=row.last_loaded_at,
                    operating_point=row.operating_point,
                    classes=list(row.classes or []),
                )
                for row in connection.execute(query)
            ]

    # --- API keys and sessions --------------------------------------------------------------

    def add_key(self, record: ApiKeyRecord) -> None:
        """Store a new key's hash, committed when this returns."""
        with self._writing() as connection:
            connection.execute(
                sa.insert(_keys).values(
                    key_id=record.key_id,
                    name=record.name,
                    scopes=",".join(sorted(record.scopes)),
                    kdf=record.kdf,
                    salt=record.salt,
                    digest=record.digest,
                    created_at=record.created_at,
                    revoked_at=record.revoked_at,
                )
            )

    def key(self, key_id: str) -> ApiKeyRecord | None:
        """A stored key by its public id, or None."""
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(_keys).where(_keys.c.key_id == key_id)).first()
        return None if row is None else _key_from_row(row)

    def keys(self) -> list[ApiKeyRecord]:
        """Every stored key, revoked ones included, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(_keys).order_by(_keys.c.created_at))
            return [_key_from_row(row) for row in rows]

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key and end its sessions; False when no active key has this id."""
        now = datetime.now(UTC)
        with self._writing() as connection:
            changed = connection.execute(
                sa.update(_keys)
                .where(_keys.c.key_id == key_id, _keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            ).rowcount
            connection.execute(sa.delete(_sessions).where(_sessions.c.key_id == key_id))
        return bool(changed)

    def add_session(self, token_hash: str, key_id: str, kind: str, expires_at: datetime) -> None:
        """Store a dashboard session or a one-time login link by the hash of its token."""
        now = datetime.now(UTC)
        with self._writing() as connection:
            connection.execute(sa.delete(_sessions).where(_sessions.c.expires_at < now))
            connection.execute(
                sa.insert(_sessions).values(
                    token_hash=token_hash,
                    key_id=key_id,
                    kind=kind,
                    created_at=now,
                    expires_at=expires_at,
                )
            )

    def session_key(self, token_hash: str, kind: str) -> str | None:
        """The key id of a live, unexpired session (or unused link) of ``kind``, else None."""
        query = sa.select(_sessions).where(
            _sessions.c.token_hash == token_hash, _sessions.c.kind == kind
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None or row.expires_at <= datetime.now(UTC) or row.used_at is not None:
            return None
        return str(row.key_id)

    def use_link(self, token_hash: str) -> str | None:
        """Spend a one-time login link; its key id, or None when unknown, spent or expired."""
        now = datetime.now(UTC)
        with self._writing() as connection:
            row = connection.execute(
                sa.select(_sessions).where(
                    _sessions.c.token_hash == token_hash, _sessions.c.kind == "link"
                )
            ).first()
            if row is None or row.used_at is not None or row.expires_at <= now:
                return None
            connection.execute(
                sa.update(_sessions).where(_sessions.c.token_hash == token_hash).values(used_at=now)
            )
            return str(row.key_id)

    def end_session(self, token_hash: str) -> None:
        """Forget a dashboard session."""
        with self._writing() as connection:
            connection.execute(sa.delete(_sessions).where(_sessions.c.token_hash == token_hash))


# --- helpers ---------------------------------------------------------------------------------


def hour_of(moment: datetime) -> int:
    """Whole hours since the epoch, UTC: the bucket of the dashboard's volume charts."""
    return int(moment.timestamp() // 3600)


def plain_json(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and NaN or infinity as None."""
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str | int | bool) or value is None:
        return value
    item = getattr(value, "item", None)
    if callable(item):
        return plain_json(item())
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def safe_url(url: str) -> str:
    """A database URL with its password hidden."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return "<not a URL>"


def _alert_from_row(row: sa.Row) -> AlertRecord:
    return AlertRecord(
        alert_id=row.alert_id,
        scored_at=row.scored_at,
        model_name=row.model_name,
        model_version=row.model_version,
        kind=row.kind,
        alert_class=row.alert_class,
        score=float(row.score),
        attack_score=None if row.attack_score is None else float(row.attack_score),
        technique=row.technique,
        summary=row.summary or {},
    )


def _key_from_row(row: sa.Row) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=row.key_id,
        name=row.name,
        scopes=frozenset(s for s in row.scopes.split(",") if s),
        kdf=row.kdf,
        salt=row.salt,
        digest=row.digest,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def _create_engine(url: str) -> Engine:
    try:
        parsed = sa.make_url(url)
    except exc.ArgumentError as error:
        raise ConfigError(
            "not a database URL",
            field="store",
            expected="a SQLAlchemy URL such as sqlite:///service.db or "
            "postgresql+pg8000://user@host/db",
            found=repr(url),
        ) from error
    sqlite = parsed.get_backend_name() == "sqlite"
    options: dict[str, Any] = {
        "json_serializer": lambda v: json.dumps(v, sort_keys=True, allow_nan=False)
    }
    if sqlite:
        options["connect_args"] = {"timeout": _SQLITE_BUSY_SECONDS, "check_same_thread": False}
    else:
        options["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(parsed, **options)
    except (exc.NoSuchModuleError, ImportError) as error:
        raise ConfigError(
            "the database driver of this URL is not installed",
            field="store",
            expected="a URL whose driver is installed",
            found=f"{safe_url(url)} ({error})",
            fix="install the driver (pip install pg8000) and use postgresql+pg8000://...",
        ) from error
    if sqlite:
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    """WAL, full sync at commit and foreign keys; transactions begun by :func:`_sqlite_begin`."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_SECONDS * 1000}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    """Writers take SQLite's write lock at BEGIN, so concurrent writers queue, not fail."""
    writing = connection.get_execution_options().get(_WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


def _ensure_schema(engine: Engine, url: str) -> None:
    """Create the tables if missing and record the schema version; refuse a newer schema."""
    try:
        with engine.connect().execution_options(**{_WRITE_OPTION: True}) as connection:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_SCHEMA_LOCK)))
                _metadata.create_all(connection, checkfirst=True)
                query = sa.select(_schema_versions.c.version)
                versions = connection.execute(query).scalars().all()
                if not versions:
                    connection.execute(
                        sa.insert(_schema_versions).values(
                            version=SCHEMA_VERSION, applied_at=datetime.now(UTC)
                        )
                    )
                    logger.info("created service store schema at %s", safe_url(url))
                elif max(versions) > SCHEMA_VERSION:
                    raise DataError(
                        "the service store was written by a newer threattune",
                        field="service_schema_version",
                        expected=f"schema version {SCHEMA_VERSION} or older",
                        found=f"schema version {max(versions)} at {safe_url(url)}",
                        fix="upgrade threattune",
                    )
    except (exc.OperationalError, exc.InterfaceError) as error:
        raise ConfigError(
            "cannot open the service store",
            field="store",
            expected="a reachable database the user may create tables in",
            found=f"{safe_url(url)}: {getattr(error, 'orig', error)}",
            fix="check the URL, that the folder of a SQLite file exists, and the credentials",
        ) from error
