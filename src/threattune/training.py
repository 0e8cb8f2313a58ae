"""One training run of a flow model: split, choose settings, fit, evaluate, track, register.

The protocol never looks at a test set to choose anything. A validation split carved from the
training flows (stratified, seeded) chooses every setting: the boosted-trees depth, the class
weighting and the number of rounds (early stopping). Among settings whose validation macro F1
is within ``F1_TOLERANCE`` of the best, the one with the fewest trees wins, because scoring
speed matters in production and such differences are noise. Test sets are scored once, after
everything is fixed. Tasks evaluated by cross-validation repeat the whole protocol inside
every fold.
"""

from __future__ import annotations

import itertools
import logging
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from threattune import tracking
from threattune.attack import AttackMapping
from threattune.diagnosis.profile import ReferenceProfile
from threattune.evaluation import class_codes, evaluate
from threattune.findings import Finding, Severity
from threattune.fingerprint import Fingerprint
from threattune.flow_model import REFERENCE_PROFILE, VALIDATION_SCORES, FlowModel
from threattune.models.baseline import Baseline
from threattune.models.tabular import BoostedTrees, BoostedTreesSettings
from threattune.operating_point import OperatingPoint, choose_threshold
from threattune.preprocessing import FlowEncoder
from threattune.report import EvaluationReport
from threattune.sources._tables import check_readable
from threattune.sources.flows import FlowTable
from threattune.tasks import FlowTask

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_GRID", "F1_TOLERANCE", "TrainingResult", "stratified_split", "train"]

F1_TOLERANCE = 0.002
DEFAULT_GRID: dict[str, list[Any]] = {
    "max_depth": [6, 10],
    "class_weight": ["none", "balanced-sqrt"],
    "learning_rate": [0.3],
    "max_rounds": [300],
    "early_stopping_rounds": [20],
}


@dataclass
class Candidate:
    """One setting tried on the validation split."""

    settings: BoostedTreesSettings
    rounds: int
    validation_macro_f1: float
    validation_loss: float
    seconds: float

    @property
    def trees(self) -> int:
        return self.rounds


@dataclass
class TrainingResult:
    """What a training run produced."""

    task: FlowTask
    model_folder: Path
    report_path: Path
    report: EvaluationReport
    chosen: Candidate
    candidates: list[Candidate]
    run_id: str | None = None
    registered: tracking.RegisteredVersion | None = None
    cross_validation: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of a training and a validation split with the class mix of ``labels``.

    Each class gives ``fraction`` of its flows (at least one when it has two or more) to
    validation; a class with a single flow stays in training.
    """
    rng = np.random.default_rng(seed)
    train, valid = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_valid = 0 if len(members) < 2 else max(1, int(round(fraction * len(members))))
        valid.append(members[:n_valid])
        train.append(members[n_valid:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(valid))


def settings_grid(overrides: dict[str, Any]) -> list[BoostedTreesSettings]:
    """Every combination of the task's model settings; a list is a choice, a value is fixed."""
    grid = {**DEFAULT_GRID, **{k: v if isinstance(v, list) else [v] for k, v in overrides.items()}}
    keys = sorted(grid)
    base = BoostedTreesSettings()
    return [
        base.with_overrides(dict(zip(keys, values, strict=True)))
        for values in itertools.product(*(grid[k] for k in keys))
    ]


def choose_settings(
    x: np.ndarray,
    y: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    n_classes: int,
    grid: list[BoostedTreesSettings],
    seed: int,
) -> tuple[BoostedTrees, Candidate, list[Candidate]]:
    """Fit every setting on the training split and keep the one validation prefers."""
    fitted: list[tuple[BoostedTrees, Candidate]] = []
    for settings in grid:
        started = time.perf_counter()
        trees = BoostedTrees(n_classes, settings).fit(x, y, x_valid, y_valid, seed=seed)
        predicted = trees.predict_proba(x_valid).argmax(axis=1)
        candidate = Candidate(
            settings=settings,
            rounds=trees.best_rounds or 0,
            validation_macro_f1=float(
                f1_score(
                    y_valid,
                    predicted,
                    average="macro",
                    labels=np.unique(y_valid),
                    zero_division=0.0,
                )
            ),
            validation_loss=trees.best_score or float("nan"),
            seconds=time.perf_counter() - started,
        )
        fitted.append((trees, candidate))

    best = max(c.validation_macro_f1 for _, c in fitted)
    near = [(t, c) for t, c in fitted if c.validation_macro_f1 >= best - F1_TOLERANCE]
    trees, chosen = min(near, key=lambda pair: (pair[1].trees, -pair[1].validation_macro_f1))
    return trees, chosen, [c for _, c in fitted]


