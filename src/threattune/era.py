"""The era confound: how much a model can tell phishing from legitimate mail without the lure.

Public phishing corpora come from other years and other mailboxes than public legitimate mail:
Enron and SpamAssassin ham are from 1999-2002, Phishing Pot from 2022-2024, and each collection
carries its own header artefacts (an Exchange Online hop stamp, a mailing-list footer header, a
mail client's status flags). A text model can score well by learning when and where a message
was collected rather than what it asks the reader to do.

This module measures that. It trains a classifier on **only** date-derived and header-artefact
features (year, weekday, hour, time zone, which headers are present, Received hop count,
charset, MIME structure, Message-ID shape), never on the subject or body, with the same
campaign-grouped split as the text model, and reports its F1 and ROC AUC on test; a second
model sees the header artefacts alone, without any date. It also compares the text baseline's
F1 on all test messages with its F1 on the year-matched subset (test messages from years in
which both phishing and other mail exist) and on an era window (years with both classes within
a few years of them), for corpora where no single year holds both.

>>> features = era_features(pd.DataFrame({"year": [2005], "hdr_present": [False]}))
>>> int(features.loc[0, "year"]), bool(features["hdr_x_mailer"].isna().all())
(2005, True)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from email.message import Message as EmailMessage
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from threattune.findings import Finding, Severity
from threattune.sources._headers import header_value

if TYPE_CHECKING:
    from threattune.campaigns import Split
    from threattune.models.text_baseline import TextBaseline
    from threattune.phishing import PhishingCorpus

__all__ = [
    "DATE_FEATURES",
    "ERA_CATEGORICAL",
    "ERA_NUMERIC",
    "EraResult",
    "YearSubset",
    "era_features",
    "header_artefacts",
    "measure_era",
    "year_matched_years",
]

logger = logging.getLogger(__name__)

_HEADER_FLAGS: dict[str, tuple[str, ...]] = {
    "x_mailer": ("x-mailer",),
    "user_agent": ("user-agent",),
    "dkim_signature": ("dkim-signature",),
    "arc": ("arc-",),
    "authentication_results": ("authentication-results",),
    "received_spf": ("received-spf",),
    "exchange": ("x-ms-", "x-microsoft-", "x-forefront-", "x-eop"),
    "mailing_list": ("list-", "x-beenthere", "x-mailman-", "precedence"),
    "spam_filter": ("x-spam-", "x-dspam-", "x-virus-", "x-antivirus"),
    "mailbox_status": ("status", "x-status", "x-uid", "x-keywords"),
    "delivered_to": ("delivered-to", "x-original-to"),
    "originating_ip": ("x-originating-ip", "x-sender-ip"),
    "priority": ("x-priority", "x-msmail-priority"),
    "mimeole": ("x-mimeole",),
    "thread_index": ("thread-index", "thread-topic"),
    "content_language": ("content-language",),
    "mime_version": ("mime-version",),
    "reply_chain": ("in-reply-to", "references"),
    "feedback_id": ("feedback-id",),
    "google": ("x-google-", "x-gm-"),
}
_PREFIXES = frozenset({"arc-", "x-ms-", "x-microsoft-", "x-forefront-", "x-eop", "list-"})
_PREFIXES |= frozenset({"x-mailman-", "x-spam-", "x-dspam-", "x-virus-", "x-google-", "x-gm-"})
_MAX_PARTS = 200
_LOPSIDED = 0.05
_SHAPE_RUNS = re.compile(r"(.)\1+")

ERA_NUMERIC: tuple[str, ...] = (
    "year",
    "weekday",
    "hour",
    "tz_offset_min",
    "hdr_present",
    "hdr_count",
    "hdr_x_count",
    "hdr_received_hops",
    "hdr_mime_parts",
    "hdr_html_part",
    "hdr_message_id_length",
    "hdr_message_id_labels",
    "attachment_count",
    *(f"hdr_{name}" for name in _HEADER_FLAGS),
)
"""Numeric and yes/no features of the era model (missing for text-only sources)."""

DATE_FEATURES: tuple[str, ...] = ("year", "weekday", "hour", "tz_offset_min")
"""The date-derived features, left out of the header-artefacts-only model."""

ERA_CATEGORICAL: tuple[str, ...] = (
    "hdr_content_type",
    "hdr_charset",
    "hdr_transfer_encoding",
    "hdr_message_id_shape",
)
"""Categorical features of the era model."""

_HEADER_ONLY = frozenset(
    {"hdr_count", "hdr_x_count", "hdr_received_hops", "hdr_mime_parts", "hdr_html_part"}
    | {"hdr_message_id_length", "hdr_message_id_labels", "attachment_count"}
    | {f"hdr_{name}" for name in _HEADER_FLAGS}
)


def header_artefacts(parsed: EmailMessage) -> dict[str, Any]:
    """Header and MIME-structure artefacts of one parsed message; the body is not read.

    Every value comes from header fields and part content types, so the features say when and
    through what software a message travelled, never what it says.

    >>> from email import message_from_bytes
    >>> raw = b"X-Mailer: Outlook\\nMessage-ID: <123.ABC@mail.example>\\nSubject: hi\\n\\nbody"
    >>> artefacts = header_artefacts(message_from_bytes(raw))
    >>> artefacts["hdr_x_mailer"], artefacts["hdr_message_id_shape"]
    (True, '9.A@')
    """
    names = [str(key).lower() for key in parsed.keys()]
    present = set(names)
    artefacts: dict[str, Any] = {
        "hdr_present": True,
        "hdr_count": len(names),
        "hdr_x_count": sum(name.startswith("x-") for name in names),
        "hdr_received_hops": names.count("received"),
    }
    for flag, markers in _HEADER_FLAGS.items():
        artefacts[f"hdr_{flag}"] = any(
            any(name.startswith(marker) for name in present)
            if marker in _PREFIXES
            else marker in present
            for marker in markers
        )
    artefacts.update(_mime_structure(parsed))
    artefacts.update(_message_id_shape(header_value(parsed, "Message-ID")))
    return artefacts


def _mime_structure(parsed: EmailMessage) -> dict[str, Any]:
    content_type, charset, encoding = _content_type(parsed), None, None
    parts = html = 0
    try:
        for part in parsed.walk():
            parts += 1
            kind = _content_type(part)
            html = html or kind == "text/html"
            if charset is None and kind.startswith("text/"):
                charset = _charset(part)
                encoding = header_value(part, "Content-Transfer-Encoding").lower() or "none"
            if parts >= _MAX_PARTS:
                break
    except Exception as exc:  # noqa: BLE001 - a broken MIME tree is itself an artefact
        logger.debug("MIME walk stopped: %r", exc)
    return {
        "hdr_content_type": content_type,
        "hdr_charset": charset or "none",
        "hdr_transfer_encoding": (encoding or "none")[:24],
        "hdr_mime_parts": parts,
        "hdr_html_part": bool(html),
    }


def _content_type(part: EmailMessage) -> str:
    value = header_value(part, "Content-Type").split(";", 1)[0].strip().lower()
    return value[:40] if "/" in value else "none"


def _charset(part: EmailMessage) -> str | None:
    try:
        value = part.get_param("charset", header="content-type")
    except Exception:  # noqa: BLE001 - an unreadable parameter counts as none
        return None
    if isinstance(value, tuple):
        value = value[2]
    return str(value).strip().strip("\"'").lower()[:24] if value else None


def _message_id_shape(value: str) -> dict[str, Any]:
    """The shape of a Message-ID: ``<20041127192251.E0F5@mail.example>`` gives ``9.A9A9@``."""
    value = value.strip().strip("<>")
    if not value:
        return {"hdr_message_id_shape": "none", "hdr_message_id_length": 0}
    left, _, domain = value.rpartition("@") if "@" in value else (value, "", "")
    shape = re.sub(r"[A-Z]", "A", re.sub(r"[a-z]", "a", re.sub(r"\d", "9", left)))
    shape = _SHAPE_RUNS.sub(r"\1", shape)
    return {
        "hdr_message_id_shape": shape[:12] + ("@" if domain else ""),
        "hdr_message_id_length": len(value),
        "hdr_message_id_labels": domain.count(".") + 1 if domain else 0,
    }


def era_features(table: pd.DataFrame) -> pd.DataFrame:
    """The era model's features of each message, read from date and header columns only.

    Columns missing from ``table`` come out empty; subject, body and URL columns are never
    read. Header features of text-only sources (no headers kept) are missing, not false.
    """
    features = pd.DataFrame(index=table.index)
    has_headers = _column(table, "hdr_present").fillna(False).astype(bool)
    for name in ERA_NUMERIC:
        values = pd.to_numeric(_column(table, name), errors="coerce").astype("float64")
        if name in _HEADER_ONLY:
            values = values.where(has_headers)
        features[name] = values
    features["hdr_present"] = has_headers.astype("float64")
    for name in ERA_CATEGORICAL:
        values = _column(table, name).astype("object")
        features[name] = values.where(has_headers & values.notna(), "absent").astype(str)
    return features


def _column(table: pd.DataFrame, name: str) -> pd.Series:
    if name in table.columns:
        return table[name]
    return pd.Series(np.nan, index=table.index, dtype="object")


def year_matched_years(
    years: Sequence[float] | np.ndarray,
    positive: Sequence[bool] | np.ndarray,
    min_each: int = 20,
    window: int = 0,
) -> list[int]:
    """Years with at least ``min_each`` messages of each class within ``window`` years of them.

    With ``window=0`` a year counts when it holds both phishing and other mail itself.

    >>> year_matched_years([2002] * 3 + [2004] * 3, [False] * 3 + [True] * 3, 2, window=1)
    []
    >>> year_matched_years([2002] * 3 + [2004] * 3, [False] * 3 + [True] * 3, 2, window=2)
    [2002, 2004]
    """
    frame = pd.DataFrame({"year": np.asarray(years, float), "positive": np.asarray(positive)})
    counts = frame.dropna().groupby(["year", "positive"]).size().unstack(fill_value=0)
    counts = counts.reindex(columns=[False, True], fill_value=0)
    matched = []
    for year in counts.index:
        near = counts[(counts.index >= year - window) & (counts.index <= year + window)].sum()
        if near[True] >= min_each and near[False] >= min_each:
            matched.append(int(year))
    return matched


@dataclass
class YearSubset:
    """Test messages from years where both classes exist, and how each model does on them.

    ``window`` is how many years apart phishing and other mail may be for a year to count;
    scores are None when the subset lacks one of the classes.
    """

    window: int
    years: list[int]
    messages: int
    phishing: int
    baseline_f1: float | None
    era_f1: float | None


@dataclass
class EraResult:
    """What the era-only model and the year-matched comparison found.

    ``era_*`` scores are the era-only model's on the test split (threshold 0.5), ``headers_*``
    those of the same model without the date features, and ``baseline_f1_all`` the text
    baseline's. ``year_matched`` restricts test to years that hold both classes; ``era_window``
    to years with both classes within a few years. ``importance`` ranks era features by how
    much test ROC AUC drops when each is shuffled.
    """

    era_f1: float
    era_auc: float
    era_precision: float
    era_recall: float
    headers_f1: float
    headers_auc: float
    baseline_f1_all: float | None
    test_messages: int
    year_matched: YearSubset
    era_window: YearSubset
    importance: list[tuple[str, float]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["findings"] = [finding.to_dict() for finding in self.findings]
        return out


def _era_model(seed: int, numeric: Sequence[str] = ERA_NUMERIC) -> Pipeline:
    encode = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=-1,
        encoded_missing_value=-1,
        min_frequency=5,
        max_categories=60,
    )
    columns = ColumnTransformer(
        [
            ("categorical", encode, list(ERA_CATEGORICAL)),
            ("numeric", "passthrough", list(numeric)),
        ]
    )
    categorical = list(range(len(ERA_CATEGORICAL)))
    model = HistGradientBoostingClassifier(
        max_iter=200,
        learning_rate=0.1,
        categorical_features=categorical,
        class_weight="balanced",
        random_state=seed,
    )
    return Pipeline([("columns", columns), ("model", model)])


def _auc(truth: np.ndarray, scores: np.ndarray) -> float:
    if truth.all() or not truth.any():
        return float("nan")
    return float(roc_auc_score(truth, scores))


def _f1(truth: np.ndarray, predicted: np.ndarray) -> float | None:
    if len(truth) == 0 or truth.all() or not truth.any():
        return None
    return float(f1_score(truth, predicted, zero_division=0))


def measure_era(
    corpus: PhishingCorpus,
    split: Split | None = None,
    *,
    baseline: TextBaseline | None = None,
    baseline_proba: np.ndarray | None = None,
    min_each: int = 20,
    window: int = 3,
    high_f1: float = 0.9,
    medium_f1: float = 0.75,
    seed: int = 0,
) -> EraResult:
    """Train the era-only model on the split's train part and compare it with the text model.

    ``split`` defaults to ``corpus.split(seed=seed)``. Give ``baseline_proba`` (the text
    model's phishing probability for each test message, in ``split.test`` order) or a fitted
    ``baseline``; with neither, only the era-only model is measured. A year counts as matched
    with ``min_each`` messages of each class in it, or within ``window`` years of it for the
    era window.

    >>> result = measure_era(build_corpus(max_per_source=200))  # doctest: +SKIP
    >>> result.era_f1, [str(f.severity) for f in result.findings]  # doctest: +SKIP
    """
    split = split if split is not None else corpus.split(seed=seed)
    table = corpus.table
    features = era_features(table)
    positive = corpus.is_positive()
    train = np.concatenate([split.train, split.validation])

    model = _era_model(seed).fit(features.iloc[train], positive[train])
    test_truth = positive[split.test]
    test_features = features.iloc[split.test]
    scores = model.predict_proba(test_features)[:, 1]
    predicted = scores >= 0.5
    undated = [name for name in ERA_NUMERIC if name not in DATE_FEATURES]
    headers = _era_model(seed, undated).fit(features.iloc[train], positive[train])
    header_scores = headers.predict_proba(test_features)[:, 1]

    if baseline_proba is None and baseline is not None:
        baseline_proba = baseline.positive_proba(table["text"].iloc[split.test].tolist())
    base_predicted = None if baseline_proba is None else np.asarray(baseline_proba) >= 0.5
    years = table["year"].to_numpy(dtype=float)
    subsets = []
    for width in (0, window):
        matched_years = year_matched_years(years, positive, min_each, width)
        inside = np.isin(years[split.test], matched_years)
        subsets.append(
            YearSubset(
                window=width,
                years=matched_years,
                messages=int(inside.sum()),
                phishing=int(test_truth[inside].sum()),
                baseline_f1=None
                if base_predicted is None
                else _f1(test_truth[inside], base_predicted[inside]),
                era_f1=_f1(test_truth[inside], predicted[inside]),
            )
        )

    result = EraResult(
        era_f1=float(f1_score(test_truth, predicted, zero_division=0)),
        era_auc=_auc(test_truth, scores),
        era_precision=float(precision_score(test_truth, predicted, zero_division=0)),
        era_recall=float(recall_score(test_truth, predicted, zero_division=0)),
        headers_f1=float(f1_score(test_truth, header_scores >= 0.5, zero_division=0)),
        headers_auc=_auc(test_truth, header_scores),
        baseline_f1_all=None if base_predicted is None else _f1(test_truth, base_predicted),
        test_messages=int(len(split.test)),
        year_matched=subsets[0],
        era_window=subsets[1],
        importance=_importance(model, test_features, test_truth, seed),
    )
    result.findings = _findings(result, corpus, high_f1, medium_f1)
    for finding in result.findings:
        logger.info("%s: %s", finding.severity, finding.message)
    return result


def _importance(
    model: Pipeline, features: pd.DataFrame, truth: np.ndarray, seed: int, top: int = 10
) -> list[tuple[str, float]]:
    if truth.all() or not truth.any():
        return []
    sample = features
    if len(features) > 4000:
        sample = features.sample(4000, random_state=seed)
        truth = truth[features.index.get_indexer(sample.index)]
    drops = permutation_importance(
        model, sample, truth, scoring="roc_auc", n_repeats=3, random_state=seed
    )
    ranked = sorted(
        zip(sample.columns, drops.importances_mean, strict=True), key=lambda item: -item[1]
    )
    return [(str(name), round(float(drop), 4)) for name, drop in ranked[:top]]


def _findings(
    result: EraResult, corpus: PhishingCorpus, high_f1: float, medium_f1: float
) -> list[Finding]:
    findings = []
    evidence = {"era_f1": round(result.era_f1, 4), "era_auc": round(result.era_auc, 4)}
    top = ", ".join(name for name, _ in result.importance[:3])
    if result.era_f1 >= high_f1:
        severity = Severity.HIGH
    elif result.era_f1 >= medium_f1:
        severity = Severity.MEDIUM
    else:
        severity = Severity.INFO
    findings.append(
        Finding(
            "era-confound",
            severity,
            "era-only model",
            f"a model that sees only dates and header artefacts reaches test F1 "
            f"{result.era_f1:.3f} (AUC {result.era_auc:.3f}; {result.headers_f1:.3f} on header "
            f"artefacts alone); strongest: {top or 'none'}",
            {
                **evidence,
                "headers_f1": round(result.headers_f1, 4),
                "importance": result.importance,
            },
        )
    )

    dated = pd.DataFrame({"year": corpus.table["year"], "positive": corpus.is_positive()})
    dated = dated.dropna()
    share = dated.groupby("year")["positive"].transform("mean")
    lopsided = (share >= 1 - _LOPSIDED) | (share <= _LOPSIDED)
    if len(dated) and lopsided.mean() > 0.5:
        years = sorted(int(year) for year in dated.loc[lopsided, "year"].unique())
        findings.append(
            Finding(
                "single-class-years",
                Severity.MEDIUM,
                "corpus years",
                f"{lopsided.mean():.0%} of dated messages come from years where at least "
                f"{1 - _LOPSIDED:.0%} share one label, so the year alone nearly decides them",
                {"share": round(float(lopsided.mean()), 4), "years": years},
            )
        )
    for subset in (result.year_matched, result.era_window):
        findings.append(_subset_finding(result.baseline_f1_all, subset))
    return findings


def _subset_finding(baseline_f1: float | None, subset: YearSubset) -> Finding:
    what = "the same year" if subset.window == 0 else f"within {subset.window} years"
    evidence = asdict(subset)
    if subset.era_f1 is None:
        return Finding(
            "no-year-matched-test",
            Severity.MEDIUM,
            f"years matched {what}",
            f"no test subset holds phishing and other mail from {what}; the era cannot be "
            "told apart from the lure there",
            evidence,
        )
    if baseline_f1 is None or subset.baseline_f1 is None:
        return Finding(
            "year-matched-subset",
            Severity.INFO,
            f"years matched {what}",
            f"era-only F1 {subset.era_f1:.3f} on the {subset.messages} test messages from {what}",
            evidence,
        )
    drop = baseline_f1 - subset.baseline_f1
    return Finding(
        "year-matched-gap",
        Severity.MEDIUM if drop > 0.05 else Severity.INFO,
        f"years matched {what}",
        f"text baseline F1 {baseline_f1:.3f} on all test messages, {subset.baseline_f1:.3f} on "
        f"the {subset.messages} from {what} (era-only F1 there {subset.era_f1:.3f})",
        {**evidence, "drop": round(drop, 4)},
    )
