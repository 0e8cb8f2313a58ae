"""Diagnose new mail for a mail model: why does it misbehave on this mail?

:func:`diagnose_mail` reads the new mail as scoring reads it, embeds each message once (the
pooled encoder output, from which the head's probabilities follow) and runs the checks that
fit a text model, each reported as :class:`~threattune.findings.Finding` objects:

1. **pipeline and tokenizer audit**: the stored fingerprint (tokenizer, vocabulary,
   ``max_length``, ``head_tokens``, text normalisation, library versions) against what is
   loaded now, the encoder's own limits, and the share of messages the reader had to skip;
2. **embedding drift** (:mod:`.text`): a cross-validated domain classifier and an MMD
   permutation test on the pooled embeddings, with the messages most unlike the reference;
3. **prediction drift**: the threat-score distribution (PSI on ten fixed bins counted on the
   reference, KS) and the alert rate against the reference's, each net of the int8 scoring
   noise (what scoring the same messages again gives);
4. **text-shape drift**: token lengths and the share cut at ``max_length``, messages with
   unknown tokens, without text, or in another script;
5. **novelty**: messages whose embedding lies further from its nearest reference messages
   (of the same decision: alerted or not) than 95 % of reference messages lie from theirs;
6. with labels (``LABEL=PATH``), **label verification**: labels the model has no class for,
   how many of each label the novelty score flags and the model alerts on, and the
   false-positive rate and recall against the validation split's.

The reference is the model's stored ``reference_embeddings.npz`` (pooled embeddings, token
lengths and threat scores of up to 1,000 validation messages) unless mail is given: then
every measure is compared with it, while against the stored reference the shares of unknown
tokens, other scripts and empty messages are held against fixed bounds.

A uniform seeded sample of at most ``max_messages`` messages is diagnosed; a message's place
in the sample depends only on the seed and where it is, so the same files given as new mail
and as labelled mail give the same messages, embedded once.

>>> diagnosis = diagnose_mail("models:/threattune-phishing@champion", None,
...                           ["inbox.mbox"])  # doctest: +SKIP
>>> diagnosis.write("diagnosis/")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from threattune.diagnosis.drift import (
    DriftThresholds,
    _plain,
    detect_drift,
    population_stability_index,
)
from threattune.diagnosis.novelty import NoveltyDetector, NoveltyResult, novelty_findings
from threattune.diagnosis.profile import NumericProfile, ReferenceProfile
from threattune.diagnosis.text import (
    EmbeddingDrift,
    cohens_h,
    embedding_drift,
    embedding_findings,
    share_against_bound,
    share_shift,
    text_measures,
    tokenizer_audit,
    unit_rows,
)
from threattune.errors import ConfigError, DataError, ModelError
from threattune.findings import Finding, Severity
from threattune.mail_model import TEXT_NORMALISATION, MailModel, message_text
from threattune.sources.mail import MailReader, Message

__all__ = [
    "MAX_MESSAGES",
    "MailDrift",
    "MailSample",
    "diagnose_mail",
    "labelled_inputs",
    "read_mail",
]

logger = logging.getLogger(__name__)

MAX_MESSAGES = 2_000
"""Messages diagnosed at most, on each side (new mail, labelled mail, reference mail)."""

_EXAMPLES = 20
_RESCORED = 200
_UNLIKE = 10
_SUBJECT_CHARS = 200
_SKIPPED_KINDS = frozenset(
    "empty-message not-mail malformed-message malformed-row oversized-message unreadable-file "
    "unreadable-archive unsupported-archive archive-too-deep".split()
)
_PIPELINE_KINDS = (
    "tokenizer-mismatch",
    "normalisation-mismatch",
    "encoder-limit",
    "skipped-messages",
    "fingerprint-field",
)
# Shares of new messages (LOW, MEDIUM, HIGH) against which measures with no reference share
# are held. The public training corpus has no message without text (they are dropped), and
# about 1 % of its messages have 5 % or more unknown tokens or are mostly in a non-Latin script.
_NO_TEXT_BOUNDS = (0.0, 0.01, 0.10)
_UNK_BOUNDS = (0.02, 0.05, 0.20)
_SCRIPT_BOUNDS = (0.02, 0.05, 0.20)
_UNK_HEAVY = 0.05


@dataclass
class MailSample:
    """Messages as the model reads them, with where each came from and its label if known."""

    texts: list[str]
    subjects: list[str]
    sources: list[str]
    labels: list[str | None]
    read: int
    skipped: list[Finding] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(eq=False)
class MailDrift:
    """What the text checks measured: embeddings, scores, text shape, tokenizer and examples."""

    reference_kind: str
    embedding: EmbeddingDrift | None
    prediction: dict[str, Any]
    shape: list[dict[str, Any]]
    unlike: list[dict[str, Any]]
    fingerprint: list[dict[str, Any]]
    skipped: int = 0
    reference_threat: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    current_threat: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    reference_lengths: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    current_lengths: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    max_length: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (without per-message arrays)."""
        return _plain(
            {
                "reference_kind": self.reference_kind,
                "embedding": None if self.embedding is None else self.embedding.to_dict(),
                "prediction": self.prediction,
                "shape": self.shape,
                "most_unlike": self.unlike,
                "fingerprint": self.fingerprint,
                "skipped_messages": self.skipped,
                "max_length": self.max_length,
            }
        )


