"""Adapt a model to a new segment: continue boosting on a small labelled sample of it.

After a diagnosis names the cause, the usual fix is a little of the segment's own traffic,
labelled. :func:`adapt` takes a stratified ``fraction`` of a labelled segment file as that
sample and keeps the rest to judge the result:

1. the sample is split again: one part continues training the model's XGBoost booster
   (warm start, a few rounds, the model's own classes), the other (held out) chooses how many
   rounds to keep and sets the new alert threshold;
2. the threshold is set at **equal recall**: the adapted model alerts on as many held-out
   attacks as the current model does, so the comparison is one of false positives only;
3. on the rest of the segment both models are measured at their thresholds (benign FPR,
   recall, precision), and the adapted model is registered as a new MLflow version with the
   alias ``challenger``; the ``champion`` alias is left alone.

>>> result = adapt("models:/threattune-nsl-kdd@champion", "segment.csv",
...                output_dir="adapted/")  # doctest: +SKIP
>>> result.after["fpr"] < result.before["fpr"]  # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from threattune import tracking
from threattune.errors import ConfigError, DataError
from threattune.evaluation import class_codes, labelled_flows
from threattune.flow_model import VALIDATION_SCORES, FlowModel
from threattune.models.tabular import BoostedTrees, class_weights
from threattune.operating_point import MaxFalsePositiveRate, choose_threshold
from threattune.training import stratified_split

__all__ = ["AdaptationResult", "adapt", "threshold_for_recall"]

logger = logging.getLogger(__name__)


@dataclass
class AdaptationResult:
    """What an adaptation did, and both models measured on the rest of the segment."""

    model_folder: Path
    rounds_added: int
    threshold: float
    target_recall: float
    sample_rows: int
    evaluation_rows: int
    before: dict[str, float]
    after: dict[str, float]
    registered: tracking.RegisteredVersion | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "model_folder": str(self.model_folder),
            "rounds_added": self.rounds_added,
            "threshold": self.threshold,
            "target_recall": self.target_recall,
            "sample_rows": self.sample_rows,
            "evaluation_rows": self.evaluation_rows,
            "before": self.before,
            "after": self.after,
            "registered": None
            if self.registered is None
            else {"name": self.registered.name, "version": self.registered.version},
            **self.extra,
        }


def threshold_for_recall(is_attack: np.ndarray, scores: np.ndarray, recall: float) -> float:
    """The highest threshold on ``scores`` whose recall on ``is_attack`` reaches ``recall``.

    >>> threshold_for_recall(np.array([1, 1, 0, 1]), np.array([0.9, 0.6, 0.5, 0.2]), 0.6)
    0.6
    """
    attacks = np.sort(np.asarray(scores)[np.asarray(is_attack, dtype=bool)])[::-1]
    if attacks.size == 0:
        raise DataError("no attacks to set a recall on", expected="at least one attack flow")
    needed = int(np.ceil(recall * attacks.size - 1e-9))
    return float(attacks[max(needed, 1) - 1])


def adapt(
    model_ref: str | Path,
    labelled_sample: str | Path,
    *,
    output_dir: str | Path,
    fraction: float = 0.05,
    held_out: float = 0.3,
    max_rounds: int = 50,
    learning_rate: float | None = None,
    register: bool = True,
    alias: str = "challenger",
    seed: int = 0,
) -> AdaptationResult:
    """Continue training a model on a labelled ``fraction`` of a segment; compare at equal recall.

    Parameters
    ----------
    model_ref:
        The current model: a folder or ``models:/NAME@ALIAS``.
    labelled_sample:
        A labelled flows file of the new segment, read as the model was trained.
    fraction:
        Share of that file used for adaptation (stratified by class); the rest measures it.
        1.0 uses the whole file and measures on the held-out part.
    held_out:
        Share of the adaptation sample that chooses rounds and threshold.
    max_rounds:
        Most boosting rounds added; the held-out loss keeps the best number.
    register:
        Register the adapted model in MLflow under the current model's name, alias ``alias``.
    """
    if not 0 < fraction <= 1 or not 0.05 <= held_out <= 0.5:
        raise ConfigError(
            "adaptation fractions out of range",
            field="fraction" if not 0 < fraction <= 1 else "held_out",
            expected="0 < fraction <= 1 and 0.05 <= held_out <= 0.5",
            found=f"fraction {fraction}, held_out {held_out}",
        )
    champion = tracking.open_model(model_ref, with_baseline=False)
    features, labels, source = labelled_flows(champion, [Path(labelled_sample)])
    codes = class_codes(labels, champion.classes, source=source)

    if fraction < 1:
        rest, sample = stratified_split(codes, fraction, seed)
    else:
        sample, rest = np.arange(len(codes)), np.zeros(0, dtype=np.int64)
    fit_part, check_part = stratified_split(codes[sample], held_out, seed + 1)
    fit_rows, check_rows = sample[fit_part], sample[check_part]
    if len(rest) == 0:
        rest = check_rows
    logger.info(
        "adapting on %d flows (%d held out), measuring on %d",
        len(fit_rows),
        len(check_rows),
        len(rest),
    )

    x = champion.encode(features)
    booster = _continue(champion, x, codes, fit_rows, check_rows, max_rounds, learning_rate, seed)
    added = booster.num_boosted_rounds() - champion.trees.booster.num_boosted_rounds()
    adapted = _adapted_model(champion, booster)

    benign = champion.benign_index
    check_attack = codes[check_rows] != benign
    champion_check = champion.decide(champion.trees.predict_proba(x[check_rows])).alerts
    target = float(champion_check[check_attack].mean()) if check_attack.any() else 1.0
    adapted_scores = 1.0 - adapted.trees.predict_proba(x[check_rows])[:, benign]
    threshold = threshold_for_recall(check_attack, adapted_scores, target)
    point = _operating_point(check_attack, adapted_scores, threshold)
    adapted.manifest["operating_point"] = point

    before = _measure(champion, x[rest], codes[rest])
    after = _measure(adapted, x[rest], codes[rest])
    equal_recall = _at_equal_recall(adapted, x[rest], codes[rest], before)
    folder = _save(champion, adapted, Path(output_dir), x[check_rows], labels[check_rows])
    result = AdaptationResult(
        model_folder=folder,
        rounds_added=int(added),
        threshold=float(point["threshold"]),
        target_recall=target,
        sample_rows=len(sample),
        evaluation_rows=len(rest),
        before=before,
        after=after,
        extra={
            "adapted_from": str(model_ref),
            "segment": source,
            "at_equal_recall": equal_recall,
        },
    )
    if register:
        result.registered = _register(champion, folder, features.iloc[fit_rows[:5]], model_ref)
        tracking.set_alias(result.registered.name, alias, result.registered.version)
    (Path(output_dir) / "adaptation.json").write_text(
        json.dumps(result.to_dict(), indent=2), encoding="utf-8"
    )
    logger.info(
        "benign FPR at recall %.3f: %.4f before, %.4f after (%d rounds added)",
        target,
        before["fpr"],
        after["fpr"],
        added,
    )
    return result


def _continue(
    champion: FlowModel,
    x: np.ndarray,
    codes: np.ndarray,
    fit_rows: np.ndarray,
    check_rows: np.ndarray,
    max_rounds: int,
    learning_rate: float | None,
    seed: int,
) -> xgb.Booster:
    """Warm-start boosting from the champion's booster; keep the rounds the held-out part likes."""
    settings = dict(champion.manifest.get("settings", {}))
    trees = BoostedTrees(len(champion.classes))
    params = trees._params(seed)
    params["max_depth"] = int(settings.get("max_depth", params["max_depth"]))
    params["eta"] = learning_rate or float(settings.get("learning_rate", 0.3)) / 3
    scheme = str(settings.get("class_weight", "none"))
    n = len(champion.classes)
    train = xgb.DMatrix(
        x[fit_rows], label=codes[fit_rows], weight=class_weights(codes[fit_rows], n, scheme)
    )
    check = xgb.DMatrix(x[check_rows], label=codes[check_rows])
    start = champion.trees.booster.num_boosted_rounds()
    booster = xgb.train(
        params,
        train,
        num_boost_round=max_rounds,
        evals=[(check, "held_out")],
        early_stopping_rounds=10,
        xgb_model=champion.trees.booster.copy(),
        verbose_eval=False,
    )
    before = float(
        _loss(champion.trees.booster.inplace_predict(x[check_rows]), codes[check_rows], n)
    )
    best = int(booster.best_iteration) + 1
    if float(booster.best_score) >= before:
        best = start
    return booster[:best] if best > start else champion.trees.booster.copy()


