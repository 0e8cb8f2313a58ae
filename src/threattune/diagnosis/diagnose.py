"""Diagnose a new network segment: why does the model raise false positives here?

:func:`diagnose` reads the segment as the model reads input, then runs the checks a senior
engineer would, and ranks what they find as :class:`~threattune.findings.Finding` objects:

1. **pipeline audit** (:mod:`.audit`): missing or renamed columns, text in numeric columns,
   unseen categories, values outside the training range, unit changes, preprocessing version;
2. **data drift** (:func:`~threattune.diagnosis.detect_drift`): per feature, multivariate, and of
   the model's predictions;
3. **novelty** (:mod:`.novelty`): rows unlike any training row of their predicted class; with
   labels, the classes absent from training and how much of them the score flags;
4. **label-free estimate** (:mod:`.estimate`): expected precision and benign FPR from calibrated
   scores, compared with the truth when labels are given;
5. **evasion** (:mod:`.adversarial`): alerts that flip to benign under small changes of the
   features an attacker controls.

Findings are ranked by severity, and within a severity pipeline problems come first, since a
broken export explains drift, novelty and false positives at once.

Large segments are not read whole into the checks: every row goes through the pipeline audit,
and a uniform seeded sample of at most ``max_rows`` rows (200,000 by default) feeds the rest.

A mail model is diagnosed by :func:`~threattune.diagnosis.mail.diagnose_mail` instead (the
same :class:`Diagnosis`, with ``text`` holding what the text checks measured).

>>> diagnosis = diagnose("runs/nsl-kdd/model", None, "segment.csv")  # doctest: +SKIP
>>> diagnosis.write("diagnosis/")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from threattune.diagnosis.adversarial import (
    AdversarialResult,
    adversarial_findings,
    evasion_check,
)
from threattune.diagnosis.audit import SegmentAudit, audit_findings
from threattune.diagnosis.drift import DriftReport, detect_drift
from threattune.diagnosis.estimate import (
    Estimate,
    estimate_findings,
    fit_attack_calibrator,
    label_free_estimate,
)
from threattune.diagnosis.novelty import (
    NoveltyDetector,
    NoveltyResult,
    TabularSpace,
    novelty_findings,
)
from threattune.diagnosis.profile import ReferenceProfile
from threattune.errors import ConfigError, DataError, ModelError, SchemaMismatch
from threattune.findings import Finding, Severity, worst
from threattune.flow_model import REFERENCE_PROFILE, FlowModel
from threattune.scoring import headerless_names
from threattune.sources import _tables
from threattune.sources.flows import nsl_kdd_category

if TYPE_CHECKING:
    from threattune.mail_model import MailModel

__all__ = ["MAX_ROWS", "Diagnosis", "Segment", "diagnose", "read_segment"]

logger = logging.getLogger(__name__)

MAX_ROWS = 200_000
"""Segment rows sampled for the checks after the pipeline audit."""

_PIPELINE_KINDS = (
    "missing-column",
    "type-change",
    "unit-change",
    "unseen-category",
    "preprocessing-version",
    "missing-values",
    "out-of-range",
    "extra-column",
)
_KIND_ORDER = {kind: i for i, kind in enumerate(_PIPELINE_KINDS)}
_EXAMPLES = 20


@dataclass(eq=False)
class Segment:
    """A segment as the model reads it: sampled features, extra columns and the audit.

    ``positions`` are the sampled rows' 0-based positions in the file, in file order.
    """

    source: str
    features: pd.DataFrame
    extra: pd.DataFrame
    positions: np.ndarray
    n_rows: int
    audit: SegmentAudit


@dataclass(eq=False)
class Diagnosis:
    """Everything the diagnosis of one segment found, findings ranked most severe first."""

    model: str
    reference: str
    current: str
    rows_read: int
    rows_diagnosed: int
    findings: list[Finding]
    drift: DriftReport | None = None
    novelty: NoveltyResult | None = None
    adversarial: AdversarialResult | None = None
    estimate: Estimate | None = None
    labels: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    text: Any = None
    unit: str = "rows"

    @property
    def severity(self) -> Severity:
        """The worst severity found (INFO when nothing was)."""
        return worst(self.findings) or Severity.INFO

    def above(self, severity: Severity = Severity.INFO) -> list[Finding]:
        """Findings more severe than ``severity``."""
        return [f for f in self.findings if f.severity > severity]

    def to_dict(self) -> dict[str, Any]:
        """The diagnosis as JSON-ready types."""
        from threattune.diagnosis.drift import _plain

        return _plain(
            {
                "model": self.model,
                "reference": self.reference,
                "current": self.current,
                "rows_read": self.rows_read,
                "rows_diagnosed": self.rows_diagnosed,
                "severity": str(self.severity),
                "findings": [f.to_dict() for f in self.findings],
                "drift": None if self.drift is None else self.drift.to_dict(),
                "novelty": None if self.novelty is None else self.novelty.to_dict(),
                "adversarial": None if self.adversarial is None else self.adversarial.to_dict(),
                "estimate": None if self.estimate is None else self.estimate.to_dict(),
                "labels": self.labels,
                "seconds": self.seconds,
                "unit": self.unit,
                "text": None if self.text is None else self.text.to_dict(),
            }
        )

    def write(self, folder: str | Path) -> Path:
        """Write ``diagnosis.json`` and a self-contained ``diagnosis.html``; returns the HTML."""
        from threattune.diagnosis.report import write_report

        return write_report(self, Path(folder))


def diagnose(
    model: FlowModel | MailModel | str | Path,
    reference: ReferenceProfile | str | Path | Sequence[str | Path] | None,
    current: str | Path | pd.DataFrame | Sequence[str | Path],
    labels: str | Path | Sequence[Any] | np.ndarray | pd.Series | None = None,
    *,
    known_labels: Sequence[str] | None = None,
    max_rows: int = MAX_ROWS,
    multivariate: bool = True,
    adversarial: bool = True,
    max_messages: int = 2_000,
    seed: int = 0,
) -> Diagnosis:
    """Diagnose segment ``current`` against the model's ``reference``; findings ranked.

    For a mail model ``current`` (and ``reference``, when given) is mail and ``labels`` are
    ``LABEL=PATH`` inputs; see :func:`~threattune.diagnosis.mail.diagnose_mail`.

    Parameters
    ----------
    model:
        A flow model, its folder, or a ``models:/NAME@ALIAS`` URI.
    reference:
        None for the profile stored with the model, a saved profile (``.json``/``.json.gz``) or
        a flows file read as the model reads input.
    current:
        The segment's flows file (or a frame of raw rows with the model's column names).
    labels:
        Optional truth: the name of a column of ``current`` (``attack`` in NSL-KDD files), a
        file with one label per segment row, or the labels themselves.
    known_labels:
        Labels that occurred in training. By default the model's classes, plus for NSL-KDD the
        attack names of the training files when they can be read.
    max_rows:
        Rows sampled for everything but the pipeline audit, which sees every row.
    max_messages:
        Messages sampled on each side, for a mail model.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    flow_model = _open(model)
    if getattr(flow_model, "kind", "flow") == "mail":
        from threattune.diagnosis.mail import diagnose_mail

        return diagnose_mail(
            flow_model, reference, current, labels, max_messages=max_messages, seed=seed
        )  # type: ignore[arg-type]
    for name, value in (("--current", current), ("--reference", reference)):
        if isinstance(value, list | tuple):
            raise ConfigError(
                "a flow model is diagnosed on one file at a time",
                field=name,
                expected="one flows file",
                found=", ".join(map(str, value)),
            )
    label_column = labels if isinstance(labels, str) and not Path(labels).is_file() else None
    keep = [label_column] if label_column else []
    segment = read_segment(flow_model, current, max_rows=max_rows, seed=seed, keep=keep)
    profile, reference_name = _reference(flow_model, reference, max_rows, seed)
    timings["read"] = time.perf_counter() - started

    started = time.perf_counter()
    features = segment.features
    proba = flow_model.predict_proba(features)
    decisions = flow_model.decide(proba)
    truth = _labels(flow_model, labels, segment)
    sample = profile.sample[[c for c in flow_model.fingerprint.names if c in profile.sample]]
    reference_features = _as_features(flow_model, sample)
    reference_proba = flow_model.predict_proba(reference_features)
    findings = audit_findings(segment.audit, profile, features, model_manifest=flow_model.manifest)
    timings["audit"] = time.perf_counter() - started

    started = time.perf_counter()
    present = [c for c in features.columns if c not in set(segment.audit.missing)]
    drift = detect_drift(
        profile,
        features[present],
        predictions=decisions.classes if profile.predictions is not None else None,
        multivariate=multivariate,
        seed=seed,
    )
    findings += [f for f in drift.findings if f.kind != "missing-feature"]
    timings["drift"] = time.perf_counter() - started

    started = time.perf_counter()
    novelty = _novelty(flow_model, sample, reference_proba, features, decisions.classes, truth)
    novelty.by_label = _by_label(flow_model, novelty, decisions.alerts, truth, known_labels)
    findings += novelty_findings(novelty)
    timings["novelty"] = time.perf_counter() - started

    started = time.perf_counter()
    estimate = _estimate(flow_model, proba, decisions.alerts, truth, reference_proba, seed)
    if estimate is not None:
        findings += estimate_findings(estimate)
    timings["estimate"] = time.perf_counter() - started

    started = time.perf_counter()
    evasion = None
    if adversarial:
        evasion = _evasion(flow_model, features, decisions, truth, seed)
        reference_decisions = flow_model.decide(reference_proba)
        baseline = _evasion(flow_model, reference_features, reference_decisions, None, seed)
        findings += adversarial_findings(evasion, baseline)
    timings["adversarial"] = time.perf_counter() - started

    diagnosis = Diagnosis(
        model=str(flow_model.folder or model),
        reference=reference_name,
        current=segment.source,
        rows_read=segment.n_rows,
        rows_diagnosed=len(features),
        findings=_rank(findings),
        drift=drift,
        novelty=novelty,
        adversarial=evasion,
        estimate=estimate,
        labels=None if truth is None else _label_summary(flow_model, truth),
        seconds=timings,
    )
    logger.info(
        "diagnosed %d of %d segment rows: %d findings above info, worst %s",
        len(features),
        segment.n_rows,
        len(diagnosis.above()),
        diagnosis.severity,
    )
    return diagnosis