@dataclass
class _Encoded:
    """Per-message model outputs and measures of a sample."""

    embeddings: np.ndarray
    proba: np.ndarray
    measures: dict[str, np.ndarray]


def labelled_inputs(specs: Iterable[str | tuple[str, str | Path]]) -> list[tuple[str, Path]]:
    """``LABEL=PATH`` inputs (or pairs) as (label, path)."""
    pairs = []
    for spec in specs:
        if isinstance(spec, tuple):
            label, path = spec
        else:
            label, sep, path = str(spec).partition("=")
            if not sep or not label.strip() or not path.strip():
                raise ConfigError(
                    "a labelled mail input is LABEL=PATH",
                    field="--labels",
                    expected="LABEL=PATH, such as phishing=inbox.mbox or legitimate=ham/",
                    found=str(spec),
                )
        pairs.append((str(label).strip(), Path(str(path).strip())))
    return pairs


def read_mail(
    inputs: Sequence[str | Path] | Sequence[tuple[str, Path]] | Sequence[Message],
    *,
    max_messages: int = MAX_MESSAGES,
    seed: int = 0,
) -> MailSample:
    """A uniform seeded sample of at most ``max_messages`` messages under ``inputs``.

    ``inputs`` are paths (mbox, .eml, folders, archives), (label, path) pairs, or parsed
    messages. A message's random key depends on the seed and its source only, so overlapping
    inputs sample the same messages.
    """
    if max_messages < 1:
        raise ConfigError(
            "max_messages must be positive", field="max_messages", found=str(max_messages)
        )
    reader = MailReader()
    kept: list[tuple[float, int, str, str, str, str | None]] = []
    read = 0
    for message, label in _messages(reader, inputs):
        source = str(message.source)
        key = _key(seed, source, read)
        entry = (-key, read, message_text(message), message.subject[:_SUBJECT_CHARS], source, label)
        if len(kept) < max_messages:
            heapq.heappush(kept, entry)
        elif -key > kept[0][0]:
            heapq.heapreplace(kept, entry)
        read += 1
    chosen = sorted(kept, key=lambda entry: entry[1])
    skipped = [f for f in reader.issues if f.kind in _SKIPPED_KINDS]
    if read > max_messages:
        logger.info("sampled %d of %d messages", max_messages, read)
    return MailSample(
        texts=[e[2] for e in chosen],
        subjects=[e[3] for e in chosen],
        sources=[e[4] for e in chosen],
        labels=[e[5] for e in chosen],
        read=read,
        skipped=skipped,
    )


def _messages(reader: MailReader, inputs: Sequence[Any]) -> Iterable[tuple[Message, str | None]]:
    for item in inputs:
        if isinstance(item, Message):
            yield item, item.label
        elif isinstance(item, tuple):
            label, path = item
            for message in reader.read(Path(path)):
                yield message, str(label)
        else:
            for message in reader.read(Path(item)):
                yield message, None


