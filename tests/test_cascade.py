"""The two-stage filter on real NSL-KDD slices: training, honest measurement, save and load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from flow_samples import NSL_KDD_TEST, small_task, write_nsl_kdd_slice
from threattune import training
from threattune._cli_cascade import register
from threattune.cascade import (
    Cascade,
    RecallGuard,
    cascade_from_labels,
    check_disjoint,
    choose_stage_two_threshold,
    class_floors,
    evaluate_cascade,
    load_segment,
    split_by_order,
    track_cascade,
    train_stage_two,
)
from threattune.errors import ConfigError, DataError, ModelError
from threattune.flow_model import FlowModel

SMALL = {"max_depth": 4, "class_weight": "none", "max_rounds": 20}


@pytest.fixture(scope="module")
def trained(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small stage-one model on KDDTrain+'s first 10,000 flows, a KDDTest+ slice, a cascade."""
    folder = tmp_path_factory.mktemp("cascade")
    train = write_nsl_kdd_slice(data_root, folder / "train.txt", 10_000)
    segment_path = write_nsl_kdd_slice(data_root, folder / "segment.txt", 9_000,
                                       source=NSL_KDD_TEST)  # fmt: skip
    task = small_task("nsl-kdd-slice", [train], reader="nsl-kdd", model=dict(SMALL),
                      operating_goal="fpr<=0.01", benign_class="normal")  # fmt: skip
    result = training.train(task, output_dir=folder / "run", track=False)
    model = FlowModel.load(result.model_folder, with_baseline=False)
    segment = load_segment(model, segment_path)
    cascade, evaluation, verdicts = cascade_from_labels(
        model, segment, first_slice=0.4, root_cause_columns=["service", "flag"]
    )
    return {
        "folder": folder, "model": model, "segment": segment, "segment_path": segment_path,
        "cascade": cascade, "evaluation": evaluation, "verdicts": verdicts,
    }  # fmt: skip


def test_cascade_removes_false_positives_with_bounded_recall_loss(trained: dict) -> None:
    evaluation = trained["evaluation"]

    assert evaluation.flows == 9_000 - int(round(0.4 * 9_000))
    assert evaluation.false_positives_before > 20
    assert evaluation.false_positives_removed >= 0.4
    assert evaluation.recall_points_lost <= 2.0
    assert evaluation.alerts_after < evaluation.alerts_before
    d = evaluation.to_dict()
    low, high = d["false_positives_removed_ci"]
    assert low <= d["false_positives_removed"] <= high
    assert "FPs removed" in evaluation.to_markdown()
    assert any(v.root_cause for v in trained["verdicts"] if v.verdict == "false-positive")


def test_measuring_on_training_alerts_is_refused(trained: dict) -> None:
    cascade, segment = trained["cascade"], trained["segment"]
    first, _ = split_by_order(len(segment), 0.4)
    head = segment.subset(first)

    with pytest.raises(DataError, match="overlap the verdicts"):
        evaluate_cascade(cascade, head.features, head.labels, head.alert_ids)
    with pytest.raises(DataError, match="not later"):
        check_disjoint(["a"], ["b"], training_until=np.datetime64("2024-01-02").astype(object),
                       measured_from=np.datetime64("2024-01-01").astype(object))  # fmt: skip
    assert cascade.training_alerts.isdisjoint(set(segment.alert_ids[len(first) :]))


def test_threshold_spends_at_most_the_budget() -> None:
    scores = np.linspace(0, 1, 1_000)
    positive = scores > 0.3
    choice = choose_stage_two_threshold(scores, positive, 0.01)
    assert choice["true_positives_dropped"] <= 0.01 * positive.sum()
    assert choice["false_positives_dropped"] == (~positive).sum()
    with pytest.raises(DataError):
        choose_stage_two_threshold(scores, positive, 1.5)