def read_segment(
    model: FlowModel,
    source: str | Path | pd.DataFrame,
    *,
    max_rows: int = MAX_ROWS,
    seed: int = 0,
    keep: Sequence[str] = (),
    batch_rows: int = 65_536,
) -> Segment:
    """Read a segment as the model reads input, audit every row, keep a uniform sample.

    The sample keeps the rows with the ``max_rows`` smallest random keys, which is a uniform
    sample without knowing the row count in advance. ``keep`` names non-feature columns to
    carry along (a label column, say).
    """
    try:
        return _read(model, source, max_rows, seed, keep, batch_rows, text=False)
    except SchemaMismatch:
        if isinstance(source, pd.DataFrame):
            raise
        logger.warning("%s: a numeric column holds text; reading every column as text", source)
        return _read(model, source, max_rows, seed, keep, batch_rows, text=True)


def _read(
    model: FlowModel,
    source: str | Path | pd.DataFrame,
    max_rows: int,
    seed: int,
    keep: Sequence[str],
    batch_rows: int,
    *,
    text: bool,
) -> Segment:
    audit = SegmentAudit(model.fingerprint)
    rng = np.random.default_rng(seed)
    kept: list[pd.DataFrame] = []
    n_rows = 0
    name = "<frame>" if isinstance(source, pd.DataFrame) else str(source)
    for batch in _batches(model, source, batch_rows, text=text):
        features = audit.features(batch)
        extras = [c for c in keep if c in batch.columns]
        part = features.join(batch[extras].add_prefix("extra:")) if extras else features
        part = part.assign(_key=rng.random(len(batch)), _position=np.arange(len(batch)) + n_rows)
        kept.append(part)
        n_rows += len(batch)
        if sum(len(k) for k in kept) > 2 * max_rows:
            kept = [_smallest(pd.concat(kept, ignore_index=True), max_rows)]
    if n_rows == 0:
        raise DataError("the segment has no rows", path=name, expected="at least one flow")

    sample = _smallest(pd.concat(kept, ignore_index=True), max_rows)
    sample = sample.sort_values("_position", kind="stable").reset_index(drop=True)
    extra = sample[[c for c in sample.columns if c.startswith("extra:")]]
    if n_rows > max_rows:
        logger.info("sampled %d of %d segment rows", max_rows, n_rows)
    return Segment(
        source=name,
        features=sample[model.fingerprint.names],
        extra=extra.rename(columns=lambda c: c.removeprefix("extra:")),
        positions=sample["_position"].to_numpy(),
        n_rows=n_rows,
        audit=audit,
    )


