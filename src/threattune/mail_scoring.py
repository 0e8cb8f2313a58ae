"""Batched scoring of mail: mbox files, .eml files, folders and archives, into one output.

Messages stream from :class:`~threattune.sources.mail.MailReader` in batches; a malformed
message is reported as a finding with its file and position and skipped, and the rest goes on.
Each message gets its class, score, threat score, alert flag, ATT&CK technique and the
evidence that stood out (defanged links, odd links, header flags, attachments, never opened).
The output (CSV, JSON lines or Parquet) goes to a temporary file that replaces the target only
at the end, so an earlier output survives a failed run.

>>> summary = score_mail(model, [Path("inbox.mbox")], Path("scores.jsonl"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from threattune.errors import ConfigError, DataError
from threattune.findings import Finding
from threattune.mail_model import MailModel
from threattune.scoring import OUTPUT_FORMATS, _Writer
from threattune.sources.mail import MailReader, MailSource, Message

if TYPE_CHECKING:
    from threattune.cascade import Cascade

__all__ = ["SKIPPED_KINDS", "MailScoringSummary", "score_batch", "score_mail", "score_raw"]

logger = logging.getLogger(__name__)

_LIST_COLUMNS = ("urls", "suspicious_urls", "signals", "attachments")
SKIPPED_KINDS = frozenset(
    {
        "empty-message",
        "not-mail",
        "malformed-message",
        "malformed-row",
        "oversized-message",
        "unreadable-file",
        "unreadable-archive",
        "unsupported-archive",
        "archive-too-deep",
    }  # fmt: skip
)
"""Finding kinds of messages that were skipped rather than repaired."""


@dataclass
class MailScoringSummary:
    """How a scoring run went: messages, alerts per class and technique, skipped input."""

    inputs: list[str]
    output: str
    messages: int = 0
    alerts: int = 0
    seconds: float = 0.0
    by_class: dict[str, int] = field(default_factory=dict)
    by_technique: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    stage_one_alerts: int | None = None
    """With a cascade: stage one's alerts, before stage two filtered them to ``alerts``."""

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs, "output": self.output, "messages": self.messages,
            "alerts": self.alerts, "stage_one_alerts": self.stage_one_alerts,
            "seconds": self.seconds, "by_class": self.by_class,
            "by_technique": self.by_technique, "skipped": len(self.findings),
        }  # fmt: skip


def score_raw(model: MailModel, raws: Sequence[str | bytes], *, int8: bool = True) -> pd.DataFrame:
    """Score raw RFC 822 messages; one that cannot be parsed gets class ``unreadable``."""
    reader = MailReader()
    messages: list[Message] = []
    unreadable: list[int] = []
    for position, raw in enumerate(raws):
        data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
        message = reader.parse(data, source=MailSource("<request>", index=position + 1))
        if message is None:
            unreadable.append(position)
            message = Message(source=MailSource("<request>", index=position + 1))
        messages.append(message)
    scored = model.score_messages(messages, int8=int8)
    for position in unreadable:
        scored.loc[position, ["class", "alert", "technique"]] = ["unreadable", False, ""]
    return scored


def score_mail(
    model: MailModel,
    inputs: Sequence[Path],
    output_path: Path,
    *,
    batch_size: int = 256,
    int8: bool = True,
    progress: bool = False,
    max_messages: int | None = None,
    cascade: Cascade | None = None,
) -> MailScoringSummary:
    """Score every message under ``inputs`` and write CSV, JSON lines or Parquet.

    With a ``cascade`` whose stage one is ``model``, stage two filters the alerts: ``alert``
    is the cascade's, and stage_one_alert, stage_two_score and guarded follow.
    """
    output_path = Path(output_path)
    kind = OUTPUT_FORMATS.get(output_path.suffix.lower())
    if kind is None:
        raise ConfigError(
            "unknown output format",
            path=output_path,
            expected="a file ending in .csv, .jsonl or .parquet",
            found=output_path.suffix or "no suffix",
        )
    for path in inputs:
        if Path(path).resolve() == output_path.resolve():
            raise ConfigError("the output would overwrite an input", path=output_path)

    reader = MailReader()
    summary = MailScoringSummary([str(p) for p in inputs], str(output_path))
    classes: Counter[str] = Counter()
    techniques: Counter[str] = Counter()
    partial = output_path.with_name(f".{output_path.name}.partial-{os.getpid()}")
    try:
        output_path.parent.mkdir(parents=True, exist_ok=True)
        partial.touch()
        writer = _Writer(kind, partial)
    except OSError as error:
        raise ConfigError(
            "cannot write the output", path=output_path, found=error.strerror or str(error),
            fix="choose a folder you can write to",
        ) from error  # fmt: skip
    bar = _progress() if progress else None
    started = time.perf_counter()
    try:
        messages = _messages(reader, inputs)
        if max_messages is not None:
            messages = islice(messages, max_messages)
        for batch in _batches(messages, batch_size):
            scored = score_batch(model, batch, int8=int8, cascade=cascade)
            if cascade is not None:
                summary.stage_one_alerts = (summary.stage_one_alerts or 0) + int(
                    scored["stage_one_alert"].sum()
                )
            writer.write(_flattened(scored) if kind != "jsonl" else scored)
            summary.messages += len(scored)
            summary.alerts += int(scored["alert"].sum())
            classes.update(scored["class"].value_counts().to_dict())
            techniques.update(scored.loc[scored["alert"], "technique"].value_counts().to_dict())
            if bar is not None:
                bar.update(len(scored))
        writer.close()
        if summary.messages == 0:
            raise DataError(
                "no readable message in the input",
                path=", ".join(str(p) for p in inputs),
                expected="mbox files, .eml files, folders or archives of mail",
                found=f"{len(reader.issues)} skipped (first: {reader.issues[0].message})"
                if reader.issues
                else "no message at all: empty files or folders",
                fix="check the paths; an earlier output is left as it was",
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
    summary.by_class = dict(classes.most_common())
    summary.by_technique = dict(techniques.most_common())
    summary.findings = list(reader.issues)
    logger.info("scored %d messages in %.1f s, %d alerts", summary.messages, summary.seconds,
                summary.alerts)  # fmt: skip
    return summary


def score_batch(
    model: MailModel,
    batch: Sequence[Message],
    *,
    int8: bool = True,
    cascade: Cascade | None = None,
) -> pd.DataFrame:
    """Score parsed messages: :meth:`MailModel.score_messages`, and with a ``cascade`` (whose
    stage one is ``model``) stage two's columns too; stage one scores each message once."""
    if cascade is None:
        return model.score_messages(batch, int8=int8)
    from threattune.mail_cascade import cascade_features, model_texts

    features = cascade_features(batch)
    proba = model.predict_proba(model_texts(features), int8=int8)
    scored = model.score_messages(batch, proba=proba)
    for name, values in cascade.decide(features, proba).columns().items():
        scored[name] = values
    return scored


def _messages(reader: MailReader, inputs: Iterable[Path]) -> Iterator[Message]:
    for path in inputs:
        yield from reader.read(path)


def _batches(messages: Iterable[Message], size: int) -> Iterator[list[Message]]:
    iterator = iter(messages)
    while batch := list(islice(iterator, size)):
        yield batch


def _flattened(scored: pd.DataFrame) -> pd.DataFrame:
    """List columns joined with `` | `` for CSV and Parquet."""
    flat = scored.copy()
    for column in _LIST_COLUMNS:
        flat[column] = flat[column].map(" | ".join)
    return flat


def _progress() -> Any:
    from tqdm import tqdm

    return tqdm(desc="scoring mail", unit=" messages", leave=False)
