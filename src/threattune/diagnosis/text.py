"""Drift of new mail against a mail model's reference: embeddings, text shape and the tokenizer.

A mail model reads text through a tokenizer and an encoder; new mail can leave it in ways a
flow table cannot: other topics and senders (the embeddings move), other lengths and scripts
(more of each message is cut or unknown to the vocabulary), or a swapped tokenizer. The
functions here compare pooled embeddings and per-message text measures of new mail with the
reference and turn what they find into :class:`~threattune.findings.Finding` objects.

Embedding drift
---------------
Two tests, both on the pooled embeddings:

* a **domain classifier** (logistic regression on standardised embeddings, balanced classes)
  tells reference messages from new ones under stratified cross-validation. Its mean
  out-of-fold AUC is about 0.5 for mail like the reference; the interval and a one-sided
  p-value against 0.5 come from the DeLong variances of the folds, so that a few dozen messages
  cannot flag drift by chance. The AUC is the effect size (0.6 moderate, 0.75 major), and its
  out-of-fold scores rank the new messages most unlike the reference;
* the **maximum mean discrepancy** (MMD, Gaussian kernel on unit-length embeddings, bandwidth
  the median pairwise distance) with a permutation test: a second, model-free significance.

Drift is MEDIUM or HIGH when the AUC reaches the moderate or major threshold and both tests
are significant at ``alpha``; LOW when only one test is significant or the effect is small.

Shares
------
Shares of messages (alerts, cut at ``max_length``, without text, with unknown tokens) compare
with Cohen's h, ``|2 asin(sqrt(p)) - 2 asin(sqrt(q))|``, as the effect (0.1 small, 0.2 moderate,
0.5 large) and Fisher's exact test for significance. When no reference share is known (the
stored reference holds embeddings, token lengths and threat scores only), a share is held
against a fixed bound instead, with the lower end of its 95 % Wilson interval, so that a
handful of messages does not decide it.

>>> round(cohens_h(0.05, 0.12), 3)
0.256
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from threattune.diagnosis.drift import DriftThresholds, _delong, _plain
from threattune.errors import DataError
from threattune.findings import Finding, Severity

__all__ = [
    "AUDITED_FIELDS",
    "EmbeddingDrift",
    "ShareBounds",
    "cohens_h",
    "domain_classifier",
    "embedding_drift",
    "embedding_findings",
    "mmd_test",
    "share_against_bound",
    "share_shift",
    "text_measures",
    "tokenizer_audit",
    "unit_rows",
]

logger = logging.getLogger(__name__)

_MIN_MESSAGES = 10
_LETTER = re.compile(r"[^\W\d_]")
_ASCII_LETTER = re.compile(r"[A-Za-z]")
_MEASURED_CHARS = 20_000
_SCRIPT_CHARS = 200
_NON_LATIN_SHARE = 0.3
_UNK_HEAVY_SHARE = 0.05

AUDITED_FIELDS = (
    "text_normalisation",
    "architecture",
    "tokenizer",
    "vocabulary_size",
    "max_length",
    "head_tokens",
    "transformers_version",
    "tokenizers_version",
)
"""Fingerprint fields of a mail model compared with what is loaded now."""

_FIXES = {
    "text_normalisation": "score with the threattune release the model was trained with, or "
    "retrain the model with this one",
    "architecture": "restore the model's transformer/encoder folder, or retrain",
    "tokenizer": "restore the tokenizer files in transformer/encoder from the registered "
    "version, or retrain",
    "vocabulary_size": "restore the tokenizer files in transformer/encoder from the registered "
    "version, or retrain",
    "max_length": "restore max_length in transformer/text_model.json to the stored value, or "
    "retrain with the new length",
    "head_tokens": "restore head_tokens in transformer/text_model.json to the stored value, or "
    "retrain",
    "transformers_version": "install the stored version (pip install transformers==VERSION), "
    "or measure the model on labelled mail with 'threattune evaluate' before trusting it",
    "tokenizers_version": "install the stored version (pip install tokenizers==VERSION), or "
    "measure the model on labelled mail with 'threattune evaluate' before trusting it",
}


def cohens_h(p: float, q: float) -> float:
    """Cohen's h between two shares: 0.2 is a small effect, 0.5 a medium one, 0.8 a large one."""
    return abs(
        2.0 * math.asin(math.sqrt(min(max(p, 0.0), 1.0)))
        - 2.0 * math.asin(math.sqrt(min(max(q, 0.0), 1.0)))
    )


