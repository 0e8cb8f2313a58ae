"""False-positive triage: group a model's false positives by root cause.

Analysts drown in false positives that share a cause: one backup job, one scanner the SOC runs
itself, one misconfigured service. Triage finds those groups so that each can be fixed once.
Groups come from two sources:

* clusters over the alerts' features (numbers log-scaled and standardised, categories one-hot)
  or, for mail, over the model's text embeddings, the number of clusters chosen by silhouette
  on a sample, and
* the analysts' root-cause categories, where verdicts carry them.

For each group the report gives its size and share of the false positives, the features that
set it apart from the true positives (standardised mean difference and Kolmogorov-Smirnov
statistic for numbers, the most over-represented values for categories, and for mail the words
found in more of its messages than of the true positives) and example alert ids.

:func:`verdicts_from_labels` turns the alerts on a labelled segment into verdicts, so that the
same protocol runs on public datasets that no analyst has judged.

>>> import pandas as pd
>>> alerts = pd.DataFrame({"alert_id": ["a1", "a2"], "service": ["http", "ftp"]})
>>> found = verdicts_from_labels(alerts, ["normal", "DoS"], "normal", model_version="m/1",
...                              root_cause_columns=["service"])
>>> [(v.verdict, v.root_cause) for v in found]
[('false-positive', 'http'), ('true-positive', None)]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from threattune.errors import DataError
from threattune.findings import Finding, Severity
from threattune.verdicts import (
    BENIGN_TRUE_POSITIVE,
    FALSE_POSITIVE,
    TRUE_POSITIVE,
    Verdict,
    normalise_verdict,
)

logger = logging.getLogger(__name__)

__all__ = [
    "LABEL_ANALYST",
    "DistinguishingFeature",
    "FalsePositiveGroup",
    "TriageReport",
    "encode_for_clustering",
    "triage_false_positives",
    "verdicts_from_labels",
]

LABEL_ANALYST = "ground-truth-labels"
_SILHOUETTE_SAMPLE = 2_000
_TOP_CATEGORIES = 20
_EXAMPLES = 5
_MAX_TERMS = 20_000
_MIN_TERM_SHARE = 0.2
"""A word must be in at least this share of a group's messages to describe it."""


# --- verdicts from labels ---------------------------------------------------------------------


def verdicts_from_labels(
    alerts: pd.DataFrame,
    true_labels: Sequence[Any] | np.ndarray | pd.Series,
    benign_class: str,
    *,
    model_version: str,
    root_cause_columns: Sequence[str] = (),
    cluster_ids: Sequence[Any] | np.ndarray | None = None,
    analyst: str = LABEL_ANALYST,
    start: datetime | None = None,
    extra_columns: Sequence[str] = (),
) -> list[Verdict]:
    """Verdicts for stage-one alerts whose true class is known, one per alert.

    An alert on a flow of ``benign_class`` is a false positive, any other a true positive.
    ``alerts`` needs an ``alert_id`` column, in the order the alerts were raised: verdict times
    count up one second per alert from ``start``, so that the store keeps that order.
    A false positive's root cause joins its ``root_cause_columns`` values (for NSL-KDD
    ``service`` and ``flag``) or, with ``cluster_ids``, is ``cluster-N``. The true class and
    any ``extra_columns`` are kept in ``extra``.
    """
    labels = np.asarray(true_labels, dtype=object)
    if "alert_id" not in alerts.columns:
        raise DataError("the alerts have no alert_id column", field="alert_id")
    if len(labels) != len(alerts):
        raise DataError(
            "one true class per alert is needed",
            field="true_labels",
            expected=f"{len(alerts)} labels",
            found=f"{len(labels)}",
        )
    missing = [c for c in [*root_cause_columns, *extra_columns] if c not in alerts.columns]
    if missing:
        raise DataError("a root-cause column is missing from the alerts", field=missing[0])
    if cluster_ids is not None and len(cluster_ids) != len(alerts):
        raise DataError("one cluster id per alert is needed", field="cluster_ids")

    start = start or datetime(2000, 1, 1, tzinfo=UTC)
    ids = alerts["alert_id"].astype(str).to_numpy()
    causes = alerts[list(root_cause_columns)].astype(str).to_numpy() if root_cause_columns else None
    extras = alerts[list(extra_columns)].to_dict(orient="records") if extra_columns else None
    out = []
    for position, (alert_id, label) in enumerate(zip(ids, labels, strict=True)):
        false_positive = str(label) == str(benign_class)
        cause = None
        if false_positive and cluster_ids is not None:
            cause = f"cluster-{cluster_ids[position]}"
        elif false_positive and causes is not None:
            cause = "/".join(causes[position])
        extra = {"true_class": str(label), **(extras[position] if extras else {})}
        out.append(
            Verdict(
                alert_id=alert_id,
                model_version=model_version,
                verdict=FALSE_POSITIVE if false_positive else TRUE_POSITIVE,
                analyst=analyst,
                time=start + timedelta(seconds=position),
                root_cause=cause,
                extra=extra,
            )
        )
    logger.info(
        "%d verdicts from labels: %d false positives",
        len(out),
        sum(v.verdict == FALSE_POSITIVE for v in out),
    )
    return out


