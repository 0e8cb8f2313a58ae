"""The phishing model end to end on slices of the real corpora: train, track, score, evaluate.

A small model (a few hundred messages, 32 tokens, one epoch) is trained once for the module on
the real all-MiniLM-L6-v2 weights, tracked in a private MLflow store on SQLite, and used for
scoring real and hostile mail.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import mail_samples
from threattune import tracking
from threattune.cli import app
from threattune.errors import ConfigError
from threattune.lures import header_flags, lure_technique, suspicious_urls
from threattune.mail_model import MailModel, is_mail_model
from threattune.mail_scoring import score_mail, score_raw
from threattune.mail_training import MailTrainingResult, train_phishing
from threattune.models.text import TextSettings
from threattune.sources.mail import parse_message

runner = CliRunner()
PHISHING_MBOX = "nazario_phishing_mbox/phishing0.mbox.xz"


@pytest.fixture(scope="module")
def trained(mail_store: Path) -> MailTrainingResult:
    settings = TextSettings(max_length=32, head_tokens=24, epochs=1, batch_size=16)
    return train_phishing(
        mail_store / "run", settings=settings, max_train=300, max_per_source=40, progress=False
    )


def test_training_writes_registers_and_measures(trained: MailTrainingResult) -> None:
    folder = trained.model_folder
    assert is_mail_model(folder)
    for name in ("manifest.json", "baseline.skops", "fingerprint.json", "attack_mapping.json",
                 "validation_scores.parquet", "reference_embeddings.npz"):  # fmt: skip
        assert (folder / name).is_file(), name
    assert (folder / "transformer" / "encoder" / "model.safetensors").is_file()
    assert not list(folder.rglob("*.pkl")) and not list(folder.rglob("*.pickle"))
    assert 100 <= trained.split["train"] <= 300
    for model in ("transformer", "baseline"):
        assert 0.0 <= trained.test[model]["f1"] <= 1.0
        assert trained.test[model]["messages"] == trained.split["test"]
    assert trained.operating_point is not None
    assert trained.registered is not None
    assert str(tracking.aliases("threattune-phishing")["champion"]) == trained.registered.version
    report = trained.report_path.read_text()
    assert "| test | transformer |" in report and "era" in report


def test_registry_alias_opens_the_mail_model(trained: MailTrainingResult) -> None:
    model = tracking.open_model("models:/threattune-phishing@champion")
    assert isinstance(model, MailModel)
    assert model.classes == ["legitimate", "phishing"]
    assert model.fingerprint["tokenizer"]
    labels, proba = model.validation_scores()
    assert proba.shape == (len(labels), 2)
    assert model.reference_embeddings()["embeddings"].shape[1] == 384


def test_pyfunc_scores_raw_messages(trained: MailTrainingResult) -> None:
    import mlflow

    loaded = mlflow.pyfunc.load_model("models:/threattune-phishing@champion")
    frame = pd.DataFrame({"raw": [mail_samples.lure().decode(), "\x00\x01 not mail"]})
    scored = loaded.predict(frame)
    assert list(scored["class"])[1] == "unreadable"
    assert scored.loc[0, "class"] in {"phishing", "legitimate"}
    assert any("Reply-To" in flag for flag in scored.loc[0, "signals"])


def test_scoring_real_mail_streams_with_evidence(
    trained: MailTrainingResult, data_root: Path, tmp_path: Path
) -> None:
    model = MailModel.load(trained.model_folder)
    output = tmp_path / "scores.jsonl"
    summary = score_mail(model, [data_root / PHISHING_MBOX], output, batch_size=16,
                         max_messages=40)  # fmt: skip
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert summary.messages == len(rows) == 40
    assert summary.alerts == sum(row["alert"] for row in rows)
    for row in rows:
        assert row["source"].startswith(str(data_root / PHISHING_MBOX))
        assert not any(url.lower().startswith(("http:", "https:")) for url in row["urls"])
        if row["alert"]:
            assert row["technique"] in {"T1566", "T1566.001", "T1566.002"}
        else:
            assert row["technique"] == ""


def test_hostile_mail_is_scored_or_skipped_and_the_rest_goes_on(
    trained: MailTrainingResult, tmp_path: Path
) -> None:
    model = MailModel.load(trained.model_folder, with_baseline=False)
    box = tmp_path / "hostile.mbox"
    box.write_bytes(mail_samples.mbox(
        mail_samples.broken_boundary(),
        mail_samples.unknown_charset("caf\xe9".encode("latin-1")),
        mail_samples.base64_garbage(),
        mail_samples.huge_part(3 * 1024 * 1024),
        mail_samples.header_injection(),
        mail_samples.deep_multipart(60),
        mail_samples.lure(),
    ))  # fmt: skip
    archive = tmp_path / "nested.tar.gz"
    archive.write_bytes(mail_samples.nested_tar(2, mail_samples.plain()))
    (tmp_path / "garbage.eml").write_bytes(mail_samples.binary_garbage())
    output = tmp_path / "hostile.csv"
    summary = score_mail(model, [box, archive, tmp_path / "garbage.eml"], output)
    scored = pd.read_csv(output)
    assert summary.messages == len(scored) >= 8
    assert any(f.kind == "not-mail" for f in summary.findings)
    assert scored["class"].isin(["phishing", "legitimate"]).all()


def test_a_failed_scoring_run_keeps_the_earlier_output(
    trained: MailTrainingResult, tmp_path: Path
) -> None:
    model = MailModel.load(trained.model_folder, with_baseline=False)
    output = tmp_path / "scores.csv"
    output.write_text("earlier\n")
    (tmp_path / "garbage.eml").write_bytes(mail_samples.binary_garbage())
    from threattune.errors import DataError

    with pytest.raises(DataError, match="no readable message"):
        score_mail(model, [tmp_path / "garbage.eml"], output)
    assert output.read_text() == "earlier\n"
    assert not list(tmp_path.glob(".scores.csv.partial-*"))


def test_cli_scores_and_evaluates_mail(
    trained: MailTrainingResult, data_root: Path, tmp_path: Path
) -> None:
    ham = tmp_path / "ham"
    ham.mkdir()
    for index in range(6):
        (ham / f"{index}.eml").write_bytes(mail_samples.plain(subject=f"Report {index}"))
    phish = tmp_path / "phish.mbox"
    phish.write_bytes(mail_samples.mbox(mail_samples.lure(), mail_samples.lure()))
    model = str(trained.model_folder)

    scored = runner.invoke(app, ["score", "--model", model, str(ham), str(phish),
                                 "--output", str(tmp_path / "out.parquet")])  # fmt: skip
    assert scored.exit_code == 0, scored.output
    assert "scored 8 messages" in scored.output
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == 8

    labelled = [f"legitimate={ham}", f"phishing={phish}"]
    evaluated = runner.invoke(
        app, ["evaluate", "--model", model, *labelled, "--output", str(tmp_path / "rep")]
    )
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["measures"]["transformer"]["messages"] == 8

    wrong = runner.invoke(app, ["evaluate", "--model", model, f"spam={ham}"])
    assert isinstance(wrong.exception, ConfigError)
    assert "LABEL=PATH" in str(wrong.exception)


def test_lure_evidence() -> None:
    message = parse_message(mail_samples.lure())
    assert lure_technique(message) == "T1566.001"  # a PDF attachment
    flags = header_flags(message)
    assert any("Reply-To" in flag for flag in flags)
    assert any(flag.startswith("DMARC") for flag in flags)
    links = ["http://198.51.100.7/secure/login", "https://bit.ly/x"]
    odd = suspicious_urls([*links, "https://xn--pypal-4ve.example/", "https://www.example.com/"])
    assert [len(u.reasons) > 0 for u in odd] == [True, True, True]
    assert not any(u.url.startswith(("http:", "https:")) for u in odd)
    link_only = parse_message(b"Subject: hi\n\nsee https://example.com/a")
    assert lure_technique(link_only) == "T1566.002"
    assert lure_technique(parse_message(b"Subject: hi\n\nwire the money today")) == "T1566"


def test_a_link_that_shows_one_site_and_leads_to_another_is_flagged() -> None:
    from threattune.lures import deceptive_links

    raw = (
        b"From: PayPal <service@paypal.example>\nSubject: Your account\n"
        b"MIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n"
        b'<p>Sign in at <a href="http://192.0.2.7/login">www.paypal.com</a> or'
        b' <a href="https://www.paypal.com/help">paypal.com/help</a> or'
        b' <a href="http://login.evil.example/">click here</a>'
        b' <a href="http://x.example/">Contact <b>support@paypal.com</b></a></p>'
    )
    message = parse_message(raw)

    assert ("www.paypal.com", "http://192.0.2.7/login") in message.shown_links
    assert all(text != "click here" for text, _ in message.shown_links)
    flagged = deceptive_links(message.shown_links)
    assert [link.url for link in flagged] == ["hxxp://192[.]0[.]2[.]7/login"]
    assert flagged[0].reasons == ("shows www[.]paypal[.]com",)


def test_score_raw_marks_unreadable_messages(trained: MailTrainingResult) -> None:
    model = MailModel.load(trained.model_folder, with_baseline=False)
    scored = score_raw(model, [mail_samples.plain().decode(), b"\x00\x01\x02"])
    assert list(scored["class"])[1] == "unreadable"
    assert not scored.loc[1, "alert"]


def test_evaluation_applies_the_calibration_a_new_threshold_stored(
    trained: MailTrainingResult, tmp_path: Path
) -> None:
    import shutil

    from threattune.mail_training import evaluate_on_split
    from threattune.tuning import choose_operating_point

    folder = Path(shutil.copytree(trained.model_folder, tmp_path / "model"))
    chosen = choose_operating_point(
        str(folder), "fpr<=0.2", output=tmp_path / "point", calibration="isotonic"
    )
    assert chosen.calibration.method == "isotonic"

    model = MailModel.load(folder)
    measures, _ = evaluate_on_split(model, part="validation", max_per_source=40)

    assert measures["transformer"]["recall"] == pytest.approx(chosen.point.recall, abs=0.05)
    assert measures["transformer"]["recall"] > 0.0
    assert measures["transformer"]["fpr"] == pytest.approx(chosen.point.fpr, abs=0.05)
