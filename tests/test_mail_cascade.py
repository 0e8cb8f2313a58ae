"""The two-stage filter for the phishing model, on slices of the real corpora.

A small phishing model (300 training messages of a corpus capped at 150 per source, 32
tokens, one epoch) is trained once for the module on the real all-MiniLM-L6-v2 weights, with a
loose operating point (at most 30 % of legitimate validation mail flagged) so that its alerts
hold enough false positives to train stage two on.
"""

from __future__ import annotations

import dataclasses
import json
import lzma
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import mail_samples
from threattune._cli_cascade import register
from threattune.cascade import (
    Cascade,
    cascade_from_labels,
    evaluate_cascade,
    open_stage_one,
    split_segment,
    stage_one_version,
    track_cascade,
)
from threattune.errors import ConfigError, DataError, ModelError
from threattune.mail_cascade import (
    EVIDENCE_FEATURES,
    SCORE_FEATURES,
    MailStageTwo,
    corpus_segment,
    evidence_matrix,
    labelled_mail_segment,
    message_alert_id,
    order_rows,
)
from threattune.mail_training import train_phishing
from threattune.models.text import TextSettings
from threattune.phishing import message_row
from threattune.sources.mail import MailReader
from threattune.verdicts import VerdictStore

MAX_PER_SOURCE = 150


@pytest.fixture(scope="module")
def trained(mail_store: Path) -> dict:
    """The small model, the corpus test split and unsampled messages, a cascade on them."""
    settings = TextSettings(max_length=32, head_tokens=24, epochs=1, batch_size=16)
    result = train_phishing(
        mail_store / "run", settings=settings, max_train=300, max_per_source=MAX_PER_SOURCE,
        goal="fpr<=0.3", track=False, progress=False,
    )  # fmt: skip
    model = open_stage_one(result.model_folder)
    segment = corpus_segment(
        model, ["test", "unsampled"], order="time-per-label", max_per_source=MAX_PER_SOURCE
    )
    cascade, evaluation, verdicts = cascade_from_labels(
        model, segment, first_slice=0.5, root_cause_columns=["source"]
    )
    return {
        "model": model, "segment": segment, "cascade": cascade, "evaluation": evaluation,
        "verdicts": verdicts, "folder": result.model_folder,
    }  # fmt: skip


def test_cascade_trains_on_first_slice_and_measures_the_rest(trained: dict) -> None:
    segment, cascade, evaluation = trained["segment"], trained["cascade"], trained["evaluation"]
    first, rest = split_segment(segment, 0.5)

    assert evaluation.kind == "mail" and evaluation.flows == len(rest)
    assert evaluation.attacks == int((segment.labels[rest] == "phishing").sum())
    assert evaluation.alerts_after <= evaluation.alerts_before
    assert evaluation.false_positives_after <= evaluation.false_positives_before
    assert "| messages | phishing |" in evaluation.to_markdown()
    manifest = cascade.manifest
    assert manifest["kind"] == "mail" and manifest["task"] == "phishing"
    assert manifest["features"][: len(SCORE_FEATURES)] == list(SCORE_FEATURES)
    assert manifest["training"]["false_positives"] >= 10
    assert manifest["segment"]["order"] == "time-per-label"
    assert manifest["segment"]["training_messages"] == len(first)
    assert "cross-validation" in manifest["regularisation_chosen_on"]
    chosen = manifest["validation"]
    assert chosen["true_positives_dropped"] <= 0.01 * chosen["true_positives"] + 1e-9
    assert cascade.training_alerts <= set(segment.alert_ids[first])
    assert all(v.model_version == stage_one_version(trained["model"]) for v in trained["verdicts"])
    assert {v.root_cause for v in trained["verdicts"] if v.verdict == "false-positive"} <= {
        "enron", "spamassassin",
    }  # fmt: skip
    again = evaluate_cascade(
        cascade, segment.subset(rest).features, segment.labels[rest], segment.alert_ids[rest]
    )
    assert again.to_dict() == {**evaluation.to_dict(), "dataset": "segment"}