def _smallest(frame: pd.DataFrame, count: int) -> pd.DataFrame:
    if len(frame) <= count:
        return frame
    return frame.iloc[np.argpartition(frame["_key"].to_numpy(), count)[:count]]


def _batches(
    model: FlowModel, source: str | Path | pd.DataFrame, batch_rows: int, *, text: bool
) -> Iterator[pd.DataFrame]:
    """Raw batches: numeric columns typed for speed, or every column as text."""
    if isinstance(source, pd.DataFrame):
        for start in range(0, len(source), batch_rows):
            yield source.iloc[start : start + batch_rows].reset_index(drop=True)
        return
    path = Path(source)
    names = headerless_names(model, path)
    header = names or _header(path)
    numeric = [c.name for c in model.fingerprint.columns if c.kind == "numeric"]
    typed = [] if text else [c for c in numeric if c in header]
    yield from _tables.iter_batches(path, names=names, batch_rows=batch_rows, numeric_columns=typed)


def _header(path: Path) -> list[str]:
    if _tables.is_parquet(path):
        return []
    return [c.strip() for c in next(csv.reader([_tables.first_line(path)]))]


def _open(model: Any) -> Any:
    """The flow model (or mail model) behind a model object, folder or registry URI."""
    if isinstance(model, FlowModel) or getattr(model, "kind", None) == "mail":
        return model
    from threattune.tracking import open_model

    return open_model(model, with_baseline=False)


