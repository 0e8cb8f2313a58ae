"""Diagnosis of new mail for a mail model: each kind of finding from a constructed case.

A tiny phishing model (32 tokens, one epoch, a few hundred messages of the real corpora) is
trained once for the module; new mail is written as .eml files from corpus messages, read from
a corpus archive, or made up (short notes, emoji, Cyrillic, empty messages).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from threattune.cli import app
from threattune.diagnosis import diagnose
from threattune.diagnosis.text import (
    cohens_h,
    domain_classifier,
    mmd_test,
    share_against_bound,
)
from threattune.findings import Severity
from threattune.mail_model import MailModel
from threattune.mail_training import train_phishing
from threattune.models.text import TextSettings
from threattune.phishing import CACHE_ENV, build_corpus
from threattune.sources.mail import MailReader, Message

runner = CliRunner()
PER_SOURCE = 100
SPAM = "spamassassin_public_corpus/spam.tar.xz"
XSS = "<script>alert(1)</script>"


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Environment variables set for the duration, and one torch thread."""
    import torch

    saved = {name: os.environ.get(name) for name in values}
    threads = torch.get_num_threads()
    os.environ.update(values)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def tiny_mail_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny phishing model trained on the real corpora, once per test session and worker.

    Returns the model folder and the corpus cache it was built with.
    """
    folder = tmp_path_factory.getbasetemp() / "tiny-mail-model"
    model = folder / "run" / "model"
    if not (model / "manifest.json").is_file():
        settings = TextSettings(max_length=32, head_tokens=24, epochs=1, batch_size=16)
        with _environment(**{CACHE_ENV: str(folder / "cache")}):
            train_phishing(
                folder / "run",
                settings=settings,
                max_train=300,
                max_per_source=PER_SOURCE,
                track=False,
                progress=False,
            )
    return model, folder / "cache"


@pytest.fixture(scope="module")
def tiny(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The model, its corpus and the positions of its validation and test messages."""
    model, cache = tiny_mail_model(tmp_path_factory)
    with _environment(**{CACHE_ENV: str(cache)}):
        corpus = build_corpus(max_per_source=PER_SOURCE, seed=0)
        split = corpus.split(seed=0)
        yield {
            "model": MailModel.load(model, with_baseline=False),
            "table": corpus.table,
            "validation": split.validation,
            "test": split.test,
        }


def _eml(subject: str, body: str) -> bytes:
    message = EmailMessage()
    message["From"] = "Sender <sender@example.org>"
    message["To"] = "you@example.org"
    message["Subject"] = subject
    message.set_content(body or "\n")
    return message.as_bytes()