def test_time_per_label_order_keeps_each_label_share_in_the_first_slice(trained: dict) -> None:
    segment = trained["segment"]
    first, _ = split_segment(segment, 0.5)
    for label in ("phishing", "legitimate"):
        share = (segment.labels[first] == label).sum() / (segment.labels == label).sum()
        assert 0.45 <= share <= 0.55
    times = segment.features["time"]
    for label in ("phishing", "legitimate"):
        dated = times[(segment.labels == label) & times.notna().to_numpy()]
        assert dated.is_monotonic_increasing


def test_measuring_on_training_alerts_or_earlier_mail_is_refused(trained: dict) -> None:
    cascade, model = trained["cascade"], trained["model"]
    segment = trained["segment"]
    first, _ = split_segment(segment, 0.5)
    head = segment.subset(first)
    with pytest.raises(DataError, match="overlap the verdicts"):
        evaluate_cascade(cascade, head.features, head.labels, head.alert_ids)

    timeline = corpus_segment(model, ["test"], order="time", max_per_source=MAX_PER_SOURCE)
    early, late = split_segment(timeline, 0.5)
    assert timeline.first_time(late) > timeline.last_time(early)
    trained_later = dataclasses.replace(
        cascade, training_alerts=frozenset(), training_until=timeline.last_time(late)
    )
    part = timeline.subset(early)
    with pytest.raises(DataError, match="not later"):
        evaluate_cascade(trained_later, part.features, part.labels, part.alert_ids,
                         measured_from=part.first_time())  # fmt: skip


def test_save_and_load_without_pickle_give_identical_decisions(
    trained: dict, tmp_path: Path
) -> None:
    cascade, model = trained["cascade"], trained["model"]
    features = trained["segment"].features.iloc[:150]
    before = cascade.decide(features)

    folder = cascade.save(tmp_path / "cascade")
    loaded = Cascade.load(folder, model)
    after = loaded.decide(features)

    assert sorted(p.name for p in folder.iterdir()) == [
        "cascade.json", "stage2.json", "training_alerts.json",
    ]  # fmt: skip
    for path in folder.iterdir():
        json.loads(path.read_text())
    assert isinstance(loaded.stage_two, MailStageTwo) and loaded.kind == "mail"
    assert np.array_equal(before.alerts, after.alerts)
    assert np.array_equal(before.stage_two_scores, after.stage_two_scores, equal_nan=True)
    assert loaded.threshold == cascade.threshold
    assert loaded.training_alerts == cascade.training_alerts

    stored = json.loads((folder / "stage2.json").read_text())
    stored["coef"] = stored["coef"][:-1]
    (folder / "stage2.json").write_text(json.dumps(stored))
    with pytest.raises(ModelError, match="malformed"):
        Cascade.load(folder, model)


def test_stage_two_scores_with_numpy_as_scikit_learn_does(trained: dict) -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(80, 13 + 6))
    targets = (matrix[:, 0] + 0.5 * rng.normal(size=80) > 0).astype(int)
    model = MailStageTwo.fit(matrix, targets, seed=0)
    z = model.transform(matrix)
    reference = LogisticRegression(C=model.c, class_weight="balanced", max_iter=5000)
    reference.fit(z, targets)
    assert np.allclose(model.predict_proba(matrix), reference.predict_proba(z), atol=1e-8)
    assert model.projection.shape == (6, 6)
    with pytest.raises(ModelError, match="another width"):
        model.predict_proba(matrix[:, :-1])


def test_evidence_and_alert_ids_of_real_messages(tmp_path: Path) -> None:
    reader = MailReader()
    lure = next(iter(reader.read_mbox(_write(tmp_path / "a.mbox", mail_samples.lure()))))
    plain = next(iter(reader.read_mbox(_write(tmp_path / "b.mbox", mail_samples.plain()))))
    import pandas as pd

    rows = pd.DataFrame([message_row(lure), message_row(plain)])
    evidence = pd.DataFrame(evidence_matrix(rows), columns=list(EVIDENCE_FEATURES))
    assert evidence.loc[0, "reply_to_mismatch"] == 1 and evidence.loc[1, "reply_to_mismatch"] == 0
    assert evidence.loc[0, "failed_auth"] >= 2 and evidence.loc[0, "log_attachments"] > 0
    assert evidence.loc[:, "headers"].tolist() == [1, 1]
    again = next(iter(MailReader().read_mbox(tmp_path / "a.mbox")))
    assert message_alert_id(lure) == message_alert_id(again) != message_alert_id(plain)
    moved = tmp_path / "moved"
    moved.mkdir()
    elsewhere = next(iter(MailReader().read_mbox(_write(moved / "a.mbox", mail_samples.lure()))))
    assert message_alert_id(elsewhere) == message_alert_id(lure)


