"""Stage two for the phishing model: what sets its false positives apart, and mail segments.

The two-stage filter of :mod:`threattune.cascade` works on mail as on flows: stage one is the
phishing model at its operating point, stage two a binary model trained on stage one's alerts
and the verdicts on them. What stage two reads of an alert (:func:`mail_stage_two_matrix`):

- stage one's threat score and the TF-IDF baseline's, as log-odds: two views of the text that
  disagree more often on false positives than on lures;
- the message's evidence: links, suspicious links (:func:`~threattune.lures.suspicious_urls`
  on the links written in the text), attachments, HTML, whether headers were kept, sender
  mismatches, failed SPF/DKIM/DMARC, Received hops and length;
- the transformer's pooled embedding, projected on its first principal components.

Stage two (:class:`MailStageTwo`) is a logistic regression over those, standardised; the
projection and the scaling are fitted on the fit part of the training verdicts, the
regularisation by cross-validation within that part. It is saved as JSON (coefficients,
projection, scaling), with nothing to unpickle, and scores with NumPy alone.

A mail segment (:func:`load_mail_segment`) is labelled mail in order: ``LABEL=PATH`` inputs
(mbox, .eml, folders, archives) or a part of the built-in corpus (``phishing:test``,
``phishing:unsampled``, the training-split messages the model's training sample left out).
Each message's alert id is stable: the corpus ``id``, or for mail files a hash of the file
name and the Message-ID (of the position in the file when there is none).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threattune._jsonfile import read_json, write_json
from threattune.cascade import Segment
from threattune.errors import ConfigError, DataError, ModelError
from threattune.lures import suspicious_urls
from threattune.mail_model import MailModel
from threattune.models.text_baseline import normalise_for_model
from threattune.sources._text import extract_urls

__all__ = [
    "CORPUS_PARTS",
    "EVIDENCE_FEATURES",
    "ORDERS",
    "SCORE_FEATURES",
    "MailStageTwo",
    "MailStageTwoSettings",
    "cascade_features",
    "cascade_row",
    "corpus_segment",
    "corpus_times",
    "evidence_matrix",
    "labelled_mail_segment",
    "load_mail_segment",
    "mail_digest",
    "mail_feature_names",
    "mail_stage_two_matrix",
    "message_alert_id",
    "model_texts",
    "order_rows",
    "unsampled_training_rows",
]

logger = logging.getLogger(__name__)

ORDERS = ("time", "time-per-label", "time-per-source", "file")
"""How a mail segment is ordered: one timeline (undated last), each label's own, each source's
own (a corpus, a mailbox file), or as read."""
CORPUS_PARTS = ("test", "unsampled")
SCORE_FEATURES = ("threat_logit", "baseline_logit")
EVIDENCE_FEATURES = (
    "log_urls", "log_suspicious_urls", "log_attachments", "html", "headers",
    "reply_to_mismatch", "return_path_mismatch", "display_name_spoof", "failed_auth",
    "log_received_hops", "log_chars",
)  # fmt: skip
EVIDENCE_COLUMNS = (
    "text", "url_count", "attachment_count", "html", "reply_to_mismatch",
    "return_path_mismatch", "display_name_spoof", "spf", "dkim", "dmarc", "received_hops",
)  # fmt: skip
"""Columns of the corpus table (and of :func:`threattune.phishing.message_row`) stage two reads."""
STAGE_TWO_FORMAT = "threattune-mail-stage2"
STAGE_TWO_VERSION = 1
_FAILED_AUTH = frozenset({"fail", "softfail", "permerror", "temperror", "none", "neutral"})
_DAY_IN_NAME = r"(?<!\d)((?:19|20)\d\d-[01]\d-[0-3]\d)(?!\d)"
_CLIP = 1e-6


# --- stage one --------------------------------------------------------------------------------


def mail_digest(model: MailModel) -> str:
    """SHA-256 over the transformer's files and the baseline: what stage two depends on."""
    if model.folder is None:
        raise ModelError("the stage-one model has no saved folder; save it first")
    folder = Path(model.folder)
    files = sorted(p for p in (folder / "transformer").rglob("*") if p.is_file())
    files.append(folder / "baseline.skops")
    if len(files) == 1 or not files[-1].is_file():
        raise ModelError(
            "the mail model folder is incomplete", path=folder,
            expected="transformer/ and baseline.skops", fix="copy the model folder again",
        )  # fmt: skip
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def model_texts(features: pd.DataFrame) -> list[str]:
    """What the model reads of each message: its ``text`` column, normalised."""
    if "text" not in features.columns:
        raise DataError(
            "mail for the cascade needs a text column", field="text",
            expected="subject and body per message", found=", ".join(map(str, features.columns)),
            fix="read mail with threattune.mail_cascade.load_mail_segment",
        )  # fmt: skip
    return [normalise_for_model(str(text)) for text in features["text"]]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _CLIP, 1.0 - _CLIP)
    return np.log(p) - np.log1p(-p)