def _write(folder: Path, pairs: list[tuple[str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for number, (subject, body) in enumerate(pairs):
        (folder / f"{number:04d}.eml").write_bytes(_eml(subject, body))
    return folder


def _corpus_mail(table: pd.DataFrame, rows: np.ndarray) -> list[tuple[str, str]]:
    """Corpus messages as (subject, body), so that reading them gives the model's text."""
    out = []
    for subject, text in zip(table["subject"].iloc[rows], table["text"].iloc[rows], strict=True):
        subject = " ".join(str(subject or "").split())
        body = text[len(subject) :] if subject and text.startswith(subject) else text
        out.append((subject, body.strip()))
    return out


def _spam(data_root: Path, count: int) -> list[Message]:
    return list(islice(MailReader().read(data_root / SPAM), count))


def _kinds(findings: list, above: Severity = Severity.LOW) -> dict[str, Severity]:
    found: dict[str, Severity] = {}
    for finding in findings:
        if finding.severity > above:
            found[finding.kind] = max(found.get(finding.kind, finding.severity), finding.severity)
    return found


def test_reference_messages_again_have_nothing_above_low(tiny: dict, tmp_path: Path) -> None:
    current = _write(tmp_path / "again", _corpus_mail(tiny["table"], tiny["validation"]))
    result = runner.invoke(
        app,
        [
            "diagnose",
            "--model",
            str(tiny["model"].folder),
            "--current",
            str(current),
            "--output",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "diagnosis.json").read_text())
    assert report["unit"] == "messages"
    assert report["rows_read"] == len(tiny["validation"])
    assert [f for f in report["findings"] if f["severity"] not in ("info", "low")] == []
    embedding = report["text"]["embedding"]
    assert embedding["auc"] < 0.6 and embedding["mmd_p"] > 0.01
    assert report["text"]["fingerprint"] and report["novelty"]["rate"] < 0.15


def test_a_random_half_against_the_other_has_nothing_above_low(tiny: dict) -> None:
    rows = np.concatenate([tiny["validation"], tiny["test"]])
    rows = np.random.default_rng(1).permutation(rows)
    half = len(rows) // 2
    reference = _messages(_corpus_mail(tiny["table"], rows[:half]))
    current = _messages(_corpus_mail(tiny["table"], rows[half:]))
    result = diagnose(tiny["model"], reference, current)
    assert result.text.reference_kind == "mail"
    assert _kinds(result.findings) == {}, [f.message for f in result.above(Severity.LOW)]
    measures = {r["measure"] for r in result.text.shape}
    assert {"unknown tokens", "non-Latin script", "no text", "script"} <= measures


def _message(subject: str, body: str) -> Message | None:
    return MailReader().parse(_eml(subject, body))


def _messages(pairs: list[tuple[str, str]]) -> list[Message]:
    return [m for m in (_message(subject, body) for subject, body in pairs) if m is not None]


def test_other_mail_drifts_the_embeddings_and_is_named(
    tiny: dict, data_root: Path, tmp_path: Path
) -> None:
    spam = _messages([(f"{XSS} {m.subject}", m.text) for m in _spam(data_root, 150)])
    result = diagnose(tiny["model"], None, spam)
    kinds = _kinds(result.findings)
    assert kinds["embedding-drift"] >= Severity.MEDIUM
    finding = next(f for f in result.findings if f.kind == "embedding-drift")
    assert finding.evidence["p_value"] < 0.01 and finding.evidence["mmd_p"] < 0.01
    assert finding.evidence["auc"] >= finding.evidence["ci_low"] > 0.5
    assert len(result.text.unlike) == 10
    assert all(e["source"] for e in result.text.unlike)

    page = result.write(tmp_path / "report").read_text()
    assert "Messages most unlike the reference" in page
    assert XSS not in page and "&lt;script&gt;" in page
    assert json.loads((tmp_path / "report" / "diagnosis.json").read_text())["text"]["embedding"]


def test_legitimate_mail_only_moves_the_threat_scores_and_alert_rate(
    tiny: dict, data_root: Path
) -> None:
    table = tiny["table"]
    legitimate = np.flatnonzero((table["label"] == "legitimate").to_numpy())
    current = _messages(_corpus_mail(table, legitimate))
    result = diagnose(tiny["model"], None, current)
    kinds = _kinds(result.findings)
    assert kinds.get("alert-rate", Severity.INFO) >= Severity.MEDIUM
    assert kinds.get("prediction-drift", Severity.INFO) >= Severity.MEDIUM
    alert_rate = result.text.prediction["alert_rate"]
    assert alert_rate["current"] < alert_rate["reference"]


def test_text_shape_short_emoji_cyrillic_and_empty_mail(tiny: dict) -> None:
    rng = np.random.default_rng(0)
    words = ["meeting", "lunch", "report", "friday", "thanks", "call", "notes", "team"]
    short = _messages([(f"{rng.choice(words)}", "ok") for _ in range(40)])
    emoji = _messages([("🎉🎁 " + str(rng.choice(words)), "🔥🔥 👉 💰💰 🤑 ✨✨ 🙌")] * 40)
    cyrillic = _messages([("Ваш счёт", "Ваш счёт заблокирован подтвердите пароль сегодня")] * 40)
    empty = _messages([("", "")] * 40)
    result = diagnose(tiny["model"], None, [*short, *emoji, *cyrillic, *empty])
    shape = [f for f in result.findings if f.kind == "text-shape-drift"]
    subjects = {f.subject: f.severity for f in shape if f.severity >= Severity.MEDIUM}
    assert {
        "token length",
        "cut at max_length",
        "unknown tokens",
        "no text",
        "non-Latin script",
    } <= set(subjects), [f.message for f in shape]
    script = next(f for f in shape if f.subject == "non-Latin script")
    assert "cyrillic" in script.message


def test_a_tampered_fingerprint_names_each_field(tiny: dict, tmp_path: Path) -> None:
    folder = tmp_path / "tampered"
    shutil.copytree(tiny["model"].folder, folder)
    path = folder / "fingerprint.json"
    fingerprint = json.loads(path.read_text())
    fingerprint.update(max_length=256, tokenizer="GPT2TokenizerFast", transformers_version="4.1.0")
    fingerprint["text_normalisation"] = "subject+body, raw"
    path.write_text(json.dumps(fingerprint))
    current = _messages(_corpus_mail(tiny["table"], tiny["validation"]))
    result = diagnose(folder, None, current)
    audit = {f.subject: f for f in result.findings if f.kind.endswith("-mismatch")}
    assert audit["max_length"].severity == Severity.HIGH
    assert audit["max_length"].evidence["stored"] == 256
    assert audit["max_length"].evidence["found"] == 32
    assert "text_model.json" in audit["max_length"].evidence["fix"]
    assert audit["tokenizer"].severity == Severity.HIGH
    assert audit["text_normalisation"].kind == "normalisation-mismatch"
    assert audit["transformers_version"].severity == Severity.MEDIUM
    assert result.findings[0].kind in {"tokenizer-mismatch", "normalisation-mismatch"}


def test_labels_name_absent_classes_and_novel_messages(
    tiny: dict, data_root: Path, tmp_path: Path
) -> None:
    spam = _spam(data_root, 120)
    spam_folder = _write(tmp_path / "spam", [(m.subject, m.text) for m in spam])
    table = tiny["table"]
    legitimate = np.flatnonzero((table["label"] == "legitimate").to_numpy())[:60]
    ham_folder = _write(tmp_path / "ham", _corpus_mail(table, legitimate))
    dishes = ["bread", "soup", "cake", "stew", "salad", "pie"]
    unlike = [
        (
            f"Recipe: {dish}",
            f"Preheat the oven, whisk the eggs with flour and sugar for "
            f"the {dish}, bake for {minutes} minutes and serve warm.",
        )
        for dish in dishes
        for minutes in range(20, 30)
    ]
    noise_folder = _write(tmp_path / "recipes", unlike)
    labels = [f"spam={spam_folder}", f"legitimate={ham_folder}", f"unknown={noise_folder}"]
    result = diagnose(tiny["model"], None, [spam_folder, ham_folder, noise_folder], labels)
    assert result.novelty is not None
    by_label = result.novelty.by_label
    assert by_label["spam"]["novel"] and by_label["unknown"]["novel"]
    assert not by_label["legitimate"]["novel"]
    assert by_label["unknown"]["flag_rate"] > 0.5
    novel = {f.subject: f for f in result.findings if f.kind == "novel-class"}
    assert set(novel) == {"spam", "unknown"}
    assert all(f.severity == Severity.HIGH for f in novel.values())
    assert _kinds(result.findings)["novelty"] >= Severity.MEDIUM
    examples = result.novelty.examples
    assert examples and all(e["subject"] is not None and e["label"] for e in examples)
    assert result.labels is not None and result.labels["labels"]["legitimate"] == 60


def test_statistics_on_their_own() -> None:
    assert cohens_h(0.5, 0.5) == 0.0
    assert cohens_h(0.0, 1.0) == pytest.approx(np.pi)
    rng = np.random.default_rng(0)
    same = mmd_test(rng.normal(size=(150, 8)), rng.normal(size=(150, 8)), permutations=200)
    moved = mmd_test(rng.normal(size=(150, 8)), rng.normal(0.8, 1, size=(150, 8)), permutations=200)
    assert same[1] > 0.01 and moved[1] < 0.01 and moved[0] > same[0]
    record, finding = share_against_bound("k", "no text", "empty", 0, 200, (0.0, 0.01, 0.1))
    assert finding is None and record["current"] == 0.0
    _, few = share_against_bound("k", "no text", "empty", 2, 10, (0.02, 0.05, 0.2))
    assert few is not None and few.severity == Severity.MEDIUM  # 20 %, but only 10 messages


def test_domain_classifier_claims_no_more_certainty_than_twenty_messages_give() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(176, 8))
    current = rng.normal(size=(20, 8)) + 0.8

    auc, low, high, p_value, _, _ = domain_classifier(reference, current)

    assert 0.6 < auc < 1.0 and low < auc < high
    # twenty messages support a small p-value, not one of 1e-80 as per-fold variances gave
    assert 1e-20 < p_value < 0.05