# --- the report -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistinguishingFeature:
    """How one feature of a false-positive group differs from the true positives.

    ``effect`` ranks features: for a number the absolute standardised mean difference, for a
    category Cohen's h of the value whose share gains most over the true positives (both are
    about 0.2 for a small and 0.8 for a large difference).
    """

    name: str
    kind: str
    effect: float
    group_summary: str
    true_positive_summary: str
    ks: float | None = None
    top_values: list[tuple[str, float, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "effect": self.effect, "ks": self.ks,
            "group": self.group_summary, "true_positives": self.true_positive_summary,
            "top_values": [
                {"value": v, "group_share": g, "true_positive_share": t}
                for v, g, t in self.top_values
            ],
        }  # fmt: skip


@dataclass(frozen=True)
class FalsePositiveGroup:
    """False positives that share a root cause: a cluster or an analysts' category."""

    name: str
    source: str
    size: int
    share: float
    features: list[DistinguishingFeature]
    examples: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "source": self.source, "size": self.size, "share": self.share,
            "features": [f.to_dict() for f in self.features], "examples": self.examples,
        }  # fmt: skip

    def describe(self) -> str:
        """One line: what sets the group apart."""
        parts = [
            f"{f.name} {f.group_summary} (TP {f.true_positive_summary})" for f in self.features
        ]
        return "; ".join(parts[:3]) or "no distinguishing feature"


@dataclass
class TriageReport:
    """The false positives of one model version on one segment, grouped by root cause."""

    alerts: int
    false_positives: int
    true_positives: int
    clusters: list[FalsePositiveGroup]
    categories: list[FalsePositiveGroup]
    silhouette: dict[int, float] = field(default_factory=dict)
    context: dict[str, str] = field(default_factory=dict)

    @property
    def groups(self) -> list[FalsePositiveGroup]:
        """Every group, largest first."""
        return sorted([*self.clusters, *self.categories], key=lambda g: -g.size)

    def findings(self, *, minimum_share: float = 0.05) -> list[Finding]:
        """A finding for each group holding at least ``minimum_share`` of the false positives.

        A group with a fifth or more of the false positives is high severity: fixing its cause
        (a suppression, an allow-list entry, a stage-two filter) pays off most.
        """
        out = []
        for group in self.groups:
            if group.share < minimum_share:
                continue
            severity = (
                Severity.HIGH
                if group.share >= 0.2
                else Severity.MEDIUM
                if group.share >= 0.1
                else Severity.LOW
            )
            out.append(
                Finding(
                    "false-positive-group",
                    severity,
                    group.name,
                    f"{group.size} false positives ({group.share:.0%}) share a root cause: "
                    f"{group.describe()}",
                    {"size": group.size, "share": group.share, "source": group.source},
                )
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "alerts": self.alerts,
            "false_positives": self.false_positives,
            "true_positives": self.true_positives,
            "clusters": [g.to_dict() for g in self.clusters],
            "categories": [g.to_dict() for g in self.categories],
            "silhouette": {str(k): v for k, v in self.silhouette.items()},
            "context": self.context,
            "findings": [f.to_dict() for f in self.findings()],
        }

    def to_markdown(self) -> str:
        """A report a SOC lead can read: the groups, largest first, and what sets them apart."""
        share = self.false_positives / self.alerts if self.alerts else float("nan")
        lines = [
            "# False-positive triage",
            "",
            *(f"- **{k}**: {v}" for k, v in self.context.items()),
            f"- **alerts**: {self.alerts:,}, of which **{self.false_positives:,} false "
            f"positives** ({share:.1%}) and {self.true_positives:,} true positives",
            "",
        ]
        findings = self.findings()
        if findings:
            lines += ["## Findings", ""]
            lines += [f"- **{f.severity}** `{f.subject}`: {f.message}" for f in findings]
            lines.append("")
        for title, groups in (
            ("Clusters of false positives", self.clusters),
            ("Analysts' root-cause categories", self.categories),
        ):
            if not groups:
                continue
            lines += [
                f"## {title}",
                "",
                "| group | false positives | share | what sets it apart from true positives |",
                "|---|---:|---:|---|",
            ]
            for group in groups:
                lines.append(
                    f"| {group.name} | {group.size:,} | {group.share:.1%} | "
                    f"{group.describe().replace('|', '/')} |"
                )
            lines.append("")
            for group in groups[:5]:
                lines += [f"### {group.name}", "", "| feature | effect | group | true positives |"]
                lines.append("|---|---:|---|---|")
                for feature in group.features:
                    lines.append(
                        f"| {feature.name} | {feature.effect:.2f} | {feature.group_summary} | "
                        f"{feature.true_positive_summary} |"
                    )
                lines += ["", f"Example alerts: {', '.join(group.examples)}", ""]
        return "\n".join(lines).rstrip() + "\n"