def _loss(scores: np.ndarray, codes: np.ndarray, n_classes: int) -> float:
    proba = np.column_stack([1 - scores, scores]) if n_classes == 2 else np.asarray(scores)
    picked = np.clip(proba[np.arange(len(codes)), codes], 1e-15, 1.0)
    return float(-np.log(picked).mean())


def _adapted_model(champion: FlowModel, booster: xgb.Booster) -> FlowModel:
    trees = BoostedTrees(len(champion.classes))
    trees.booster = booster
    return FlowModel(
        encoder=champion.encoder,
        trees=trees,
        baseline=None,
        fingerprint=champion.fingerprint,
        classes=champion.classes,
        benign_class=champion.benign_class,
        attack_mapping=champion.attack_mapping,
        manifest=dict(champion.manifest),
    )


def _operating_point(is_attack: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """A stored operating point at ``threshold``, with its held-out rates."""
    benign = ~is_attack
    fpr = float((scores[benign] >= threshold).mean()) if benign.any() else 0.0
    point = choose_threshold(is_attack, scores, MaxFalsePositiveRate(max(fpr, 0.0)))
    stored = point.to_dict()
    if point.threshold > threshold:
        stored["threshold"] = threshold
    stored["note"] = "set at the current model's recall on the held-out part of the sample"
    return stored


def _at_equal_recall(
    adapted: FlowModel, x: np.ndarray, codes: np.ndarray, before: dict[str, float]
) -> dict[str, float]:
    """The adapted model's benign FPR on the measured flows at exactly the current recall.

    A measurement, not a deployable threshold: it reads the measured flows' labels to place
    both models at the same point of their ROC curves, so their false positives compare fairly.
    """
    benign = adapted.benign_index
    attack = codes != benign
    if not attack.any() or (~attack).all() or not before["recall"] > 0:
        return {"recall": before["recall"], "fpr_before": before["fpr"], "fpr_after": float("nan")}
    scores = 1.0 - adapted.trees.predict_proba(x)[:, benign]
    threshold = threshold_for_recall(attack, scores, before["recall"])
    alerts = scores >= threshold
    return {
        "recall": float(alerts[attack].mean()),
        "fpr_before": before["fpr"],
        "fpr_after": float(alerts[~attack].mean()),
    }


def _measure(model: FlowModel, x: np.ndarray, codes: np.ndarray) -> dict[str, float]:
    alerts = model.decide(model.trees.predict_proba(x)).alerts
    attack = codes != model.benign_index
    return {
        "rows": float(len(codes)),
        "fpr": float(alerts[~attack].mean()) if (~attack).any() else float("nan"),
        "recall": float(alerts[attack].mean()) if attack.any() else float("nan"),
        "precision": float(attack[alerts].mean()) if alerts.any() else float("nan"),
        "alerts": float(alerts.sum()),
    }


def _save(
    champion: FlowModel, adapted: FlowModel, output_dir: Path, x_check: np.ndarray, labels: Any
) -> Path:
    """Copy the champion's folder, then replace its trees, manifest and validation scores."""
    folder = output_dir / "model"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(Path(champion.folder or "."), folder)
    adapted.manifest["adapted_from"] = str(champion.folder)
    adapted.baseline = None
    adapted.save(folder)
    (folder / "baseline.skops").unlink(missing_ok=True)
    proba = adapted.trees.predict_proba(x_check)
    scores = pd.DataFrame(proba, columns=[f"p:{c}" for c in adapted.classes])
    scores.insert(0, "class", np.asarray(labels, dtype=object))
    scores.to_parquet(folder / VALIDATION_SCORES, index=False)
    return folder


def _register(
    champion: FlowModel, folder: Path, example: pd.DataFrame, model_ref: str | Path
) -> tracking.RegisteredVersion:
    text = str(model_ref)
    if text.startswith("models:/"):
        name = text.removeprefix("models:/").split("@")[0].split("/")[0]
    else:
        name = tracking.registered_model_name(str(champion.manifest.get("task", "flows")))
    with tracking.start_run(
        f"threattune/{champion.manifest.get('task', 'flows')}",
        run_name="adapt",
        tags={"threattune.adapted_from": text},
    ):
        registered = tracking.log_flow_model(
            folder, registered_name=name, input_example=example.reset_index(drop=True)
        )
    assert registered is not None
    return registered
