"""The labelled phishing corpus: public phishing and legitimate mail, deduplicated and grouped.

Sources (each a catalogued dataset under ``THREATTUNE_DATA``):

=================== ============================================ =========== ===============
source              dataset                                      label       years
=================== ============================================ =========== ===============
nazario_2004_2005   Nazario mbox files phishing0, phishing1,     phishing    2004-2005
                    20051114 (raw mail)
nazario_text        Nazario phishing2/phishing3 subject and      phishing    unknown
                    body text (no headers)
nazario_2015_2022   Nazario 2015-2022 curated CSV (no headers)   phishing    2015-2022
phishing_pot        Phishing Pot honeypot .eml (raw mail)        phishing    2022-2024
spamassassin        SpamAssassin easy_ham, easy_ham_2, hard_ham; legitimate, 2002
                    spam and spam_2 as spam                      spam
enron               Enron-Spam enron1-6 (tokenised subject and   legitimate, 1999-2005
                    body, no headers)                            spam
=================== ============================================ =========== ===============

Spam is a third class, left out unless asked for. Messages with the same text (lower-cased,
whitespace-normalised subject and body) and label are kept once, the first in the order above;
text shared by different labels is dropped everywhere, since its label is unknowable. The rest
are grouped into campaigns (:mod:`threattune.campaigns`) so that splits keep each campaign on
one side.

Parsing streams each file once and caches its rows as Parquet under ``THREATTUNE_CACHE`` (by
default ``~/.cache/threattune``), keyed by the file's SHA-256 and the parsing code, so a second
build reads the cache in seconds.

>>> corpus = build_corpus(max_per_source=200)  # doctest: +SKIP
>>> corpus.counts.loc[("phishing_pot", "phishing"), "kept"]  # doctest: +SKIP
200
>>> split = corpus.split(seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from email.message import Message as EmailMessage
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

import threattune
from threattune.campaigns import Split, group_campaigns, grouped_split, split_stats
from threattune.campaigns import __file__ as campaigns_file
from threattune.catalog import dataset_path, get_dataset, sha256_file
from threattune.era import ERA_CATEGORICAL, ERA_NUMERIC, header_artefacts
from threattune.errors import ConfigError, DatasetError
from threattune.findings import Finding, Severity
from threattune.sources.mail import MailReader, MailSource, Message

__all__ = [
    "CACHE_ENV",
    "LEGITIMATE",
    "PHISHING",
    "SOURCES",
    "SPAM",
    "CorpusSource",
    "PhishingCorpus",
    "build_corpus",
    "cache_dir",
    "leave_one_source_out",
    "message_row",
]

logger = logging.getLogger(__name__)

CACHE_ENV = "THREATTUNE_CACHE"
"""Environment variable naming the cache folder (default ``~/.cache/threattune``)."""

PHISHING, LEGITIMATE, SPAM = "phishing", "legitimate", "spam"
MAX_TEXT_CHARS = 100_000
"""Model text beyond this many characters is cut; longer bodies are pasted logs or encodings."""

_FORMAT = 1
_READER_LABELS = {"phishing": PHISHING, "ham": LEGITIMATE, "spam": SPAM}
_SKIP_KINDS = frozenset(
    "not-mail empty-message malformed-message oversized-message mailbox-pseudo-message "
    "malformed-row unreadable-file unreadable-archive archive-too-deep unsupported-archive "
    "unlabelled-message no-text".split()
)
_COUNT_ARTEFACTS = frozenset(
    "hdr_count hdr_x_count hdr_received_hops hdr_mime_parts hdr_message_id_length "
    "hdr_message_id_labels".split()
)
_COUNT_TYPES = {
    "parsed": "int64",
    "skipped": "int64",
    "duplicates_dropped": "int64",
    "kept": "int64",
    "year_min": "Int64",
    "year_max": "Int64",
    "year_missing": "int64",
    "campaigns": "int64",
}
_CODE_MODULES = (
    "phishing.py",
    "era.py",
    "sources/mail.py",
    "sources/_message.py",
    "sources/_headers.py",
    "sources/_mime.py",
    "sources/_text.py",
    "sources/_corpora.py",
)


@dataclass(frozen=True)
class CorpusSource:
    """One source of the corpus: a dataset's files and the labels they hold.

    ``files`` pairs each file with the one label it holds, or None when its messages name their
    own (Enron parts hold both legitimate mail and spam). ``label`` forces every message's label.
    ``headers`` says whether its messages keep their mail headers (text-only corpora do not).
    """

    name: str
    dataset: str
    files: tuple[tuple[str, str | None], ...]
    label: str | None = None
    headers: bool = True


SOURCES: tuple[CorpusSource, ...] = (
    CorpusSource(
        "nazario_2004_2005",
        "nazario_phishing_mbox",
        (
            ("phishing0.mbox.xz", PHISHING),
            ("phishing1.mbox.xz", PHISHING),
            ("20051114.mbox.xz", PHISHING),
        ),
        label=PHISHING,
    ),
    CorpusSource(
        "nazario_text",
        "nazario_phishing_mbox",
        (("phishing2_phishing3_extracted_text.tar.xz", PHISHING),),
        label=PHISHING,
        headers=False,
    ),
    CorpusSource(
        "nazario_2015_2022",
        "nazario_curated_csv_2015_2022",
        (("Nazario.csv.xz", PHISHING),),
        label=PHISHING,
        headers=False,
    ),
    CorpusSource(
        "phishing_pot",
        "phishing_pot_eml",
        (("phishing_pot_2019_2024.tar.xz", PHISHING),),
        label=PHISHING,
    ),
    CorpusSource(
        "spamassassin",
        "spamassassin_public_corpus",
        (
            ("easy_ham.tar.xz", LEGITIMATE),
            ("easy_ham_2.tar.xz", LEGITIMATE),
            ("hard_ham.tar.xz", LEGITIMATE),
            ("spam.tar.xz", SPAM),
            ("spam_2.tar.xz", SPAM),
        ),
    ),
    CorpusSource(
        "enron",
        "enron_spam_preprocessed",
        tuple((f"enron{part}.tar.xz", None) for part in range(1, 7)),
        headers=False,
    ),
)
"""Every source, in the order that decides which copy of a duplicate is kept."""


@dataclass
class PhishingCorpus:
    """The labelled corpus: one row per message, what parsing skipped, and counts per source.

    ``table`` columns: ``id``, ``source``, ``file``, ``origin`` (file and position), ``label``,
    ``year``, ``date`` (UTC), ``weekday``, ``hour`` and ``tz_offset_min`` (in the sender's
    zone), ``subject``, ``text`` (subject and body, whitespace-normalised, what a model reads),
    ``url_count``, ``attachment_count``, ``html``, the header signals (``reply_to_mismatch``,
    ``return_path_mismatch``, ``display_name_spoof``, ``spf``, ``dkim``, ``dmarc``,
    ``received_hops``), the header artefacts ``hdr_*`` (see :mod:`threattune.era`), and
    ``campaign``. ``counts`` has one row per source and label. ``findings`` holds every
    skipped message and one summary per source and kind of repair.
    """

    table: pd.DataFrame
    findings: list[Finding] = field(default_factory=list)
    counts: pd.DataFrame = field(default_factory=pd.DataFrame)
    campaign_stats: dict[str, Any] = field(default_factory=dict)
    positive: str = PHISHING

    def __len__(self) -> int:
        return len(self.table)

    @property
    def texts(self) -> list[str]:
        """The model text of every message."""
        return self.table["text"].tolist()

    @property
    def labels(self) -> np.ndarray:
        """The label of every message."""
        return self.table["label"].to_numpy(dtype=object)

    def is_positive(self) -> np.ndarray:
        """True for each phishing message."""
        return (self.table["label"] == self.positive).to_numpy()

    def split(
        self, test_fraction: float = 0.15, validation_fraction: float = 0.15, seed: int = 0
    ) -> Split:
        """Train, validation and test positions with no campaign in two of them."""
        return grouped_split(
            self.labels, self.table["campaign"].to_numpy(), test_fraction, validation_fraction, seed
        )

    def years(self) -> pd.DataFrame:
        """Messages per source, label and year (a missing year shown as -1)."""
        years = self.table["year"].fillna(-1).astype(int)
        return (
            self.table.assign(year=years)
            .groupby(["source", "label", "year"])
            .size()
            .rename("messages")
            .reset_index()
        )


def cache_dir() -> Path:
    """The cache folder: ``THREATTUNE_CACHE`` or ``~/.cache/threattune``."""
    value = os.environ.get(CACHE_ENV, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".cache" / "threattune"


class _ArtefactReader(MailReader):
    """A mail reader that also keeps each raw message's header artefacts, by source position.

    It hooks the step where the reader turns a parsed message into a :class:`Message`, the one
    place the parsed headers and MIME tree are still at hand.
    """

    def __init__(self) -> None:
        super().__init__()
        self.artefacts: dict[MailSource, dict[str, Any]] = {}

    def _build(self, parsed: EmailMessage, source: MailSource, label: str | None) -> Message:
        message = super()._build(parsed, source, label)
        self.artefacts[source] = header_artefacts(parsed)
        return message


def message_row(message: Message, artefacts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The table row of one parsed message (without id, source, label and campaign).

    >>> from threattune.sources.mail import parse_message
    >>> row = message_row(parse_message(b"Subject: Reset\\n\\nGo   to http://x.example/r"))
    >>> row["text"], row["url_count"]
    ('Reset Go to http://x.example/r', 1)
    """
    text = " ".join(f"{message.subject}\n{message.text}".split())[:MAX_TEXT_CHARS]
    signals = message.signals
    when = message.date
    offset = when.utcoffset() if when is not None else None
    row: dict[str, Any] = {
        "origin": str(message.source),
        "year": message.year,
        "date": pd.Timestamp(when).tz_convert("UTC") if when is not None else pd.NaT,
        "weekday": when.weekday() if when is not None else None,
        "hour": when.hour if when is not None else None,
        "tz_offset_min": int(offset.total_seconds() // 60) if offset is not None else None,
        "subject": message.subject,
        "text": text,
        "url_count": len(message.urls),
        "attachment_count": len(message.attachments),
        "html": message.html,
        "reply_to_mismatch": signals.reply_to_mismatch if signals else None,
        "return_path_mismatch": signals.return_path_mismatch if signals else None,
        "display_name_spoof": signals.display_name_spoof if signals else None,
        "spf": signals.spf if signals else None,
        "dkim": signals.dkim if signals else None,
        "dmarc": signals.dmarc if signals else None,
        "received_hops": signals.received_hops if signals else None,
        "hdr_present": bool(artefacts),
    }
    row.update(artefacts or {})
    return row


def _schema() -> dict[str, str]:
    schema = {
        "id": "string",
        "source": "string",
        "file": "string",
        "origin": "string",
        "label": "string",
        "year": "Int64",
        "weekday": "Int64",
        "hour": "Int64",
        "tz_offset_min": "Int64",
        "subject": "string",
        "text": "string",
        "url_count": "int64",
        "attachment_count": "int64",
        "html": "bool",
        "reply_to_mismatch": "boolean",
        "return_path_mismatch": "boolean",
        "display_name_spoof": "boolean",
        "spf": "string",
        "dkim": "string",
        "dmarc": "string",
        "received_hops": "Int64",
        "hdr_present": "bool",
    }
    for name in ERA_NUMERIC:
        if name.startswith("hdr_") and name not in schema:
            schema[name] = "Int64" if name in _COUNT_ARTEFACTS else "boolean"
    schema.update(dict.fromkeys(ERA_CATEGORICAL, "string"))
    return schema


def _typed(rows: list[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(rows)
    schema = _schema()
    for name, kind in schema.items():
        if name not in frame.columns:
            frame[name] = None
        frame[name] = frame[name].astype(kind)
    dates = frame["date"] if "date" in frame.columns else pd.Series(pd.NaT, index=frame.index)
    frame["date"] = pd.to_datetime(dates, utc=True)
    return frame[[*schema, "date"]]


@dataclass(frozen=True)
class _FileJob:
    source: str
    dataset: str
    relative: str
    path: str
    label: str | None
    forced: str | None
    limit: int | None
    table_path: str
    findings_path: str


def _code_version() -> str:
    digest = hashlib.sha256(f"{threattune.__version__}:{_FORMAT}".encode())
    root = Path(threattune.__file__).parent
    for module in _CODE_MODULES:
        digest.update((root / module).read_bytes())
    return digest.hexdigest()


def _finding_from_dict(stored: dict[str, Any]) -> Finding:
    return Finding(
        stored["kind"],
        Severity[str(stored["severity"]).upper()],
        stored["subject"],
        stored["message"],
        stored.get("evidence") or {},
    )


def _parse_file(job: _FileJob) -> tuple[str, str]:
    """Parse one file into its cached table and findings; return their paths."""
    reader = _ArtefactReader()
    rows: list[dict[str, Any]] = []
    dropped: list[Finding] = []
    messages: Iterator[Message] = reader.read(job.path, label=job.label)
    if job.limit is not None:
        messages = islice(messages, job.limit)
    bar = tqdm(messages, desc=job.relative, unit=" msg", disable=None, leave=False, mininterval=2)
    for message in bar:
        label = job.forced or _READER_LABELS.get(message.label or "", None)
        artefacts = reader.artefacts.pop(message.source, None)
        if label is None:
            dropped.append(_drop(message, None, "unlabelled-message", "no label in its naming"))
            continue
        row = message_row(message, artefacts)
        if not row["text"]:
            dropped.append(_drop(message, label, "no-text", "no subject or body text"))
            continue
        row.update(source=job.source, file=job.relative, label=label)
        rows.append(row)

    table = _typed(rows)
    _write_atomic(Path(job.table_path), lambda path: table.to_parquet(path, index=False))
    findings = [finding.to_dict() for finding in (*reader.issues, *dropped)]
    text = json.dumps(findings, default=str)
    _write_atomic(Path(job.findings_path), lambda path: path.write_text(text, encoding="utf-8"))
    logger.info("%s: %d messages, %d findings", job.relative, len(rows), len(findings))
    return job.table_path, job.findings_path


def _drop(message: Message, label: str | None, kind: str, why: str) -> Finding:
    evidence = {**message.source.evidence(), "label": label}
    return Finding(kind, Severity.LOW, str(message.source), why, evidence)


def _write_atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    write(partial)
    partial.replace(path)


def _jobs(
    sources: Sequence[CorpusSource],
    include_spam: bool,
    limit: int | None,
    version: str,
    folder: Path,
) -> tuple[list[_FileJob], str]:
    jobs = []
    key = hashlib.sha256(version.encode())
    for source in sources:
        files = [(f, label) for f, label in source.files if include_spam or label != SPAM]
        for rank, (relative, label) in enumerate(files):
            per_file = None if limit is None else limit // len(files) + (rank < limit % len(files))
            path = dataset_path(source.dataset, relative)
            digest = sha256_file(path)
            expected = get_dataset(source.dataset).file(relative).sha256
            if digest != expected:
                raise DatasetError(
                    f"file of dataset '{source.dataset}' fails its checksum",
                    path=path,
                    field="sha256",
                    expected=expected,
                    found=digest,
                    fix="get the file again from the dataset's publisher",
                )
            file_key = hashlib.sha256(f"{version}:{digest}:{per_file}".encode()).hexdigest()[:24]
            key.update(f"{source.name}:{relative}:{file_key}".encode())
            stem = f"{source.name}--{relative.split('.')[0]}--{file_key}"
            jobs.append(
                _FileJob(
                    source=source.name,
                    dataset=source.dataset,
                    relative=relative,
                    path=str(path),
                    label=label,
                    forced=source.label,
                    limit=per_file,
                    table_path=str(folder / f"{stem}.parquet"),
                    findings_path=str(folder / f"{stem}.findings.json"),
                )
            )
    return jobs, key.hexdigest()[:24]


def _parse_all(jobs: list[_FileJob], workers: int) -> None:
    missing = [
        job
        for job in jobs
        if not (Path(job.table_path).is_file() and Path(job.findings_path).is_file())
    ]
    if not missing:
        return
    logger.info("parsing %d of %d files (%d workers)", len(missing), len(jobs), workers)
    largest_first = sorted(missing, key=lambda job: -Path(job.path).stat().st_size)
    if workers <= 1 or len(missing) == 1:
        for job in largest_first:
            _parse_file(job)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(missing))) as pool:
        for _ in tqdm(
            pool.map(_parse_file, largest_first),
            total=len(missing),
            desc="mail files",
            disable=None,
        ):
            pass


def build_corpus(
    *,
    include_spam: bool = False,
    max_per_source: int | None = None,
    seed: int = 0,
    sources: Sequence[str] | None = None,
    workers: int | None = None,
    threshold: float = 0.8,
    use_cache: bool = True,
) -> PhishingCorpus:
    """Parse, label, deduplicate and group the phishing corpus.

    Parameters
    ----------
    include_spam:
        Keep spam as a third class; by default spam files are not read and spam is dropped.
    max_per_source:
        Read at most this many messages per source, spread over its files (for quick runs).
    seed:
        Seed of the campaign MinHash.
    sources:
        Names from :data:`SOURCES` to read; all by default.
    workers:
        Processes parsing files at once; by default one per CPU, at most four.
    threshold:
        Near-duplicate Jaccard threshold of the campaign grouping.
    use_cache:
        Read and write the cached tables; False parses again and caches nothing new.
    """
    started = time.perf_counter()
    chosen = _chosen_sources(sources)
    with tempfile.TemporaryDirectory(prefix="threattune-corpus-") as scratch:
        folder = cache_dir() / "phishing" if use_cache else Path(scratch)
        jobs, files_key = _jobs(chosen, include_spam, max_per_source, _code_version(), folder)
        grouping = hashlib.sha256(Path(campaigns_file).read_bytes()).hexdigest()
        settings = f"{files_key}:{grouping}:{include_spam}:{seed}:{threshold}"
        corpus_key = hashlib.sha256(settings.encode()).hexdigest()[:24]
        corpus_path = folder / f"corpus--{corpus_key}.parquet"
        meta_path = corpus_path.with_suffix(".json")
        if use_cache and corpus_path.is_file() and meta_path.is_file():
            corpus = _load_corpus(corpus_path, meta_path)
            logger.info("corpus of %d messages read from %s", len(corpus), corpus_path)
            return corpus

        workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        _parse_all(jobs, workers)
        table, findings = _read_jobs(jobs, include_spam)
    parsed = table.groupby(["source", "label"]).size()
    table, duplicate_counts, conflict_findings = _deduplicate(table)
    findings.extend(conflict_findings)

    grouped = group_campaigns(table["text"].tolist(), threshold=threshold, seed=seed)
    table["campaign"] = grouped.ids
    table["id"] = _ids(table)
    counts = _counts(table, parsed, duplicate_counts, findings)
    findings.extend(_campaign_findings(table))
    corpus = PhishingCorpus(table, findings, counts, grouped.stats)
    logger.info(
        "corpus of %d messages from %d sources built in %.1f s",
        len(table),
        table["source"].nunique(),
        time.perf_counter() - started,
    )
    if use_cache:
        _save_corpus(corpus, corpus_path, meta_path)
    return corpus


def _chosen_sources(names: Sequence[str] | None) -> list[CorpusSource]:
    if names is None:
        return list(SOURCES)
    known = {source.name: source for source in SOURCES}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(
            f"unknown corpus source {unknown[0]!r}",
            field="sources",
            expected="one of: " + ", ".join(known),
            found=", ".join(unknown),
        )
    return [source for source in SOURCES if source.name in set(names)]


def _read_jobs(jobs: list[_FileJob], include_spam: bool) -> tuple[pd.DataFrame, list[Finding]]:
    tables, findings = [], []
    for job in jobs:
        table = pd.read_parquet(job.table_path)
        tables.append(table if include_spam else table[table["label"] != SPAM])
        stored = json.loads(Path(job.findings_path).read_text(encoding="utf-8"))
        for finding in map(_finding_from_dict, stored):
            label = finding.evidence.get("label") or job.forced or job.label
            if include_spam or label != SPAM:
                findings.append(_with_source(finding, job.source, label))
    table = _typed(pd.concat(tables, ignore_index=True))
    return table, _summarised(findings)


def _with_source(finding: Finding, source: str, label: str | None) -> Finding:
    evidence = {**finding.evidence, "source": source, "label": label}
    return Finding(finding.kind, finding.severity, finding.subject, finding.message, evidence)


def _summarised(findings: list[Finding]) -> list[Finding]:
    """Skipped messages one by one; repairs as one finding per source and kind."""
    kept = [finding for finding in findings if finding.kind in _SKIP_KINDS]
    repairs: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings:
        if finding.kind not in _SKIP_KINDS:
            repairs.setdefault((finding.evidence["source"], finding.kind), []).append(finding)
    for (source, kind), group in sorted(repairs.items()):
        kept.append(
            Finding(
                kind,
                max(finding.severity for finding in group),
                source,
                f"{len(group)} messages repaired or cut while parsing ({kind})",
                {"messages": len(group), "first": group[0].subject},
            )
        )
    return kept


def _deduplicate(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series, list[Finding]]:
    keys = (
        table["text"]
        .str.lower()
        .map(lambda text: hashlib.blake2b(text.encode(), digest_size=12).hexdigest())
    )
    labels_per_key = table.groupby(keys)["label"].nunique()
    conflicted = keys.map(labels_per_key).to_numpy() > 1
    findings = []
    if conflicted.any():
        examples = table.loc[conflicted, "origin"].head(5).tolist()
        findings.append(
            Finding(
                "label-conflict",
                Severity.MEDIUM,
                "corpus",
                f"{int(conflicted.sum())} messages share their exact text with a message of "
                "another label; all copies dropped",
                {"messages": int(conflicted.sum()), "examples": examples},
            )
        )
    duplicate = keys.duplicated().to_numpy() & ~conflicted
    removed = table[duplicate | conflicted]
    counts = removed.groupby(["source", "label"]).size()
    logger.info(
        "dropped %d exact duplicates and %d label conflicts",
        int(duplicate.sum()),
        int(conflicted.sum()),
    )
    return table[~(duplicate | conflicted)].reset_index(drop=True), counts, findings


def _ids(table: pd.DataFrame) -> pd.Series:
    ordinal = table.groupby("source").cumcount()
    return (table["source"] + "-" + ordinal.map("{:06d}".format)).astype("string")


def _counts(
    table: pd.DataFrame, parsed: pd.Series, removed: pd.Series, findings: list[Finding]
) -> pd.DataFrame:
    skipped: dict[tuple[str, str], int] = {}
    for finding in findings:
        if finding.kind in _SKIP_KINDS:
            key = (str(finding.evidence["source"]), str(finding.evidence["label"] or "unknown"))
            skipped[key] = skipped.get(key, 0) + 1

    kept = table.groupby(["source", "label"]).agg(
        kept=("id", "size"),
        year_min=("year", "min"),
        year_max=("year", "max"),
        year_missing=("year", lambda years: int(years.isna().sum())),
        campaigns=("campaign", "nunique"),
    )
    index = sorted(set(kept.index) | set(parsed.index) | set(skipped))
    counts = pd.DataFrame(index=pd.MultiIndex.from_tuples(index, names=["source", "label"]))
    counts["parsed"] = parsed.reindex(counts.index, fill_value=0)
    counts["skipped"] = pd.Series(skipped, dtype="int64").reindex(counts.index, fill_value=0)
    counts["duplicates_dropped"] = removed.reindex(counts.index, fill_value=0)
    counts = counts.join(kept).fillna({"kept": 0, "campaigns": 0, "year_missing": 0})
    counts = counts.astype(_COUNT_TYPES)
    order = {source.name: rank for rank, source in enumerate(SOURCES)}
    return counts.sort_index(key=lambda level: level.map(lambda v: order.get(v, v)))


def _campaign_findings(table: pd.DataFrame) -> list[Finding]:
    labels = table.groupby("campaign")["label"].nunique()
    mixed = labels[labels > 1]
    if mixed.empty:
        return []
    messages = int(table["campaign"].isin(mixed.index).sum())
    return [
        Finding(
            "mixed-label-campaign",
            Severity.MEDIUM,
            "campaigns",
            f"{len(mixed)} campaigns ({messages} messages) hold more than one label; they stay "
            "on one side of every split, counted under their most common label",
            {"campaigns": len(mixed), "messages": messages},
        )
    ]


def _save_corpus(corpus: PhishingCorpus, table_path: Path, meta_path: Path) -> None:
    _write_atomic(table_path, lambda path: corpus.table.to_parquet(path, index=False))
    meta = {
        "findings": [finding.to_dict() for finding in corpus.findings],
        "counts": corpus.counts.reset_index().to_dict(orient="records"),
        "campaign_stats": corpus.campaign_stats,
    }
    text = json.dumps(meta, default=str)
    _write_atomic(meta_path, lambda path: path.write_text(text, encoding="utf-8"))


def _load_corpus(table_path: Path, meta_path: Path) -> PhishingCorpus:
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    counts = pd.DataFrame.from_records(meta["counts"]).set_index(["source", "label"])
    counts = counts.astype(_COUNT_TYPES)
    return PhishingCorpus(
        table=pd.read_parquet(table_path),
        findings=[_finding_from_dict(stored) for stored in meta["findings"]],
        counts=counts,
        campaign_stats=meta["campaign_stats"],
    )


def leave_one_source_out(
    corpus: PhishingCorpus,
    source: str,
    *,
    test_fraction: float = 0.15,
    validation_fraction: float = 0.15,
    seed: int = 0,
) -> Split:
    """A split that holds one phishing source out of training entirely.

    Test is every message of ``source`` plus the non-phishing messages of the usual grouped
    test split; train and validation are the usual ones without ``source``. Messages of other
    sources in a campaign that ``source`` shares are dropped from train and validation, so no
    copy of a held-out lure is learnt.

    >>> split = leave_one_source_out(corpus, "phishing_pot")  # doctest: +SKIP
    """
    table = corpus.table
    held = (table["source"] == source).to_numpy()
    if not held.any():
        raise ConfigError(
            f"no message of source {source!r} in the corpus",
            field="source",
            expected="one of: " + ", ".join(sorted(table["source"].unique())),
            found=source,
        )
    if not (table.loc[held, "label"] == corpus.positive).all():
        raise ConfigError(
            f"source {source!r} is not a phishing source",
            field="source",
            expected="a source whose messages are all phishing",
            found=", ".join(sorted(table.loc[held, "label"].unique())),
        )

    base = corpus.split(test_fraction, validation_fraction, seed)
    campaigns = table["campaign"].to_numpy()
    touched = np.isin(campaigns, np.unique(campaigns[held]))
    positive = corpus.is_positive()
    test_others = base.test[~positive[base.test] & ~touched[base.test]]
    split = Split(
        train=base.train[~touched[base.train]],
        validation=base.validation[~touched[base.validation]],
        test=np.sort(np.concatenate([np.flatnonzero(held), test_others])),
    )
    split.stats = {
        "held_out": source,
        "held_out_messages": int(held.sum()),
        "dropped_shared_campaign": int((touched & ~held).sum()),
        **split_stats(split, corpus.labels, campaigns),
    }
    return split