# --- triage -----------------------------------------------------------------------------------


def encode_for_clustering(
    features: pd.DataFrame, categorical: Sequence[str], *, reference: pd.DataFrame | None = None
) -> np.ndarray:
    """Standardised numbers (signed log scale) and one-hot categories, for distances.

    Scales and category vocabularies come from ``reference`` (by default ``features``), so that
    false positives can be encoded on the scale of all alerts.
    """
    reference = features if reference is None else reference
    blocks = []
    numeric = [c for c in features.columns if c not in set(categorical)]
    if numeric:
        ref = _signed_log(reference[numeric])
        values = _signed_log(features[numeric])
        centre = np.nanmean(ref, axis=0)
        scale = np.nanstd(ref, axis=0)
        scale[~(scale > 0)] = 1.0
        blocks.append(np.nan_to_num((values - centre) / scale))
    for column in categorical:
        top = reference[column].astype(str).value_counts().index[:_TOP_CATEGORIES]
        values = features[column].astype(str).to_numpy()
        blocks.append(np.column_stack([values == v for v in top]).astype(np.float64))
    if not blocks:
        raise DataError("the alerts have no features to group by")
    return np.hstack(blocks)


def triage_false_positives(
    features: pd.DataFrame,
    verdicts: Sequence[str] | np.ndarray,
    alert_ids: Sequence[str] | np.ndarray,
    *,
    categorical: Sequence[str] = (),
    root_causes: Sequence[str | None] | np.ndarray | None = None,
    max_clusters: int = 8,
    max_categories: int = 20,
    top_features: int = 5,
    seed: int = 0,
    context: dict[str, str] | None = None,
    embedding: np.ndarray | None = None,
    texts: Sequence[str] | None = None,
) -> TriageReport:
    """Group the false positives among ``features`` (one row per alert) by root cause.

    ``verdicts`` holds one verdict per alert (``tp``/``fp``/``btp`` or canonical spellings;
    benign true positives count with the false positives, as alerts nobody needs to see).
    Clusters: KMeans over :func:`encode_for_clustering`, k from 2 to ``max_clusters`` chosen by
    silhouette on a sample. ``root_causes`` (the analysts' categories, None where not given)
    add one group per category, the ``max_categories`` largest.

    For mail, ``embedding`` (one row per alert, such as the model's pooled text embedding)
    replaces the features as what the clusters are drawn over, and ``texts`` (one per alert)
    adds the words that set each group apart from the true positives.
    """
    canonical = np.array([normalise_verdict(str(v)) for v in verdicts], dtype=object)
    ids = np.asarray(alert_ids, dtype=object).astype(str)
    if not len(canonical) == len(ids) == len(features):
        raise DataError(
            "features, verdicts and alert ids must describe the same alerts",
            expected=f"{len(features)} of each",
            found=f"{len(canonical)} verdicts, {len(ids)} alert ids",
        )
    for name, given in (("embedding", embedding), ("texts", texts)):
        if given is not None and len(given) != len(features):
            raise DataError(
                f"one {name} row per alert is needed", field=name,
                expected=f"{len(features)} rows", found=f"{len(given)}",
            )  # fmt: skip
    features = features.reset_index(drop=True)
    negative = np.isin(canonical, [FALSE_POSITIVE, BENIGN_TRUE_POSITIVE])
    positive = canonical == TRUE_POSITIVE
    report = TriageReport(
        alerts=len(features),
        false_positives=int(negative.sum()),
        true_positives=int(positive.sum()),
        clusters=[],
        categories=[],
        context=dict(context or {}),
    )
    if report.false_positives == 0:
        logger.info("no false positives to triage")
        return report

    fp_rows = np.flatnonzero(negative)
    positives = _profile_positives(features.iloc[np.flatnonzero(positive)], categorical)
    if embedding is None:
        matrix = encode_for_clustering(features.iloc[fp_rows], categorical, reference=features)
    else:
        matrix = _unit_rows(np.asarray(embedding, dtype=np.float64)[fp_rows])
    terms = _TermProfile(texts, positive) if texts is not None else None
    labels, report.silhouette = _cluster(matrix, max_clusters, seed)
    for cluster in np.unique(labels):
        members = fp_rows[labels == cluster]
        report.clusters.append(
            _group(f"cluster-{cluster}", "cluster", members, features, positives, ids,
                   categorical, report.false_positives, top_features, terms)
        )  # fmt: skip
    report.clusters.sort(key=lambda g: -g.size)

    if root_causes is not None:
        causes = pd.Series(np.asarray(root_causes, dtype=object)[fp_rows])
        for cause in causes.value_counts().index[:max_categories]:
            members = fp_rows[(causes == cause).to_numpy()]
            report.categories.append(
                _group(str(cause), "root-cause", members, features, positives, ids,
                       categorical, report.false_positives, top_features, terms)
            )  # fmt: skip
    logger.info(
        "triaged %d false positives into %d clusters and %d categories",
        report.false_positives,
        len(report.clusters),
        len(report.categories),
    )
    return report


