"""The two-stage filter: stage one alerts for recall, stage two filters its false positives.

Stage one is a trained flow or mail model at its operating point. Stage two is a specialised
binary model trained only on stage-one alerts and the analysts' verdicts on them, answering
"true positive or false positive?". For flows it is boosted trees over the flow's features plus
stage one's class probabilities and attack score; for mail it is the logistic regression of
:mod:`threattune.mail_cascade` over stage one's threat score, the TF-IDF baseline's score, a
projection of the pooled embedding and the message's evidence. An alert reaches an analyst only
when stage two scores it at or above its threshold.

The threshold spends a recall-loss budget: it is the highest threshold that drops at most
``recall_budget`` of stage one's true positives (losing 1 % of the true positives costs at most
1 point of recall, since recall is at most 1), so that stage two removes as many false
positives as that budget allows. It is chosen on out-of-fold scores of all the training
verdicts: each fold is scored by a stage two fitted, as the final one is, without it. A few
hundred verdicts hold few false positives, and a threshold chosen on one 30 % part of them
moves with the part drawn; every verdict counting once steadies it.

A recall guard covers what the verdicts have not shown. Stage two learns what a true positive
of each stage-one class looks like only from the verdicts on that class; when a class it has
too few true-positive verdicts of appears later (a new attack campaign), its scores for those
alerts mean little, and a threshold chosen on the familiar classes drops them. So an alert whose
stage-one class has fewer than ``min_class_verdicts`` true-positive verdicts is kept whenever
stage one is at least as sure of it as of nearly all of its own validation true positives of
that class: the class's **floor**, the highest attack score that drops at most
``recall_budget`` of them (95 % Wilson upper bound), chosen on stage one's stored validation
split. Only less certain alerts of such classes are left to stage two. Familiar classes are
filtered by the threshold alone; a class stage one's validation split holds no true positive of
is never filtered.

An evaluation that cannot fool itself measures a cascade only on alerts it never trained on:
:func:`evaluate_cascade` refuses a segment that shares an alert id with the training verdicts,
and :func:`split_by_order` splits a segment in time, the first slice to train, the rest to
measure. A segment that knows when each alert was raised (mail: the Date header) is
also checked in time: every measured alert must come after the last training alert.

A cascade saves as a folder with no pickle in it::

    cascade.json           manifest: kind, threshold, budget, settings, stage-one reference
    stage2.json            stage two: XGBoost JSON (flows) or coefficients as JSON (mail)
    training_alerts.json   the ids (and last time) of the alerts whose verdicts trained it

The stage-one model is referenced (folder or registry URI, and the SHA-256 of its trees, or of
a mail model's transformer and baseline), not copied; loading checks that the referenced model
is the one stage two was trained on.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from threattune import __version__, tracking
from threattune._jsonfile import read_json, write_json
from threattune.errors import DataError, ModelError, ThreatTuneError
from threattune.flow_model import Decisions, FlowModel
from threattune.models.tabular import BoostedTrees, BoostedTreesSettings
from threattune.operating_point import proportion_interval
from threattune.training import stratified_split
from threattune.verdicts import (
    BENIGN_TRUE_POSITIVE,
    FALSE_POSITIVE,
    Verdict,
    VerdictStore,
    normalise_verdict,
)

if TYPE_CHECKING:
    from threattune.mail_cascade import MailStageTwoSettings
    from threattune.mail_model import MailModel

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT_VERSION",
    "STAGE_TWO_SETTINGS",
    "DEFAULT_MIN_CLASS_VERDICTS",
    "DEFAULT_THRESHOLD_FOLDS",
    "Cascade",
    "CascadeDecisions",
    "CascadeEvaluation",
    "RecallGuard",
    "Segment",
    "StageTwoModel",
    "cascade_from_labels",
    "check_disjoint",
    "choose_stage_two_threshold",
    "class_floors",
    "evaluate_cascade",
    "load_segment",
    "open_stage_one",
    "split_by_order",
    "segment_manifest",
    "split_segment",
    "stage_one_digest",
    "stage_one_proba",
    "stage_one_version",
    "stage_two_matrix",
    "stage_two_name",
    "track_cascade",
    "train_stage_two",
    "verdicts_for_alerts",
    "with_stage_two_inputs",
]

FORMAT_VERSION = 1
MANIFEST = "cascade.json"
STAGE_TWO_FILE = "stage2.json"
TRAINING_ALERTS = "training_alerts.json"
DEFAULT_MIN_CLASS_VERDICTS = 50
"""True-positive verdicts of a stage-one class below which the recall guard protects it."""
DEFAULT_THRESHOLD_FOLDS = 5
"""Folds whose out-of-fold scores choose stage two's threshold (0: the validation part alone)."""
STAGE_TWO_SETTINGS = BoostedTreesSettings(
    max_depth=6,
    learning_rate=0.1,
    max_rounds=400,
    early_stopping_rounds=30,
    class_weight="none",
)


class StageTwoModel(Protocol):
    """What a cascade needs of stage two: P(true positive) per row of its matrix, and a file."""

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray: ...

    def save(self, path: Path) -> None: ...


# --- stage-one identity -----------------------------------------------------------------------


def _is_mail(model: FlowModel | MailModel) -> bool:
    return getattr(model, "kind", None) == "mail"


def _kind(model: FlowModel | MailModel) -> str:
    return "mail" if _is_mail(model) else "flow"


def _trees_digest(model: FlowModel) -> str:
    """SHA-256 of stage one's trees, the identity stage two was trained against."""
    if model.folder is None or not (Path(model.folder) / "trees.json").is_file():
        raise ModelError("the stage-one model has no saved trees; save it first")
    return hashlib.sha256((Path(model.folder) / "trees.json").read_bytes()).hexdigest()


def stage_one_digest(model: FlowModel | MailModel) -> str:
    """SHA-256 of what stage two depends on: a flow model's trees, a mail model's weights."""
    if _is_mail(model):
        from threattune.mail_cascade import mail_digest

        return mail_digest(model)  # type: ignore[arg-type]
    return _trees_digest(model)  # type: ignore[arg-type]


def stage_one_version(model: FlowModel | MailModel) -> str:
    """The model version verdicts on stage-one alerts name: registry NAME/VERSION if known.

    A local folder gives ``threattune-TASK/sha256-PREFIX`` of its trees (of a mail model, its
    transformer and baseline), stable across copies.
    """
    registered = model.manifest.get("registry_version")
    if registered:
        return str(registered)
    name = tracking.registered_model_name(str(model.manifest.get("task", "flows")))
    return f"{name}/sha256-{stage_one_digest(model)[:12]}"