def test_threshold_is_chosen_on_every_verdict_out_of_fold(trained: dict) -> None:
    """Out of fold, every training verdict counts once; with 0 folds, the validation part."""
    cascade = trained["cascade"]
    training, chosen = cascade.manifest["training"], cascade.manifest["validation"]
    assert cascade.manifest["threshold_folds"] == 5
    assert "out-of-fold" in cascade.manifest["threshold_chosen_on"]
    assert chosen["true_positives"] == training["true_positives"]
    assert chosen["false_positives"] == training["false_positives"]
    assert chosen["true_positives_dropped"] <= 0.01 * chosen["true_positives"]

    model, segment = trained["model"], trained["segment"]
    first, _ = split_by_order(len(segment), 0.4)
    head = segment.subset(first)
    rows = np.flatnonzero(model.decide(model.predict_proba(head.features)).alerts)
    verdicts = np.where(head.labels[rows] != model.benign_class, "tp", "fp")
    part = train_stage_two(model, head.features.iloc[rows], head.alert_ids[rows], verdicts,
                           threshold_folds=0)  # fmt: skip
    on_part = part.manifest["validation"]
    assert on_part["true_positives"] + on_part["false_positives"] == training["validation_verdicts"]
    assert "validation part" in part.manifest["threshold_chosen_on"]
    with pytest.raises(DataError, match="out of fold"):
        train_stage_two(model, head.features.iloc[rows], head.alert_ids[rows], verdicts,
                        threshold_folds=10_000)  # fmt: skip


def test_save_and_load_give_identical_decisions(trained: dict, tmp_path: Path) -> None:
    cascade, segment = trained["cascade"], trained["segment"]
    before = cascade.decide(segment.features)

    folder = cascade.save(tmp_path / "cascade")
    loaded = Cascade.load(folder)
    after = loaded.decide(segment.features)

    assert sorted(p.name for p in folder.iterdir()) == [
        "cascade.json", "stage2.json", "training_alerts.json",
    ]  # fmt: skip
    assert np.array_equal(before.alerts, after.alerts)
    assert np.array_equal(before.stage_two_scores, after.stage_two_scores, equal_nan=True)
    assert loaded.threshold == cascade.threshold
    assert loaded.training_alerts == cascade.training_alerts
    assert loaded.guard == cascade.guard and loaded.guard is not None
    assert before.filtered.sum() > 0


def test_stage_one_runs_at_the_point_stage_two_was_trained_at(
    trained: dict, tmp_path: Path
) -> None:
    cascade = trained["cascade"]
    folder = cascade.save(tmp_path / "out" / "cascade")
    moved = FlowModel.load(trained["model"].folder, with_baseline=False)
    moved.manifest["operating_point"] = {**moved.operating_point, "threshold": 0.999}

    loaded = Cascade.load(tmp_path / "out", moved)  # the --output folder of cascade train

    assert loaded.folder == folder
    assert loaded.stage_one.operating_point == cascade.manifest["stage_one"]["operating_point"]
    assert moved.operating_point["threshold"] == 0.999  # the caller's model is left as it was
    features = trained["segment"].features
    assert np.array_equal(loaded.decide(features).alerts, cascade.decide(features).alerts)
    with pytest.raises(ModelError, match="does not exist"):
        Cascade.load(tmp_path / "nowhere")


def test_loading_with_another_stage_one_is_refused(trained: dict, tmp_path: Path) -> None:
    folder = trained["cascade"].save(tmp_path / "cascade")
    other = FlowModel.load(trained["model"].folder, with_baseline=False)
    other.trees.booster = other.trees.booster[:5]
    other.save(tmp_path / "other")
    with pytest.raises(ModelError, match="not the one stage two was trained on"):
        Cascade.load(folder, other)


def test_tracking_registers_stage_two(trained: dict, tmp_path: Path, mlflow_uri: str) -> None:
    cascade = trained["cascade"]
    cascade.save(tmp_path / "tracked")
    registered = track_cascade(cascade, evaluation=trained["evaluation"])
    assert registered is not None
    assert registered.name == "threattune-nsl-kdd-slice-stage2" and registered.version == "1"


