"""Data drift: which features of a new network segment no longer look like the reference.

A flow classifier trained on one network meets another segment: other services, other byte
counts, other scanners. :func:`detect_drift` compares the segment with the model's
:class:`~threattune.diagnosis.profile.ReferenceProfile` and reports, per feature, how far the
distribution moved and whether that move is real.

Tests and effect sizes
----------------------
Numeric features get two tests, each paired with an effect size:

* the reference's fixed bins: population stability index (PSI) as the effect, and a two-sample
  chi-square test of the bin counts (reference counts against segment counts) for significance;
* Kolmogorov-Smirnov: the statistic D as the effect and its p-value, the segment against the
  reference sample.

Categorical features get the two-sample chi-square test of category counts, with Cramér's V as
the effect. V is computed on the two distributions weighted equally,
``V = sqrt(sum((p - q)**2 / (p + q)) / 2)``, so it does not depend on how many rows either side
has, and a category the reference never had counts fully instead of dividing by zero. PSI is
reported for categorical features too.

In every chi-square test, bins whose smallest expected count falls below 5 are merged into one
bin before testing. PSI uses the unmerged bins; an empty bin counts as a share of
``PSI_EPSILON`` (0.0001) on its side, which bounds the term of a bin the reference never filled
(a share of 10% adds about 0.7).

The flagging rule
-----------------
A feature drifts when at least one of its tests shows **both**

1. an effect at or above a practical threshold (:class:`DriftThresholds`: PSI >= 0.1,
   KS D >= 0.1, V >= 0.1), and
2. significance: its Benjamini-Hochberg adjusted p-value (q-value, across all tests of all
   features of the segment) is at most ``alpha`` (0.01 by default).

The first condition keeps a million rows with a trivial shift from flagging everything (their
p-values are tiny, their effects are not); the second keeps a small segment from flagging noise
(PSI on a hundred rows is large by chance). A feature with a large effect that is not significant
is reported as ``inconclusive``, one with a significant but small effect as ``negligible``.
Severity follows the effect: MEDIUM at the moderate threshold, HIGH at the major one (PSI 0.25,
D 0.2, V 0.3).

Multivariate drift
------------------
Features can keep their marginal distributions while their combination changes. A domain
classifier (gradient-boosted trees) learns to tell reference sample rows from segment rows under
stratified cross-validation. Its mean out-of-fold AUC is about 0.5 when the segment looks like the
reference and approaches 1 when the two are easy to tell apart; the interval comes from DeLong
variances of the folds. Drift is flagged when the AUC is significantly above 0.5 (one-sided
p <= ``alpha``) and at least 0.6 (MEDIUM) or 0.75 (HIGH). Permutation importance (the AUC lost
when one feature is shuffled) names the features that give the segment away.

Predictions
-----------
The same tests compare the model's predictions on the segment with its predictions on the
reference: labels like a categorical feature, float scores like a numeric one.

>>> import numpy as np, pandas as pd
>>> from threattune.diagnosis import ReferenceProfile, detect_drift
>>> rng = np.random.default_rng(0)
>>> train = pd.DataFrame({"bytes": rng.lognormal(5, 1, 5000), "proto": ["tcp"] * 5000})
>>> segment = train.assign(bytes=train["bytes"] * 3)
>>> report = detect_drift(ReferenceProfile.from_frame(train), segment, multivariate=False)
>>> report.drifted
['bytes']
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from threattune.diagnosis.profile import (
    PREDICTION,
    CategoricalProfile,
    FeatureProfile,
    NumericProfile,
    ReferenceProfile,
    category_counts,
    category_labels,
    numeric_values,
)
from threattune.errors import ConfigError, DataError
from threattune.findings import Finding, Severity

__all__ = [
    "MIN_EXPECTED",
    "PSI_EPSILON",
    "DomainClassifierResult",
    "DriftReport",
    "DriftThresholds",
    "benjamini_hochberg",
    "chi_square_two_sample",
    "cramers_v",
    "detect_drift",
    "domain_classifier_drift",
    "population_stability_index",
    "prediction_drift",
]

logger = logging.getLogger(__name__)

PSI_EPSILON = 1e-4
"""Share given to an empty bin in PSI, so that a bin one side never filled stays finite."""
MIN_EXPECTED = 5.0
"""Smallest expected count of a chi-square bin; sparser bins are merged."""

_MAX_KS_ROWS = 100_000
_MIN_CLASSIFIER_ROWS = 50
_TABLE_COLUMNS = [
    "feature",
    "type",
    "n_reference",
    "n_current",
    "psi",
    "chi2",
    "chi2_dof",
    "chi2_p",
    "chi2_q",
    "ks_d",
    "ks_p",
    "ks_q",
    "cramers_v",
    "status",
    "severity",
]


@dataclass(frozen=True)
class DriftThresholds:
    """Practical effect sizes: below the moderate one, a significant change is not drift.

    The moderate threshold gives MEDIUM severity, the major one HIGH.
    """

    psi_moderate: float = 0.1
    psi_major: float = 0.25
    ks_moderate: float = 0.1
    ks_major: float = 0.2
    cramers_v_moderate: float = 0.1
    cramers_v_major: float = 0.3
    auc_moderate: float = 0.6
    auc_major: float = 0.75

    def __post_init__(self) -> None:
        pairs = {
            "psi": (self.psi_moderate, self.psi_major, math.inf),
            "ks": (self.ks_moderate, self.ks_major, 1.0),
            "cramers_v": (self.cramers_v_moderate, self.cramers_v_major, 1.0),
        }
        for name, (moderate, major, top) in pairs.items():
            if not 0 < moderate <= major <= top:
                raise ConfigError(
                    "drift thresholds out of order",
                    field=f"{name}_moderate",
                    expected=f"0 < moderate <= major <= {top}",
                    found=f"moderate {moderate}, major {major}",
                )
        if not 0.5 < self.auc_moderate <= self.auc_major <= 1.0:
            raise ConfigError(
                "domain classifier thresholds out of order",
                field="auc_moderate",
                expected="0.5 < auc_moderate <= auc_major <= 1",
                found=f"{self.auc_moderate}, {self.auc_major}",
            )


def population_stability_index(
    reference: Sequence[float] | np.ndarray,
    current: Sequence[float] | np.ndarray,
    *,
    epsilon: float = PSI_EPSILON,
) -> float:
    """PSI between two sets of counts over the same bins.

    ``sum((q - p) * ln(q / p))`` over bin shares ``p`` (reference) and ``q`` (current), each share
    at least ``epsilon``. Conventionally below 0.1 is stable, 0.1 to 0.25 moderate, above major.

    >>> round(population_stability_index([50, 50], [40, 60]), 4)
    0.0405
    """
    p, q = _shares(reference), _shares(current)
    if p is None or q is None:
        return math.nan

    p, q = np.maximum(p, epsilon), np.maximum(q, epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def cramers_v(
    reference: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray
) -> float:
    """Cramér's V of the reference-against-current table, both sides weighted equally.

    0 for equal distributions, 1 for disjoint ones, whatever the sample sizes.

    >>> cramers_v([10, 0], [0, 10])
    1.0
    """
    p, q = _shares(reference), _shares(current)
    if p is None or q is None:
        return math.nan

    total = p + q
    filled = total > 0
    return float(math.sqrt(0.5 * np.sum((p[filled] - q[filled]) ** 2 / total[filled])))


def chi_square_two_sample(
    reference: Sequence[float] | np.ndarray,
    current: Sequence[float] | np.ndarray,
    *,
    min_expected: float = MIN_EXPECTED,
) -> tuple[float, int, float]:
    """Chi-square test that two sets of counts over the same bins come from one distribution.

    Bins whose smallest expected count is below ``min_expected`` are merged into one bin (joined
    to the smallest remaining bin if still too small). Returns the statistic, the degrees of
    freedom and the p-value; NaN when a side is empty, and p = 1 when fewer than two bins remain.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    n_ref, n_cur = ref.sum(), cur.sum()
    if n_ref <= 0 or n_cur <= 0:
        return math.nan, 0, math.nan

    filled = (ref + cur) > 0
    ref, cur = ref[filled], cur[filled]
    need = min_expected * (n_ref + n_cur) / min(n_ref, n_cur)
    sparse = (ref + cur) < need
    if sparse.any():
        spare_ref, spare_cur = ref[sparse].sum(), cur[sparse].sum()
        ref, cur = ref[~sparse], cur[~sparse]
        if spare_ref + spare_cur < need and ref.size:
            smallest = int(np.argmin(ref + cur))
            ref[smallest] += spare_ref
            cur[smallest] += spare_cur
        else:
            ref, cur = np.append(ref, spare_ref), np.append(cur, spare_cur)
    if ref.size < 2:
        return 0.0, 0, 1.0

    column = ref + cur
    expected_ref = n_ref * column / (n_ref + n_cur)
    expected_cur = n_cur * column / (n_ref + n_cur)
    statistic = float(
        np.sum((ref - expected_ref) ** 2 / expected_ref + (cur - expected_cur) ** 2 / expected_cur)
    )
    dof = ref.size - 1
    return statistic, dof, float(stats.chi2.sf(statistic, dof))


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values); NaN stays NaN and is not counted.

    >>> benjamini_hochberg([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.04, 0.04]
    """
    p = np.asarray(p_values, dtype=np.float64)
    q = np.full_like(p, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    if tested.size == 0:
        return q

    order = tested[np.argsort(p[tested], kind="stable")]
    ranked = p[order] * tested.size / np.arange(1, tested.size + 1)
    q[order] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    return q


@dataclass(frozen=True)
class DomainClassifierResult:
    """How well a classifier tells segment rows from reference rows.

    ``importances`` maps each feature to the mean AUC lost when it is shuffled, largest first; it
    is empty when the AUC is not significantly above 0.5.
    """

    auc: float
    ci_low: float
    ci_high: float
    p_value: float
    fold_aucs: tuple[float, ...]
    n_reference: int
    n_current: int
    importances: dict[str, float] = field(default_factory=dict)

    def top_features(self, n: int = 5, *, min_loss: float = 0.005) -> list[str]:
        """The ``n`` features whose shuffling costs the most AUC (at least ``min_loss``)."""
        return [name for name, loss in self.importances.items() if loss >= min_loss][:n]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return _plain(
            {
                "auc": self.auc,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "p_value": self.p_value,
                "fold_aucs": list(self.fold_aucs),
                "n_reference": self.n_reference,
                "n_current": self.n_current,
                "importances": self.importances,
            }
        )


@dataclass(frozen=True, eq=False)
class DriftReport:
    """The data drift of one segment against a reference.

    ``table`` has one row per reference feature (columns: feature, type, n_reference, n_current,
    psi, chi2, chi2_dof, chi2_p, chi2_q, ks_d, ks_p, ks_q, cramers_v, status, severity). Status is
    one of ``drift``, ``inconclusive``, ``negligible``, ``stable``, ``untested``, ``missing``.
    ``findings`` come most severe first.
    """

    table: pd.DataFrame
    findings: list[Finding]
    n_reference: int
    n_current: int
    alpha: float
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    multivariate: DomainClassifierResult | None = None
    prediction: dict[str, Any] | None = None

    @property
    def drifted(self) -> list[str]:
        """Features flagged as drifting, most severe first."""
        flagged = self.table[self.table["status"] == "drift"]
        order = flagged["severity"].map(lambda s: -Severity[s.upper()])
        return flagged.assign(order=order).sort_values("order", kind="stable")["feature"].tolist()

    def records(self) -> list[dict[str, Any]]:
        """The per-feature table as JSON-ready dicts (NaN as ``None``)."""
        return [_plain(row) for row in self.table.to_dict(orient="records")]

    def to_dict(self) -> dict[str, Any]:
        """The whole report as JSON-ready types."""
        return {
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "alpha": self.alpha,
            "features": self.records(),
            "multivariate": None if self.multivariate is None else self.multivariate.to_dict(),
            "prediction": None if self.prediction is None else _plain(self.prediction),
            "findings": [finding.to_dict() for finding in self.findings],
        }


def detect_drift(
    profile: ReferenceProfile,
    current: pd.DataFrame,
    *,
    alpha: float = 0.01,
    thresholds: DriftThresholds | None = None,
    predictions: Sequence[Any] | np.ndarray | pd.Series | None = None,
    multivariate: bool = True,
    max_rows: int = 5_000,
    folds: int = 5,
    seed: int = 0,
) -> DriftReport:
    """Compare a segment with the reference profile, feature by feature and as a whole.

    Parameters
    ----------
    profile:
        The reference, built from the model's training rows.
    current:
        The segment's rows, with the reference's feature columns (extra columns are ignored).
    alpha:
        Significance level after the Benjamini-Hochberg correction, and for the domain classifier.
    thresholds:
        Practical effect sizes; see the module documentation for the rule.
    predictions:
        The model's predictions on ``current``, compared with the reference predictions stored in
        the profile.
    multivariate:
        Also train the domain classifier (a few seconds).
    max_rows:
        Rows per side for the domain classifier.
    folds:
        Cross-validation folds of the domain classifier.
    seed:
        Seed of the subsamples and the classifier.
    """
    thresholds = thresholds or DriftThresholds()
    _check_alpha(alpha)
    _check_segment(profile, current)
    if predictions is not None and profile.predictions is None:
        raise ConfigError(
            "predictions given but the profile holds no reference predictions",
            field="predictions",
            fix="build the profile with ReferenceProfile.from_frame(..., predictions=...)",
        )
    if folds < 2 or max_rows < _MIN_CLASSIFIER_ROWS:
        raise ConfigError(
            "domain classifier settings out of range",
            field="folds" if folds < 2 else "max_rows",
            expected=f"folds >= 2 and max_rows >= {_MIN_CLASSIFIER_ROWS}",
            found=f"folds {folds}, max_rows {max_rows}",
        )

    present = [name for name in profile.features if name in current.columns]
    absent = [name for name in profile.features if name not in current.columns]
    rows, details = _compare(profile, current, present, np.random.default_rng(seed))
    rows += [_missing_row(profile.features[name], len(current)) for name in absent]
    _judge(rows, alpha, thresholds)
    findings = _feature_findings(rows, details, "feature-drift")
    findings += [_missing_finding(name, len(current)) for name in absent]
    findings += _inconclusive_findings(rows, len(current))
    findings += _unprofiled_findings(profile, current)

    domain: DomainClassifierResult | None = None
    if multivariate and present:
        domain, found = _multivariate(profile, current, alpha, thresholds, max_rows, folds, seed)
        findings += found

    prediction_row: dict[str, Any] | None = None
    if predictions is not None:
        predicted = prediction_drift(profile, predictions, alpha=alpha, thresholds=thresholds)
        prediction_row = predicted.records()[0]
        findings += predicted.findings

    table = pd.DataFrame(rows, columns=_TABLE_COLUMNS)
    logger.info(
        "drift of %d segment rows: %d of %d features drift",
        len(current),
        int((table["status"] == "drift").sum()),
        len(table),
    )
    return DriftReport(
        table=table,
        findings=_by_severity(findings),
        n_reference=profile.n_rows,
        n_current=len(current),
        alpha=alpha,
        thresholds=thresholds,
        multivariate=domain,
        prediction=prediction_row,
    )


def prediction_drift(
    reference: ReferenceProfile | Sequence[Any] | np.ndarray | pd.Series,
    current: Sequence[Any] | np.ndarray | pd.Series,
    *,
    alpha: float = 0.01,
    thresholds: DriftThresholds | None = None,
) -> DriftReport:
    """Compare the model's predictions on a segment with its predictions on the reference.

    ``reference`` is a profile built with predictions, or the reference predictions themselves:
    class labels (compared like a categorical feature) or float scores (like a numeric one).

    >>> report = prediction_drift(["normal"] * 90 + ["dos"] * 10, ["normal"] * 50 + ["dos"] * 50)
    >>> [f.kind for f in report.findings]
    ['prediction-drift']
    """
    thresholds = thresholds or DriftThresholds()
    _check_alpha(alpha)
    if isinstance(reference, ReferenceProfile):
        if reference.predictions is None:
            raise ConfigError(
                "the profile holds no reference predictions",
                field="predictions",
                fix="build the profile with ReferenceProfile.from_frame(..., predictions=...)",
            )
        profile = reference.predictions
    else:
        series = reference if isinstance(reference, pd.Series) else pd.Series(np.asarray(reference))
        profile = ReferenceProfile.from_frame(
            pd.DataFrame({PREDICTION: series.reset_index(drop=True)}),
            categorical=[] if pd.api.types.is_float_dtype(series.dtype) else [PREDICTION],
        )
    values = current if isinstance(current, pd.Series) else pd.Series(np.asarray(current))
    if len(values) == 0:
        raise DataError("no predictions to compare", field="predictions", expected="at least one")

    segment = pd.DataFrame({PREDICTION: values.reset_index(drop=True)})
    rows, details = _compare(profile, segment, [PREDICTION], np.random.default_rng(profile.seed))
    _judge(rows, alpha, thresholds)
    return DriftReport(
        table=pd.DataFrame(rows, columns=_TABLE_COLUMNS),
        findings=_by_severity(_feature_findings(rows, details, "prediction-drift")),
        n_reference=profile.n_rows,
        n_current=len(segment),
        alpha=alpha,
        thresholds=thresholds,
    )


def domain_classifier_drift(
    profile: ReferenceProfile,
    current: pd.DataFrame,
    *,
    max_rows: int = 5_000,
    folds: int = 5,
    seed: int = 0,
    alpha: float = 0.01,
    ci_level: float = 0.95,
    threads: int = 1,
) -> DomainClassifierResult:
    """Train a classifier to tell the reference sample from the segment, under cross-validation.

    Both sides are subsampled to the same number of rows (at most ``max_rows``). The AUC is the
    mean over folds, its interval and one-sided p-value (against 0.5) come from the DeLong
    variances of the folds. Permutation importances are computed when ``p_value <= alpha``.
    The trees use ``threads`` OpenMP threads: at these sizes one thread is fast (a few seconds)
    and does not fight other jobs for cores.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    features = [name for name in profile.features if name in current.columns]
    n_rows = min(len(profile.sample), len(current), max_rows)
    if not features or n_rows < max(_MIN_CLASSIFIER_ROWS, 2 * folds):
        raise DataError(
            "too few rows or features for a domain classifier",
            expected=f"at least {max(_MIN_CLASSIFIER_ROWS, 2 * folds)} rows per side",
            found=f"{n_rows} rows, {len(features)} shared features",
        )
    rng = np.random.default_rng(seed)
    reference = profile.sample.iloc[np.sort(rng.permutation(len(profile.sample))[:n_rows])]
    segment = current.iloc[np.sort(rng.permutation(len(current))[:n_rows])]

    x = np.vstack([_design(profile, reference, features), _design(profile, segment, features)])
    y = np.repeat([0, 1], n_rows)
    varying = [j for j in range(x.shape[1]) if _varies(x[:, j])]
    if not varying:
        return DomainClassifierResult(
            auc=0.5,
            ci_low=0.5,
            ci_high=0.5,
            p_value=1.0,
            fold_aucs=(0.5,) * folds,
            n_reference=n_rows,
            n_current=n_rows,
        )

    x, features = x[:, varying], [features[j] for j in varying]
    categorical = np.array([isinstance(profile.features[n], CategoricalProfile) for n in features])
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    fitted: list[tuple[Any, np.ndarray]] = []
    aucs, variances = [], []
    with threadpool_limits(limits=threads):
        for train, test in split.split(x, y):
            model = HistGradientBoostingClassifier(
                max_iter=60,
                learning_rate=0.15,
                max_leaf_nodes=15,
                min_samples_leaf=20,
                l2_regularization=1.0,
                categorical_features=categorical if categorical.any() else None,
                early_stopping=False,
                random_state=seed,
            ).fit(x[train], y[train])
            auc, variance = _delong(y[test], model.predict_proba(x[test])[:, 1])
            aucs.append(auc)
            variances.append(variance)
            fitted.append((model, test))

        auc = float(np.mean(aucs))
        se = math.sqrt(sum(variances)) / folds
        if se > 0:
            p_value = float(stats.norm.sf((auc - 0.5) / se))
        else:
            p_value = 0.0 if auc > 0.5 else 1.0
        importances: dict[str, float] = {}
        if p_value <= alpha:
            importances = _permutation_importances(fitted, aucs, x, y, features, rng)

    z = float(stats.norm.ppf(0.5 + ci_level / 2))
    logger.info("domain classifier AUC %.3f (p=%.2g) on %d rows per side", auc, p_value, n_rows)
    return DomainClassifierResult(
        auc=auc,
        ci_low=max(0.0, auc - z * se),
        ci_high=min(1.0, auc + z * se),
        p_value=p_value,
        fold_aucs=tuple(float(a) for a in aucs),
        n_reference=n_rows,
        n_current=n_rows,
        importances=importances,
    )


def _compare(
    profile: ReferenceProfile,
    current: pd.DataFrame,
    names: Sequence[str],
    rng: np.random.Generator,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Statistics per feature: table rows, and details for the findings' evidence."""
    rows: list[dict[str, Any]] = []
    details: dict[str, dict[str, Any]] = {}
    for name in names:
        feature = profile.features[name]
        if isinstance(feature, NumericProfile):
            reference = profile.sample[name].to_numpy(dtype=np.float64)
            values = numeric_values(current[name], name=str(name), errors="warn")
            row, detail = _compare_numeric(feature, reference, values, rng)
        else:
            row, detail = _compare_categorical(feature, category_counts(current[name]))
        rows.append(row)
        details[name] = detail
    return rows, details


def _compare_numeric(
    feature: NumericProfile,
    reference: np.ndarray,
    values: np.ndarray,
    rng: np.random.Generator,
) -> tuple[dict[str, Any], dict[str, Any]]:
    counts = feature.bin_counts(values)
    chi2, dof, chi2_p = chi_square_two_sample(feature.counts, counts)
    psi = population_stability_index(feature.counts, counts)

    reference = reference[np.isfinite(reference)]
    finite = values[np.isfinite(values)]
    if finite.size > _MAX_KS_ROWS:
        finite = rng.choice(finite, _MAX_KS_ROWS, replace=False)
    ks_d, ks_p = math.nan, math.nan
    if reference.size and finite.size:
        result = stats.ks_2samp(finite, reference)
        ks_d, ks_p = float(result.statistic), float(result.pvalue)

    p, q = feature.proportions, counts / max(values.size, 1)
    largest = int(np.argmax(np.abs(q - p)))
    detail = {
        "reference_median": float(np.median(reference)) if reference.size else None,
        "current_median": float(np.median(finite)) if finite.size else None,
        "reference_outside_range": float(p[0] + p[-3]),
        "current_outside_range": float(q[0] + q[-3]),
        "reference_nan_share": float(p[-2]),
        "current_nan_share": float(q[-2]),
        "reference_inf_share": float(p[-1]),
        "current_inf_share": float(q[-1]),
        "largest_change": {
            "bin": feature.bin_labels()[largest],
            "reference_share": float(p[largest]),
            "current_share": float(q[largest]),
        },
    }
    row = _row(feature, values.size, psi=psi, chi2=chi2, dof=dof, chi2_p=chi2_p)
    row.update(ks_d=ks_d, ks_p=ks_p)
    return row, detail


def _compare_categorical(
    feature: CategoricalProfile, counts: pd.Series
) -> tuple[dict[str, Any], dict[str, Any]]:
    buckets = feature.bucket_counts(counts)
    chi2, dof, chi2_p = chi_square_two_sample(feature.counts, buckets)
    psi = population_stability_index(feature.counts, buckets)
    v = cramers_v(feature.counts, buckets)

    total = max(int(counts.sum()), 1)
    outside = counts[~counts.index.isin(feature.categories)].sort_values(ascending=False)
    p, q = feature.proportions, buckets / total
    largest = int(np.argmax(np.abs(q - p)))
    never_seen = feature.counts[-1] == 0
    detail = {
        "new_categories" if never_seen else "categories_outside_top": {
            str(label): round(int(count) / total, 6) for label, count in outside.iloc[:10].items()
        },
        "largest_change": {
            "category": feature.bin_labels()[largest],
            "reference_share": float(p[largest]),
            "current_share": float(q[largest]),
        },
    }
    row = _row(feature, total, psi=psi, chi2=chi2, dof=dof, chi2_p=chi2_p)
    row.update(cramers_v=v)
    return row, detail


def _row(
    feature: FeatureProfile, n_current: int, *, psi: float, chi2: float, dof: int, chi2_p: float
) -> dict[str, Any]:
    return {
        "feature": feature.name,
        "type": "numeric" if isinstance(feature, NumericProfile) else "categorical",
        "n_reference": feature.n_rows,
        "n_current": n_current,
        "psi": psi,
        "chi2": chi2,
        "chi2_dof": dof,
        "chi2_p": chi2_p,
        "chi2_q": math.nan,
        "ks_d": math.nan,
        "ks_p": math.nan,
        "ks_q": math.nan,
        "cramers_v": math.nan,
        "status": "untested",
        "severity": None,
    }


def _missing_row(feature: FeatureProfile, n_current: int) -> dict[str, Any]:
    row = _row(feature, n_current, psi=math.nan, chi2=math.nan, dof=0, chi2_p=math.nan)
    row.update(status="missing", severity=str(Severity.HIGH))
    return row


def _criteria(
    row: dict[str, Any], thresholds: DriftThresholds
) -> list[tuple[str, float, float, float, float]]:
    """(effect name, effect, q-value, moderate, major) for each test of a feature."""
    if row["type"] == "categorical":
        return [
            (
                "cramers_v",
                row["cramers_v"],
                row["chi2_q"],
                thresholds.cramers_v_moderate,
                thresholds.cramers_v_major,
            )
        ]
    return [
        ("psi", row["psi"], row["chi2_q"], thresholds.psi_moderate, thresholds.psi_major),
        ("ks_d", row["ks_d"], row["ks_q"], thresholds.ks_moderate, thresholds.ks_major),
    ]


def _judge(rows: list[dict[str, Any]], alpha: float, thresholds: DriftThresholds) -> None:
    """Adjust p-values across all tests of the segment, then set status and severity."""
    tests = [(i, key) for i, row in enumerate(rows) for key in ("chi2", "ks")]
    q = benjamini_hochberg([rows[i][f"{key}_p"] for i, key in tests])
    for (i, key), value in zip(tests, q, strict=True):
        rows[i][f"{key}_q"] = float(value)

    for row in rows:
        if row["status"] == "missing":
            continue
        levels: dict[str, Severity] = {}
        tested = large = significant = False
        for name, effect, q_value, moderate, major in _criteria(row, thresholds):
            if math.isnan(effect) or math.isnan(q_value):
                continue
            tested = True
            significant |= q_value <= alpha
            level = _level(effect, moderate, major)
            large |= level is not None
            if level is not None and q_value <= alpha:
                levels[name] = level
        if levels:
            row.update(status="drift", severity=str(max(levels.values())), flagged_by=[*levels])
        elif large:
            row["status"] = "inconclusive"
        elif significant:
            row["status"] = "negligible"
        elif tested:
            row["status"] = "stable"


def _level(effect: float, moderate: float, major: float) -> Severity | None:
    if effect >= major:
        return Severity.HIGH
    if effect >= moderate:
        return Severity.MEDIUM
    return None


def _feature_findings(
    rows: list[dict[str, Any]], details: dict[str, dict[str, Any]], kind: str
) -> list[Finding]:
    """One finding per drifting feature, the largest PSI first."""
    drifting = [row for row in rows if row["status"] == "drift"]
    findings = []
    for row in sorted(drifting, key=lambda row: -row["psi"]):
        name = row["feature"]
        evidence = {key: row[key] for key in _TABLE_COLUMNS if key not in ("feature", "severity")}
        evidence.update(details[name], flagged_by=row["flagged_by"])
        findings.append(
            Finding(
                kind,
                Severity[row["severity"].upper()],
                name,
                _message(row, details[name]),
                _plain(evidence),
            )
        )
    return findings


def _message(row: dict[str, Any], detail: dict[str, Any]) -> str:
    name = row["feature"]
    if row["type"] == "categorical":
        change = detail["largest_change"]
        text = (
            f"{name} changed its mix of categories (Cramér's V {row['cramers_v']:.2f}, "
            f"PSI {row['psi']:.2f}); {change['category']}: {change['reference_share']:.1%} "
            f"in the reference, {change['current_share']:.1%} here"
        )
        new = detail.get("new_categories") or {}
        if new:
            listed = ", ".join(f"{label} ({share:.1%})" for label, share in list(new.items())[:3])
            text += f"; new: {listed}"
        return text

    change = detail["largest_change"]
    text = (
        f"{name} shifted (PSI {row['psi']:.2f}, KS D {row['ks_d']:.2f}); values "
        f"{'in ' if change['bin'][0] in '([' else ''}{change['bin']}: "
        f"{change['reference_share']:.1%} in the reference, "
        f"{change['current_share']:.1%} here"
    )
    medians = detail["reference_median"], detail["current_median"]
    if None not in medians and medians[0] != medians[1]:
        text += f"; median {medians[0]:.4g} in the reference, {medians[1]:.4g} here"
    if detail["current_outside_range"] >= 0.01:
        text += f"; {detail['current_outside_range']:.1%} outside the reference range"
    if abs(detail["current_nan_share"] - detail["reference_nan_share"]) >= 0.01:
        text += (
            f"; missing {detail['reference_nan_share']:.1%} in the reference, "
            f"{detail['current_nan_share']:.1%} here"
        )
    return text


def _missing_finding(name: str, n_current: int) -> Finding:
    return Finding(
        "missing-feature",
        Severity.HIGH,
        name,
        f"{name} is in the reference but absent from the segment; the model will see it as missing",
        {"n_current": n_current},
    )


def _inconclusive_findings(rows: list[dict[str, Any]], n_current: int) -> list[Finding]:
    names = [row["feature"] for row in rows if row["status"] == "inconclusive"]
    if not names:
        return []
    return [
        Finding(
            "drift-inconclusive",
            Severity.INFO,
            "segment",
            f"{len(names)} features differ by a practical amount, but {n_current} segment rows "
            "are too few to tell drift from chance",
            {"features": names, "n_current": n_current},
        )
    ]


def _unprofiled_findings(profile: ReferenceProfile, current: pd.DataFrame) -> list[Finding]:
    extra = [str(name) for name in current.columns if name not in profile.features]
    if not extra:
        return []
    return [
        Finding(
            "unprofiled-feature",
            Severity.INFO,
            "segment",
            f"{len(extra)} segment columns are not in the reference and were not compared",
            {"columns": extra[:50]},
        )
    ]


def _multivariate(
    profile: ReferenceProfile,
    current: pd.DataFrame,
    alpha: float,
    thresholds: DriftThresholds,
    max_rows: int,
    folds: int,
    seed: int,
) -> tuple[DomainClassifierResult | None, list[Finding]]:
    """The domain classifier when both sides have rows enough, else an INFO finding."""
    n_rows = min(len(profile.sample), len(current), max_rows)
    needed = max(_MIN_CLASSIFIER_ROWS, 2 * folds)
    if n_rows < needed:
        text = f"multivariate drift not checked: {n_rows} rows per side is too few"
        return None, [
            Finding(
                "multivariate-drift",
                Severity.INFO,
                "segment",
                text,
                {"rows": n_rows, "needed": needed},
            )
        ]

    result = domain_classifier_drift(
        profile, current, max_rows=max_rows, folds=folds, seed=seed, alpha=alpha
    )
    return result, _multivariate_findings(result, alpha, thresholds)


def _multivariate_findings(
    result: DomainClassifierResult, alpha: float, thresholds: DriftThresholds
) -> list[Finding]:
    level = _level(result.auc, thresholds.auc_moderate, thresholds.auc_major)
    if level is None or result.p_value > alpha:
        return []
    top = result.top_features()
    text = (
        f"a classifier tells this segment from the reference with AUC {result.auc:.2f} "
        f"(interval {result.ci_low:.2f} to {result.ci_high:.2f})"
    )
    if top:
        text += "; most telling features: " + ", ".join(top)
    evidence = result.to_dict()
    evidence["importances"] = dict(list(result.importances.items())[:10])
    return [Finding("multivariate-drift", level, "segment", text, evidence)]


def _by_severity(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda finding: -finding.severity)


def _design(profile: ReferenceProfile, rows: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """Rows as a float matrix for the classifier: numbers (non-finite as NaN) and category codes.

    Categories are coded by their position in the profile; all others share the last code.
    """
    columns = []
    for name in features:
        feature = profile.features[name]
        if isinstance(feature, NumericProfile):
            values = numeric_values(rows[name], name=str(name), errors="coerce")
            columns.append(np.where(np.isfinite(values), values, np.nan))
        else:
            codes = pd.Index(feature.categories).get_indexer(category_labels(rows[name]))
            columns.append(np.where(codes < 0, len(feature.categories), codes).astype(np.float64))
    return np.column_stack(columns)


def _varies(column: np.ndarray) -> bool:
    """Whether a column takes more than one value (NaN counting as a value)."""
    present = column[~np.isnan(column)]
    if present.size in (0, column.size):
        return present.size > 0 and bool(np.ptp(present) > 0)
    return True


def _delong(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """AUC and its DeLong variance."""
    positive, negative = score[y == 1], score[y == 0]
    m, n = positive.size, negative.size
    ranks = stats.rankdata(np.concatenate([positive, negative]))
    above = (ranks[:m] - stats.rankdata(positive)) / n
    below = 1.0 - (ranks[m:] - stats.rankdata(negative)) / m
    auc = float(above.mean())
    return auc, float(above.var(ddof=1) / m + below.var(ddof=1) / n)


def _permutation_importances(
    fitted: list[tuple[Any, np.ndarray]],
    aucs: list[float],
    x: np.ndarray,
    y: np.ndarray,
    features: Sequence[str],
    rng: np.random.Generator,
) -> dict[str, float]:
    """Mean AUC lost over folds when one feature of the held-out rows is shuffled."""
    from sklearn.metrics import roc_auc_score

    losses = np.zeros(len(features))
    for (model, test), auc in zip(fitted, aucs, strict=True):
        held_out = x[test]
        for j in range(len(features)):
            shuffled = held_out.copy()
            shuffled[:, j] = rng.permutation(shuffled[:, j])
            losses[j] += auc - roc_auc_score(y[test], model.predict_proba(shuffled)[:, 1])

    order = np.argsort(-losses, kind="stable")
    return {str(features[j]): round(float(losses[j] / len(fitted)), 6) for j in order}


def _shares(counts: Sequence[float] | np.ndarray) -> np.ndarray | None:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else None


def _check_segment(profile: ReferenceProfile, current: pd.DataFrame) -> None:
    if not isinstance(current, pd.DataFrame) or len(current) == 0:
        found = f"{len(current)} rows" if isinstance(current, pd.DataFrame) else type(current)
        raise DataError(
            "no segment rows to compare",
            expected="a DataFrame with at least one row",
            found=str(found),
        )
    duplicated = current.columns[current.columns.duplicated()]
    shared = sorted({str(name) for name in duplicated if name in profile.features})
    if shared:
        raise DataError(
            "the segment has duplicate feature columns",
            expected="each feature once",
            found=", ".join(shared),
        )


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ConfigError(
            "alpha out of range", field="alpha", expected="0 < alpha < 1", found=str(alpha)
        )


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars as Python numbers, NaN and infinity as None."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Severity):
        return str(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