def evidence_matrix(features: pd.DataFrame) -> np.ndarray:
    """One row per message, columns :data:`EVIDENCE_FEATURES`; unknown header values count 0."""
    missing = [c for c in EVIDENCE_COLUMNS if c not in features.columns]
    if missing:
        raise DataError(
            "mail for the cascade lacks an evidence column", field=missing[0],
            expected=", ".join(EVIDENCE_COLUMNS),
            fix="read mail with threattune.mail_cascade.load_mail_segment",
        )  # fmt: skip

    def flag(name: str) -> np.ndarray:
        return features[name].astype("boolean").fillna(False).to_numpy(dtype=np.float64)

    def count(name: str) -> np.ndarray:
        values = pd.to_numeric(features[name], errors="coerce").fillna(0)
        return np.log1p(values.to_numpy(dtype=np.float64).clip(min=0))

    texts = features["text"].astype(str)
    suspicious = [len(suspicious_urls(extract_urls(text))) for text in texts]
    failed = np.zeros(len(features))
    for name in ("spf", "dkim", "dmarc"):
        values = features[name].astype("string").str.lower()
        failed += values.isin(_FAILED_AUTH).fillna(False).to_numpy(dtype=np.float64)
    return np.column_stack([
        count("url_count"), np.log1p(np.asarray(suspicious, dtype=np.float64)),
        count("attachment_count"), flag("html"),
        features["received_hops"].notna().to_numpy(dtype=np.float64),
        flag("reply_to_mismatch"), flag("return_path_mismatch"), flag("display_name_spoof"),
        failed, count("received_hops"), np.log1p(texts.str.len().to_numpy(dtype=np.float64)),
    ])  # fmt: skip


def mail_stage_two_matrix(
    model: MailModel, features: pd.DataFrame, proba: np.ndarray
) -> np.ndarray:
    """Stage two's inputs: score log-odds, evidence, then the pooled embedding (see the notes).

    ``proba`` is stage one's class probabilities of the same messages.
    """
    if model.baseline is None:
        raise ModelError(
            "the mail cascade reads the TF-IDF baseline's score, and the model has none loaded",
            path=model.folder, fix="open the model with its baseline (baseline.skops)",
        )  # fmt: skip
    texts = model_texts(features)
    threat = 1.0 - np.asarray(proba)[:, model.benign_index]
    baseline = 1.0 - model.baseline_proba(texts)[:, model.benign_index]
    embedding = model.classifier.embed(texts)
    return np.hstack([
        _logit(threat)[:, None], _logit(baseline)[:, None], evidence_matrix(features),
        np.asarray(embedding, dtype=np.float64),
    ])  # fmt: skip


def mail_feature_names(model: MailModel) -> list[str]:
    """Names of :func:`mail_stage_two_matrix`'s columns."""
    width = int(model.classifier.encoder.config.hidden_size)
    return [*SCORE_FEATURES, *EVIDENCE_FEATURES, *(f"embedding:{i}" for i in range(width))]


# --- stage two --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MailStageTwoSettings:
    """How stage two is fitted: embedding components, regularisation grid, class weights."""

    components: int = 16
    c_values: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
    class_weight: str | None = "balanced"
    folds: int = 5

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> MailStageTwoSettings:
        return cls(
            int(stored["components"]),
            tuple(float(c) for c in stored["c_values"]),
            stored.get("class_weight"),
            int(stored["folds"]),
        )


