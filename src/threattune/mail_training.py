"""One training run of the phishing model: corpus, grouped split, fine-tune, evaluate, track.

The protocol never looks at the test split to choose anything. The corpus
(:mod:`threattune.phishing`) is split by campaign (no near-duplicate lure on two sides). The
training part may be capped to ``max_train`` messages (a seeded sample). The validation split
stops the transformer's training (best epoch by validation loss), chooses the baseline's
regularisation and the operating point (default: at most 1 % of legitimate validation mail
flagged). The test split is scored once, at the end, by the transformer (int8 path, as
scoring runs) and the baseline, each at its own operating point chosen on validation.

>>> result = train_phishing(Path("runs/phishing"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threattune import tracking
from threattune._jsonfile import write_json
from threattune.attack import AttackMapping
from threattune.calibration import Calibrator
from threattune.errors import DataError
from threattune.mail_model import (
    REFERENCE_EMBEDDINGS,
    TEXT_NORMALISATION,
    VALIDATION_SCORES,
    MailModel,
    message_text,
)
from threattune.models.text import TextClassifier, TextSettings
from threattune.models.text_baseline import TextBaseline, binary_scores, normalise_for_model
from threattune.operating_point import OperatingPoint, choose_threshold, stored_calibrator
from threattune.phishing import LEGITIMATE, PHISHING, PhishingCorpus, build_corpus
from threattune.sources.mail import Message

__all__ = [
    "REGISTERED_NAME",
    "MailTrainingResult",
    "evaluate_on_messages",
    "evaluate_on_split",
    "train_phishing",
]

logger = logging.getLogger(__name__)

REGISTERED_NAME = "threattune-phishing"
_REFERENCE_MESSAGES = 1000


@dataclass
class MailTrainingResult:
    """What a phishing training run produced and measured."""

    model_folder: Path
    report_path: Path
    test: dict[str, dict[str, float]]
    validation: dict[str, dict[str, float]]
    split: dict[str, Any]
    settings: TextSettings
    history: dict[str, Any]
    operating_point: dict[str, Any] | None
    seconds: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    registered: tracking.RegisteredVersion | None = None


def train_phishing(
    output_dir: Path,
    *,
    settings: TextSettings | None = None,
    max_train: int | None = 10_000,
    include_spam: bool = False,
    max_per_source: int | None = None,
    goal: str | None = "fpr<=0.01",
    seed: int = 0,
    register: bool = True,
    track: bool = True,
    alias: str | None = None,
    progress: bool | None = None,
) -> MailTrainingResult:
    """Train, evaluate and (by default) track and register the phishing model.

    Everything is written to a staging folder beside ``output_dir`` that replaces it only when
    the run has succeeded, so a failed run leaves an earlier model where it was.
    """
    settings = settings or TextSettings(seed=seed)
    final = Path(output_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        corpus = build_corpus(include_spam=include_spam, max_per_source=max_per_source, seed=seed)
        result = _train_into(corpus, staging, settings, max_train, goal, seed, progress)
        result.split["include_spam"] = include_spam
        result.split["max_per_source"] = max_per_source
        if track:
            _track(result, corpus, staging, register=register, alias=alias)
        _publish(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.model_folder = final / "model"
    result.report_path = final / "report" / "report.md"
    return result


def _publish(staging: Path, final: Path) -> None:
    retired = final.parent / f".{final.name}.replaced-{os.getpid()}"
    if final.exists():
        final.rename(retired)
    staging.rename(final)
    shutil.rmtree(retired, ignore_errors=True)


def _train_into(
    corpus: PhishingCorpus,
    folder: Path,
    settings: TextSettings,
    max_train: int | None,
    goal: str | None,
    seed: int,
    progress: bool | None,
) -> MailTrainingResult:
    seconds: dict[str, float] = {}
    table = corpus.table
    split = corpus.split(seed=seed)
    train = split.train
    if max_train is not None and len(train) > max_train:
        rng = np.random.default_rng(seed)
        train = np.sort(rng.choice(train, size=max_train, replace=False))
    texts = np.asarray([normalise_for_model(t) for t in table["text"]], dtype=object)
    labels = table["label"].astype(str).to_numpy(dtype=object)
    parts = {"train": train, "validation": split.validation, "test": split.test}
    logger.info("split: %s", {k: len(v) for k, v in parts.items()})

    started = time.perf_counter()
    baseline = TextBaseline(positive=PHISHING, seed=seed).fit(
        texts[train].tolist(),
        labels[train].tolist(),
        validation_texts=texts[split.validation].tolist(),
        validation_labels=labels[split.validation].tolist(),
    )
    seconds["baseline"] = time.perf_counter() - started

    started = time.perf_counter()
    classifier = TextClassifier(settings).fit(
        texts[train].tolist(),
        labels[train].tolist(),
        texts[split.validation].tolist(),
        labels[split.validation].tolist(),
        progress=progress,
    )
    seconds["fine-tune"] = time.perf_counter() - started

    mapping = AttackMapping.builtin("phishing").techniques_by_class()
    model = MailModel(
        classifier=classifier,
        baseline=baseline,
        manifest={
            "task": "phishing",
            "benign_class": LEGITIMATE,
            "positive_class": PHISHING,
            "seed": seed,
            "settings": asdict(settings),
            "split": {k: len(v) for k, v in parts.items()},
            "base_model": settings.base_model,
        },
        attack_mapping={c: mapping.get(c, []) for c in classifier.classes},
        fingerprint={
            "input": "RFC 822 message, or its subject and body as text",
            "text_normalisation": TEXT_NORMALISATION,
            **classifier.describe(),
        },
    )

    started = time.perf_counter()
    valid_texts = texts[split.validation].tolist()
    valid_proba = classifier.predict_proba(valid_texts, progress=progress)
    point = _operating_point(model, labels[split.validation], valid_proba, goal)
    model.manifest["operating_point"] = point.to_dict() if point is not None else None
    baseline_valid = model.baseline_proba(valid_texts)
    baseline_point = _operating_point(model, labels[split.validation], baseline_valid, goal)
    seconds["validation"] = time.perf_counter() - started

    started = time.perf_counter()
    test_texts = texts[split.test].tolist()
    test_proba = classifier.predict_proba(test_texts, progress=progress)
    seconds["test scoring"] = time.perf_counter() - started
    test_truth = labels[split.test]
    test = {
        "transformer": _measures(model, test_truth, test_proba, point),
        "baseline": _measures(model, test_truth, model.baseline_proba(test_texts), baseline_point),
    }
    validation = {
        "transformer": _measures(model, labels[split.validation], valid_proba, point),
        "baseline": _measures(model, labels[split.validation], baseline_valid, baseline_point),
    }
    model.manifest["metrics"] = {"test": test, "validation": validation}

    model.save(folder / "model")
    _save_validation_scores(model, labels[split.validation], valid_proba, folder / "model")
    _save_reference(model, valid_texts, valid_proba, folder / "model", seed)
    result = MailTrainingResult(
        model_folder=folder / "model",
        report_path=folder / "report" / "report.md",
        test=test,
        validation=validation,
        split={
            **{k: len(v) for k, v in parts.items()},
            "campaigns": int(table["campaign"].nunique()),
            "labels": {
                name: pd.Series(labels[rows]).value_counts().to_dict()
                for name, rows in parts.items()
            },
        },
        settings=settings,
        history=classifier.history.to_dict(),
        operating_point=model.manifest["operating_point"],
        seconds=seconds,
    )
    _write_report(result, corpus, point, baseline_point, baseline)
    return result


def _operating_point(
    model: MailModel, truth: np.ndarray, proba: np.ndarray, goal: str | None
) -> OperatingPoint | None:
    if goal is None or str(goal).strip().lower() in {"none", "argmax", ""}:
        return None
    threat = 1.0 - proba[:, model.benign_index]
    point = choose_threshold(truth != model.benign_class, threat, goal)
    if not point.achievable:
        logger.warning("goal %s cannot be met on validation; closest threshold %.4g",
                       goal, point.threshold)  # fmt: skip
    return point


def _measures(
    model: MailModel,
    truth: np.ndarray,
    proba: np.ndarray,
    point: OperatingPoint | None,
    calibration: Calibrator | None = None,
) -> dict[str, float]:
    """Precision, recall, F1, FPR on legitimate mail, AUC and accuracy at the threshold.

    With ``calibration`` (stored with the point by ``threattune threshold``) the threshold is
    on the calibrated threat score, as scoring applies it; AUC stays that of the raw score.
    """
    threshold = point.threshold if point is not None else 0.5
    raw = 1.0 - proba[:, model.benign_index]
    threat = calibration.transform(raw) if calibration is not None else raw
    positive = np.asarray(truth) != model.benign_class
    measures = binary_scores(positive, threat, threshold)
    at_half = binary_scores(positive, raw, 0.5)
    measures["auc"] = at_half["auc"]
    measures["accuracy"] = float(((threat >= threshold) == positive).mean())
    measures["threshold"] = float(threshold)
    measures["f1_at_0.5"] = at_half["f1"]
    return measures


def _at_stored_point(model: MailModel, truth: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """The transformer's measures at the operating point stored with it, calibration included."""
    point = model.operating_point
    stored = OperatingPoint.from_dict(point) if point else None
    return _measures(model, truth, proba, stored, stored_calibrator(point))