def _mapping_for(task: FlowTask, classes: list[str]) -> tuple[AttackMapping | None, dict]:
    if task.attack_mapping is None:
        return None, {c: [] for c in classes}
    if task.attack_mapping.endswith((".yaml", ".yml")):
        mapping = AttackMapping.from_yaml(task.attack_mapping)
    else:
        mapping = AttackMapping.builtin(task.attack_mapping)
    by_class = mapping.techniques_by_class()
    techniques = {c: by_class.get(c, []) for c in classes}
    return mapping, techniques


def _fit_once(
    table: FlowTable,
    task: FlowTask,
    classes: list[str],
    seed: int,
    timings: dict[str, float] | None = None,
) -> tuple[FlowEncoder, BoostedTrees, Baseline, Candidate, list[Candidate], np.ndarray, np.ndarray]:
    """Split, encode, choose settings and fit the trees and the baseline."""
    timings = {} if timings is None else timings
    started = time.perf_counter()
    codes = class_codes(table.labels.to_numpy(), classes, source=table.source)
    train_rows, valid_rows = stratified_split(codes, task.validation_fraction, seed)
    encoder = FlowEncoder.fit(table.features.iloc[train_rows], table.feature_types)
    x = encoder.transform(table.features)
    trees, chosen, candidates = choose_settings(
        x[train_rows],
        codes[train_rows],
        x[valid_rows],
        codes[valid_rows],
        len(classes),
        settings_grid(task.model),
        seed,
    )
    timings["fit_trees"] = time.perf_counter() - started
    started = time.perf_counter()
    baseline = Baseline(
        [encoder.columns.index(c) for c in encoder.categorical], len(encoder.columns)
    ).fit(x[train_rows], codes[train_rows], seed=seed)
    timings["fit_baseline"] = time.perf_counter() - started
    return encoder, trees, baseline, chosen, candidates, train_rows, valid_rows


def _choose_operating_point(
    model: FlowModel, validation: FlowTable, goal: str | None
) -> OperatingPoint | None:
    """The alert threshold on the attack score that meets ``goal`` on the validation split."""
    if goal is None or str(goal).strip().lower() in {"none", "argmax", ""}:
        return None
    codes = class_codes(validation.labels.to_numpy(), model.classes, source=validation.source)
    proba = model.predict_proba(validation.features)
    point = choose_threshold(codes != model.benign_index, 1.0 - proba[:, model.benign_index], goal)
    if not point.achievable:
        logger.warning(
            "operating goal %s cannot be met on the validation split; using the "
            "closest point, threshold %.4g",
            goal,
            point.threshold,
        )
    return point


def _save_validation_scores(model: FlowModel, validation: FlowTable, folder: Path) -> None:
    """Keep the validation split's classes and probabilities with the model.

    The operating point can then be chosen again later (``threattune threshold``) without the
    training data and without retraining.
    """
    proba = model.predict_proba(validation.features)
    scores = pd.DataFrame(proba, columns=[f"p:{c}" for c in model.classes])
    scores.insert(0, "class", validation.labels.to_numpy())
    scores.to_parquet(folder / VALIDATION_SCORES, index=False)


def _save_reference_profile(
    model: FlowModel, features: pd.DataFrame, folder: Path, seed: int
) -> None:
    """Profile the training flows and the model's predictions on them.

    A diagnosis of a new segment compares against this profile, so it needs no training data.
    """
    predicted = model.decide(model.predict_proba(features)).classes
    profile = ReferenceProfile.from_frame(
        features, categorical=model.encoder.categorical, predictions=predicted, seed=seed
    )
    profile.save(folder / REFERENCE_PROFILE)