def _reference(
    model: FlowModel, reference: ReferenceProfile | str | Path | None, max_rows: int, seed: int
) -> tuple[ReferenceProfile, str]:
    """The reference profile: the model's own, a saved one, or one built from a flows file."""
    if isinstance(reference, ReferenceProfile):
        return reference, "<profile>"
    if reference is None:
        path = Path(model.folder or ".") / REFERENCE_PROFILE
        if not path.is_file():
            raise ModelError(
                "the model holds no reference profile",
                path=path,
                fix="pass --reference with the training flows, or retrain the model",
            )
        return ReferenceProfile.load(path), f"{path} (training flows)"
    path = Path(reference)
    if path.name.endswith((".json", ".json.gz")):
        return ReferenceProfile.load(path), str(path)
    rows = read_segment(model, path, max_rows=max_rows, seed=seed + 1)
    predicted = model.decide(model.predict_proba(rows.features)).classes
    profile = ReferenceProfile.from_frame(
        rows.features,
        categorical=model.encoder.categorical,
        predictions=pd.Series(predicted, dtype=object),
        seed=seed,
    )
    return profile, str(path)


def _labels(
    model: FlowModel,
    labels: str | Path | Sequence[Any] | np.ndarray | pd.Series | None,
    segment: Segment,
) -> np.ndarray | None:
    """The raw label of each sampled segment row, as text."""
    if labels is None:
        return None
    if isinstance(labels, str | Path) and not Path(labels).is_file():
        if str(labels) not in segment.extra.columns:
            raise ConfigError(
                "label column not found in the segment",
                field="labels",
                expected="a column of the segment file or a file of labels",
                found=str(labels),
                fix="NSL-KDD files hold their labels in the column 'attack'",
            )
        values = segment.extra[str(labels)]
    else:
        if isinstance(labels, str | Path):
            table = _tables.read_table(Path(labels))
            values = table[_label_column(model, table)]
        else:
            values = pd.Series(np.asarray(labels, dtype=object))
        if len(values) != segment.n_rows:
            raise DataError(
                "labels do not match the segment rows",
                field="labels",
                expected=f"{segment.n_rows} labels, one per segment row",
                found=str(len(values)),
            )
        values = values.iloc[segment.positions]
    return values.astype(str).str.strip().str.rstrip(".").to_numpy(dtype=object)