def evaluate_on_split(
    model: MailModel, *, part: str = "test", max_per_source: int | None = None
) -> tuple[dict[str, dict[str, float]], int]:
    """Measure a stored model on its corpus split again (the same seed, the same campaigns)."""
    seed = int(model.manifest.get("seed", 0))
    corpus = build_corpus(max_per_source=max_per_source, seed=seed)
    split = corpus.split(seed=seed).parts()[part]
    texts = [normalise_for_model(t) for t in corpus.table["text"].iloc[split]]
    truth = corpus.table["label"].iloc[split].astype(str).to_numpy(dtype=object)
    measures = {"transformer": _at_stored_point(model, truth, model.predict_proba(texts))}
    if model.baseline is not None:
        measures["baseline"] = _measures(model, truth, model.baseline_proba(texts), None)
    return measures, len(split)


def evaluate_on_messages(
    model: MailModel, messages: Sequence[Message], labels: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Measure a model on labelled messages: the transformer at its operating point, the
    baseline at 0.5."""
    if not messages:
        raise DataError("no readable labelled message to evaluate on", field="LABEL=PATH",
                        fix="check the LABEL=PATH inputs")  # fmt: skip
    texts = [message_text(m) for m in messages]
    truth = np.asarray(labels, dtype=object)
    measures = {"transformer": _at_stored_point(model, truth, model.predict_proba(texts))}
    if model.baseline is not None:
        measures["baseline"] = _measures(model, truth, model.baseline_proba(texts), None)
    return measures


def _save_validation_scores(
    model: MailModel, truth: np.ndarray, proba: np.ndarray, folder: Path
) -> None:
    scores = pd.DataFrame(proba, columns=[f"p:{c}" for c in model.classes])
    scores.insert(0, "class", truth)
    scores.to_parquet(folder / VALIDATION_SCORES, index=False)


def _save_reference(
    model: MailModel, texts: list[str], proba: np.ndarray, folder: Path, seed: int
) -> None:
    """Pooled embeddings of up to 1,000 validation messages, for drift checks of new mail."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(texts), size=min(len(texts), _REFERENCE_MESSAGES),
                                replace=False))  # fmt: skip
    sample = [texts[i] for i in chosen]
    embeddings = model.classifier.embed(sample)
    lengths = np.array([len(ids) for ids in model.classifier.encode(sample)])
    np.savez_compressed(
        folder / REFERENCE_EMBEDDINGS,
        embeddings=embeddings.astype(np.float16),
        token_lengths=lengths,
        threat_scores=1.0 - proba[chosen, model.benign_index],
    )