def open_stage_one(reference: str | Path) -> FlowModel | MailModel:
    """Open a stage-one model (folder or ``models:/`` URI) with what its stage two reads.

    A mail model comes with its TF-IDF baseline; a registry URI records NAME/VERSION as the
    version that verdicts on its alerts name.
    """
    model = with_stage_two_inputs(tracking.open_model(reference, with_baseline=False))
    text = str(reference)
    if text.startswith("models:/") and not model.manifest.get("registry_version"):
        version = tracking._registry_version(text)
        if version is not None:
            model.manifest["registry_version"] = f"{version.name}/{version.version}"
    return model


def with_stage_two_inputs(model: FlowModel | MailModel) -> FlowModel | MailModel:
    """``model`` with what stage two reads of it: a mail model's TF-IDF baseline, loaded from
    its folder when it was opened without one."""
    if _is_mail(model) and getattr(model, "baseline", None) is None and model.folder is not None:
        from threattune.models.text_baseline import TextBaseline

        path = Path(model.folder) / "baseline.skops"
        if path.is_file():
            model.baseline = TextBaseline.load(path)  # type: ignore[union-attr]
    return model


def stage_one_proba(model: FlowModel | MailModel, features: pd.DataFrame) -> np.ndarray:
    """Stage one's class probabilities: of the flows, or of the messages' ``text`` column."""
    if _is_mail(model):
        from threattune.mail_cascade import model_texts

        return model.predict_proba(model_texts(features))  # type: ignore[arg-type]
    return model.predict_proba(features)  # type: ignore[arg-type]


def stage_two_name(task: str) -> str:
    """The registry name of a task's stage-two filter."""
    return f"{tracking.registered_model_name(task)}-stage2"


# --- segments ---------------------------------------------------------------------------------


@dataclass
class Segment:
    """Labelled flows or messages read as a model reads them, with an alert id each, in order.

    ``times`` (mail: when each message was sent, NaT when unknown) and ``order`` say how the
    rows are ordered: ``file`` (as read), ``time`` (one timeline, undated last) or
    ``time-per-label`` (each label's own timeline, interleaved so that any first slice holds
    the same share of every label) or ``time-per-source`` (the same for each mail source, a
    corpus or a mailbox file). Only ``time`` lets the evaluation check disjointness in
    time as well as by alert id.
    """

    features: pd.DataFrame
    labels: np.ndarray
    alert_ids: np.ndarray
    source: str
    times: np.ndarray | None = None
    order: str = "file"

    def __len__(self) -> int:
        return len(self.features)

    def subset(self, rows: np.ndarray) -> Segment:
        """The flows or messages at positional ``rows``."""
        return Segment(
            self.features.iloc[rows].reset_index(drop=True),
            self.labels[rows],
            self.alert_ids[rows],
            self.source,
            self.times[rows] if self.times is not None else None,
            self.order,
        )

    def last_time(self, rows: np.ndarray | None = None) -> datetime | None:
        """The latest known time of ``rows`` (all rows by default), when in one timeline."""
        return _edge_time(self, rows, latest=True)

    def first_time(self, rows: np.ndarray | None = None) -> datetime | None:
        """The earliest known time of ``rows`` (all rows by default), when in one timeline."""
        return _edge_time(self, rows, latest=False)


def _edge_time(segment: Segment, rows: np.ndarray | None, *, latest: bool) -> datetime | None:
    if segment.times is None or segment.order != "time":
        return None
    times = pd.to_datetime(pd.Series(segment.times if rows is None else segment.times[rows]),
                           utc=True).dropna()  # fmt: skip
    if times.empty:
        return None
    return (times.max() if latest else times.min()).to_pydatetime()


def load_segment(model: FlowModel, path: Path | str) -> Segment:
    """Read a labelled file with the reader the model was trained with.

    Each flow's alert id is ``FILE:ROW`` (0-based row in file order, as ``threattune score``
    writes it), so that ids of two slices of one file never collide and the order of the file
    is the order of time. Every row is kept, duplicates too, so that the ids match the file's.
    """
    from threattune.scoring import prepare_features
    from threattune.tasks import FlowTask

    path = Path(path)
    spec = model.fingerprint.input_format
    reader = spec.get("reader", "table")
    task = FlowTask(
        name=str(model.manifest.get("task", "segment")),
        reader=reader,
        train=(str(path.resolve()),),
        label_column=spec.get("label_column"),
        granularity=spec.get("granularity", "category"),
        categorical=tuple(model.fingerprint.categorical) if reader == "table" else None,
        operating_goal=None,
    )
    table = task.load(deduplicate=False)
    if table.labels is None:
        raise DataError("the segment has no labels", path=path, fix="pass a labelled file")
    features = prepare_features(model, table.features, path=str(path))
    ids = np.array([f"{path.name}:{row}" for row in range(len(features))], dtype=object)
    return Segment(features, table.labels.astype(str).to_numpy(), ids, str(path))