@dataclass
class MailStageTwo:
    """Logistic regression over score log-odds, evidence and a projection of the embedding.

    ``predict_proba`` takes the rows of :func:`mail_stage_two_matrix`: the first ``scalars``
    columns as they are, the rest (the embedding) projected on ``projection`` after
    subtracting ``projection_mean``; then standardised and weighed.
    """

    scalars: int
    projection_mean: np.ndarray
    projection: np.ndarray
    scale_mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    c: float
    settings: MailStageTwoSettings = field(default_factory=MailStageTwoSettings)
    cv_log_loss: dict[str, float] = field(default_factory=dict)

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        """Standardised inputs of the regression."""
        matrix = np.asarray(matrix, dtype=np.float64)
        width = self.scalars + self.projection.shape[1]
        if matrix.ndim != 2 or matrix.shape[1] != width:
            raise ModelError(
                "stage two got a matrix of another width", field="matrix",
                expected=f"{width} columns", found=str(matrix.shape),
                fix="the stage-one model differs from the one stage two was trained on",
            )  # fmt: skip
        embedding = matrix[:, self.scalars :] - self.projection_mean
        inputs = np.hstack([matrix[:, : self.scalars], embedding @ self.projection.T])
        return (inputs - self.scale_mean) / self.scale

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        """P(false positive) and P(true positive) per row."""
        logits = self.transform(matrix) @ self.coef + self.intercept
        positive = np.exp(-np.logaddexp(0.0, -logits))
        return np.column_stack([1.0 - positive, positive])

    @classmethod
    def fit(
        cls,
        matrix: np.ndarray,
        targets: np.ndarray,
        settings: MailStageTwoSettings | None = None,
        *,
        seed: int = 0,
        scalars: int = len(SCORE_FEATURES) + len(EVIDENCE_FEATURES),
    ) -> MailStageTwo:
        """Fit on rows of :func:`mail_stage_two_matrix` and targets (1 = true positive)."""
        from sklearn.decomposition import PCA

        settings = settings or MailStageTwoSettings()
        matrix = np.asarray(matrix, dtype=np.float64)
        y = np.asarray(targets).astype(int)
        embedding = matrix[:, scalars:]
        components = int(min(settings.components, embedding.shape[1], max(len(y) - 1, 0)))
        if components > 0:
            pca = PCA(n_components=components, svd_solver="full", random_state=seed)
            pca.fit(embedding)
            mean, projection = pca.mean_, pca.components_
        else:
            mean = embedding.mean(axis=0)
            projection = np.zeros((0, embedding.shape[1]))
        inputs = np.hstack([matrix[:, :scalars], (embedding - mean) @ projection.T])
        scale_mean = inputs.mean(axis=0)
        scale = inputs.std(axis=0)
        scale[scale == 0] = 1.0
        standard = (inputs - scale_mean) / scale
        c, losses = _choose_c(standard, y, settings, seed)
        final = _regression(c, settings).fit(standard, y)
        logger.info("mail stage two: C = %g by cross-validated log loss on %d verdicts", c, len(y))
        return cls(
            scalars, mean, projection, scale_mean, scale, final.coef_[0].astype(np.float64),
            float(final.intercept_[0]), c, settings, losses,
        )  # fmt: skip

    def save(self, path: Path) -> None:
        """Write stage two as JSON."""
        write_json(Path(path), {
            "format": STAGE_TWO_FORMAT, "version": STAGE_TWO_VERSION, "scalars": self.scalars,
            "projection_mean": self.projection_mean, "projection": self.projection,
            "scale_mean": self.scale_mean, "scale": self.scale, "coef": self.coef,
            "intercept": self.intercept, "c": self.c, "settings": asdict(self.settings),
            "cv_log_loss": self.cv_log_loss,
        })  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> MailStageTwo:
        """Read stage two written by :meth:`save`."""
        stored = read_json(Path(path), what="cascade")
        if not isinstance(stored, dict) or stored.get("format") != STAGE_TWO_FORMAT:
            raise ModelError(
                "not a mail stage-two file", path=path, field="format",
                expected=STAGE_TWO_FORMAT, fix="train stage two again",
            )  # fmt: skip
        if int(stored.get("version", 0)) > STAGE_TWO_VERSION:
            raise ModelError("stage two was saved by a newer threattune", path=path)
        try:
            projection = np.asarray(stored["projection"], dtype=np.float64)
            width = len(stored["projection_mean"])
            model = cls(
                int(stored["scalars"]),
                np.asarray(stored["projection_mean"], dtype=np.float64),
                projection.reshape(-1, width),
                np.asarray(stored["scale_mean"], dtype=np.float64),
                np.asarray(stored["scale"], dtype=np.float64),
                np.asarray(stored["coef"], dtype=np.float64),
                float(stored["intercept"]),
                float(stored["c"]),
                MailStageTwoSettings.from_dict(stored["settings"]),
                {str(k): float(v) for k, v in stored.get("cv_log_loss", {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                "the mail stage-two file is malformed", path=path,
                found=f"{type(exc).__name__}: {exc}", fix="train stage two again",
            ) from exc  # fmt: skip
        inputs = model.scalars + model.projection.shape[0]
        if not len(model.scale_mean) == len(model.scale) == len(model.coef) == inputs:
            raise ModelError(
                "the mail stage-two file is malformed", path=path, field="coef",
                expected=f"{inputs} weights", found=str(len(model.coef)),
            )  # fmt: skip
        return model


def _regression(c: float, settings: MailStageTwoSettings) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight=settings.class_weight, max_iter=5000)


def _choose_c(
    standard: np.ndarray, y: np.ndarray, settings: MailStageTwoSettings, seed: int
) -> tuple[float, dict[str, float]]:
    """The C of lowest cross-validated log loss (weighted as the fit is); ties keep the smaller."""
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold
    from sklearn.utils.class_weight import compute_sample_weight

    folds = min(settings.folds, int(np.bincount(y, minlength=2).min()))
    if folds < 2 or len(settings.c_values) == 1:
        return float(settings.c_values[len(settings.c_values) // 2]), {}
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    losses: dict[str, float] = {}
    for c in settings.c_values:
        fold_losses = []
        for fit_rows, held_rows in splitter.split(standard, y):
            model = _regression(c, settings).fit(standard[fit_rows], y[fit_rows])
            weights = (
                compute_sample_weight(settings.class_weight, y[held_rows])
                if settings.class_weight
                else None
            )
            held = model.predict_proba(standard[held_rows])
            fold_losses.append(log_loss(y[held_rows], held, sample_weight=weights, labels=[0, 1]))
        losses[f"{c:g}"] = float(np.mean(fold_losses))
    best = min(settings.c_values, key=lambda c: (losses[f"{c:g}"], c))
    return float(best), losses


# --- segments ---------------------------------------------------------------------------------


def message_alert_id(message: Any) -> str:
    """A stable alert id of a parsed message: a hash of its file name and its Message-ID.

    Without a Message-ID, the message's position in the file stands in for it. The file's
    folder is left out, so that moving the mail elsewhere keeps the ids.
    """
    source = message.source
    name = Path(source.path).name + (f"!{source.member}" if source.member else "")
    if message.message_id:
        key = f"{name}|{message.message_id.strip()}"
    else:
        key = f"{name}|{source.index}|{source.line}"
    return "mail-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def order_rows(
    times: pd.Series,
    labels: np.ndarray,
    order: str,
    sources: Sequence[str] | np.ndarray | None = None,
) -> np.ndarray:
    """Positions of the rows in ``order`` (see :data:`ORDERS`); ties keep the input order.

    ``time-per-label`` ranks each label's rows by time (undated last) and interleaves the
    labels by their share of that label's timeline, so that the first 30 % of the result holds
    the first 30 % of every label. ``time-per-source`` does the same for each of ``sources``
    (a mail flow: a corpus, a mailbox file), so that every source is seen in every slice.
    """
    if order not in ORDERS:
        raise ConfigError("unknown segment order", field="order", expected=" or ".join(ORDERS),
                          found=order)  # fmt: skip
    position = np.arange(len(times))
    if order == "file":
        return position
    frame = pd.DataFrame({"time": pd.to_datetime(pd.Series(times).reset_index(drop=True),
                                                 utc=True), "position": position})  # fmt: skip
    by_time = frame.sort_values(["time", "position"], na_position="last", kind="mergesort")
    if order == "time":
        return by_time["position"].to_numpy()
    if order == "time-per-source" and sources is None:
        raise ConfigError("the time-per-source order needs each message's source",
                          field="order", fix="use time-per-label")  # fmt: skip
    groups = labels if order == "time-per-label" else sources
    group_of = pd.Series(np.asarray(groups, dtype=object).astype(str))[by_time["position"]]
    rank = group_of.groupby(group_of.to_numpy()).cumcount().to_numpy()
    size = group_of.map(group_of.value_counts()).to_numpy()
    share = pd.DataFrame({"share": (rank + 0.5) / size, "position": by_time["position"]})
    return share.sort_values(["share", "position"], kind="mergesort")["position"].to_numpy()


def _segment(table: pd.DataFrame, labels: np.ndarray, source: str, order: str) -> Segment:
    rows = order_rows(table["time"], labels, order, table["source"].to_numpy())
    table = table.iloc[rows].reset_index(drop=True)
    times = pd.to_datetime(table["time"], utc=True).dt.tz_localize(None).to_numpy()
    return Segment(
        table.drop(columns="alert_id"), np.asarray(labels, dtype=object)[rows].astype(str),
        table["alert_id"].astype(str).to_numpy(dtype=object), source, times, order,
    )  # fmt: skip


def corpus_times(table: pd.DataFrame) -> pd.Series:
    """When each corpus message was sent: its Date header, else a day in its file name.

    Enron-Spam keeps no headers but names each message by its day
    (``0044.1999-12-20.kaminski.ham.txt``); the day counts as midnight UTC. Others are NaT.
    """
    times = pd.to_datetime(table["date"], utc=True).reset_index(drop=True)
    origins = table["origin"].astype(str).reset_index(drop=True)
    missing = times.isna()
    days = origins[missing].str.extract(_DAY_IN_NAME, expand=False)
    times[missing] = pd.to_datetime(days, utc=True, errors="coerce", format="%Y-%m-%d")
    return times


def unsampled_training_rows(model: MailModel, train_rows: np.ndarray) -> np.ndarray:
    """Training-split positions the model's training sample left out (sorted).

    Training draws ``max_train`` messages of the training split with the model's seed; the
    rest were never trained on, though they share campaigns with messages that were.
    """
    sampled = int(model.manifest.get("split", {}).get("train", len(train_rows)))
    if sampled >= len(train_rows):
        raise DataError(
            "the model trained on the whole training split; no message was left out",
            field="phishing:unsampled", fix="use phishing:test",
        )  # fmt: skip
    rng = np.random.default_rng(int(model.manifest.get("seed", 0)))
    chosen = rng.choice(train_rows, size=sampled, replace=False)
    return np.setdiff1d(train_rows, chosen)


def corpus_segment(
    model: MailModel,
    parts: Sequence[str] = ("test",),
    *,
    order: str = "time",
    max_per_source: int | None = None,
) -> Segment:
    """Parts of the built-in corpus the model never trained on, as a mail segment.

    ``parts``: ``test`` (the held-out split, no campaign shared with training) and
    ``unsampled`` (:func:`unsampled_training_rows`). The corpus is rebuilt with the model's
    seed (and ``max_per_source`` as it was trained); its validation split must match the one
    the model stored, or this raises :class:`DataError`.
    """
    from threattune.phishing import build_corpus

    unknown = [p for p in parts if p not in CORPUS_PARTS]
    if unknown or not parts:
        raise ConfigError(
            "unknown part of the corpus", field="segment", expected=" and ".join(CORPUS_PARTS),
            found=", ".join(unknown) or "none", fix="for example --segment phishing:test",
        )  # fmt: skip
    seed = int(model.manifest.get("seed", 0))
    corpus = build_corpus(
        include_spam="spam" in model.classes, max_per_source=max_per_source, seed=seed
    )
    split = corpus.split(seed=seed)
    _check_split(model, corpus.table, split.validation, split.test, max_per_source)
    chosen = {"test": split.test}
    if "unsampled" in parts:
        chosen["unsampled"] = unsampled_training_rows(model, split.train)
    rows = np.concatenate([chosen[p] for p in dict.fromkeys(parts)])
    table = corpus.table.iloc[rows].reset_index(drop=True)
    frame = table[list(EVIDENCE_COLUMNS)].copy()
    frame.insert(0, "alert_id", table["id"].astype(str))
    frame.insert(1, "time", corpus_times(table))
    frame.insert(2, "source", table["source"].astype(str))
    labels = table["label"].astype(str).to_numpy(dtype=object)
    source = "phishing corpus " + "+".join(dict.fromkeys(parts))
    logger.info("%s: %d messages, %d dated", source, len(frame), frame["time"].notna().sum())
    return _segment(frame, labels, source, order)


def _check_split(
    model: MailModel,
    table: pd.DataFrame,
    validation: np.ndarray,
    test: np.ndarray,
    max_per_source: int | None,
) -> None:
    stored = model.manifest.get("split", {})
    found = {"validation": len(validation), "test": len(test)}
    expected = {k: stored.get(k) for k in found}
    same = all(expected[k] in (None, found[k]) for k in found)
    try:
        labels, _ = model.validation_scores()
        same = same and np.array_equal(
            labels.astype(str), table["label"].iloc[validation].astype(str).to_numpy()
        )
    except ModelError:
        logger.warning("no stored validation scores; the corpus split is checked by size only")
    if not same:
        raise DataError(
            "the corpus split is not the one the model was trained on", field="segment",
            expected=f"validation and test of {expected}", found=str(found),
            fix="pass the max-per-source the model was trained with"
            + (f" (here {max_per_source})" if max_per_source else ""),
        )  # fmt: skip


def cascade_row(message: Any) -> dict[str, Any]:
    """What the cascade reads of a parsed message: alert id, time, source, text and evidence."""
    from threattune.phishing import message_row

    row = message_row(message)
    return {
        "alert_id": message_alert_id(message), "time": row["date"],
        "source": Path(message.source.path).name,
        **{name: row[name] for name in EVIDENCE_COLUMNS},
    }  # fmt: skip


def cascade_features(messages: Sequence[Any]) -> pd.DataFrame:
    """A batch of parsed messages as the cascade reads them (see :func:`cascade_row`)."""
    frame = pd.DataFrame.from_records([cascade_row(m) for m in messages])
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame.drop(columns="alert_id")


def labelled_mail_segment(
    model: MailModel, specs: Sequence[str], *, order: str = "time"
) -> Segment:
    """Mail files given as ``LABEL=PATH`` (mbox, .eml, folders, archives) as a segment.

    Unreadable messages are skipped and counted in the log. Each message's alert id is
    :func:`message_alert_id`; a second copy of one message in the input gets ``#2``.
    """
    from threattune.sources.mail import MailReader

    reader = MailReader()
    rows: list[dict[str, Any]] = []
    labels: list[str] = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or label not in model.classes:
            raise ConfigError(
                "a labelled mail input is LABEL=PATH", field="segment",
                expected="LABEL=PATH with LABEL one of " + ", ".join(model.classes)
                + ", or phishing:test, phishing:unsampled, phishing:test+unsampled",
                found=spec, fix="for example: --segment legitimate=ham/ --segment phishing=x.mbox",
            )  # fmt: skip
        for message in reader.read(Path(path)):
            rows.append(cascade_row(message))
            labels.append(label)
    if not rows:
        raise DataError("no readable labelled message in the segment", field="segment",
                        found=", ".join(specs), fix="check the LABEL=PATH inputs")  # fmt: skip
    if reader.issues:
        logger.warning("skipped %d unreadable messages", len(reader.issues))
    frame = pd.DataFrame.from_records(rows)
    copy = frame.groupby("alert_id").cumcount()
    frame.loc[copy > 0, "alert_id"] += "#" + (copy[copy > 0] + 1).astype(str)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return _segment(frame, np.asarray(labels, dtype=object), ", ".join(specs), order)


def load_mail_segment(
    model: MailModel,
    specs: Sequence[str],
    *,
    order: str = "time",
    max_per_source: int | None = None,
) -> Segment:
    """A mail segment from ``LABEL=PATH`` inputs or ``phishing[:PART[+PART]]`` (the corpus).

    ``phishing`` alone is the corpus test split.
    """
    specs = list(specs)
    if len(specs) == 1 and re.fullmatch(r"phishing(:[\w+-]+)?", specs[0]):
        parts = specs[0].partition(":")[2] or "test"
        return corpus_segment(model, parts.split("+"), order=order, max_per_source=max_per_source)
    return labelled_mail_segment(model, specs, order=order)