def _cluster(matrix: np.ndarray, max_clusters: int, seed: int) -> tuple[np.ndarray, dict]:
    """KMeans labels, k chosen by silhouette on a sample; one cluster when k cannot be chosen."""
    rows = len(matrix)
    distinct = len(np.unique(matrix, axis=0)) if rows <= 50_000 else rows
    top = min(max_clusters, distinct - 1, rows - 1)
    if top < 2:
        return np.zeros(rows, dtype=int), {}
    rng = np.random.default_rng(seed)
    sample = rng.choice(rows, size=min(rows, _SILHOUETTE_SAMPLE), replace=False)
    scores: dict[int, float] = {}
    for k in range(2, top + 1):
        fitted = KMeans(k, n_init=3, random_state=seed).fit(matrix[sample])
        if len(np.unique(fitted.labels_)) < 2:
            continue
        scores[k] = float(silhouette_score(matrix[sample], fitted.labels_, random_state=seed))
    if not scores:
        return np.zeros(rows, dtype=int), {}
    best = max(scores, key=lambda k: (round(scores[k], 3), -k))
    labels = KMeans(best, n_init=3, random_state=seed).fit_predict(matrix)
    order = np.argsort(-np.bincount(labels))
    renumber = np.empty_like(order)
    renumber[order] = np.arange(len(order))
    return renumber[labels], scores


def _group(
    name: str,
    source: str,
    members: np.ndarray,
    features: pd.DataFrame,
    positives: dict[str, Any],
    ids: np.ndarray,
    categorical: Sequence[str],
    total: int,
    top_features: int,
    terms: _TermProfile | None = None,
) -> FalsePositiveGroup:
    group = features.iloc[members]
    ranked = [
        _categorical_difference(column, group[column], positives[column])
        if column in set(categorical)
        else _numeric_difference(column, _numbers(group[column]), positives[column])
        for column in features.columns
    ]
    if terms is not None:
        ranked += terms.differences(members)
    ranked = sorted((f for f in ranked if f is not None), key=lambda f: -f.effect)
    return FalsePositiveGroup(
        name=name,
        source=source,
        size=len(members),
        share=len(members) / total,
        features=ranked[:top_features],
        examples=[str(i) for i in ids[members[:_EXAMPLES]]],
    )