def test_time_order_puts_undated_mail_last() -> None:
    import pandas as pd

    times = pd.Series(pd.to_datetime(["2024-03-02", None, "2024-03-01", "2024-03-01"], utc=True))
    labels = np.array(["phishing", "legitimate", "legitimate", "phishing"])
    assert order_rows(times, labels, "time").tolist() == [2, 3, 0, 1]
    assert order_rows(times, labels, "file").tolist() == [0, 1, 2, 3]
    assert order_rows(times, labels, "time-per-label").tolist() == [2, 3, 0, 1]
    with pytest.raises(ConfigError):
        order_rows(times, labels, "shuffled")


def test_time_per_source_order_puts_every_source_in_every_slice() -> None:
    import pandas as pd

    # Two legitimate sources from different eras and one phishing source: in one timeline the
    # first half holds only the old source; per source, each half holds half of every source.
    times = pd.Series(pd.to_datetime(
        ["2001-01-01", "2001-02-01", "2002-06-01", "2002-07-01", "2020-01-01", "2021-01-01"],
        utc=True,
    ))  # fmt: skip
    labels = np.array(["legitimate"] * 4 + ["phishing"] * 2)
    sources = np.array(["enron", "enron", "spamassassin", "spamassassin", "pot", "pot"])
    first_half = order_rows(times, labels, "time-per-source", sources)[:3]
    assert sorted(sources[first_half]) == ["enron", "pot", "spamassassin"]
    assert sorted(times[first_half].dt.year) == [2001, 2002, 2020]
    assert sorted(sources[order_rows(times, labels, "time-per-label")[:3]]) == [
        "enron", "enron", "pot",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="source"):
        order_rows(times, labels, "time-per-source")


def test_tracking_registers_the_mail_stage_two(
    trained: dict, tmp_path: Path, mlflow_uri: str
) -> None:
    cascade = trained["cascade"]
    cascade.save(tmp_path / "tracked")
    registered = track_cascade(cascade, evaluation=trained["evaluation"])
    assert registered is not None
    assert registered.name == "threattune-phishing-stage2" and registered.version == "1"