def _key(seed: int, source: str, position: int) -> float:
    """A uniform number in [0, 1) fixed by the seed and the message's source."""
    # a source that names no file (parsed bytes) is told apart by its position
    text = f"{seed}\x00{source}" + (f"\x00{position}" if source.startswith("<") else "")
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def diagnose_mail(
    model: MailModel | str | Path,
    reference: str | Path | Sequence[str | Path] | Sequence[Message] | None,
    current: str | Path | Sequence[str | Path] | Sequence[Message],
    labels: str | Path | Sequence[str | tuple[str, str | Path]] | None = None,
    *,
    max_messages: int = MAX_MESSAGES,
    alpha: float = 0.01,
    permutations: int = 500,
    seed: int = 0,
) -> Any:
    """Diagnose new mail ``current`` against the mail model's reference; findings ranked.

    Parameters
    ----------
    model:
        A mail model, its folder, or ``models:/NAME@ALIAS``.
    reference:
        None for the reference embeddings stored with the model, or reference mail (paths or
        parsed messages) read and embedded as the new mail is.
    current:
        The new mail: mbox, .eml, folders, archives, or parsed messages.
    labels:
        Optional labelled mail of the same source, as ``LABEL=PATH`` (or (label, path) pairs).
        A label need not be one of the model's classes: one that is not is reported as a class
        absent from training.
    max_messages:
        Messages sampled on each side.
    alpha:
        Significance level of every test (after the Benjamini-Hochberg correction where several
        distributions are tested together).
    """
    from threattune.diagnosis.diagnose import Diagnosis, _rank

    timings: dict[str, float] = {}
    started = time.perf_counter()
    mail_model = _open(model)
    classifier = mail_model.classifier
    new = read_mail(_as_inputs(current), max_messages=max_messages, seed=seed)
    if len(new) == 0:
        raise DataError(
            "no readable message in the new mail",
            path=_name(current),
            expected="mbox files, .eml files, folders or archives of mail",
            found=f"{len(new.skipped)} skipped"
            + (f" (first: {new.skipped[0].message})" if new.skipped else ""),
        )
    labelled = None
    if isinstance(labels, str | Path):
        labels = [str(labels)]
    if labels:
        labelled = read_mail(labelled_inputs(labels), max_messages=max_messages, seed=seed)
        if len(labelled) == 0:
            raise DataError(
                "no readable message in the labelled mail",
                field="--labels",
                found=", ".join(map(str, labels)),
            )
    reference_mail = None
    if reference is not None:
        reference_mail = read_mail(_as_inputs(reference), max_messages=max_messages, seed=seed + 1)
        if len(reference_mail) < 10:
            raise DataError(
                "too few reference messages",
                path=_name(reference),
                expected="at least 10 readable messages",
                found=str(len(reference_mail)),
            )
    timings["read"] = time.perf_counter() - started

    started = time.perf_counter()
    encoded = _encode(classifier, [new, labelled, reference_mail])
    current_out = encoded[0]
    assert current_out is not None
    if reference_mail is not None:
        assert encoded[2] is not None
        ref = encoded[2]
        ref_embeddings, ref_threat = ref.embeddings, 1.0 - ref.proba[:, mail_model.benign_index]
        ref_lengths, ref_measures = ref.measures["token_length"], ref.measures
        reference_name = _name(reference)
    else:
        stored = _stored_reference(mail_model)
        ref_embeddings = stored["embeddings"].astype(np.float32)
        ref_threat = np.asarray(stored["threat_scores"], dtype=np.float64)
        ref_lengths = np.asarray(stored["token_lengths"], dtype=np.int64)
        ref_measures = None
        reference_name = (
            f"{Path(mail_model.folder or '.') / 'reference_embeddings.npz'} (validation messages)"
        )
    timings["embed"] = time.perf_counter() - started

    started = time.perf_counter()
    loaded = {**classifier.describe(), "text_normalisation": TEXT_NORMALISATION}
    findings = tokenizer_audit(
        mail_model.fingerprint,
        loaded,
        hidden_size=int(classifier.encoder.config.hidden_size),
        embedding_rows=int(classifier.encoder.get_input_embeddings().num_embeddings),
        max_positions=getattr(classifier.encoder.config, "max_position_embeddings", None),
        reference_width=int(ref_embeddings.shape[1]),
    )
    findings += _skipped_findings(new)
    fingerprint = [
        {"field": name, "stored": mail_model.fingerprint.get(name), "loaded": loaded.get(name)}
        for name in sorted(set(loaded) | (set(mail_model.fingerprint) - {"input"}))
    ]
    timings["audit"] = time.perf_counter() - started

    started = time.perf_counter()
    thresholds = DriftThresholds()
    embedding = None
    current_threat = 1.0 - current_out.proba[:, mail_model.benign_index]
    decisions = mail_model.decide(current_out.proba)
    unlike: list[dict[str, Any]] = []
    if ref_embeddings.shape[1] == current_out.embeddings.shape[1]:
        embedding = embedding_drift(
            ref_embeddings, current_out.embeddings, permutations=permutations, seed=seed
        )
        unlike = _unlike(new, embedding, current_threat, decisions.alerts)
        findings += embedding_findings(embedding, unlike, alpha=alpha, thresholds=thresholds)
    timings["embedding drift"] = time.perf_counter() - started

    started = time.perf_counter()
    reference_alerts = _alerts_from_threat(mail_model, ref_threat)
    rescored = _rescore(classifier, new.texts, current_threat, mail_model.benign_index, seed)
    prediction, found = _prediction_drift(
        ref_threat,
        current_threat,
        reference_alerts,
        decisions.alerts,
        rescored,
        _alerts_from_threat(mail_model, rescored["again"]),
        alpha,
        thresholds,
    )
    findings += found
    shape, found = _shape_drift(
        ref_lengths,
        ref_measures,
        current_out.measures,
        classifier.settings.max_length,
        alpha,
        thresholds,
    )
    findings += found
    timings["text shape"] = time.perf_counter() - started

    started = time.perf_counter()
    novelty, detector = _novelty(
        mail_model,
        ref_embeddings,
        reference_alerts,
        new,
        current_out,
        decisions.alerts,
        current_threat,
    )
    label_summary = None
    if labelled is not None:
        assert encoded[1] is not None
        novelty.by_label, label_findings, label_summary = _labels(
            mail_model, detector, labelled, encoded[1], alpha
        )
        findings += label_findings
        _label_examples(novelty, new, labelled)
    findings += _novelty_findings(novelty)
    timings["novelty"] = time.perf_counter() - started

    drift = MailDrift(
        reference_kind="mail" if reference_mail is not None else "stored",
        embedding=embedding,
        prediction=prediction,
        shape=shape,
        unlike=unlike,
        fingerprint=fingerprint,
        skipped=len(new.skipped),
        reference_threat=ref_threat,
        current_threat=current_threat,
        reference_lengths=ref_lengths,
        current_lengths=current_out.measures["token_length"],
        max_length=classifier.settings.max_length,
    )
    diagnosis = Diagnosis(
        model=str(mail_model.folder or model),
        reference=reference_name,
        current=_name(current),
        rows_read=new.read,
        rows_diagnosed=len(new),
        findings=_rank(_pipeline_first(findings)),
        novelty=novelty,
        labels=label_summary,
        seconds=timings,
        text=drift,
        unit="messages",
    )
    logger.info(
        "diagnosed %d of %d messages: %d findings above info, worst %s",
        len(new),
        new.read,
        len(diagnosis.above()),
        diagnosis.severity,
    )
    return diagnosis


