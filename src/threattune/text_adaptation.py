"""Adapt a mail model to new mail: continue training its top layer on a small labelled sample.

After a diagnosis of new mail names the cause (other senders, other lures, mail the model
calls phishing that the organisation does not), the fix is a little of that mail, labelled.
:func:`adapt_mail` reads ``LABEL=PATH`` inputs and:

1. groups the messages into campaigns (exact and near-duplicate text) and splits them by
   campaign, stratified by label and seeded: a ``fraction`` is the adaptation sample, the rest
   is kept to measure; ``held_out`` of the sample validates. No campaign lies on two sides, so
   a copy of a measured lure is never learnt;
2. continues training the transformer's trainable top layer and head on the sample
   (:meth:`~threattune.models.text.TextClassifier.continue_training`, warm-started, the
   frozen layers as they were), keeping the epoch with the lowest validation loss, or the
   model as it was when no epoch beats it;
3. sets the adapted model's alert threshold at **equal recall**: it alerts on as many
   validation phishing messages as the current model does, so that the comparison is one of
   false positives;
4. measures both models once on the rest at their thresholds, and the adapted one again at
   exactly the current model's recall there, then registers the adapted model in MLflow under
   the current model's name with the alias ``challenger``; ``champion`` is not moved.

The adapted model's stored reference embeddings are those of the adaptation sample, embedded
by the adapted model, so a later diagnosis compares new mail with the mail it was adapted to.

>>> result = adapt_mail("models:/threattune-phishing@champion",
...                     ["legitimate=ham/", "phishing=reported.mbox"],
...                     output_dir="adapted/")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from threattune import tracking
from threattune.adaptation import AdaptationResult, _operating_point, threshold_for_recall
from threattune.campaigns import group_campaigns, grouped_split
from threattune.diagnosis.mail import labelled_inputs, read_mail
from threattune.errors import ConfigError, DataError
from threattune.mail_model import REFERENCE_EMBEDDINGS, VALIDATION_SCORES, MailModel
from threattune.models.text import TextClassifier

__all__ = ["adapt_mail"]

logger = logging.getLogger(__name__)

_REFERENCE_MESSAGES = 1_000
_MAX_LABELLED = 50_000


def adapt_mail(
    model: MailModel | str | Path,
    labelled: Sequence[str | tuple[str, str | Path]],
    *,
    output_dir: str | Path,
    fraction: float = 0.5,
    held_out: float = 0.3,
    epochs: int = 2,
    learning_rate: float | None = None,
    register: bool = True,
    alias: str = "challenger",
    model_ref: str | None = None,
    seed: int = 0,
    progress: bool | None = False,
) -> AdaptationResult:
    """Continue training a mail model on labelled new mail; compare at equal recall.

    Parameters
    ----------
    model:
        The current model: a mail model, its folder or ``models:/NAME@ALIAS``.
    labelled:
        ``LABEL=PATH`` inputs (or (label, path) pairs); every label must be a class of the
        model.
    fraction:
        Share of the labelled messages (by campaign) used to adapt; the rest measures. 1.0
        adapts on all of them and measures on the validation part.
    held_out:
        Share of the adaptation sample that validates: it picks the epoch and the threshold.
    epochs:
        Most epochs of continued training.
    learning_rate:
        Of the top layer; by default a third of the model's own (the head's is ten times it).
    register:
        Register the adapted model in MLflow under the current model's name, alias ``alias``.
    model_ref:
        How the current model is named (its URI), when ``model`` is an opened model.
    """
    if not 0 < fraction <= 1 or not 0.05 <= held_out <= 0.5:
        raise ConfigError(
            "adaptation fractions out of range",
            field="fraction" if not 0 < fraction <= 1 else "held_out",
            expected="0 < fraction <= 1 and 0.05 <= held_out <= 0.5",
            found=f"fraction {fraction}, held_out {held_out}",
        )
    reference = model_ref or (str(model) if not isinstance(model, MailModel) else None)
    champion = _open(model)
    reference = reference or str(champion.folder)
    pairs = labelled_inputs(labelled)
    for label, path in pairs:
        if label not in champion.classes:
            raise ConfigError(
                "a label of the labelled mail is not a class of the model",
                field="--sample",
                expected="LABEL=PATH with LABEL one of " + ", ".join(champion.classes),
                found=f"{label}={path}",
                fix="adapt only to the model's own classes; a new class needs a new model",
            )
    sample = read_mail(pairs, max_messages=_MAX_LABELLED, seed=seed)
    texts = np.asarray(sample.texts, dtype=object)
    labels = np.asarray(sample.labels, dtype=object)
    if len(texts) < 20:
        raise DataError(
            "too few labelled messages to adapt on",
            field="--sample",
            expected="at least 20 readable messages",
            found=str(len(texts)),
        )

    campaigns = group_campaigns(sample.texts, seed=seed).ids
    rest_share = 1.0 - fraction if fraction < 1 else 0.0
    split = grouped_split(labels, campaigns, rest_share, fraction * held_out, seed)
    fit_rows, check_rows, rest = split.train, split.validation, split.test
    if len(rest) == 0:
        rest = check_rows
    for name, rows in (("adaptation", fit_rows), ("validation", check_rows)):
        missing = sorted(set(champion.classes) - set(labels[rows]))
        if missing:
            raise DataError(
                f"the {name} part of the sample lacks a class",
                field="--sample",
                expected="messages of every class in each part",
                found=f"no {', '.join(missing)} among {len(rows)} messages",
                fix="label more messages of that class, or raise --fraction",
            )
    logger.info(
        "adapting on %d messages (%d validate), measuring on %d",
        len(fit_rows),
        len(check_rows),
        len(rest),
    )

    benign = champion.benign_index
    before_check = champion.predict_proba(texts[check_rows].tolist())
    before_rest = champion.predict_proba(texts[rest].tolist())
    classifier = TextClassifier.load(Path(champion.folder or ".") / "transformer")
    history = classifier.continue_training(
        texts[fit_rows].tolist(),
        labels[fit_rows].tolist(),
        texts[check_rows].tolist(),
        labels[check_rows].tolist(),
        epochs=epochs,
        learning_rate=learning_rate,
        head_learning_rate=None if learning_rate is None else 10 * learning_rate,
        progress=progress,
    )
    adapted = MailModel(
        classifier=classifier,
        baseline=None,
        manifest=dict(champion.manifest),
        attack_mapping=champion.attack_mapping,
        fingerprint={**champion.fingerprint, **classifier.describe()},
    )

    check_attack = labels[check_rows] != champion.benign_class
    champion_alerts = champion.decide(before_check).alerts
    target = float(champion_alerts[check_attack].mean()) if check_attack.any() else 1.0
    after_check = classifier.predict_proba(texts[check_rows].tolist())
    adapted_scores = 1.0 - after_check[:, benign]
    threshold = threshold_for_recall(check_attack, adapted_scores, target)
    point = _operating_point(check_attack, adapted_scores, threshold)
    adapted.manifest["operating_point"] = point

    after_rest = classifier.predict_proba(texts[rest].tolist())
    truth = labels[rest]
    before = _measure(champion, before_rest, truth)
    after = _measure(adapted, after_rest, truth)
    equal = _at_equal_recall(champion, after_rest, truth, before)
    adapted.manifest["adapted_from"] = reference
    adapted.manifest["adaptation"] = {
        "messages": len(fit_rows),
        "validation_messages": len(check_rows),
        "measured_messages": len(rest),
        "epochs": epochs,
        "best_epoch": history.best_epoch,
        "history": history.epochs,
        "inputs": [f"{label}={path}" for label, path in pairs],
        "reference_embeddings": "messages of the adaptation sample, embedded by this model",
    }
    folder = _save(
        champion,
        adapted,
        Path(output_dir),
        labels[check_rows],
        after_check,
        texts[np.concatenate([fit_rows, check_rows])].tolist(),
        seed,
    )
    result = AdaptationResult(
        model_folder=folder,
        rounds_added=int(history.best_epoch),
        threshold=float(point["threshold"]),
        target_recall=target,
        sample_rows=len(fit_rows) + len(check_rows),
        evaluation_rows=len(rest),
        before=before,
        after=after,
        extra={
            "adapted_from": reference,
            "mail": [f"{label}={path}" for label, path in pairs],
            "unit": "messages",
            "epochs_kept": int(history.best_epoch),
            "validation_loss": [e["validation_loss"] for e in history.epochs],
            "at_equal_recall": equal,
            "split": {
                "campaigns": int(len(np.unique(campaigns))),
                "adapt": len(fit_rows),
                "validate": len(check_rows),
                "measure": len(rest),
            },
        },
    )
    if register:
        result.registered = _register(champion, folder, reference, before, after)
        tracking.set_alias(result.registered.name, alias, result.registered.version)
    (Path(output_dir) / "adaptation.json").write_text(
        json.dumps(result.to_dict(), indent=2, default=float), encoding="utf-8"
    )
    logger.info(
        "legitimate-mail FPR at recall %.3f: %.4f before, %.4f after (best epoch %d)",
        target,
        before["fpr"],
        after["fpr"],
        history.best_epoch,
    )
    return result


def _open(model: MailModel | str | Path) -> MailModel:
    if isinstance(model, MailModel):
        return model
    opened = tracking.open_model(model, with_baseline=False)
    if not isinstance(opened, MailModel):
        raise ConfigError(
            "the model is not a mail model",
            field="--model",
            expected="a model trained with 'threattune train phishing'",
            found=str(model),
        )
    return opened


def _measure(model: MailModel, proba: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    alerts = model.decide(proba).alerts
    attack = truth != model.benign_class
    return {
        "rows": float(len(truth)),
        "fpr": float(alerts[~attack].mean()) if (~attack).any() else float("nan"),
        "recall": float(alerts[attack].mean()) if attack.any() else float("nan"),
        "precision": float(attack[alerts].mean()) if alerts.any() else float("nan"),
        "alerts": float(alerts.sum()),
    }


def _at_equal_recall(
    model: MailModel, proba: np.ndarray, truth: np.ndarray, before: dict[str, float]
) -> dict[str, float]:
    """The adapted model's FPR on the measured messages at exactly the current recall.

    A measurement, not a deployable threshold: it reads the measured messages' labels to
    place both models at the same recall, so that their false positives compare fairly.
    """
    attack = truth != model.benign_class
    if not attack.any() or attack.all() or not before["recall"] > 0:
        return {"recall": before["recall"], "fpr_before": before["fpr"], "fpr_after": float("nan")}
    scores = 1.0 - proba[:, model.benign_index]
    threshold = threshold_for_recall(attack, scores, before["recall"])
    alerts = scores >= threshold
    return {
        "recall": float(alerts[attack].mean()),
        "fpr_before": before["fpr"],
        "fpr_after": float(alerts[~attack].mean()),
    }


def _save(
    champion: MailModel,
    adapted: MailModel,
    output_dir: Path,
    check_labels: np.ndarray,
    check_proba: np.ndarray,
    sample_texts: list[str],
    seed: int,
) -> Path:
    """Copy the champion's folder, then replace the transformer, manifest and evidence."""
    import pandas as pd

    folder = output_dir / "model"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(Path(champion.folder or "."), folder)
    shutil.rmtree(folder / "transformer", ignore_errors=True)
    (folder / "baseline.skops").unlink(missing_ok=True)
    adapted.save(folder)
    scores = pd.DataFrame(check_proba, columns=[f"p:{c}" for c in adapted.classes])
    scores.insert(0, "class", np.asarray(check_labels, dtype=object))
    scores.to_parquet(folder / VALIDATION_SCORES, index=False)

    rng = np.random.default_rng(seed)
    count = min(len(sample_texts), _REFERENCE_MESSAGES)
    chosen = np.sort(rng.choice(len(sample_texts), size=count, replace=False))
    texts = [sample_texts[i] for i in chosen]
    classifier = adapted.classifier
    embeddings = classifier.embed(texts)
    proba = classifier.predict_proba(texts)
    np.savez_compressed(
        folder / REFERENCE_EMBEDDINGS,
        embeddings=embeddings.astype(np.float16),
        token_lengths=np.array([len(ids) for ids in classifier.encode(texts)]),
        threat_scores=1.0 - proba[:, adapted.benign_index],
    )
    return folder


def _register(
    champion: MailModel,
    folder: Path,
    reference: str,
    before: dict[str, float],
    after: dict[str, float],
) -> tracking.RegisteredVersion:
    if reference.startswith("models:/"):
        name = reference.removeprefix("models:/").split("@")[0].split("/")[0]
    else:
        name = tracking.registered_model_name(str(champion.manifest.get("task", "phishing")))
    with tracking.start_run(
        f"threattune/{champion.manifest.get('task', 'phishing')}",
        run_name="adapt",
        tags={"threattune.adapted_from": reference},
    ):
        metrics: dict[str, Any] = {}
        for side, values in (("before", before), ("after", after)):
            metrics.update({f"{side}.{key}": value for key, value in values.items()})
        tracking.log_metrics(metrics)
        registered = tracking.log_mail_model(folder, registered_name=name)
    if registered is None:
        raise DataError(
            "the adapted model was not registered",
            field="--register",
            fix="check MLFLOW_TRACKING_URI",
        )
    return registered