def _describe_point(point: OperatingPoint | None) -> str:
    if point is None:
        return "none: the most probable class decides"
    return (
        f"alert when 1 - P(benign) >= {point.threshold:.4g}, chosen on the validation "
        f"split for {point.goal} (validation FPR {point.fpr:.2%}, recall {point.recall:.2%})"
    )


def cross_validate(
    table: FlowTable, task: FlowTask, classes: list[str], benign_class: str
) -> dict[str, Any]:
    """Stratified k-fold estimate of macro F1 and per-class F1, model beside baseline.

    Inside each fold the training folds are split again, so that settings are chosen without
    seeing the held-out fold.
    """
    codes = class_codes(table.labels.to_numpy(), classes, source=table.source)
    smallest = int(np.bincount(codes).min())
    folds = max(2, min(task.folds, smallest))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=task.seed)
    per_fold: list[dict[str, Any]] = []
    for fold, (train_rows, test_rows) in enumerate(splitter.split(np.zeros(len(codes)), codes)):
        started = time.perf_counter()
        encoder, trees, baseline, chosen, _, _, _ = _fit_once(
            table.subset(train_rows), task, classes, task.seed + fold
        )
        x_test = encoder.transform(table.features.iloc[test_rows])
        row: dict[str, Any] = {
            "fold": fold,
            "settings": asdict(chosen.settings),
            "rounds": chosen.rounds,
        }
        for name, proba in (
            ("boosted-trees", trees.predict_proba(x_test)),
            ("baseline", baseline.predict_proba(x_test, len(classes))),
        ):
            evaluation = evaluate(
                codes[test_rows], proba, classes, benign_class, dataset=f"fold {fold}", model=name
            )
            row[name] = {
                "macro_f1": evaluation.macro_f1,
                "accuracy": evaluation.accuracy,
                "benign_fpr": evaluation.benign_fpr,
                "per_class_f1": {m.name: m.f1 for m in evaluation.per_class},
            }
        row["seconds"] = time.perf_counter() - started
        logger.info(
            "fold %d/%d: macro F1 %.4f (baseline %.4f)",
            fold + 1,
            folds,
            row["boosted-trees"]["macro_f1"],
            row["baseline"]["macro_f1"],
        )
        per_fold.append(row)

    summary: dict[str, Any] = {"folds": folds, "per_fold": per_fold}
    for name in ("boosted-trees", "baseline"):
        f1s = np.array([r[name]["macro_f1"] for r in per_fold])
        summary[name] = {
            "macro_f1_mean": float(f1s.mean()),
            "macro_f1_std": float(f1s.std(ddof=1)) if len(f1s) > 1 else 0.0,
            "benign_fpr_mean": float(np.mean([r[name]["benign_fpr"] for r in per_fold])),
            "per_class_f1_mean": {
                c: float(np.mean([r[name]["per_class_f1"][c] for r in per_fold])) for c in classes
            },
        }
    return summary