def _open(model: MailModel | str | Path) -> MailModel:
    if isinstance(model, MailModel):
        return model
    from threattune.tracking import open_model

    opened = open_model(model, with_baseline=False)
    if not isinstance(opened, MailModel):
        raise ConfigError(
            "the model is not a mail model",
            field="--model",
            expected="a model trained with 'threattune train phishing'",
            found=str(model),
        )
    return opened


def _as_inputs(value: Any) -> list[Any]:
    if isinstance(value, str | Path | Message):
        return [value]
    return list(value)


def _name(value: Any) -> str:
    items = _as_inputs(value)
    if items and all(isinstance(item, Message) for item in items):
        return f"<{len(items)} messages>"
    return ", ".join(str(item) for item in items)


def _stored_reference(model: MailModel) -> dict[str, np.ndarray]:
    stored = model.reference_embeddings()
    missing = {"embeddings", "threat_scores", "token_lengths"} - set(stored)
    if missing:
        raise ModelError(
            "the model's reference embeddings are incomplete",
            path=Path(model.folder or ".") / "reference_embeddings.npz",
            expected="embeddings, threat_scores and token_lengths",
            found=", ".join(sorted(stored)),
            fix="pass --reference with mail like the training mail, or retrain",
        )
    return stored


def _encode(classifier: Any, samples: Sequence[MailSample | None]) -> list[_Encoded | None]:
    """Embed every distinct text of the samples once; the head's probabilities follow from it.

    Embeddings are rounded through float16, as the stored reference is, so that rounding alone
    never tells the two apart.
    """
    import torch

    unique: dict[str, int] = {}
    for sample in samples:
        for text in sample.texts if sample is not None else []:
            unique.setdefault(text, len(unique))
    texts = list(unique)
    pooled = classifier.embed(texts).astype(np.float16).astype(np.float32)
    with torch.inference_mode():
        logits = classifier.head(torch.from_numpy(pooled))
        proba = torch.softmax(logits.float(), dim=-1).numpy().astype(np.float64)
    ids = classifier.encode(texts)
    measures = text_measures(
        texts,
        ids,
        unk_id=classifier.tokenizer.unk_token_id,
        max_length=classifier.settings.max_length,
    )
    out: list[_Encoded | None] = []
    for sample in samples:
        if sample is None:
            out.append(None)
            continue
        rows = np.array([unique[text] for text in sample.texts], dtype=np.int64)
        out.append(_Encoded(pooled[rows], proba[rows], {k: v[rows] for k, v in measures.items()}))
    return out