@dataclass(frozen=True)
class ShareBounds:
    """Effect sizes (Cohen's h) at which a change of share is LOW, MEDIUM and HIGH."""

    low: float = 0.1
    medium: float = 0.2
    high: float = 0.5

    def level(self, effect: float) -> Severity | None:
        """The severity an effect reaches, or None below ``low``."""
        if effect >= self.high:
            return Severity.HIGH
        if effect >= self.medium:
            return Severity.MEDIUM
        if effect >= self.low:
            return Severity.LOW
        return None


def share_shift(
    kind: str,
    subject: str,
    what: str,
    reference: tuple[int, int],
    current: tuple[int, int],
    *,
    alpha: float = 0.01,
    bounds: ShareBounds | None = None,
    allowance: float = 0.0,
    note: str = "",
) -> tuple[dict[str, Any], Finding | None]:
    """Compare the share of messages that are ``what`` in the reference and the new mail.

    ``reference`` and ``current`` are (count, messages). ``allowance`` is taken off the effect
    before it is held against the bounds (a change that noise alone gives). Returns the
    measure's record for the report and a finding when the change is significant and at least
    small.
    """
    bounds = bounds or ShareBounds()
    (ref_count, ref_n), (cur_count, cur_n) = reference, current
    p = ref_count / max(ref_n, 1)
    q = cur_count / max(cur_n, 1)
    effect = cohens_h(p, q)
    table = [[ref_count, ref_n - ref_count], [cur_count, cur_n - cur_count]]
    p_value = float(stats.fisher_exact(table)[1]) if ref_n and cur_n else math.nan
    level = bounds.level(effect - allowance) if p_value <= alpha else None
    record = {
        "measure": subject,
        "reference": p,
        "current": q,
        "effect": effect,
        "effect_name": "Cohen's h",
        "allowance": allowance,
        "p_value": p_value,
        "severity": None if level is None else str(level),
        "basis": "reference messages",
    }
    if level is None:
        return record, None
    text = (
        f"{what}: {q:.1%} of new messages, {p:.1%} of reference messages "
        f"(Cohen's h {effect:.2f}, p {p_value:.2g})"
    )
    evidence = {**record, "reference_messages": ref_n, "current_messages": cur_n}
    return record, Finding(kind, level, subject, text + (f"; {note}" if note else ""), evidence)


def share_against_bound(
    kind: str,
    subject: str,
    what: str,
    count: int,
    messages: int,
    bounds: tuple[float, float, float],
    *,
    note: str = "",
) -> tuple[dict[str, Any], Finding | None]:
    """Hold a share against fixed LOW, MEDIUM and HIGH bounds when no reference share exists.

    The lower end of the share's 95 % Wilson interval must reach a bound, so that a few
    messages cannot reach a high severity by chance; a bound of 0 is reached by one message.
    """
    share = count / max(messages, 1)
    low = _wilson_low(count, messages)
    level = None
    for severity, bound in zip((Severity.LOW, Severity.MEDIUM, Severity.HIGH), bounds, strict=True):
        if count > 0 and low >= bound:
            level = severity
    record = {
        "measure": subject,
        "reference": None,
        "current": share,
        "effect": None,
        "effect_name": "share",
        "p_value": None,
        "severity": None if level is None else str(level),
        "basis": "fixed bounds " + ", ".join(f"{b:.0%}" for b in bounds),
    }
    if level is None:
        return record, None
    text = (
        f"{what}: {share:.1%} of new messages ({count} of {messages}; at least {low:.1%} at "
        f"95 % confidence, bound {bounds[int(level) - 1]:.0%})"
    )
    evidence = {**record, "count": count, "messages": messages, "wilson_low": low}
    return record, Finding(kind, level, subject, text + (f"; {note}" if note else ""), evidence)