def split_by_order(count: int, first_slice: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the first ``first_slice`` of ``count`` rows and of the rest, in order.

    The first slice's verdicts train stage two; the rest, later in time, measure it.
    """
    if not 0.0 < first_slice < 1.0:
        raise DataError(
            "the first slice must be a fraction", field="first_slice",
            expected="between 0 and 1, such as 0.3", found=str(first_slice),
        )  # fmt: skip
    cut = int(round(first_slice * count))
    if cut == 0 or cut == count:
        raise DataError("the segment is too small to split", found=f"{count} rows")
    return np.arange(cut), np.arange(cut, count)


def split_segment(segment: Segment, first_slice: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`split_by_order` on a segment; in one timeline the cut never splits a tie.

    Messages sent at the same second go to the same side, so that the measured part starts
    strictly after the last message of the first slice.
    """
    first, rest = split_by_order(len(segment), first_slice)
    if segment.times is None or segment.order != "time":
        return first, rest
    times = pd.to_datetime(pd.Series(segment.times), utc=True)
    cut = len(first)
    while cut < len(segment) and pd.notna(times[cut]) and times[cut] == times[cut - 1]:
        cut += 1
    if cut == len(segment):
        raise DataError("the segment is too small to split", found=f"{len(segment)} rows")
    return np.arange(cut), np.arange(cut, len(segment))


def check_disjoint(
    training_ids: Sequence[str] | set[str],
    measured_ids: Sequence[str] | np.ndarray,
    *,
    training_until: datetime | None = None,
    measured_from: datetime | None = None,
) -> None:
    """Raise :class:`DataError` when measured alerts overlap the training verdicts.

    Overlap is a shared alert id, or (when both times are given) a measured alert not later
    than the last training verdict.
    """
    known = set(map(str, training_ids))
    shared = [str(i) for i in measured_ids if str(i) in known]
    if shared:
        raise DataError(
            "the measured alerts overlap the verdicts that trained stage two",
            field="alert_id",
            expected="alerts disjoint from the training verdicts",
            found=f"{len(shared)} shared alert ids, such as {', '.join(shared[:3])}",
            fix="measure on a later slice of the segment than the one that trained the cascade "
            "('threattune cascade evaluate --skip-rows N', N from segment.training_flows or "
            "training_messages in cascade.json)",
        )
    if training_until is not None and measured_from is not None and measured_from <= training_until:
        raise DataError(
            "the measured alerts are not later than the verdicts that trained stage two",
            field="time",
            expected=f"after {training_until.isoformat()}",
            found=measured_from.isoformat(),
        )


def verdicts_for_alerts(
    store: VerdictStore, alert_ids: Sequence[str] | np.ndarray, model_version: str | None = None
) -> pd.DataFrame:
    """The latest stored verdict on each of ``alert_ids`` that has one, in time order.

    Columns: ``alert_id``, ``verdict``, ``root_cause``, ``time``; ``model_version`` narrows
    the verdicts to one stage-one version. ``attrs["disputed"]`` lists the alerts whose
    analysts disagreed (the latest verdict stands).
    """
    frame = store.to_frame(model_version=model_version)
    wanted = set(map(str, alert_ids))
    frame = frame[frame["alert_id"].isin(wanted)]
    disputed = frame.groupby("alert_id")["verdict"].nunique()
    frame = frame.sort_values("time").drop_duplicates("alert_id", keep="last")
    latest = frame[["alert_id", "verdict", "root_cause", "time"]].reset_index(drop=True)
    latest.attrs["disputed"] = sorted(disputed.index[disputed > 1].astype(str))
    return latest


# --- stage two --------------------------------------------------------------------------------


def stage_two_matrix(
    model: FlowModel | MailModel, features: pd.DataFrame, proba: np.ndarray | None = None
) -> np.ndarray:
    """Stage two's inputs for stage-one alerts.

    Flows: the encoded flow, stage one's class probabilities and attack score. Mail: see
    :func:`threattune.mail_cascade.mail_stage_two_matrix`.
    """
    proba = stage_one_proba(model, features) if proba is None else proba
    if _is_mail(model):
        from threattune.mail_cascade import mail_stage_two_matrix

        return mail_stage_two_matrix(model, features, proba)  # type: ignore[arg-type]
    attack_score = 1.0 - proba[:, model.benign_index]
    encoded = model.encode(features)  # type: ignore[union-attr]
    return np.hstack([encoded, proba, attack_score[:, None]]).astype(np.float32)


def _stage_two_columns(model: FlowModel | MailModel) -> list[str]:
    if _is_mail(model):
        from threattune.mail_cascade import mail_feature_names

        return mail_feature_names(model)  # type: ignore[arg-type]
    encoder = model.encoder  # type: ignore[union-attr]
    return [*encoder.columns, *(f"p:{c}" for c in model.classes), "attack_score"]


def _targets(verdicts: Sequence[str] | np.ndarray) -> np.ndarray:
    """1 for a true positive, 0 for a false or benign true positive (nobody needs to see it)."""
    canonical = [normalise_verdict(str(v)) for v in verdicts]
    return np.array(
        [0 if v in (FALSE_POSITIVE, BENIGN_TRUE_POSITIVE) else 1 for v in canonical], dtype=int
    )


def choose_stage_two_threshold(
    scores: np.ndarray,
    true_positive: np.ndarray,
    recall_budget: float,
    *,
    bound: str = "upper",
) -> dict[str, Any]:
    """The highest threshold that drops at most ``recall_budget`` of the true positives.

    With ``bound="upper"`` (the default) the 95 % Wilson upper bound of the dropped share must
    fit the budget, so that the budget holds on later alerts too; ``"point"`` lets the share
    seen on these alerts fill it. An alert survives stage two when its score is at or above
    the threshold. Returns the threshold with the true and false positives it keeps and drops.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(true_positive).astype(bool)
    if not 0.0 <= recall_budget < 1.0:
        raise DataError(
            "the recall budget must be a fraction", field="recall_budget",
            expected="between 0 and 1, such as 0.01", found=str(recall_budget),
        )  # fmt: skip
    if positive.sum() == 0:
        raise DataError(
            "no true positives among the validation verdicts",
            fix="train stage two on a slice with confirmed true positives",
        )
    tp_scores = np.sort(scores[positive])
    allowed = int(np.floor(recall_budget * len(tp_scores)))
    if bound == "upper":
        while allowed > 0 and proportion_interval(allowed, len(tp_scores))[1] > recall_budget:
            allowed -= 1
    threshold = float(tp_scores[min(allowed, len(tp_scores) - 1)])
    kept = scores >= threshold
    return {
        "threshold": threshold,
        "recall_budget": recall_budget,
        "bound": bound,
        "true_positives": int(positive.sum()),
        "false_positives": int((~positive).sum()),
        "true_positives_dropped": int((positive & ~kept).sum()),
        "false_positives_dropped": int((~positive & ~kept).sum()),
    }


def class_floors(model: FlowModel | MailModel, recall_budget: float) -> dict[str, float]:
    """Per attack class, the attack score above which stage two may not drop its alerts.

    Chosen on stage one's stored validation split: among its alerts whose true class is an
    attack, those the model calls class C give C's floor, the highest score that drops at most
    ``recall_budget`` of them (95 % Wilson upper bound; with few of them, their lowest score).
    The score is the raw 1 - P(benign), which the trees alone fix. A class without validation
    true positives has no floor (never filtered when unfamiliar); a model without stored
    validation scores gives no floors.
    """
    try:
        labels, proba = model.validation_scores()
    except ModelError as error:
        logger.warning("recall guard without floors: %s", error.message)
        return {}
    decided = model.decide(proba)
    attack_score = 1.0 - proba[:, model.benign_index]
    true_positive = decided.alerts & (labels.astype(str) != str(model.benign_class))
    floors = {}
    for name in model.classes:
        rows = true_positive & (decided.classes == name)
        if rows.any():
            choice = choose_stage_two_threshold(
                attack_score[rows], np.ones(rows.sum()), recall_budget
            )
            floors[str(name)] = choice["threshold"]
    return floors


@dataclass(frozen=True)
class RecallGuard:
    """Which stage-one alerts stage two may filter (see the module notes).

    ``true_positive_verdicts`` counts stage two's training verdicts per stage-one class;
    classes with fewer than ``min_class_verdicts`` are unfamiliar, and their alerts at or
    above their ``floors`` score (raw 1 - P(benign)) are kept whatever stage two says.
    """

    min_class_verdicts: int
    true_positive_verdicts: dict[str, int]
    floors: dict[str, float]

    @property
    def unfamiliar(self) -> list[str]:
        """Stage-one classes with fewer true-positive verdicts than the guard asks for."""
        return sorted(
            name
            for name in {*self.floors, *self.true_positive_verdicts}
            if self.true_positive_verdicts.get(name, 0) < self.min_class_verdicts
        )

    def protects(self, classes: np.ndarray, attack_scores: np.ndarray) -> np.ndarray:
        """Alerts (stage-one class, raw attack score) that stage two may not drop."""
        names = np.asarray(classes).astype(str)
        known = self.true_positive_verdicts
        counts = np.array([known.get(name, 0) for name in names], dtype=np.int64)
        floors = np.array([self.floors.get(name, -np.inf) for name in names], dtype=np.float64)
        return (counts < self.min_class_verdicts) & (np.asarray(attack_scores) >= floors)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the split each setting was chosen on."""
        return {
            "min_class_verdicts": self.min_class_verdicts,
            "true_positive_verdicts": dict(self.true_positive_verdicts),
            "floors": dict(self.floors),
            "unfamiliar_classes": self.unfamiliar,
            "floors_chosen_on": "stage one's validation split (validation_scores.parquet)",
        }

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> RecallGuard:
        """Read a guard written by :meth:`to_dict`."""
        try:
            return cls(
                int(stored["min_class_verdicts"]),
                {str(k): int(v) for k, v in stored["true_positive_verdicts"].items()},
                {str(k): float(v) for k, v in stored["floors"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(
                "the cascade's recall guard is malformed",
                field="recall_guard",
                expected="min_class_verdicts, true_positive_verdicts and floors",
                found=f"{type(exc).__name__}: {exc}",
                fix="train stage two again",
            ) from exc


@dataclass
class CascadeDecisions:
    """What the two stages decided for a batch of flows or messages.

    ``stage_two_scores`` is P(true positive) for stage-one alerts and NaN elsewhere;
    ``alerts`` are the final alerts, the stage-one alerts that stage two kept; ``guarded``
    are those kept only by the recall guard (stage two scored them below its threshold).
    """

    stage_one: Decisions | Any
    stage_two_scores: np.ndarray
    alerts: np.ndarray
    guarded: np.ndarray | None = None

    @property
    def filtered(self) -> np.ndarray:
        """Stage-one alerts that stage two removed."""
        return self.stage_one.alerts & ~self.alerts

    def columns(self) -> dict[str, np.ndarray]:
        """What a scorer writes per row: stage one's alert, stage two's score, the final alert.

        ``alert`` is the cascade's (what an analyst sees); ``guarded`` marks alerts that only
        the recall guard kept.
        """
        guarded = self.guarded if self.guarded is not None else np.zeros_like(self.alerts)
        return {
            "stage_one_alert": np.asarray(self.stage_one.alerts, dtype=bool),
            "stage_two_score": self.stage_two_scores,
            "guarded": np.asarray(guarded, dtype=bool),
            "alert": np.asarray(self.alerts, dtype=bool),
        }


@dataclass
class Cascade:
    """Stage one (a flow or mail model at its operating point) followed by stage two.

    ``features`` are what the segment holds: flows as the model reads them, or for mail the
    table of :func:`threattune.mail_cascade.load_mail_segment` (text and evidence columns).

    >>> # cascade = train_stage_two(model, features, alert_ids, verdicts)
    >>> # cascade.decide(features).alerts   # the alerts an analyst sees
    """

    stage_one: FlowModel | MailModel
    stage_two: StageTwoModel
    threshold: float
    manifest: dict[str, Any] = field(default_factory=dict)
    training_alerts: frozenset[str] = frozenset()
    training_until: datetime | None = None
    folder: Path | None = None
    guard: RecallGuard | None = None

    @property
    def kind(self) -> str:
        """``flow`` or ``mail``: the kind of stage one."""
        return _kind(self.stage_one)

    def stage_two_scores(self, features: pd.DataFrame, proba: np.ndarray) -> np.ndarray:
        """P(true positive) by stage two for alerts with stage-one probabilities ``proba``."""
        matrix = stage_two_matrix(self.stage_one, features, proba)
        return self.stage_two.predict_proba(matrix)[:, 1].astype(np.float64)

    def decide(self, features: pd.DataFrame, proba: np.ndarray | None = None) -> CascadeDecisions:
        """Stage one alerts, stage two scores its alerts, the ones at its threshold remain.

        ``proba`` is stage one's class probabilities of ``features`` when already at hand (a
        scorer that wrote stage one's columns); by default stage one scores them.
        """
        if proba is None:
            proba = stage_one_proba(self.stage_one, features)
        first = self.stage_one.decide(proba)
        scores = np.full(len(features), np.nan)
        rows = np.flatnonzero(first.alerts)
        if len(rows):
            scores[rows] = self.stage_two_scores(features.iloc[rows], proba[rows])
        passed = first.alerts & (np.nan_to_num(scores, nan=-1.0) >= self.threshold)
        guarded = np.zeros(len(features), dtype=bool)
        if self.guard is not None and len(rows):
            raw = 1.0 - proba[rows, self.stage_one.benign_index]
            guarded[rows] = self.guard.protects(first.classes[rows], raw) & ~passed[rows]
        return CascadeDecisions(first, scores, passed | guarded, guarded)

    def save(self, folder: Path | str) -> Path:
        """Write stage two and its manifest to ``folder`` (created)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.stage_two.save(folder / STAGE_TWO_FILE)
        manifest = {
            **self.manifest,
            "kind": self.kind,
            "format_version": FORMAT_VERSION,
            "threattune_version": __version__,
            "threshold": self.threshold,
        }
        write_json(folder / MANIFEST, manifest)
        write_json(
            folder / TRAINING_ALERTS,
            {
                "until": self.training_until.isoformat() if self.training_until else None,
                "alert_ids": sorted(self.training_alerts),
            },
        )
        self.manifest = manifest
        self.folder = folder
        return folder

    @classmethod
    def load(cls, folder: Path | str, stage_one: FlowModel | MailModel | None = None) -> Cascade:
        """Read a cascade written by :meth:`save`; stage one is opened from its reference.

        Raises :class:`ModelError` when stage one is not the model stage two was trained on.
        """
        folder = Path(folder)
        if not (folder / MANIFEST).is_file() and (folder / "cascade" / MANIFEST).is_file():
            folder = folder / "cascade"  # the --output folder of 'threattune cascade train'
        if not (folder / MANIFEST).is_file():
            raise ModelError(
                "not a threattune cascade folder"
                + ("" if folder.exists() else ": it does not exist"), path=folder,
                expected=f"{MANIFEST}, {STAGE_TWO_FILE}, {TRAINING_ALERTS}",
                fix="pass the folder 'threattune cascade train --output X' wrote (X or X/cascade)",
            )  # fmt: skip
        manifest = read_json(folder / MANIFEST, what="cascade")
        if manifest.get("format_version", 0) > FORMAT_VERSION:
            raise ModelError("the cascade was saved by a newer threattune", path=folder)
        reference = manifest["stage_one"]
        kind = str(manifest.get("kind", "flow"))
        if stage_one is None:
            try:
                stage_one = open_stage_one(reference["reference"])
            except ThreatTuneError as error:
                raise ModelError(
                    "cannot open the cascade's stage-one model", path=folder / MANIFEST,
                    field="stage_one.reference", expected="a model folder or models:/ URI",
                    found=f"{reference['reference']}: {error.message}",
                    fix="name stage one with --model (a folder or models:/NAME/VERSION of "
                    f"version {reference.get('version')})",
                ) from error  # fmt: skip
        if _kind(stage_one) != kind:
            raise ModelError(
                "the stage-one model is of another kind than the cascade", path=folder / MANIFEST,
                field="kind", expected=kind, found=_kind(stage_one),
            )  # fmt: skip
        if stage_one_digest(stage_one) != reference["trees_sha256"]:
            raise ModelError(
                "the stage-one model is not the one stage two was trained on",
                path=folder / MANIFEST,
                expected=f"a model with SHA-256 {reference['trees_sha256'][:12]}...",
                found=str(stage_one.folder),
                fix=f"open stage-one version {reference.get('version')} "
                f"({reference['reference']}), or train stage two again",
            )
        recorded = reference.get("operating_point")
        if recorded and (stage_one.operating_point or {}).get("threshold") != recorded.get(
            "threshold"
        ):
            logger.warning(
                "stage one runs at the operating point stage two was trained at (%s), not at "
                "the model's current one (%s)", recorded.get("goal_text") or recorded.get("goal"),
                (stage_one.operating_point or {}).get("goal_text") or "none",
            )  # fmt: skip
            stage_one = copy.copy(stage_one)  # the caller's model keeps its own point
            stage_one.manifest = {**stage_one.manifest, "operating_point": recorded}
        trained = read_json(folder / TRAINING_ALERTS, what="cascade")
        until = trained.get("until")
        stage_two: StageTwoModel
        if kind == "mail":
            from threattune.mail_cascade import MailStageTwo

            stage_two = MailStageTwo.load(folder / STAGE_TWO_FILE)
        else:
            stage_two = BoostedTrees.load(folder / STAGE_TWO_FILE, 2)
        return cls(
            stage_one=stage_one,
            stage_two=stage_two,
            threshold=float(manifest["threshold"]),
            manifest=manifest,
            training_alerts=frozenset(trained.get("alert_ids", [])),
            training_until=datetime.fromisoformat(until) if until else None,
            folder=folder,
            guard=RecallGuard.from_dict(manifest["recall_guard"])
            if manifest.get("recall_guard")
            else None,
        )


def train_stage_two(
    model: FlowModel | MailModel,
    features: pd.DataFrame,
    alert_ids: Sequence[str] | np.ndarray,
    verdicts: Sequence[str] | np.ndarray,
    *,
    recall_budget: float = 0.01,
    validation_fraction: float = 0.3,
    settings: BoostedTreesSettings | MailStageTwoSettings | None = None,
    stage_one_reference: str | None = None,
    verdict_times: Sequence[datetime] | None = None,
    seed: int = 0,
    min_class_verdicts: int = DEFAULT_MIN_CLASS_VERDICTS,
    proba: np.ndarray | None = None,
    threshold_folds: int = DEFAULT_THRESHOLD_FOLDS,
) -> Cascade:
    """Train stage two on stage-one alerts (``features``, one row each) and their verdicts.

    A stratified ``validation_fraction`` of the verdicts stops the boosting early (flows); the
    rest fit stage two (for mail, their own cross-validation chooses its regularisation). The
    threshold (:func:`choose_stage_two_threshold` with ``recall_budget``) is chosen on
    out-of-fold scores of all the verdicts over ``threshold_folds`` folds, each scored by a
    stage two fitted the same way on the other folds; ``threshold_folds=0`` chooses it on the
    validation part alone. The recall guard (see the module notes) counts the true-positive
    verdicts per stage-one class over all the verdicts and takes its floors from stage one's
    validation split; ``min_class_verdicts=0`` turns it off. ``stage_one_reference`` (a folder or
    ``models:/`` URI) is how :meth:`Cascade.load` finds stage one again; by default its folder.
    ``verdict_times`` are the times of the training alerts (or of their verdicts): the latest
    is kept, and a later evaluation refuses measured alerts that are not after it. ``proba``
    is stage one's class probabilities of the alerts when already at hand (as they were when
    the alerts were raised); by default stage one scores them again.
    """
    ids, targets, counts = _checked_verdicts(features, alert_ids, verdicts)
    features = features.reset_index(drop=True)
    if proba is None:
        proba = stage_one_proba(model, features)
    matrix = stage_two_matrix(model, features, proba)
    guard = _recall_guard(model, proba, targets, recall_budget, min_class_verdicts)
    fit_rows, valid_rows = stratified_split(targets, validation_fraction, seed)
    stage_two, details = _fit_stage_two(model, matrix, targets, fit_rows, valid_rows, settings,
                                        seed)  # fmt: skip
    if threshold_folds:
        scores = _out_of_fold_scores(model, matrix, targets, settings, seed, threshold_folds,
                                     validation_fraction)  # fmt: skip
        choice = choose_stage_two_threshold(scores, targets == 1, recall_budget)
        chosen_on = f"out-of-fold scores of all the training verdicts ({threshold_folds} folds)"
    else:
        scores = stage_two.predict_proba(matrix[valid_rows])[:, 1]
        choice = choose_stage_two_threshold(scores, targets[valid_rows] == 1, recall_budget)
        chosen_on = "the validation part of stage two's training verdicts"

    reference = stage_one_reference or str(Path(model.folder or ".").resolve())
    manifest = {
        "kind": _kind(model),
        "task": model.manifest.get("task"),
        "stage_one": {
            "reference": reference,
            "version": stage_one_version(model),
            "trees_sha256": stage_one_digest(model),
            "operating_point": model.operating_point,
        },
        "features": _stage_two_columns(model),
        **details,
        "recall_budget": recall_budget,
        "validation_fraction": validation_fraction,
        "seed": seed,
        "training": {
            "verdicts": len(targets),
            "true_positives": int(counts[1]),
            "false_positives": int(counts[0]),
            "fit_verdicts": len(fit_rows),
            "validation_verdicts": len(valid_rows),
        },
        "validation": choice,
        "threshold_chosen_on": chosen_on,
        "threshold_folds": threshold_folds,
        "recall_guard": guard.to_dict() if guard is not None else None,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    until = max(verdict_times) if verdict_times else None
    logger.info(
        "stage two: threshold %.4g drops %d of %d false positives and %d of %d true positives "
        "it was chosen on",
        choice["threshold"], choice["false_positives_dropped"], choice["false_positives"],
        choice["true_positives_dropped"], choice["true_positives"],
    )  # fmt: skip
    return Cascade(
        model, stage_two, choice["threshold"], manifest, frozenset(ids), until, folder=None,
        guard=guard,
    )  # fmt: skip


def _checked_verdicts(
    features: pd.DataFrame,
    alert_ids: Sequence[str] | np.ndarray,
    verdicts: Sequence[str] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Alert ids, targets (1 = true positive) and their counts, checked for training."""
    ids = np.asarray(alert_ids, dtype=object).astype(str)
    targets = _targets(verdicts)
    if not len(ids) == len(targets) == len(features):
        raise DataError(
            "features, alert ids and verdicts must describe the same alerts",
            expected=f"{len(features)} of each",
            found=f"{len(ids)} alert ids, {len(targets)} verdicts",
        )
    if len(set(ids)) != len(ids):
        raise DataError("an alert has two verdicts", field="alert_id", fix="keep the latest one")
    counts = np.bincount(targets, minlength=2)
    if counts.min() < 10:
        raise DataError(
            "too few verdicts of one kind to train stage two",
            expected="at least 10 true and 10 false positives",
            found=f"{counts[1]} true positives, {counts[0]} false positives",
            fix="gather more verdicts, or lower stage one's threshold (threattune threshold) "
            "so that it raises more alerts to learn from",
        )
    return ids, targets, counts


def _fit_stage_two(
    model: FlowModel | MailModel,
    matrix: np.ndarray,
    targets: np.ndarray,
    fit_rows: np.ndarray,
    valid_rows: np.ndarray,
    settings: BoostedTreesSettings | MailStageTwoSettings | None,
    seed: int,
) -> tuple[StageTwoModel, dict[str, Any]]:
    """Stage two fitted on ``fit_rows``, with the manifest entries that describe it."""
    if _is_mail(model):
        from threattune.mail_cascade import MailStageTwo, MailStageTwoSettings

        if settings is not None and not isinstance(settings, MailStageTwoSettings):
            raise DataError("a mail cascade takes MailStageTwoSettings", field="settings",
                            found=type(settings).__name__)  # fmt: skip
        filter_ = MailStageTwo.fit(matrix[fit_rows], targets[fit_rows], settings, seed=seed)
        valid = filter_.predict_proba(matrix[valid_rows])[:, 1]
        return filter_, {
            "settings": asdict(filter_.settings),
            "rounds": None,
            "regularisation": filter_.c,
            "regularisation_chosen_on": "cross-validation within the fit part of the verdicts",
            "validation_loss": _log_loss(targets[valid_rows], valid),
        }
    if settings is not None and not isinstance(settings, BoostedTreesSettings):
        raise DataError("a flow cascade takes BoostedTreesSettings", field="settings",
                        found=type(settings).__name__)  # fmt: skip
    settings = settings or STAGE_TWO_SETTINGS
    trees = BoostedTrees(2, settings).fit(
        matrix[fit_rows], targets[fit_rows], matrix[valid_rows], targets[valid_rows], seed=seed
    )
    return trees, {
        "settings": asdict(settings),
        "rounds": trees.best_rounds,
        "validation_loss": trees.best_score,
    }


def _out_of_fold_scores(
    model: FlowModel | MailModel,
    matrix: np.ndarray,
    targets: np.ndarray,
    settings: BoostedTreesSettings | MailStageTwoSettings | None,
    seed: int,
    folds: int,
    validation_fraction: float,
) -> np.ndarray:
    """Each verdict scored by a stage two fitted, as the final one is, on the other folds."""
    from sklearn.model_selection import StratifiedKFold

    fewest = int(np.bincount(targets, minlength=2).min())
    if not 2 <= folds <= fewest:
        raise DataError(
            "cannot choose stage two's threshold out of fold", field="threshold_folds",
            expected=f"between 2 and {fewest} (the fewer of true and false positives), or 0",
            found=str(folds), fix="pass fewer folds, or 0 to choose it on the validation part",
        )  # fmt: skip
    scores = np.empty(len(targets), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (train_rows, held_rows) in enumerate(splitter.split(matrix, targets)):
        inner_fit, inner_valid = stratified_split(
            targets[train_rows], validation_fraction, seed + fold + 1
        )
        fold_model, _ = _fit_stage_two(
            model, matrix, targets, train_rows[inner_fit], train_rows[inner_valid], settings, seed
        )
        scores[held_rows] = fold_model.predict_proba(matrix[held_rows])[:, 1]
    return scores


def _log_loss(targets: np.ndarray, scores: np.ndarray) -> float:
    p = np.clip(np.asarray(scores, dtype=np.float64), 1e-12, 1 - 1e-12)
    y = np.asarray(targets, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _recall_guard(
    model: FlowModel | MailModel,
    proba: np.ndarray,
    targets: np.ndarray,
    recall_budget: float,
    min_class_verdicts: int,
) -> RecallGuard | None:
    """The guard for these verdicts: true positives per stage-one class, floors per class."""
    if min_class_verdicts <= 0:
        return None
    decided = model.decide(proba)
    classes = decided.classes.astype(str)
    counted = pd.Series(classes[decided.alerts & (targets == 1)]).value_counts()
    guard = RecallGuard(
        min_class_verdicts,
        {str(name): int(count) for name, count in counted.items()},
        class_floors(model, recall_budget),
    )
    logger.info(
        "recall guard: classes with fewer than %d true-positive verdicts: %s",
        min_class_verdicts,
        ", ".join(guard.unfamiliar) or "none",
    )
    return guard


# --- evaluation -------------------------------------------------------------------------------


@dataclass
class CascadeEvaluation:
    """Stage one alone against the cascade on measured rows none of whose alerts trained it.

    Intervals are Wilson intervals at ``confidence``: recall over the attacks, FPs removed over
    stage one's false positives, recall points lost over the attacks. For mail (``kind``),
    ``flows`` counts messages and ``attacks`` phishing messages.
    """

    dataset: str
    flows: int
    attacks: int
    alerts_before: int
    alerts_after: int
    false_positives_before: int
    false_positives_after: int
    true_positives_before: int
    true_positives_after: int
    confidence: float = 0.95
    kept_by_guard: int = 0
    kind: str = "flow"

    def _interval(self, successes: int, trials: int) -> tuple[float, float]:
        return proportion_interval(successes, trials, confidence=self.confidence)

    @property
    def recall_before(self) -> float:
        return self.true_positives_before / self.attacks if self.attacks else float("nan")

    @property
    def recall_after(self) -> float:
        return self.true_positives_after / self.attacks if self.attacks else float("nan")

    @property
    def false_positives_removed(self) -> float:
        """Share of stage one's false positives that stage two removed."""
        removed = self.false_positives_before - self.false_positives_after
        return removed / self.false_positives_before if self.false_positives_before else 0.0

    @property
    def recall_points_lost(self) -> float:
        """Recall lost by stage two, in points (percent of the attacks)."""
        lost = self.true_positives_before - self.true_positives_after
        return 100.0 * lost / self.attacks if self.attacks else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Counts, rates and their intervals, JSON-ready."""
        fp_removed = self.false_positives_before - self.false_positives_after
        tp_lost = self.true_positives_before - self.true_positives_after
        lost_ci = self._interval(tp_lost, self.attacks)
        return {
            **asdict(self),
            "recall_before": self.recall_before,
            "recall_before_ci": self._interval(self.true_positives_before, self.attacks),
            "recall_after": self.recall_after,
            "recall_after_ci": self._interval(self.true_positives_after, self.attacks),
            "false_positives_removed": self.false_positives_removed,
            "false_positives_removed_ci": self._interval(fp_removed, self.false_positives_before),
            "recall_points_lost": self.recall_points_lost,
            "recall_points_lost_ci": (100.0 * lost_ci[0], 100.0 * lost_ci[1]),
        }

    def metrics(self) -> dict[str, float]:
        """Flat numeric metrics for MLflow."""
        out = {}
        for key, value in self.to_dict().items():
            if isinstance(value, tuple):
                out[f"{key}_low"], out[f"{key}_high"] = value
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key] = float(value)
        return out

    @staticmethod
    def markdown_header(kind: str = "flow") -> str:
        """The table header; ``kind="mail"`` names messages and phishing instead."""
        rows, positives = ("messages", "phishing") if kind == "mail" else ("flows", "attacks")
        return (
            f"| dataset | {rows} | {positives} | alerts before | alerts after | FPs before | "
            "FPs after | recall before | recall after | FPs removed | recall points lost |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        )

    def markdown_row(self) -> str:
        d = self.to_dict()

        def rate(name: str) -> str:
            low, high = d[f"{name}_ci"]
            return f"{d[name]:.2%} [{low:.2%}, {high:.2%}]"

        low, high = d["recall_points_lost_ci"]
        return (
            f"| {self.dataset} | {self.flows:,} | {self.attacks:,} | {self.alerts_before:,} | "
            f"{self.alerts_after:,} | {self.false_positives_before:,} | "
            f"{self.false_positives_after:,} | {rate('recall_before')} | "
            f"{rate('recall_after')} | {rate('false_positives_removed')} | "
            f"{d['recall_points_lost']:.2f} [{low:.2f}, {high:.2f}] |"
        )

    def to_markdown(self) -> str:
        """A table of stage one against the cascade, with 95 % intervals."""
        return f"{self.markdown_header(self.kind)}\n{self.markdown_row()}\n"


def evaluate_cascade(
    cascade: Cascade,
    features: pd.DataFrame,
    true_labels: Sequence[Any] | np.ndarray,
    alert_ids: Sequence[str] | np.ndarray,
    *,
    dataset: str = "segment",
    measured_from: datetime | None = None,
    confidence: float = 0.95,
) -> CascadeEvaluation:
    """Measure stage one alone and the cascade on labelled rows disjoint from the training.

    Raises :class:`DataError` (through :func:`check_disjoint`) when any row's alert id is
    among the alerts whose verdicts trained stage two, or when ``measured_from`` (the first
    measured alert's time) is not after the last training alert.
    """
    check_disjoint(
        cascade.training_alerts,
        alert_ids,
        training_until=cascade.training_until,
        measured_from=measured_from,
    )
    labels = np.asarray(true_labels, dtype=object).astype(str)
    attack = labels != str(cascade.stage_one.benign_class)
    decisions = cascade.decide(features)
    before, after = decisions.stage_one.alerts, decisions.alerts
    return CascadeEvaluation(
        dataset=dataset,
        flows=len(labels),
        attacks=int(attack.sum()),
        alerts_before=int(before.sum()),
        alerts_after=int(after.sum()),
        false_positives_before=int((before & ~attack).sum()),
        false_positives_after=int((after & ~attack).sum()),
        true_positives_before=int((before & attack).sum()),
        true_positives_after=int((after & attack).sum()),
        confidence=confidence,
        kept_by_guard=int(decisions.guarded.sum()) if decisions.guarded is not None else 0,
        kind=cascade.kind,
    )


def cascade_from_labels(
    model: FlowModel | MailModel,
    segment: Segment,
    *,
    first_slice: float = 0.3,
    recall_budget: float = 0.01,
    root_cause_columns: Sequence[str] = (),
    settings: BoostedTreesSettings | MailStageTwoSettings | None = None,
    stage_one_reference: str | None = None,
    seed: int = 0,
    min_class_verdicts: int = DEFAULT_MIN_CLASS_VERDICTS,
    threshold_folds: int = DEFAULT_THRESHOLD_FOLDS,
) -> tuple[Cascade, CascadeEvaluation, list[Verdict]]:
    """The whole protocol on a labelled segment, with verdicts derived from its labels.

    The segment splits in order (:func:`split_segment`): stage one's alerts on the first
    ``first_slice`` get verdicts from the labels (:func:`~threattune.triage.verdicts_from_labels`)
    and train stage two; the rest, which no training verdict touched, measures stage one alone
    and the cascade. In one timeline the measured part must also start after the last training
    alert.
    """
    from threattune.triage import verdicts_from_labels

    first_rows, rest_rows = split_segment(segment, first_slice)
    first, rest = segment.subset(first_rows), segment.subset(rest_rows)
    first_proba = stage_one_proba(model, first.features)
    alerted = np.flatnonzero(model.decide(first_proba).alerts)
    alerts = first.features.iloc[alerted].reset_index(drop=True)
    alerts.insert(0, "alert_id", first.alert_ids[alerted])
    verdicts = verdicts_from_labels(
        alerts,
        first.labels[alerted],
        model.benign_class,
        model_version=stage_one_version(model),
        root_cause_columns=root_cause_columns,
    )
    cascade = train_stage_two(
        model,
        alerts.drop(columns="alert_id"),
        alerts["alert_id"].to_numpy(),
        [v.verdict for v in verdicts],
        recall_budget=recall_budget,
        settings=settings,
        stage_one_reference=stage_one_reference,
        seed=seed,
        min_class_verdicts=min_class_verdicts,
        verdict_times=_known_times(first.last_time(alerted)),
        proba=first_proba[alerted],
        threshold_folds=threshold_folds,
    )
    cascade.manifest["segment"] = segment_manifest(
        segment, first_slice, len(first_rows), kind=_kind(model)
    )
    cascade.manifest["segment"]["verdicts"] = "derived from the segment's labels"
    evaluation = evaluate_cascade(
        cascade, rest.features, rest.labels, rest.alert_ids, dataset=Path(segment.source).name,
        measured_from=rest.first_time(),
    )  # fmt: skip
    return cascade, evaluation, verdicts


def _known_times(time: datetime | None) -> list[datetime] | None:
    return [time] if time is not None else None


def segment_manifest(
    segment: Segment, first_slice: float, training_rows: int, *, kind: str = "flow"
) -> dict[str, Any]:
    """What the cascade's manifest records of the segment it was trained and measured on."""
    unit = "messages" if kind == "mail" else "flows"
    return {
        "source": segment.source,
        unit: len(segment),
        "order": segment.order,
        "first_slice": first_slice,
        f"training_{unit}": training_rows,
        f"measured_{unit}": len(segment) - training_rows,
    }


# --- tracking ---------------------------------------------------------------------------------


def track_cascade(
    cascade: Cascade,
    *,
    evaluation: CascadeEvaluation | None = None,
    register: bool = True,
) -> tracking.RegisteredVersion | None:
    """Log a saved cascade to MLflow and register stage two as ``threattune-TASK-stage2``.

    Stage two is logged as the run's ``cascade`` artifact folder (its JSON and manifest) and
    the registry version points at that folder: it needs stage one to score, so it is not
    a stand-alone pyfunc model. The version's tags name the stage-one version it filters.
    """
    if cascade.folder is None:
        raise ModelError("save the cascade before tracking it")
    task = str(cascade.manifest.get("task") or "flows")
    manifest = cascade.manifest
    with tracking.start_run(
        f"threattune/{task}-stage2",
        run_name=f"stage2-{task}",
        tags={"threattune.task": task, "threattune.stage": "2", "threattune.kind": cascade.kind},
    ) as run_id:
        tracking.log_params({
            "task": task, "threshold": cascade.threshold,
            "recall_budget": manifest["recall_budget"],
            "validation_fraction": manifest["validation_fraction"],
            "stage_one": manifest["stage_one"]["version"],
            "stage_one_reference": manifest["stage_one"]["reference"],
            "verdicts": manifest["training"]["verdicts"], "rounds": manifest.get("rounds"),
            "kind": cascade.kind,
            "min_class_verdicts": (manifest.get("recall_guard") or {}).get(
                "min_class_verdicts", 0),
            **{f"model.{k}": v for k, v in manifest["settings"].items()},
        })  # fmt: skip
        metrics = {
            f"validation.{k}": v
            for k, v in manifest["validation"].items()
            if isinstance(v, (int, float))
        }
        if evaluation is not None:
            metrics |= {f"measured.{k}": v for k, v in evaluation.metrics().items()}
        tracking.log_metrics(metrics)
        tracking.log_artifacts(cascade.folder, "cascade")
        if not register:
            return None
        mlflow = tracking._mlflow()
        artifact_uri = mlflow.get_artifact_uri("cascade")
    client = mlflow.MlflowClient()
    name = stage_two_name(task)
    try:
        client.get_registered_model(name)
    except Exception:  # noqa: BLE001 - not registered yet
        client.create_registered_model(
            name, description="threattune stage-two false-positive filter"
        )
    version = client.create_model_version(
        name,
        source=artifact_uri,
        run_id=run_id,
        tags={"threattune.stage_one": manifest["stage_one"]["version"]},
    )
    logger.info("registered %s version %s", name, version.version)
    return tracking.RegisteredVersion(
        name, str(version.version), run_id, f"models:/{name}/{version.version}"
    )