def _alerts_from_threat(model: MailModel, threat: np.ndarray) -> np.ndarray:
    point = model.operating_point
    threshold = float(point["threshold"]) if point else 0.5
    return np.asarray(threat) >= threshold


def _skipped_findings(sample: MailSample) -> list[Finding]:
    skipped = len(sample.skipped)
    if not skipped:
        return []
    share = skipped / max(skipped + sample.read, 1)
    severity = (
        Severity.HIGH if share >= 0.25 else Severity.MEDIUM if share >= 0.05 else Severity.LOW
    )
    kinds = pd.Series([f.kind for f in sample.skipped]).value_counts().to_dict()
    first = sample.skipped[0]
    return [
        Finding(
            "skipped-messages",
            severity,
            "mail reader",
            f"{skipped} of {skipped + sample.read} inputs ({share:.1%}) could not be read as "
            f"mail and were skipped ({', '.join(f'{k} {v}' for k, v in kinds.items())}); "
            f"first: {first.subject}: {first.message}",
            {"skipped": skipped, "share": share, "kinds": kinds},
        )
    ]


def _unlike(
    sample: MailSample, result: EmbeddingDrift, threat: np.ndarray, alerts: np.ndarray
) -> list[dict[str, Any]]:
    """The new messages the domain classifier finds least like the reference."""
    order = np.argsort(-result.current_scores, kind="stable")[:_UNLIKE]
    return [
        {
            "message": int(i),
            "subject": sample.subjects[i],
            "source": sample.sources[i],
            "domain_score": float(result.current_scores[i]),
            "threat_score": float(threat[i]),
            "alert": bool(alerts[i]),
        }
        for i in order
    ]


def _numeric_drift(
    reference: dict[str, np.ndarray],
    current: dict[str, np.ndarray],
    kind: str,
    alpha: float,
    thresholds: DriftThresholds,
    categorical: Sequence[str] = (),
    profile: ReferenceProfile | None = None,
) -> tuple[list[dict[str, Any]], list[Finding]]:
    """PSI on the reference's bins and KS (Cramér's V for categories) per measure, renamed."""
    if profile is None:
        profile = _profile(reference, categorical)
    report = detect_drift(
        profile, pd.DataFrame(current), alpha=alpha, thresholds=thresholds, multivariate=False
    )
    findings = [replace(f, kind=kind) for f in report.findings if f.kind == "feature-drift"]
    return report.records(), findings


def _profile(values: dict[str, np.ndarray], categorical: Sequence[str] = ()) -> ReferenceProfile:
    return ReferenceProfile.from_frame(pd.DataFrame(values), categorical=list(categorical))


def _score_profile(name: str, threat: np.ndarray) -> ReferenceProfile:
    """A profile of threat scores with ten fixed bins of width 0.1.

    Quantile bins of scores that crowd near 0 and 1 are a hair wide, so that the noise of
    int8 scoring alone moves mass between them; fixed bins count what an analyst sees.
    """
    profile = _profile({name: threat})
    edges = np.concatenate([[np.nextafter(0.0, -1.0)], np.linspace(0.1, 1.0, 10)])
    empty = NumericProfile(name, edges, np.zeros(len(edges) + 3, dtype=np.int64))
    feature = NumericProfile(name, edges, empty.bin_counts(np.asarray(threat, dtype=np.float64)))
    return replace(profile, features={name: feature})


def _rescore(
    classifier: Any, texts: Sequence[str], threat: np.ndarray, benign_index: int, seed: int
) -> dict[str, np.ndarray]:
    """Threat scores of up to 200 new messages scored again, one message at a time.

    Int8 scoring quantises the activations of a whole batch with one scale, so a message's
    score moves with the messages batched beside it. The reference was scored beside other
    messages than the new mail is; scoring the same messages again, alone, measures how far
    scores move for that reason alone: the floor below which a shift of scores is not drift.
    """
    import torch

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(texts), size=min(len(texts), _RESCORED), replace=False))
    again = np.empty(len(rows))
    with torch.inference_mode():
        for k, row in enumerate(rows):
            pooled = classifier.embed([texts[row]]).astype(np.float16).astype(np.float32)
            logits = classifier.head(torch.from_numpy(pooled))
            again[k] = 1.0 - float(torch.softmax(logits.float(), dim=-1)[0, benign_index])
    return {"rows": rows, "first": np.asarray(threat)[rows], "again": again}