def test_command_line_trains_evaluates_and_triages(trained: dict, tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    model, segment = str(trained["model"].folder), str(trained["segment_path"])

    result = runner.invoke(app, [
        "cascade", "train", "--model", model, "--segment", segment, "--from-labels",
        "--verdicts", f"sqlite:///{tmp_path / 'verdicts.db'}", "--first-slice", "0.4",
        "--no-track", "--output", str(tmp_path / "out"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "FPs removed" in result.output and (tmp_path / "out" / "evaluation.json").is_file()

    refused = runner.invoke(app, [
        "cascade", "evaluate", "--cascade", str(tmp_path / "out" / "cascade"),
        "--segment", segment, "--output", str(tmp_path / "eval"),
    ])  # fmt: skip
    assert isinstance(refused.exception, DataError)
    measured = runner.invoke(app, [
        "cascade", "evaluate", "--cascade", str(tmp_path / "out" / "cascade"),
        "--segment", segment, "--output", str(tmp_path / "eval"), "--skip-rows", "3600",
    ])  # fmt: skip
    assert measured.exit_code == 0, measured.output
    manifest = json.loads((tmp_path / "out" / "cascade" / "cascade.json").read_text())
    assert Path(manifest["stage_one"]["reference"]).is_absolute()
    beyond = runner.invoke(app, [
        "cascade", "evaluate", "--cascade", str(tmp_path / "out"), "--segment", segment,
        "--output", str(tmp_path / "eval"), "--skip-rows", "9000",
    ])  # fmt: skip
    assert isinstance(beyond.exception, ConfigError) and "9,000" in beyond.exception.expected

    triaged = runner.invoke(app, [
        "triage", "--model", model, "--segment", segment, "--from-labels",
        "--root-cause-columns", "service,flag", "--max-clusters", "3",
        "--output", str(tmp_path / "triage"),
    ])  # fmt: skip
    assert triaged.exit_code == 0, triaged.output
    assert "False-positive triage" in (tmp_path / "triage" / "triage.md").read_text()

    stored = runner.invoke(app, [
        "cascade", "train", "--model", model, "--segment", segment, "--no-track",
        "--verdicts", f"sqlite:///{tmp_path / 'verdicts.db'}", "--first-slice", "0.4",
        "--output", str(tmp_path / "from-store"),
    ])  # fmt: skip
    assert stored.exit_code == 0, stored.output
    assert "cascade train" in runner.invoke(app, ["cascade", "train", "--help"]).output
    # the same verdicts, read from the store, train the same stage two as from the labels
    derived = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    from_store = json.loads((tmp_path / "from-store" / "evaluation.json").read_text())
    assert from_store["alerts_after"] == derived["alerts_after"]
    assert from_store["false_positives_after"] == derived["false_positives_after"]


def test_two_stage_scoring_writes_what_the_cascade_decides(trained: dict, tmp_path: Path) -> None:
    """`threattune score --cascade`: stage one's columns, stage two's score, the final alert."""
    import pandas as pd

    from threattune.cli import app

    cascade, segment = trained["cascade"], trained["segment"]
    folder = cascade.save(tmp_path / "cascade")
    output = tmp_path / "scores.csv"

    result = CliRunner().invoke(app, [
        "score", str(trained["segment_path"]), "--cascade", str(folder), "--output", str(output),
    ])  # fmt: skip

    assert result.exit_code == 0, result.output
    scored = pd.read_csv(output)
    decided = cascade.decide(segment.features)
    assert scored["alert"].tolist() == decided.alerts.tolist()
    assert scored["stage_one_alert"].tolist() == decided.stage_one.alerts.tolist()
    assert np.allclose(scored["stage_two_score"], decided.stage_two_scores, equal_nan=True)
    assert scored["stage_two_score"].isna().tolist() == (~decided.stage_one.alerts).tolist()
    assert scored["guarded"].tolist() == decided.guarded.tolist()
    assert f"{decided.alerts.sum():,} alerts after stage two, of " in result.output

    nothing = CliRunner().invoke(app, [
        "score", str(trained["segment_path"]), "--output", str(tmp_path / "x.csv"),
    ])  # fmt: skip
    assert isinstance(nothing.exception, ConfigError) and "--cascade" in nothing.exception.fix


def test_latest_verdict_counts_and_disagreements_are_named(tmp_path: Path) -> None:
    from threattune.cascade import verdicts_for_alerts
    from threattune.verdicts import Verdict, VerdictStore

    with VerdictStore(f"sqlite:///{tmp_path / 'v.db'}") as store:
        store.import_records([
            Verdict("f.txt:0", "m/1", "tp", "alice", "2025-03-01T09:00Z"),
            Verdict("f.txt:0", "m/1", "fp", "carol", "2025-03-01T10:00Z"),
            Verdict("f.txt:1", "m/1", "fp", "alice", "2025-03-01T09:00Z"),
            Verdict("f.txt:1", "m/2", "fp", "carol", "2025-03-01T11:00Z"),
            Verdict("f.txt:9", "m/1", "tp", "alice", "2025-03-01T09:00Z"),
        ])  # fmt: skip
        judged = verdicts_for_alerts(store, ["f.txt:0", "f.txt:1"])

    assert sorted(judged["alert_id"]) == ["f.txt:0", "f.txt:1"]
    assert judged.set_index("alert_id").loc["f.txt:0", "verdict"] == "false-positive"
    assert judged.attrs["disputed"] == ["f.txt:0"]


# ----------------------------------------------------------------------------- recall guard


def test_recall_guard_protects_unfamiliar_classes_above_their_floor() -> None:
    guard = RecallGuard(50, {"dos": 400, "probe": 12}, {"dos": 0.9, "probe": 0.8, "r2l": 0.7})
    classes = np.array(["dos", "dos", "probe", "probe", "r2l", "r2l", "u2r"])
    scores = np.array([0.95, 0.5, 0.85, 0.5, 0.75, 0.6, 0.01])

    protected = guard.protects(classes, scores)

    assert protected.tolist() == [False, False, True, False, True, False, True]
    assert guard.unfamiliar == ["probe", "r2l"]
    assert RecallGuard.from_dict(guard.to_dict()) == guard
    assert "validation split" in guard.to_dict()["floors_chosen_on"]
    with pytest.raises(ModelError, match="recall guard is malformed"):
        RecallGuard.from_dict({"floors": {}})


def test_class_floors_come_from_stage_one_validation_true_positives(trained: dict) -> None:
    model = trained["model"]
    labels, proba = model.validation_scores()
    decided = model.decide(proba)
    raw = 1.0 - proba[:, model.benign_index]

    floors = class_floors(model, 0.01)

    assert floors and model.benign_class not in floors
    for name, floor in floors.items():
        rows = decided.alerts & (labels != model.benign_class) & (decided.classes == name)
        kept = raw[rows] >= floor
        assert kept.mean() >= 0.99 and raw[rows].min() <= floor


def test_guard_keeps_unfamiliar_alerts_that_stage_one_is_sure_of(trained: dict) -> None:
    """Stage two trained without verdicts on one class may not drop its confident alerts."""
    model, segment = trained["model"], trained["segment"]
    first, rest = split_by_order(len(segment), 0.4)
    head, tail = segment.subset(first), segment.subset(rest)
    decided = model.decide(model.predict_proba(head.features))
    attack = head.labels != model.benign_class
    left_out = "Probe"
    keep = decided.alerts & ~(attack & (decided.classes == left_out))
    rows = np.flatnonzero(keep)
    verdicts = np.where(attack[rows], "tp", "fp")

    guarded = train_stage_two(model, head.features.iloc[rows], head.alert_ids[rows], verdicts)
    unguarded = train_stage_two(
        model, head.features.iloc[rows], head.alert_ids[rows], verdicts, min_class_verdicts=0
    )

    assert guarded.guard is not None and left_out in guarded.guard.unfamiliar
    assert unguarded.guard is None
    both = guarded.decide(tail.features)
    plain = unguarded.decide(tail.features)
    proba = model.predict_proba(tail.features)
    raw = 1.0 - proba[:, model.benign_index]
    sure = both.stage_one.alerts & (both.stage_one.classes == left_out)
    sure &= raw >= guarded.guard.floors[left_out]
    assert sure.any() and both.alerts[sure].all()
    passed = np.nan_to_num(both.stage_two_scores, nan=-1) >= guarded.threshold
    protected = guarded.guard.protects(both.stage_one.classes, raw) & both.stage_one.alerts
    assert np.array_equal(both.guarded, protected & ~passed)
    unfamiliar = np.isin(both.stage_one.classes, guarded.guard.unfamiliar)
    assert not (both.guarded & ~unfamiliar).any()
    assert np.array_equal(both.alerts, both.alerts | both.guarded)
    assert plain.guarded is not None and not plain.guarded.any()
    assert guarded.manifest["recall_guard"]["min_class_verdicts"] == 50


def test_cascade_saved_without_a_guard_still_loads_and_decides(
    trained: dict, tmp_path: Path
) -> None:
    cascade, segment = trained["cascade"], trained["segment"]
    folder = cascade.save(tmp_path / "cascade")
    manifest = json.loads((folder / "cascade.json").read_text())
    manifest.pop("recall_guard")
    (folder / "cascade.json").write_text(json.dumps(manifest))

    loaded = Cascade.load(folder)
    decided = loaded.decide(segment.features)

    assert loaded.guard is None
    passed = np.nan_to_num(decided.stage_two_scores, nan=-1) >= loaded.threshold
    kept = decided.stage_one.alerts & passed
    assert np.array_equal(decided.alerts, kept)