def train(
    task: FlowTask,
    *,
    output_dir: Path,
    register: bool = True,
    track: bool = True,
    alias: str | None = None,
) -> TrainingResult:
    """Train, evaluate and (by default) track and register a flow model for ``task``.

    Everything is written to a staging folder beside ``output_dir`` that replaces it only when
    the run has succeeded, so a failed or interrupted run leaves an earlier model and report
    in ``output_dir`` as they were.
    """
    settings_grid(task.model)
    for references in task.tests.values():
        for reference in references:
            check_readable(task.resolve(reference))
    final = Path(output_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        result = _train_into(task, staging, register=register, track=track, alias=alias)
        _publish(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.model_folder = final / "model"
    result.report_path = final / "report" / result.report_path.name
    return result


def _publish(staging: Path, final: Path) -> None:
    """Put a finished run in place of ``final``, removing what was there only afterwards."""
    retired = final.parent / f".{final.name}.replaced-{os.getpid()}"
    if final.exists():
        final.rename(retired)
    staging.rename(final)
    shutil.rmtree(retired, ignore_errors=True)


def _train_into(
    task: FlowTask,
    output_dir: Path,
    *,
    register: bool,
    track: bool,
    alias: str | None,
) -> TrainingResult:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    table = task.load()
    classes = sorted(table.labels.unique())
    benign_class = task.choose_benign(classes)
    _, techniques = _mapping_for(task, classes)
    unmapped = [c for c in classes if c != benign_class and not techniques.get(c)]
    if unmapped:
        table.findings.append(
            Finding(
                "unmapped-class",
                Severity.LOW,
                ", ".join(unmapped),
                f"{len(unmapped)} attack classes map to no ATT&CK technique; their alerts "
                "carry none",
                {"classes": unmapped, "mapping": task.attack_mapping},
            )
        )
    timings["load"] = time.perf_counter() - started
    logger.info("loaded %d flows, %d classes from %s", len(table), len(classes), table.source)

    # Cross-validation first, so the final model's run carries its estimate.
    cv = None
    if task.evaluation == "cross-validation":
        started = time.perf_counter()
        cv = cross_validate(table, task, classes, benign_class)
        timings["cross_validation"] = time.perf_counter() - started

    # The model itself: settings chosen on the validation split, never on a test set.
    encoder, trees, baseline, chosen, candidates, train_rows, valid_rows = _fit_once(
        table, task, classes, task.seed, timings
    )
    training_features = table.features.iloc[train_rows]
    model = FlowModel(
        encoder=encoder,
        trees=trees,
        baseline=baseline,
        fingerprint=Fingerprint.from_features(
            training_features,
            table.feature_types,
            input_format=task.input_format(),
            passthrough=[*table.dropped, *([task.label_column] if task.label_column else [])],
        ),
        classes=classes,
        benign_class=benign_class,
        attack_mapping=techniques,
        manifest={
            "task": task.name,
            "task_description": task.description,
            "reader": task.reader,
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "training_source": table.source,
            "split": {
                "validation_fraction": task.validation_fraction,
                "seed": task.seed,
                "train_rows": int(len(train_rows)),
                "validation_rows": int(len(valid_rows)),
            },
            "settings": asdict(chosen.settings),
            "rounds": chosen.rounds,
            "dropped_columns": table.dropped,
            "operating_point": None,
            "machine": f"{platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}",
        },
    )
    point = _choose_operating_point(model, table.subset(valid_rows), task.operating_goal)
    if point is not None:
        model.manifest["operating_point"] = point.to_dict()
    model_folder = model.save(Path(output_dir) / "model")
    _save_validation_scores(model, table.subset(valid_rows), model_folder)
    _save_reference_profile(model, training_features, model_folder, task.seed)

    # Evaluate: validation (chose the settings), then each test set once.
    started = time.perf_counter()
    report = EvaluationReport(
        title=f"threattune evaluation: {task.name}",
        evaluations=[],
        context={
            "task": task.description or task.name,
            "training flows": f"{len(train_rows):,} (validation {len(valid_rows):,}, "
            f"seed {task.seed})",
            "chosen settings": _describe(chosen),
            "operating point": _describe_point(point),
            "dropped columns": ", ".join(table.dropped) or "none",
        },
        findings=list(table.findings),
    )
    validation = table.subset(valid_rows)
    report.add_model(
        model,
        validation.features,
        validation.labels.to_numpy(),
        "validation",
        source=validation.source,
    )
    for name, references in task.tests.items():
        test = task.load(references)
        report.add_model(model, test.features, test.labels.to_numpy(), name, source=test.source)
    if cv is not None:
        report.notes.append(_describe_cv(cv))
        report.sections.append(_cv_table(cv, techniques))
        report.extra["cross_validation"] = cv
    report_path = report.write(Path(output_dir) / "report")
    timings["evaluate"] = time.perf_counter() - started

    result = TrainingResult(
        task,
        model_folder,
        report_path,
        report,
        chosen,
        candidates,
        cross_validation=cv,
        seconds=timings,
    )
    if track:
        _track(result, table, train_rows, register=register, alias=alias)
    return result


def _describe(candidate: Candidate) -> str:
    s = candidate.settings
    return (
        f"depth {s.max_depth}, class weight {s.class_weight}, learning rate "
        f"{s.learning_rate}, {candidate.rounds} rounds (validation macro F1 "
        f"{candidate.validation_macro_f1:.4f})"
    )


def _describe_cv(cv: dict[str, Any]) -> str:
    model, baseline = cv["boosted-trees"], cv["baseline"]
    return (
        f"Stratified {cv['folds']}-fold cross-validation: macro F1 "
        f"{model['macro_f1_mean']:.4f} ± {model['macro_f1_std']:.4f} (baseline "
        f"{baseline['macro_f1_mean']:.4f} ± {baseline['macro_f1_std']:.4f})."
    )


def _cv_table(cv: dict[str, Any], techniques: dict[str, list[dict[str, Any]]]) -> str:
    """Per-class F1 averaged over the folds, model beside baseline, as Markdown."""
    model, baseline = cv["boosted-trees"], cv["baseline"]
    lines = [
        f"## Cross-validation ({cv['folds']} stratified folds)",
        "",
        "| class | ATT&CK | F1 (mean over folds) | baseline F1 |",
        "|---|---|---:|---:|",
    ]
    for name, f1 in model["per_class_f1_mean"].items():
        ids = ";".join(t["id"] for t in techniques.get(name, [])) or "-"
        lines.append(f"| {name} | {ids} | {f1:.4f} | {baseline['per_class_f1_mean'][name]:.4f} |")
    lines.append(
        f"| **macro** | | **{model['macro_f1_mean']:.4f} ± {model['macro_f1_std']:.4f}** | "
        f"{baseline['macro_f1_mean']:.4f} ± {baseline['macro_f1_std']:.4f} |"
    )
    return "\n".join(lines)


def _track(
    result: TrainingResult,
    table: FlowTable,
    train_rows: np.ndarray,
    *,
    register: bool,
    alias: str | None,
) -> None:
    task = result.task
    with tracking.start_run(
        f"threattune/{task.name}",
        run_name=f"train-{task.name}",
        tags={"threattune.task": task.name},
    ) as run_id:
        result.run_id = run_id
        tracking.log_params({
            "task": task.name, "reader": task.reader, "seed": task.seed,
            "operating_goal": task.operating_goal,
            "validation_fraction": task.validation_fraction,
            "training_source": table.source, "flows": len(table),
            "rounds": result.chosen.rounds, "grid_size": len(result.candidates),
            **{f"model.{k}": v for k, v in asdict(result.chosen.settings).items()},
        })  # fmt: skip
        metrics: dict[str, float] = {}
        for evaluation in result.report.evaluations:
            prefix = f"{_metric_name(evaluation.dataset)}.{_metric_name(evaluation.model)}"
            for name in (
                "accuracy",
                "macro_f1",
                "binary_accuracy",
                "detection_rate",
                "benign_fpr",
                "average_precision",
            ):
                metrics[f"{prefix}.{name}"] = evaluation.metric(name)
            for per_class in evaluation.per_class:
                cls = _metric_name(per_class.name)
                metrics[f"{prefix}.{cls}.precision"] = per_class.precision
                metrics[f"{prefix}.{cls}.recall"] = per_class.recall
                metrics[f"{prefix}.{cls}.f1"] = per_class.f1
        if result.cross_validation is not None:
            for name in ("boosted-trees", "baseline"):
                cv = result.cross_validation[name]
                metrics[f"cv.{name}.macro_f1_mean"] = cv["macro_f1_mean"]
                metrics[f"cv.{name}.macro_f1_std"] = cv["macro_f1_std"]
        tracking.log_metrics(metrics)
        tracking.log_artifacts(result.report_path.parent, "report")
        example = table.features.iloc[train_rows[:5]].reset_index(drop=True)
        result.registered = tracking.log_flow_model(
            result.model_folder,
            registered_name=tracking.registered_model_name(task.name) if register else None,
            input_example=example,
        )
    if result.registered is not None:
        existing = tracking.aliases(result.registered.name)
        wanted = alias or ("champion" if "champion" not in existing else None)
        if wanted:
            tracking.set_alias(result.registered.name, wanted, result.registered.version)


def _metric_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in text.replace("@", "."))