def _prediction_drift(
    reference_threat: np.ndarray,
    current_threat: np.ndarray,
    reference_alerts: np.ndarray,
    current_alerts: np.ndarray,
    rescored: dict[str, np.ndarray],
    alerts_again: np.ndarray,
    alpha: float,
    thresholds: DriftThresholds,
) -> tuple[dict[str, Any], list[Finding]]:
    """Threat scores and alert rate against the reference, net of the scoring noise.

    Each effect (PSI, KS D, Cohen's h of the alert rate) is reduced by the same effect between
    two scorings of the same new messages (:func:`_rescore`) before it is held against the
    thresholds; the significance tests are those of the scores as they are.
    """
    name = "threat score"
    profile = _score_profile(name, reference_threat)
    records, findings = _numeric_drift(
        {name: reference_threat},
        {name: current_threat},
        "prediction-drift",
        alpha,
        thresholds,
        profile=profile,
    )
    feature = profile.features[name]
    first, again = rescored["first"], rescored["again"]
    noise = {
        "messages": len(first),
        "mean_abs_change": float(np.mean(np.abs(first - again))) if len(first) else 0.0,
        "psi": population_stability_index(feature.bin_counts(first), feature.bin_counts(again)),
        "ks_d": float(stats.ks_2samp(first, again).statistic) if len(first) else 0.0,
        "alert_flips": float(np.mean(alerts_again != current_alerts[rescored["rows"]])),
    }
    findings = [_net_of_noise(f, records[0], noise, alpha, thresholds) for f in findings]
    q = float(current_alerts.mean())
    allowance = cohens_h(max(q - noise["alert_flips"], 0.0), q)
    record, finding = share_shift(
        "alert-rate",
        "alert rate",
        "alerts",
        (int(reference_alerts.sum()), len(reference_alerts)),
        (int(current_alerts.sum()), len(current_alerts)),
        alpha=alpha,
        allowance=allowance,
        note="a change in the mix of mail (more or less phishing) moves it as much as a "
        "shift the model misreads; label a sample to tell which",
    )
    noise["alert_rate_allowance"] = allowance
    prediction = {
        "threat_score": _distribution_record(records[0]),
        "alert_rate": record,
        "rescoring": noise,
    }
    return prediction, findings + ([finding] if finding else [])


def _net_of_noise(
    finding: Finding,
    row: dict[str, Any],
    noise: dict[str, Any],
    alpha: float,
    thresholds: DriftThresholds,
) -> Finding:
    """A threat-score finding judged again on its effects less the scoring noise's."""
    levels = []
    for effect, floor, q_value, moderate, major in (
        (row["psi"], noise["psi"], row["chi2_q"], thresholds.psi_moderate, thresholds.psi_major),
        (row["ks_d"], noise["ks_d"], row["ks_q"], thresholds.ks_moderate, thresholds.ks_major),
    ):
        net = (effect or 0.0) - floor
        if q_value is not None and q_value <= alpha and net >= moderate:
            levels.append(Severity.HIGH if net >= major else Severity.MEDIUM)
    said = (
        f"scoring the same messages again moves the scores by PSI {noise['psi']:.2f}, KS D "
        f"{noise['ks_d']:.2f} (int8 batches)"
    )
    if levels:
        return replace(finding, severity=max(levels), message=f"{finding.message}; {said}")
    return replace(
        finding,
        severity=Severity.LOW,
        message=f"{finding.message}; within the scoring noise: {said}",
    )