class _TermProfile:
    """Which alerts hold which words, and how often the true positives do, computed once."""

    def __init__(self, texts: Sequence[str], positive: np.ndarray, *, top: int = 3) -> None:
        from sklearn.feature_extraction.text import CountVectorizer

        self.top = top
        vectorizer = CountVectorizer(
            binary=True, lowercase=True, token_pattern=r"(?u)\b[^\W\d_]{3,}\b",
            max_features=_MAX_TERMS, stop_words="english",
        )  # fmt: skip
        try:
            self.matrix = vectorizer.fit_transform([str(t) for t in texts]).tocsr()
        except ValueError:  # no word at all in any alert
            self.matrix = None
            return
        self.words = vectorizer.get_feature_names_out()
        rows = np.flatnonzero(positive)
        counts = np.asarray(self.matrix[rows].sum(axis=0)).ravel()
        self.positive_share = counts / max(len(rows), 1)

    def differences(self, members: np.ndarray) -> list[DistinguishingFeature]:
        """The words found in more of the group's messages than of the true positives."""
        if self.matrix is None or not len(members):
            return []
        share = np.asarray(self.matrix[members].sum(axis=0)).ravel() / len(members)
        effect = 2.0 * np.arcsin(np.sqrt(share)) - 2.0 * np.arcsin(np.sqrt(self.positive_share))
        effect[share < _MIN_TERM_SHARE] = 0.0
        order = np.argsort(-effect)[: self.top]
        return [
            DistinguishingFeature(
                name=f"word '{self.words[i]}'",
                kind="term",
                effect=float(effect[i]),
                group_summary=f"in {share[i]:.0%}",
                true_positive_summary=f"in {self.positive_share[i]:.0%}",
            )  # fmt: skip
            for i in order
            if effect[i] > 0
        ]


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, so that KMeans groups by direction (cosine) as embeddings
    are compared."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[~(norms > 0)] = 1.0
    return np.nan_to_num(matrix / norms)


def _profile_positives(tp_features: pd.DataFrame, categorical: Sequence[str]) -> dict[str, Any]:
    """Per column, the true positives' finite numbers or their category shares, computed once."""
    return {
        column: tp_features[column].astype(str).value_counts(normalize=True)
        if column in set(categorical)
        else _numbers(tp_features[column])
        for column in tp_features.columns
    }


def _numbers(values: pd.Series) -> np.ndarray:
    out = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    return out[np.isfinite(out)]


def _numeric_difference(name: str, a: np.ndarray, b: np.ndarray) -> DistinguishingFeature | None:
    if not len(a) or not len(b):
        return None
    pooled = np.sqrt((a.var() + b.var()) / 2.0)
    difference = float(a.mean() - b.mean())
    if pooled > 0:
        effect = abs(difference) / pooled
    else:
        effect = 0.0 if difference == 0 else float("inf")
    effect = min(effect, 99.0)
    ks = float(stats.ks_2samp(a, b).statistic)
    return DistinguishingFeature(
        name=name,
        kind="numeric",
        effect=effect,
        group_summary=f"median {np.median(a):.4g} (mean {a.mean():.4g})",
        true_positive_summary=f"median {np.median(b):.4g} (mean {b.mean():.4g})",
        ks=ks,
    )


def _categorical_difference(
    name: str, group: pd.Series, in_positives: pd.Series
) -> DistinguishingFeature | None:
    if group.empty:
        return None
    in_group = group.astype(str).value_counts(normalize=True)
    gains = [
        (str(value), float(share), float(in_positives.get(value, 0.0)))
        for value, share in in_group.items()
    ]
    gains.sort(key=lambda t: -_cohen_h(t[1], t[2]))
    top = gains[:3]
    best = top[0]
    return DistinguishingFeature(
        name=name,
        kind="categorical",
        effect=max(0.0, _cohen_h(best[1], best[2])),
        group_summary=f"{best[0]} in {best[1]:.0%}",
        true_positive_summary=f"{best[0]} in {best[2]:.0%}",
        top_values=top,
    )


def _cohen_h(share: float, reference: float) -> float:
    """Cohen's h: the effect size of two shares, on the scale of a standardised difference."""
    return float(2.0 * np.arcsin(np.sqrt(share)) - 2.0 * np.arcsin(np.sqrt(reference)))


def _signed_log(frame: pd.DataFrame) -> np.ndarray:
    values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    values[~np.isfinite(values)] = np.nan
    return np.sign(values) * np.log1p(np.abs(values))