def _wilson_low(count: int, n: int, z: float = 1.959964) -> float:
    if n <= 0:
        return 0.0
    p = count / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def text_measures(
    texts: Sequence[str], ids: Sequence[Sequence[int]], *, unk_id: int | None, max_length: int
) -> dict[str, np.ndarray]:
    """Per message: token length (as cut), cut or not, unknown-token share, script and emptiness.

    ``texts`` are what the model reads (:func:`~threattune.mail_model.message_text`) and
    ``ids`` their token ids with special tokens, cut to ``max_length`` as scoring cuts them.
    """
    lengths = np.array([len(one) for one in ids], dtype=np.int64)
    content = np.maximum(lengths - 2, 1)
    unknown = np.array(
        [sum(1 for token in one if token == unk_id) if unk_id is not None else 0 for one in ids],
        dtype=np.float64,
    )
    non_ascii = np.zeros(len(texts))
    scripts = np.empty(len(texts), dtype=object)
    for position, text in enumerate(texts):
        sample = text[:_MEASURED_CHARS]
        letters = _LETTER.findall(sample)
        ascii_letters = len(_ASCII_LETTER.findall(sample))
        share = 1.0 - ascii_letters / len(letters) if letters else 0.0
        non_ascii[position] = share
        scripts[position] = _script(letters) if share >= _NON_LATIN_SHARE else "latin"
    return {
        "token_length": lengths,
        "truncated": lengths >= max_length,
        "unk_share": unknown / content,
        "non_ascii_share": non_ascii,
        "script": scripts,
        "no_text": np.array([not text.strip() for text in texts], dtype=bool),
    }


def _script(letters: list[str]) -> str:
    """The most common script among a message's non-ASCII letters (first word of its name)."""
    counts: dict[str, int] = {}
    for letter in [c for c in letters if not c.isascii()][:_SCRIPT_CHARS]:
        name = unicodedata.name(letter, "UNKNOWN").split(" ")[0].lower()
        counts[name] = counts.get(name, 0) + 1
    return max(counts, key=lambda k: counts[k]) if counts else "latin"


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """Embeddings scaled to unit length (cosine geometry), float32."""
    matrix = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


@dataclass(frozen=True)
class EmbeddingDrift:
    """How far the pooled embeddings of new mail lie from the reference.

    ``current_scores`` is each new message's out-of-fold probability, by the domain classifier,
    of being new mail rather than reference mail: the highest are the most unlike the reference.
    """

    auc: float
    ci_low: float
    ci_high: float
    p_value: float
    fold_aucs: tuple[float, ...]
    mmd2: float
    mmd_p: float
    permutations: int
    bandwidth: float
    n_reference: int
    n_current: int
    current_scores: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (without the per-message scores)."""
        return _plain(
            {
                "auc": self.auc,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "p_value": self.p_value,
                "fold_aucs": list(self.fold_aucs),
                "mmd2": self.mmd2,
                "mmd_p": self.mmd_p,
                "permutations": self.permutations,
                "bandwidth": self.bandwidth,
                "n_reference": self.n_reference,
                "n_current": self.n_current,
            }
        )


def domain_classifier(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    folds: int = 5,
    c: float = 0.1,
    seed: int = 0,
    ci_level: float = 0.95,
) -> tuple[float, float, float, float, tuple[float, ...], np.ndarray]:
    """Cross-validated AUC of a logistic regression telling ``current`` rows from ``reference``.

    Returns the mean fold AUC, its interval, the one-sided p-value against 0.5, the fold AUCs
    and every current row's out-of-fold probability of being current.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    x = np.vstack([reference, current]).astype(np.float64)
    y = np.repeat([0, 1], [len(reference), len(current)])
    folds = max(2, min(folds, len(reference), len(current)))
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = np.zeros(len(y))
    aucs = []
    with threadpool_limits(limits=1):
        for train, test in split.split(x, y):
            model = make_pipeline(
                StandardScaler(),
                LogisticRegression(C=c, class_weight="balanced", max_iter=2000),
            ).fit(x[train], y[train])
            scores[test] = model.predict_proba(x[test])[:, 1]
            aucs.append(_delong(y[test], scores[test])[0])
    auc = float(np.mean(aucs))
    # Interval and test on all out-of-fold scores together: with a few messages per fold the
    # per-fold variances collapse and would claim a certainty the sample cannot give.
    _, pooled_variance = _delong(y, scores)
    se = math.sqrt(pooled_variance)
    p_value = float(
        stats.mannwhitneyu(scores[y == 1], scores[y == 0], alternative="greater").pvalue
    )
    z = float(stats.norm.ppf(0.5 + ci_level / 2))
    return (
        auc,
        max(0.0, auc - z * se),
        min(1.0, auc + z * se),
        p_value,
        tuple(float(a) for a in aucs),
        scores[len(reference) :],
    )