def _shape_drift(
    reference_lengths: np.ndarray,
    reference: dict[str, np.ndarray] | None,
    current: dict[str, np.ndarray],
    max_length: int,
    alpha: float,
    thresholds: DriftThresholds,
) -> tuple[list[dict[str, Any]], list[Finding]]:
    """Token lengths and cut share; unknown tokens, empty messages and scripts."""
    kind = "text-shape-drift"
    lengths = {"token length": np.asarray(reference_lengths, dtype=np.float64)}
    now = {"token length": current["token_length"].astype(np.float64)}
    categorical: list[str] = []
    if reference is not None:
        lengths.update(
            {
                "unknown-token share": reference["unk_share"],
                "non-ASCII letter share": reference["non_ascii_share"],
                "script": reference["script"],
            }
        )
        now.update(
            {
                "unknown-token share": current["unk_share"],
                "non-ASCII letter share": current["non_ascii_share"],
                "script": current["script"],
            }
        )
        categorical = ["script"]
    records, findings = _numeric_drift(lengths, now, kind, alpha, thresholds, categorical)
    shape = [_distribution_record(r) for r in records]

    n = len(current["token_length"])
    cut = (int((reference_lengths >= max_length).sum()), len(reference_lengths))
    pairs = [
        share_shift(
            kind,
            "cut at max_length",
            f"messages longer than {max_length} tokens (their middle is cut)",
            cut,
            (int(current["truncated"].sum()), n),
            alpha=alpha,
        ),
    ]
    heavy = current["unk_share"] >= _UNK_HEAVY
    non_latin = current["script"] != "latin"
    if reference is not None:
        m = len(reference["token_length"])
        pairs += [
            share_shift(
                kind,
                "no text",
                "messages without subject or body text",
                (int(reference["no_text"].sum()), m),
                (int(current["no_text"].sum()), n),
                alpha=alpha,
            ),
            share_shift(
                kind,
                "unknown tokens",
                f"messages with {_UNK_HEAVY:.0%} or more unknown tokens",
                (int((reference["unk_share"] >= _UNK_HEAVY).sum()), m),
                (int(heavy.sum()), n),
                alpha=alpha,
            ),
            share_shift(
                kind,
                "non-Latin script",
                "messages mostly in a non-Latin script",
                (int((reference["script"] != "latin").sum()), m),
                (int(non_latin.sum()), n),
                alpha=alpha,
            ),
        ]
    else:
        pairs += [
            share_against_bound(
                kind,
                "no text",
                "messages without subject or body text (training mail always has some)",
                int(current["no_text"].sum()),
                n,
                _NO_TEXT_BOUNDS,
                note="check the export: bodies may be lost",
            ),
            share_against_bound(
                kind,
                "unknown tokens",
                f"messages with {_UNK_HEAVY:.0%} or more tokens unknown to the vocabulary",
                int(heavy.sum()),
                n,
                _UNK_BOUNDS,
                note="emoji, symbols or scripts the tokenizer lacks; "
                "the model reads them as one [UNK]",
            ),
            share_against_bound(
                kind,
                "non-Latin script",
                "messages mostly in a non-Latin script",
                int(non_latin.sum()),
                n,
                _SCRIPT_BOUNDS,
                note="scripts: " + _scripts(current["script"]),
            ),
        ]
    for record, finding in pairs:
        shape.append(record)
        if finding is not None:
            findings.append(finding)
    return shape, findings


def _distribution_record(row: dict[str, Any]) -> dict[str, Any]:
    effect = row.get("cramers_v") if row.get("type") == "categorical" else row.get("psi")
    return {
        "measure": row["feature"],
        "reference": None,
        "current": None,
        "effect": effect,
        "effect_name": "Cramér's V" if row.get("type") == "categorical" else "PSI",
        "ks_d": row.get("ks_d"),
        "p_value": row.get("chi2_q"),
        "severity": row.get("severity"),
        "status": row.get("status"),
        "basis": "reference messages",
    }


def _scripts(scripts: np.ndarray) -> str:
    counts = pd.Series(scripts).value_counts()
    return ", ".join(f"{name} {count}" for name, count in counts.head(5).items())


def _novelty(
    model: MailModel,
    reference: np.ndarray,
    reference_alerts: np.ndarray,
    sample: MailSample,
    encoded: _Encoded,
    alerts: np.ndarray,
    threat: np.ndarray,
) -> tuple[NoveltyResult, NoveltyDetector]:
    """Distance to the nearest reference messages of the same decision, in cosine geometry."""
    detector = NoveltyDetector.fit(
        unit_rows(reference), reference_alerts.astype(int), k=min(5, len(reference) - 1)
    )
    codes = alerts.astype(int)
    scores = detector.score(unit_rows(encoded.embeddings), codes)
    thresholds = detector.threshold_for(codes)
    flags = scores > thresholds
    names = {0: model.benign_class, 1: "alert"}
    by_class = {}
    for code, name in names.items():
        members = codes == code
        by_class[name] = {
            "rows": int(members.sum()),
            "flagged": int(flags[members].sum()),
            "rate": float(flags[members].mean()) if members.any() else 0.0,
        }
    margin = scores / np.maximum(thresholds, 1e-12)
    top = np.argsort(-margin, kind="stable")[:_EXAMPLES]
    examples = [
        {
            "row": int(i),
            "predicted": model.benign_class if not alerts[i] else "alert",
            "score": float(margin[i]),
            "threat_score": float(threat[i]),
            "subject": sample.subjects[i],
            "source": sample.sources[i],
            "label": None,
            "features": {"subject": sample.subjects[i], "source": sample.sources[i]},
        }
        for i in top[flags[top]]
    ]
    reference_codes = reference_alerts.astype(int)
    reference_thresholds = detector.threshold_for(reference_codes)
    result = NoveltyResult(
        n_rows=len(sample),
        flagged=int(flags.sum()),
        reference_rate=float((detector.reference_scores > reference_thresholds).mean()),
        by_class=by_class,
        examples=examples,
        scores=margin,
        flags=flags,
        reference_scores=detector.reference_scores / np.maximum(reference_thresholds, 1e-12),
        threshold=detector.pooled_threshold,
    )
    return result, detector