def test_command_line_trains_and_evaluates_on_mail_files(
    trained: dict, data_root: Path, tmp_path: Path
) -> None:
    ham = _spamassassin_ham(data_root, tmp_path / "ham", 100, "hard_ham")
    phish = _nazario_mbox(data_root, tmp_path / "phish.mbox", 100)
    segment = labelled_mail_segment(trained["model"], [f"legitimate={ham}", f"phishing={phish}"])
    assert len(segment) == 200 and len(set(segment.alert_ids)) == 200
    # in one timeline nearly all of this ham (2002) precedes this phishing (2004-2005), so the
    # first half holds almost no phishing alert to learn from
    with pytest.raises(DataError, match="too few verdicts"):
        cascade_from_labels(trained["model"], segment, first_slice=0.5)
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    model = str(trained["folder"])
    inputs = ["--segment", f"legitimate={ham}", "--segment", f"phishing={phish}"]
    verdicts = f"sqlite:///{tmp_path / 'verdicts.db'}"

    result = runner.invoke(app, [
        "cascade", "train", "--model", model, *inputs, "--from-labels", "--first-slice", "0.5",
        "--order", "time-per-label", "--verdicts", verdicts, "--no-track",
        "--output", str(tmp_path / "out"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "| messages | phishing |" in result.output
    manifest = json.loads((tmp_path / "out" / "cascade" / "cascade.json").read_text())
    assert manifest["kind"] == "mail" and manifest["segment"]["order"] == "time-per-label"

    skip = str(manifest["segment"]["training_messages"])
    measured = runner.invoke(app, [
        "cascade", "evaluate", "--cascade", str(tmp_path / "out" / "cascade"), *inputs,
        "--output", str(tmp_path / "eval"), "--skip-rows", skip,
    ])  # fmt: skip
    assert measured.exit_code == 0, measured.output
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert report["kind"] == "mail" and report["flows"] == 200 - int(skip)

    # analysts' verdicts as a file: the ones the first run stored, keyed by message alert id
    with VerdictStore(verdicts) as store:
        table = store.to_frame()
    assert table["alert_id"].isin(set(segment.alert_ids)).all()
    columns = ["alert_id", "model_version", "verdict", "analyst", "time"]
    table[columns].to_csv(tmp_path / "verdicts.csv", index=False)
    stored = runner.invoke(app, [
        "cascade", "train", "--model", model, *inputs, "--verdicts", str(tmp_path / "verdicts.csv"),
        "--first-slice", "0.5", "--order", "time-per-label", "--no-track",
        "--output", str(tmp_path / "from-store"),
    ])  # fmt: skip
    assert stored.exit_code == 0, stored.output
    again = json.loads((tmp_path / "from-store" / "cascade" / "cascade.json").read_text())
    assert again["training"] == manifest["training"]


def test_two_stage_scoring_of_mail_files(trained: dict, data_root: Path, tmp_path: Path) -> None:
    """`threattune score --cascade` on mail: stage one scores each message once, stage two
    filters its alerts, and the output says what each stage decided."""
    import pandas as pd

    from threattune.cli import app

    ham = _spamassassin_ham(data_root, tmp_path / "ham", 40, "easy_ham")
    phish = _nazario_mbox(data_root, tmp_path / "phish.mbox", 40)
    cascade = trained["cascade"]
    folder = cascade.save(tmp_path / "cascade")
    output = tmp_path / "scores.jsonl"

    result = CliRunner().invoke(app, [
        "score", str(ham), str(phish), "--cascade", str(folder), "--output", str(output),
    ])  # fmt: skip

    assert result.exit_code == 0, result.output
    scored = pd.read_json(output, lines=True)
    segment = labelled_mail_segment(
        trained["model"], [f"legitimate={ham}", f"phishing={phish}"], order="file"
    )
    decided = cascade.decide(segment.features)
    assert len(scored) == len(segment) == 80
    assert scored["alert"].tolist() == decided.alerts.tolist()
    assert scored["stage_one_alert"].tolist() == decided.stage_one.alerts.tolist()
    assert scored["stage_two_score"].isna().tolist() == (~decided.stage_one.alerts).tolist()
    assert "after stage two, of" in result.output


def test_the_service_filters_mail_alerts_through_the_cascade(
    trained: dict, data_root: Path, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from threattune.mail_cascade import cascade_features
    from threattune.service import ServiceSettings, create_app

    phish = _nazario_mbox(data_root, tmp_path / "phish.mbox", 20)
    cascade = trained["cascade"]
    folder = cascade.save(tmp_path / "cascade")
    settings = ServiceSettings(
        models=(str(trained["folder"]),), cascades=(str(folder),),
        store=f"sqlite:///{tmp_path / 'service.db'}",
    )  # fmt: skip
    app = create_app(settings)
    key, _ = app.state.service.keys.add("analyst", ["read", "write"])

    with TestClient(app) as client:
        while client.get("/readyz").status_code != 200:
            time.sleep(0.05)
        with phish.open("rb") as handle:
            answer = client.post(
                "/api/v1/emails/score-file", headers={"X-API-Key": key},
                files={"file": ("phish.mbox", handle, "application/mbox")},
            )  # fmt: skip

    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    messages = list(MailReader().read(phish))
    decided = cascade.decide(cascade_features(messages))
    assert [r["alert"] for r in results] == decided.alerts.tolist()
    assert [r["stage_one_alert"] for r in results] == decided.stage_one.alerts.tolist()
    assert answer.json()["cascade"] == str(folder)


def test_triage_groups_mail_false_positives_by_embedding_and_words(
    trained: dict, data_root: Path, tmp_path: Path
) -> None:
    ham = _spamassassin_ham(data_root, tmp_path / "ham", 120, "hard_ham")
    phish = _nazario_mbox(data_root, tmp_path / "phish.mbox", 60)
    app = typer.Typer()
    register(app)
    output = tmp_path / "triage"

    result = CliRunner().invoke(app, [
        "triage", "--model", str(trained["folder"]), "--segment", f"legitimate={ham}",
        "--segment", f"phishing={phish}", "--from-labels", "--root-cause-columns", "source",
        "--max-clusters", "4", "--output", str(output),
    ])  # fmt: skip

    assert result.exit_code == 0, result.output
    report = json.loads((output / "triage.json").read_text())
    assert report["false_positives"] >= 2 and report["clusters"]
    assert sum(g["size"] for g in report["clusters"]) == report["false_positives"]
    kinds = {f["kind"] for g in report["clusters"] for f in g["features"]}
    assert "term" in kinds, kinds
    assert {g["name"] for g in report["categories"]} <= {p.name for p in ham.iterdir()}
    markdown = (output / "triage.md").read_text()
    assert "word '" in markdown and "# False-positive triage" in markdown


def test_triage_reads_verdicts_from_a_file_and_needs_verdicts(
    trained: dict, data_root: Path, tmp_path: Path
) -> None:
    ham = _spamassassin_ham(data_root, tmp_path / "ham", 40, "hard_ham")
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    model = str(trained["folder"])
    segment = labelled_mail_segment(trained["model"], [f"legitimate={ham}"])
    rows = [
        {"alert_id": a, "model_version": "m/1", "verdict": "fp", "root_cause": "newsletter",
         "analyst": "ana", "time": f"2024-01-01T00:00:{i % 60:02d}Z"}
        for i, a in enumerate(segment.alert_ids)
    ]  # fmt: skip
    import pandas as pd

    pd.DataFrame(rows).to_csv(tmp_path / "verdicts.csv", index=False)

    missing = runner.invoke(app, ["triage", "--model", model, "--segment", f"legitimate={ham}",
                                  "--output", str(tmp_path / "none")])  # fmt: skip
    assert missing.exit_code != 0 and "verdicts" in str(missing.exception or missing.output)
    result = runner.invoke(app, [
        "triage", "--model", model, "--segment", f"legitimate={ham}",
        "--verdicts", str(tmp_path / "verdicts.csv"), "--output", str(tmp_path / "out"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "triage.json").read_text())
    assert report["true_positives"] == 0
    assert [g["name"] for g in report["categories"]] in ([], ["newsletter"])


def test_a_flow_model_takes_one_segment_file(tmp_path: Path) -> None:
    from threattune._cli_cascade import _load_segment

    class Flow:
        kind = "flow"

    with pytest.raises(ConfigError, match="one segment file"):
        _load_segment(Flow(), ["a.csv", "b.csv"], None, None)


# --------------------------------------------------------------------------------- helpers


def _write(path: Path, raw: bytes) -> Path:
    path.write_bytes(mail_samples.mbox(raw))
    return path


def _spamassassin_ham(data_root: Path, folder: Path, count: int, name: str = "easy_ham") -> Path:
    """The first ``count`` messages of a SpamAssassin ham archive, one .eml file each."""
    folder.mkdir()
    archive = data_root / "spamassassin_public_corpus" / f"{name}.tar.xz"
    written = 0
    with tarfile.open(archive, "r:xz") as tar:
        for member in tar:
            if written == count:
                break
            if member.isfile() and not member.name.endswith("cmds"):
                data = tar.extractfile(member)
                assert data is not None
                (folder / f"{written:04d}.eml").write_bytes(data.read())
                written += 1
    return folder


def _nazario_mbox(data_root: Path, path: Path, count: int) -> Path:
    """The first ``count`` messages of Nazario's phishing0 mbox."""
    lines, seen = [], 0
    with lzma.open(data_root / "nazario_phishing_mbox" / "phishing0.mbox.xz", "rb") as box:
        for line in box:
            if line.startswith(b"From "):
                seen += 1
                if seen > count:
                    break
            lines.append(line)
    path.write_bytes(b"".join(lines))
    return path