def mmd_test(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    permutations: int = 500,
    max_rows: int = 1_000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Unbiased MMD² of two samples (Gaussian kernel), its permutation p-value and bandwidth.

    Rows are scaled to unit length; each side is subsampled to ``max_rows``. The bandwidth is
    the median distance between all pooled rows. The permutations are computed together as one
    matrix product, so 500 of them on 2,000 rows take about a second.
    """
    rng = np.random.default_rng(seed)
    x = unit_rows(_subsample(reference, max_rows, rng)).astype(np.float64)
    y = unit_rows(_subsample(current, max_rows, rng)).astype(np.float64)
    m, n = len(x), len(y)
    z = np.vstack([x, y])
    squared = np.maximum(2.0 - 2.0 * (z @ z.T), 0.0)
    off_diagonal = squared[~np.eye(len(z), dtype=bool)]
    median = float(np.median(off_diagonal))
    width = median if median > 1e-12 else 1.0
    kernel = np.exp(-squared / width)

    def statistic(member: np.ndarray) -> np.ndarray:
        """Unbiased MMD² for each column of ``member`` (1 marks a reference row)."""
        weighted = kernel @ member
        total = kernel.sum()
        xx = np.einsum("ij,ij->j", member, weighted)
        xy = np.einsum("ij,ij->j", member, kernel.sum(axis=1, keepdims=True) - weighted)
        yy = total - 2.0 * xy - xx
        return (xx - m) / (m * (m - 1)) + (yy - n) / (n * (n - 1)) - 2.0 * xy / (m * n)

    observed = float(statistic(np.repeat([1.0, 0.0], [m, n])[:, None])[0])
    member = np.zeros((m + n, permutations))
    for column in range(permutations):
        member[rng.permutation(m + n)[:m], column] = 1.0
    null = statistic(member)
    p_value = float((1 + np.count_nonzero(null >= observed)) / (1 + permutations))
    return observed, p_value, math.sqrt(width)


def _subsample(rows: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    if len(rows) <= count:
        return np.asarray(rows)
    return np.asarray(rows)[np.sort(rng.choice(len(rows), size=count, replace=False))]


def embedding_drift(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    folds: int = 5,
    permutations: int = 500,
    max_rows: int = 1_000,
    seed: int = 0,
) -> EmbeddingDrift:
    """Both embedding tests: the domain classifier on every message, MMD on a subsample."""
    if len(reference) < _MIN_MESSAGES or len(current) < _MIN_MESSAGES:
        raise DataError(
            "too few messages to compare embeddings",
            field="messages",
            expected=f"at least {_MIN_MESSAGES} reference and {_MIN_MESSAGES} new messages",
            found=f"{len(reference)} reference, {len(current)} new",
        )
    if reference.shape[1] != current.shape[1]:
        raise DataError(
            "reference and new embeddings differ in width",
            field="embeddings",
            expected=f"{reference.shape[1]} values per message",
            found=str(current.shape[1]),
            fix="diagnose with the model the reference embeddings were stored with",
        )
    auc, low, high, p_value, fold_aucs, scores = domain_classifier(
        reference, current, folds=folds, seed=seed
    )
    mmd2, mmd_p, bandwidth = mmd_test(
        reference, current, permutations=permutations, max_rows=max_rows, seed=seed
    )
    logger.info("embedding drift: AUC %.3f (p=%.2g), MMD² %.4f (p=%.3g)", auc, p_value, mmd2, mmd_p)
    return EmbeddingDrift(
        auc=auc,
        ci_low=low,
        ci_high=high,
        p_value=p_value,
        fold_aucs=fold_aucs,
        mmd2=mmd2,
        mmd_p=mmd_p,
        permutations=permutations,
        bandwidth=bandwidth,
        n_reference=len(reference),
        n_current=len(current),
        current_scores=scores,
    )


def embedding_findings(
    result: EmbeddingDrift,
    unlike: Sequence[dict[str, Any]] = (),
    *,
    alpha: float = 0.01,
    thresholds: DriftThresholds | None = None,
) -> list[Finding]:
    """The embedding-drift finding: its severity from the AUC, gated by both tests' p-values."""
    thresholds = thresholds or DriftThresholds()
    classifier = result.p_value <= alpha
    kernel = result.mmd_p <= alpha
    if result.auc >= thresholds.auc_major:
        level = Severity.HIGH
    elif result.auc >= thresholds.auc_moderate:
        level = Severity.MEDIUM
    else:
        level = Severity.LOW
    if not (classifier and kernel):
        level = Severity.LOW if (classifier or kernel) else Severity.INFO
    measured = (
        f"a classifier tells new mail from the reference with AUC {result.auc:.2f} (95 % interval "
        f"{result.ci_low:.2f} to {result.ci_high:.2f}, p {result.p_value:.2g}); MMD² "
        f"{result.mmd2:.4f} (permutation p {result.mmd_p:.2g}), on {result.n_current} new and "
        f"{result.n_reference} reference messages"
    )
    if level == Severity.INFO:
        text = "the new mail's embeddings look like the reference: " + measured
    elif level == Severity.LOW:
        text = "the new mail's embeddings differ slightly or inconclusively: " + measured
    else:
        text = "the new mail is about other things or written otherwise: " + measured
        subjects = [str(e.get("subject") or "(no subject)") for e in unlike[:3]]
        if subjects:
            text += "; most unlike the reference: " + "; ".join(repr(s[:60]) for s in subjects)
    evidence = result.to_dict()
    evidence["most_unlike"] = [
        {k: e.get(k) for k in ("subject", "source", "domain_score")} for e in unlike[:10]
    ]
    return [Finding("embedding-drift", level, "embeddings", text, evidence)]


def tokenizer_audit(
    stored: dict[str, Any],
    loaded: dict[str, Any],
    *,
    hidden_size: int | None = None,
    embedding_rows: int | None = None,
    max_positions: int | None = None,
    reference_width: int | None = None,
) -> list[Finding]:
    """Compare a mail model's stored fingerprint with the tokenizer and settings loaded now.

    ``loaded`` holds the same fields as the fingerprint (``TextClassifier.describe()`` plus the
    text normalisation of this installation). Every mismatch is a finding naming the field,
    the stored and the found value and the fix: HIGH for what changes the token ids or the
    cut, MEDIUM for another minor library version, LOW for another patch release. The
    encoder's own limits are checked too: token ids beyond its embedding table, a cut longer
    than its positions, reference embeddings of another width.
    """
    found: list[Finding] = []
    for name in AUDITED_FIELDS:
        if name not in stored:
            found.append(
                Finding(
                    "fingerprint-field",
                    Severity.LOW,
                    name,
                    f"the model's fingerprint does not record {name}, so it cannot be checked",
                    {"field": name, "found": loaded.get(name)},
                )
            )
            continue
        was, now = stored.get(name), loaded.get(name)
        if str(was) == str(now):
            continue
        severity = Severity.HIGH
        if name.endswith("_version"):
            severity = Severity.MEDIUM if _minor(was) != _minor(now) else Severity.LOW
        found.append(
            Finding(
                "tokenizer-mismatch" if name != "text_normalisation" else "normalisation-mismatch",
                severity,
                name,
                f"{name}: the model was trained with {was!r}, this installation has {now!r}; "
                f"fix: {_FIXES[name]}",
                {"field": name, "stored": was, "found": now, "fix": _FIXES[name]},
            )
        )
    vocabulary = loaded.get("vocabulary_size")
    if embedding_rows is not None and isinstance(vocabulary, int) and vocabulary > embedding_rows:
        found.append(
            _limit(
                "vocabulary_size",
                vocabulary,
                f"at most {embedding_rows} (rows of the encoder's embedding table)",
                "token ids beyond the table fail or read the wrong rows; restore the tokenizer "
                "the encoder was trained with",
            )
        )
    length = loaded.get("max_length")
    if max_positions is not None and isinstance(length, int) and length > max_positions:
        found.append(
            _limit(
                "max_length",
                length,
                f"at most {max_positions} (the encoder's positions)",
                "set max_length within the encoder's positions",
            )
        )
    if hidden_size is not None and reference_width is not None and reference_width != hidden_size:
        found.append(
            _limit(
                "reference_embeddings",
                reference_width,
                f"{hidden_size} values per message (the encoder's width)",
                "store reference embeddings of this model, or pass --reference with mail",
            )
        )
    return found


def _limit(name: str, value: Any, expected: str, fix: str) -> Finding:
    return Finding(
        "encoder-limit",
        Severity.HIGH,
        name,
        f"{name} is {value}, expected {expected}; fix: {fix}",
        {"field": name, "found": value, "expected": expected, "fix": fix},
    )


def _minor(version: Any) -> str:
    """``major.minor`` of a version string."""
    return ".".join(str(version).split(".")[:2])