def _label_column(model: FlowModel, table: pd.DataFrame) -> str:
    for name in (model.fingerprint.input_format.get("label_column"), "attack", "label", "class"):
        if name and name in table.columns:
            return str(name)
    if len(table.columns) == 1:
        return str(table.columns[0])
    raise ConfigError(
        "cannot tell which column of the labels file holds the labels",
        field="labels",
        expected="a single column, or one named label, class or attack",
        found=", ".join(map(str, table.columns[:10])),
    )


def _model_class(model: FlowModel, label: str) -> str | None:
    """The model class a raw label belongs to, or None when it has none."""
    if label in model.classes:
        return label
    if model.fingerprint.input_format.get("reader") == "nsl-kdd":
        category = nsl_kdd_category(label)
        if category is None:
            return None
        if model.fingerprint.input_format.get("granularity") == "binary":
            return "normal" if category == "normal" else "attack"
        return category if category in model.classes else None
    return None


def _known_labels(model: FlowModel, known: Sequence[str] | None) -> set[str]:
    """Labels seen in training: given, or the classes and (NSL-KDD) training attack names."""
    if known is not None:
        return {str(label) for label in known}
    found = set(model.classes)
    if model.fingerprint.input_format.get("reader") != "nsl-kdd":
        return found
    for text in str(model.manifest.get("training_source", "")).split(","):
        path = Path(text.strip())
        if not path.is_file():
            logger.info("training file %s not found; known labels are the classes", path)
            continue
        attacks = pd.read_csv(path, header=None, usecols=[41], dtype=str)[41]
        found |= set(attacks.str.strip().str.rstrip(".").unique())
    return found


def _novelty(
    model: FlowModel,
    sample: pd.DataFrame,
    reference_proba: np.ndarray,
    features: pd.DataFrame,
    predicted: np.ndarray,
    truth: np.ndarray | None,
) -> NoveltyResult:
    """Fit the novelty score on the reference sample and score the segment."""
    space = TabularSpace.fit(sample, model.encoder.categorical)
    reference_classes = model.decide(reference_proba).classes
    codes = {name: i for i, name in enumerate(model.classes)}
    detector = NoveltyDetector.fit(
        space.transform(sample), np.array([codes[c] for c in reference_classes])
    )
    segment_codes = np.array([codes[c] for c in predicted])
    scores = detector.score(space.transform(features[sample.columns]), segment_codes)
    thresholds = detector.threshold_for(segment_codes)
    flags = scores > thresholds
    by_class = {}
    for name, code in codes.items():
        members = segment_codes == code
        by_class[name] = {
            "rows": int(members.sum()),
            "flagged": int(flags[members].sum()),
            "rate": float(flags[members].mean()) if members.any() else 0.0,
        }
    margin = scores / np.maximum(thresholds, 1e-12)
    top = np.argsort(-margin)[:_EXAMPLES]
    examples = []
    for row in top[flags[top]]:
        entry = {"row": int(row), "predicted": str(predicted[row]), "score": float(scores[row])}
        if truth is not None:
            entry["label"] = str(truth[row])
        entry["features"] = {k: _plain_value(v) for k, v in features.iloc[row].items()}
        examples.append(entry)
    reference_thresholds = detector.threshold_for(np.array([codes[c] for c in reference_classes]))
    reference_rate = float((detector.reference_scores > reference_thresholds).mean())
    return NoveltyResult(
        n_rows=len(features),
        flagged=int(flags.sum()),
        reference_rate=reference_rate,
        by_class=by_class,
        examples=examples,
        scores=margin,
        flags=flags,
        reference_scores=detector.reference_scores / np.maximum(reference_thresholds, 1e-12),
        threshold=detector.pooled_threshold,
    )