def _write_report(
    result: MailTrainingResult,
    corpus: PhishingCorpus,
    point: OperatingPoint | None,
    baseline_point: OperatingPoint | None,
    baseline: TextBaseline,
) -> None:
    folder = result.report_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    settings = result.settings
    history = result.history
    lines = [
        "# threattune: phishing against legitimate mail",
        "",
        f"Corpus: {len(corpus):,} messages, {corpus.table['campaign'].nunique():,} campaigns; "
        f"grouped split train {result.split['train']:,} (sampled), validation "
        f"{result.split['validation']:,}, test {result.split['test']:,}.",
        "",
        f"Transformer: {settings.base_model}, {history['trainable_layers']} of "
        f"{history['frozen_layers'] + history['trainable_layers']} layers trained "
        f"(the rest frozen and cached), {settings.max_length} tokens "
        f"(head {settings.head_tokens} + tail), best epoch {history['best_epoch']} of "
        f"{len(history['epochs'])} by validation loss; caching {history['cache_seconds']:.0f} s, "
        f"training {history['train_seconds']:.0f} s on {history['device']}.",
        f"Baseline: TF-IDF + logistic regression, C = {baseline.c:g} chosen on validation.",
        "",
        "Operating point (chosen on validation): "
        + (
            f"{point.goal}: threat score >= {point.threshold:.4g}"
            if point is not None
            else "none: the most probable class decides"
        )
        + (
            f"; baseline's: >= {baseline_point.threshold:.4g}" if baseline_point is not None else ""
        ),
        "",
        "| split | model | precision | recall | F1 | FPR on legitimate | AUC | accuracy |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for part, measures in (("test", result.test), ("validation", result.validation)):
        for name, m in measures.items():
            lines.append(
                f"| {part} | {name} | {m['precision']:.4f} | {m['recall']:.4f} | "
                f"{m['f1']:.4f} | {m['fpr']:.2%} | {m['auc']:.4f} | {m['accuracy']:.4f} |"
            )
    lines += [
        "",
        "Caveat: the legitimate mail in the public corpora predates almost all of the phishing, "
        "so a model can learn the era as well as the lure; see docs/results.md.",
    ]
    (folder / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_json(folder / "report.json", {
        "test": result.test, "validation": result.validation, "split": result.split,
        "settings": asdict(settings), "history": history, "seconds": result.seconds,
        "operating_point": result.operating_point,
    })  # fmt: skip


def _track(
    result: MailTrainingResult,
    corpus: PhishingCorpus,
    staging: Path,
    *,
    register: bool,
    alias: str | None,
) -> None:
    with tracking.start_run(
        "threattune/phishing", run_name="train-phishing", tags={"threattune.task": "phishing"}
    ) as run_id:
        result.run_id = run_id
        tracking.log_params({
            "task": "phishing", "messages": len(corpus),
            **{f"split.{k}": v for k, v in result.split.items() if not isinstance(v, dict)},
            **{f"model.{k}": v for k, v in asdict(result.settings).items()},
            "best_epoch": result.history["best_epoch"],
        })  # fmt: skip
        metrics: dict[str, float] = {}
        for part, measures in (("test", result.test), ("validation", result.validation)):
            for name, values in measures.items():
                for key, value in values.items():
                    metrics[f"{part}.{name}.{key}".replace("@", ".")] = value
        for key, value in result.seconds.items():
            metrics[f"seconds.{key.replace(' ', '_')}"] = value
        tracking.log_metrics(metrics)
        tracking.log_artifacts(staging / "report", "report")
        result.registered = tracking.log_mail_model(
            staging / "model", registered_name=REGISTERED_NAME if register else None
        )
    if result.registered is not None:
        existing = tracking.aliases(result.registered.name)
        wanted = alias or ("champion" if "champion" not in existing else None)
        if wanted:
            tracking.set_alias(result.registered.name, wanted, result.registered.version)
