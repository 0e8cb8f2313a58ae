"""Scoring requests: flows and emails in, one result per item out, alerts to store.

Every flow or email gets its class, score and ATT&CK technique; those the model raises as
alerts also get an alert id and a short summary, and are returned as :class:`AlertRecord`s
for the store. With a cascade (two-stage scoring) an alert is one stage two kept; each result
also says whether stage one raised it and what stage two scored. Limits on how many items one
request holds are checked before anything is parsed or scored.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from threattune.errors import DataError
from threattune.service.served import LoadedModel
from threattune.service.store import AlertRecord

logger = logging.getLogger(__name__)

__all__ = [
    "LimitExceeded",
    "ScoredBatch",
    "check_count",
    "parse_emails",
    "read_mail_upload",
    "score_emails",
    "score_flow_file",
    "score_flows",
]

_SUMMARY_TEXT = 200
_SUMMARY_PASSTHROUGH = 8
_SUMMARY_NUMERIC = 4
_SUMMARY_URLS = 5


class LimitExceeded(DataError):
    """A request larger than a configured limit; answered with 413 and the limit."""

    def __init__(self, message: str, *, field: str, limit: int, found: int, fix: str) -> None:
        super().__init__(
            message, field=field, expected=f"at most {limit:,}", found=f"{found:,}", fix=fix
        )
        self.limit = limit
        self.count = found


@dataclass
class ScoredBatch:
    """The per-item results of one request and the alerts among them."""

    model: LoadedModel
    results: list[dict[str, Any]]
    alerts: list[AlertRecord] = field(default_factory=list)
    cascade: str | None = None
    """The cascade folder that filtered the alerts, when one did."""

    @property
    def by_class(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for alert in self.alerts:
            counts[alert.alert_class] = counts.get(alert.alert_class, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """The response body."""
        return {
            "model": self.model.name,
            "model_version": self.model.model_version,
            "scored": len(self.results),
            "alerts": len(self.alerts),
            "cascade": self.cascade,
            "results": self.results,
        }


def check_count(count: int, limit: int, field: str, what: str) -> None:
    """Raise :class:`LimitExceeded` when a request holds more than ``limit`` items."""
    if count > limit:
        raise LimitExceeded(
            f"too many {what} in one request",
            field=field,
            limit=limit,
            found=count,
            fix=f"send at most {limit:,} {what} per request, in several requests",
        )


def _alert_id(kind: str) -> str:
    return f"{'fl' if kind == 'flow' else 'em'}-{uuid.uuid4().hex}"


# --- flows -----------------------------------------------------------------------------------


def score_flows(
    loaded: LoadedModel,
    records: Sequence[dict[str, Any]],
    *,
    scored_at: datetime | None = None,
    cascade: Any = None,
) -> ScoredBatch:
    """Score flows given as JSON objects with the model's feature names as keys.

    Keys that are not features are carried into the alert summary (a host name, a sensor).
    With a ``cascade`` trained on this model version, stage two filters the alerts.
    """
    if not records:
        raise DataError(
            "no flows to score",
            field="flows",
            expected="a list of at least one flow",
            found="an empty list",
        )
    frame = pd.DataFrame.from_records(list(records))
    return _score_frame(
        loaded, frame, path="flows", first_line=0, scored_at=scored_at, cascade=cascade
    )


def score_flow_file(
    loaded: LoadedModel, path: Path, *, limit: int, delimiter: str = ",", cascade: Any = None
) -> ScoredBatch:
    """Score an uploaded CSV (or headerless NSL-KDD) file of at most ``limit`` flows."""
    from threattune.scoring import iter_input

    batches: list[pd.DataFrame] = []
    rows, first_line = 0, 1
    for line, batch in iter_input(
        loaded.model, path, batch_rows=min(limit + 1, 65_536), delimiter=delimiter
    ):
        if not batches:
            first_line = line
        rows += len(batch)
        check_count(rows, limit, "file", "flows")
        batches.append(batch)
    if not batches:
        raise DataError("the file holds no flows", field="file", expected="at least one flow")
    frame = pd.concat(batches, ignore_index=True) if len(batches) > 1 else batches[0]
    return _score_frame(
        loaded, frame, path="file", first_line=first_line, scored_at=None, cascade=cascade
    )


def _score_frame(
    loaded: LoadedModel,
    frame: pd.DataFrame,
    *,
    path: str,
    first_line: int,
    scored_at: datetime | None,
    cascade: Any = None,
) -> ScoredBatch:
    from threattune.scoring import prepare_features, score_features

    model = loaded.model if cascade is None else cascade.stage_one
    passthrough = model.fingerprint.check_columns(frame.columns, path=path, allow_extra=True)
    features = prepare_features(model, frame, path=path, first_line=first_line)
    scored = score_features(model, features, cascade=cascade)
    classes = scored["class"].to_numpy()
    scores = scored["score"].to_numpy()
    attack = scored["attack_score"].to_numpy()
    alerts = scored["alert"].to_numpy()
    techniques = scored["techniques"].to_numpy()
    when = scored_at or datetime.now(UTC)

    summary_columns = _flow_summary_columns(model, passthrough)
    positions = [int(i) for i in alerts.nonzero()[0]]
    summaries = (
        frame.iloc[positions][summary_columns].to_dict(orient="records") if positions else []
    )
    ids = {position: _alert_id("flow") for position in positions}
    records = [
        AlertRecord(
            alert_id=ids[position],
            scored_at=when,
            model_name=loaded.name,
            model_version=loaded.model_version,
            kind="flow",
            alert_class=str(classes[position]),
            score=float(scores[position]),
            attack_score=float(attack[position]),
            technique=str(techniques[position] or ""),
            summary=_clean_summary(summary),
        )
        for position, summary in zip(positions, summaries, strict=True)
    ]
    results = [
        {
            "index": i,
            "class": str(classes[i]),
            "score": float(scores[i]),
            "attack_score": float(attack[i]),
            "alert": bool(alerts[i]),
            "techniques": str(techniques[i] or ""),
            "alert_id": ids.get(i),
            **_stages(scored, i, cascade),
        }
        for i in range(len(classes))
    ]
    return ScoredBatch(loaded, results, records, _cascade_name(cascade))


def _stages(scored: pd.DataFrame, row: int, cascade: Any) -> dict[str, Any]:
    """What each stage decided for one scored row, when a cascade scored it."""
    if cascade is None:
        return {}
    score = scored["stage_two_score"].iat[row]
    return {
        "stage_one_alert": bool(scored["stage_one_alert"].iat[row]),
        "stage_two_score": None if pd.isna(score) else float(score),
        "guarded": bool(scored["guarded"].iat[row]),
    }


def _cascade_name(cascade: Any) -> str | None:
    return None if cascade is None else str(cascade.folder)


def _flow_summary_columns(model: Any, passthrough: list[str]) -> list[str]:
    """The columns an analyst reads first: what the client sent along, then a few features."""
    categorical = list(model.fingerprint.categorical)
    numeric = [c.name for c in model.fingerprint.columns if c.kind == "numeric"]
    wanted = passthrough[:_SUMMARY_PASSTHROUGH] + categorical[:4] + numeric[:_SUMMARY_NUMERIC]
    return list(dict.fromkeys(wanted))


def _clean_summary(summary: dict[str, Any]) -> dict[str, Any]:
    return {str(k)[:_SUMMARY_TEXT]: _clean_value(v) for k, v in summary.items()}


def _clean_value(value: Any) -> Any:
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, str | bytes):
        try:
            value = item()
        except (TypeError, ValueError):
            value = str(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [_clean_value(v) for v in list(value)[:_SUMMARY_URLS]]
    text = str(value)
    return text if len(text) <= _SUMMARY_TEXT else text[: _SUMMARY_TEXT - 1] + "…"


# --- emails ----------------------------------------------------------------------------------


def parse_emails(messages: Sequence[tuple[str, bytes]]) -> list[Any]:
    """Parse raw RFC 822 messages given as (source, bytes); a bad one names its position."""
    from threattune.sources.mail import parse_message

    parsed = []
    for position, (source, raw) in enumerate(messages):
        try:
            parsed.append(parse_message(raw, source=source))
        except DataError as error:
            raise DataError(
                error.message,
                field=f"messages[{position}].raw",
                expected=error.expected,
                found=error.found,
                fix=error.fix,
            ) from error
    return parsed


def read_mail_upload(path: Path, filename: str, *, limit: int) -> list[Any]:
    """The messages of an uploaded mbox or single ``.eml`` file, at most ``limit``."""
    from threattune.sources.mail import parse_message, read_mbox

    with path.open("rb") as handle:
        head = handle.read(5)
    if filename.lower().endswith(".eml") or not head.startswith(b"From "):
        return [parse_message(path.read_bytes(), source=filename or "upload.eml")]
    messages = []
    for message in read_mbox(path):
        messages.append(message)
        check_count(len(messages), limit, "file", "emails")
    if not messages:
        raise DataError("the mbox holds no messages", field="file", expected="at least one")
    return messages


def score_emails(
    loaded: LoadedModel, messages: Sequence[Any], *, cascade: Any = None
) -> ScoredBatch:
    """Score parsed messages with a mail model; alerts carry subject, sender, defanged URLs.

    With a ``cascade`` trained on this model version, stage two filters the alerts.
    """
    from threattune.mail_scoring import score_batch

    if not messages:
        raise DataError("no emails to score", field="messages", expected="at least one email")
    model = loaded.model if cascade is None else cascade.stage_one
    scored = score_batch(model, list(messages), cascade=cascade)
    when = datetime.now(UTC)
    results: list[dict[str, Any]] = []
    records: list[AlertRecord] = []
    for i, row in enumerate(scored.to_dict(orient="records")):
        alert = bool(row.get("alert"))
        alert_id = _alert_id("mail") if alert else None
        urls = _url_list(row.get("urls"))
        evidence = {
            "subject": _clean_value(row.get("subject")),
            "from": _clean_value(row.get("from_address")),
            "suspicious_urls": _url_list(row.get("suspicious_urls")),
            "signals": _url_list(row.get("signals")),
            "attachments": _url_list(row.get("attachments")),
        }
        technique = str(row.get("technique") or "")
        results.append(
            {
                "index": i,
                "class": str(row.get("class")),
                "score": float(row.get("score")),
                "alert": alert,
                "techniques": technique,
                "alert_id": alert_id,
                **_stages(scored, i, cascade),
                "message_id": _clean_value(row.get("message_id")),
                "urls": urls,
                **evidence,
            }
        )
        if alert_id is not None:
            records.append(
                AlertRecord(
                    alert_id=alert_id,
                    scored_at=when,
                    model_name=loaded.name,
                    model_version=loaded.model_version,
                    kind="mail",
                    alert_class=str(row.get("class")),
                    score=float(row.get("score")),
                    technique=technique,
                    summary=_clean_summary(
                        {
                            "subject": row.get("subject"),
                            "from": row.get("from_address"),
                            "urls": urls,
                            "suspicious_urls": evidence["suspicious_urls"],
                            "signals": evidence["signals"],
                            "attachments": evidence["attachments"],
                            "message_id": row.get("message_id"),
                            "source": row.get("source"),
                        }
                    ),
                )
            )
    return ScoredBatch(loaded, results, records, _cascade_name(cascade))


def _url_list(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, Iterable):
        return [str(v)[:_SUMMARY_TEXT] for v in list(value)[:_SUMMARY_URLS]]
    return [str(value)]