def _by_label(
    model: FlowModel,
    novelty: NoveltyResult,
    alerts: np.ndarray,
    truth: np.ndarray | None,
    known: Sequence[str] | None,
) -> dict[str, dict[str, Any]]:
    if truth is None:
        return {}
    seen = _known_labels(model, known)
    out = {}
    labels, counts = np.unique(truth, return_counts=True)
    for label in labels[np.argsort(-counts)][:100]:
        members = truth == label
        out[str(label)] = {
            "rows": int(members.sum()),
            "flag_rate": float(novelty.flags[members].mean()),
            "alert_rate": float(alerts[members].mean()),
            "novel": str(label) not in seen,
            "model_class": _model_class(model, str(label)),
        }
    novel = [v for v in out.values() if v["novel"]]
    if novel:
        rows = sum(v["rows"] for v in novel)
        flagged = sum(v["rows"] * v["flag_rate"] for v in novel)
        logger.info(
            "%d novel labels, %d rows, %.1f%% flagged by novelty",
            len(novel),
            rows,
            100 * flagged / max(rows, 1),
        )
    return out


def _as_features(model: FlowModel, sample: pd.DataFrame) -> pd.DataFrame:
    """Reference sample rows typed as the model's input (categories as text)."""
    out = sample.copy()
    for name in model.fingerprint.categorical:
        if name in out:
            out[name] = out[name].astype(object).where(out[name].notna(), None)
    return out


def _estimate(
    model: FlowModel,
    proba: np.ndarray,
    alerts: np.ndarray,
    truth: np.ndarray | None,
    reference_proba: np.ndarray,
    seed: int,
) -> Estimate | None:
    """The label-free estimate from validation-calibrated attack scores."""
    try:
        classes, validation = model.validation_scores()
    except ModelError as error:
        logger.warning("no label-free estimate: %s", error.message)
        return None
    calibrator = fit_attack_calibrator(classes, validation, model.benign_index, model.classes)
    probability = calibrator.transform(1.0 - proba[:, model.benign_index])
    estimate = label_free_estimate(probability, alerts, seed=seed, calibration=calibrator.method)
    validation_alerts = model.decide(validation).alerts
    validation_benign = classes == model.benign_class
    validation_fpr = float(validation_alerts[validation_benign].mean())
    validation_precision = float((~validation_benign[validation_alerts]).mean())
    reference = label_free_estimate(
        calibrator.transform(1.0 - reference_proba[:, model.benign_index]),
        model.decide(reference_proba).alerts,
        bootstrap=0,
    )
    values: dict[str, Any] = {
        "validation_fpr": validation_fpr,
        "validation_precision": validation_precision,
        "reference_fpr": reference.fpr,
        "reference_precision": reference.precision,
    }
    if truth is not None:
        benign = _is_benign(model, truth)
        values["true_fpr"] = float(alerts[benign].mean()) if benign.any() else float("nan")
        values["true_precision"] = float((~benign[alerts]).mean()) if alerts.any() else float("nan")
    return replace(estimate, **values)


def _is_benign(model: FlowModel, truth: np.ndarray) -> np.ndarray:
    return np.array([_model_class(model, str(label)) == model.benign_class for label in truth])


def _evasion(
    model: FlowModel,
    features: pd.DataFrame,
    decisions: Any,
    truth: np.ndarray | None,
    seed: int,
) -> AdversarialResult:
    """Evasion check on alerted attack rows (true attacks when labels are given), by class."""
    alerted = decisions.alerts.copy()
    if truth is not None:
        alerted &= ~_is_benign(model, truth)
    rows = np.flatnonzero(alerted)
    names = decisions.classes[rows]
    return evasion_check(
        features.iloc[rows],
        names,
        lambda frame: model.decide(model.predict_proba(frame)).alerts,
        model.fingerprint,
        seed=seed,
    )


def _label_summary(model: FlowModel, truth: np.ndarray) -> dict[str, Any]:
    counts = pd.Series(truth).value_counts()
    return {
        "rows": len(truth),
        "benign": int(_is_benign(model, truth).sum()),
        "labels": {str(k): int(v) for k, v in counts.head(50).items()},
    }


def _rank(findings: list[Finding]) -> list[Finding]:
    """Most severe first; within a severity, pipeline problems, then the rest as found."""
    order = {id(f): i for i, f in enumerate(findings)}
    return sorted(
        findings,
        key=lambda f: (-f.severity, _KIND_ORDER.get(f.kind, len(_KIND_ORDER)), order[id(f)]),
    )


def _plain_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