def _novelty_findings(result: NoveltyResult) -> list[Finding]:
    """The novelty findings in the words of mail."""
    out = []
    for finding in novelty_findings(result):
        if finding.kind == "novelty":
            named = ", ".join(
                f"{name} {entry['rate']:.0%}"
                for name, entry in result.by_class.items()
                if entry["rows"]
            )
            message = (
                f"{result.rate:.1%} of new messages are unlike any reference message the model "
                f"decided alike (chance rate {result.reference_rate:.0%}); by decision: {named}"
            )
        else:
            entry = finding.evidence
            message = (
                f"label '{finding.subject}' is not a class of the model: {entry['rows']} "
                f"messages, {entry['flag_rate']:.0%} flagged by the novelty score, "
                f"{entry['alert_rate']:.0%} alerted by the model"
            )
        subject = "new mail" if finding.kind == "novelty" else finding.subject
        out.append(replace(finding, subject=subject, message=message))
    return out


def _labels(
    model: MailModel,
    detector: NoveltyDetector,
    sample: MailSample,
    encoded: _Encoded,
    alpha: float,
) -> tuple[dict[str, dict[str, Any]], list[Finding], dict[str, Any]]:
    """Per label: messages, novelty flags, alerts; detection against validation."""
    decisions = model.decide(encoded.proba)
    codes = decisions.alerts.astype(int)
    flags = detector.score(unit_rows(encoded.embeddings), codes) > detector.threshold_for(codes)
    truth = np.asarray(sample.labels, dtype=object)
    by_label: dict[str, dict[str, Any]] = {}
    for label in pd.Series(truth).value_counts().index[:100]:
        members = truth == label
        by_label[str(label)] = {
            "rows": int(members.sum()),
            "flag_rate": float(flags[members].mean()),
            "alert_rate": float(decisions.alerts[members].mean()),
            "novel": str(label) not in model.classes,
            "model_class": str(label) if str(label) in model.classes else None,
        }
    findings = _detection_findings(model, truth, decisions.alerts, alpha)
    summary = {
        "rows": len(truth),
        "benign": int((truth == model.benign_class).sum()),
        "labels": {k: v["rows"] for k, v in by_label.items()},
    }
    return by_label, findings, summary


def _detection_findings(
    model: MailModel, truth: np.ndarray, alerts: np.ndarray, alpha: float
) -> list[Finding]:
    """False-positive rate and recall on labelled mail against the validation split's."""
    try:
        classes, proba = model.validation_scores()
    except ModelError as error:
        logger.warning("no detection check against validation: %s", error.message)
        return []
    validation_alerts = model.decide(proba).alerts
    known = np.isin(truth, model.classes)
    found = []
    checks = (
        ("false-positive rate", classes == model.benign_class, truth == model.benign_class, 1),
        ("recall", classes != model.benign_class, known & (truth != model.benign_class), -1),
    )
    for name, reference_rows, current_rows, worse in checks:
        if not reference_rows.any() or not current_rows.any():
            continue
        reference = (int(validation_alerts[reference_rows].sum()), int(reference_rows.sum()))
        current = (int(alerts[current_rows].sum()), int(current_rows.sum()))
        record, finding = share_shift(
            "labelled-detection",
            name,
            f"{name} on the labelled mail",
            reference,
            current,
            alpha=alpha,
        )
        direction = np.sign(record["current"] - record["reference"])
        if finding is not None and direction == worse:
            found.append(
                replace(
                    finding,
                    message=finding.message.replace(
                        "of reference messages", "on the validation split"
                    ),
                )
            )
    return found


def _label_examples(novelty: NoveltyResult, new: MailSample, labelled: MailSample) -> None:
    """Give each novel example its label when the labelled mail holds the same message."""
    known = dict(zip(labelled.sources, labelled.labels, strict=True))
    for example in novelty.examples:
        label = known.get(new.sources[example["row"]])
        if label is not None:
            example["label"] = label


def _pipeline_first(findings: list[Finding]) -> list[Finding]:
    order = {kind: i for i, kind in enumerate(_PIPELINE_KINDS)}
    return sorted(findings, key=lambda f: order.get(f.kind, len(order)))
