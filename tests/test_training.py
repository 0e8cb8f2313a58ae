"""Training a flow model end to end: split, fit, evaluate, track and register in MLflow.

One small NSL-KDD slice is trained twice with the same seed into one private SQLite MLflow
store, and the module's tests read both runs. Smaller tables are built in code where a test
needs to control which flow lands in which split.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest

import flow_samples as samples
from threattune import training
from threattune.errors import ConfigError, DataError, ModelError
from threattune.evaluation import class_codes
from threattune.flow_model import FlowModel
from threattune.scoring import score_frame
from threattune.sources.flows import load_nsl_kdd
from threattune.tasks import FlowTask, load_task, task_from_table
from threattune.tracking import resolve_model
from threattune.training import settings_grid, stratified_split

TASK = "kdd-slice"
REGISTERED = f"threattune-{TASK}"
MODEL_FILES = ("manifest.json", "preprocessing.json", "fingerprint.json", "attack_mapping.json",
               "trees.json", "baseline.skops")  # fmt: skip


@pytest.fixture(scope="module")
def runs(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Two trainings of one task with the same seed, registered in a private MLflow store."""
    folder = tmp_path_factory.mktemp("training")
    train = samples.write_nsl_kdd_slice(data_root, folder / "train.txt", 5_000)
    test = samples.write_nsl_kdd_slice(
        data_root, folder / "test.txt", 1_000, source=samples.NSL_KDD_TEST
    )
    task = samples.small_task(
        TASK,
        [train],
        reader="nsl-kdd",
        tests={"kddtest": (str(test),)},
        benign_class="normal",
        attack_mapping="nsl-kdd",
        operating_goal="fpr<=0.01",
    )
    with samples.tracking_store(folder) as uri, samples.single_thread_blas():
        first = training.train(task, output_dir=folder / "first", register=True)
        second = training.train(
            task, output_dir=folder / "second", register=True, alias="challenger"
        )
        yield SimpleNamespace(
            folder=folder, uri=uri, task=task, first=first, second=second, test=test
        )


def _client(uri: str) -> mlflow.MlflowClient:
    mlflow.set_tracking_uri(uri)
    return mlflow.MlflowClient()


# ----------------------------------------------------------------------------- model folder


def test_train_writes_every_model_file(runs: SimpleNamespace) -> None:
    """The model folder holds manifest, preprocessing, fingerprint, mapping, trees, baseline."""
    folder = runs.first.model_folder

    assert all((folder / name).is_file() for name in MODEL_FILES)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["task"] == TASK
    assert manifest["classes"] == sorted(manifest["classes"])
    assert {"normal", "DoS", "Probe", "R2L"} <= set(manifest["classes"])
    assert manifest["benign_class"] == "normal"
    assert manifest["settings"]["max_depth"] == 4
    assert manifest["settings"]["class_weight"] == "none"
    assert 1 <= manifest["rounds"] <= 30
    assert manifest["split"]["train_rows"] + manifest["split"]["validation_rows"] == 5_000
    fingerprint = json.loads((folder / "fingerprint.json").read_text())
    assert fingerprint["input_format"] == {"reader": "nsl-kdd", "granularity": "category"}
    assert len(fingerprint["columns"]) == 41
    assert set(fingerprint["passthrough"]) == {"attack", "difficulty"}


def test_train_saved_model_loads_with_its_techniques(runs: SimpleNamespace) -> None:
    """The folder loads back; attack classes carry ATT&CK techniques, benign none."""
    model = FlowModel.load(runs.first.model_folder)

    labels = model.technique_labels()
    assert labels["normal"] == ""
    assert labels["DoS"].startswith("T")
    assert model.baseline is not None
    assert (
        model.fingerprint.digest
        == json.loads((runs.first.model_folder / "fingerprint.json").read_text())["digest"]
    )


def test_train_chooses_an_operating_point_on_validation(runs: SimpleNamespace) -> None:
    """The default goal (benign FPR at most 1 %) sets a threshold stored with the model."""
    point = FlowModel.load(runs.first.model_folder).operating_point

    assert point is not None
    assert 0.0 <= point["threshold"] <= 1.0
    assert point["goal"]["kind"] == "fpr" and point["goal"]["fpr"] == 0.01
    deployed = runs.first.report.find("validation", "boosted-trees@operating-point")
    assert deployed is not None
    if point["achievable"]:
        assert deployed.benign_fpr <= 0.01


# ----------------------------------------------------------------------------- report


def test_train_writes_report_markdown_json_and_figures(runs: SimpleNamespace) -> None:
    """report.md, report.json and a confusion matrix and PR curve per evaluated set."""
    folder = runs.first.report_path.parent

    assert runs.first.report_path == folder / "report.md"
    for name in (
        "report.md",
        "report.json",
        "confusion-validation.png",
        "pr-curve-validation.png",
        "confusion-kddtest.png",
        "pr-curve-kddtest.png",
    ):
        path = folder / name
        assert path.is_file() and path.stat().st_size > 0, name
    assert (folder / "confusion-validation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    document = json.loads((folder / "report.json").read_text())
    evaluated = {(e["dataset"], e["model"]) for e in document["evaluations"]}
    assert {("validation", "boosted-trees"), ("validation", "baseline"),
            ("kddtest", "boosted-trees"), ("kddtest", "baseline")} <= evaluated  # fmt: skip
    markdown = runs.first.report_path.read_text()
    assert "## kddtest" in markdown and "![confusion-kddtest.png]" in markdown


def test_train_evaluates_the_test_set_once_with_every_flow(runs: SimpleNamespace) -> None:
    """The test set is scored in full: its evaluation counts all 1,000 flows."""
    evaluation = runs.first.report.find("kddtest", "boosted-trees")

    assert evaluation is not None and evaluation.n_flows == 1_000
    assert sum(c.support for c in evaluation.per_class) == 1_000


# ----------------------------------------------------------------------------- MLflow


def test_train_tracks_params_metrics_and_report_in_mlflow(runs: SimpleNamespace) -> None:
    """The run records the task's parameters, every metric and the report files."""
    client = _client(runs.uri)
    run = client.get_run(runs.first.run_id)

    assert run.data.params["task"] == TASK
    assert run.data.params["seed"] == "42"
    assert run.data.params["model.max_depth"] == "4"
    assert run.data.tags["threattune.task"] == TASK
    metrics = run.data.metrics
    for name in (
        "validation.boosted-trees.macro_f1",
        "validation.baseline.macro_f1",
        "kddtest.boosted-trees.accuracy",
        "kddtest.boosted-trees.DoS.recall",
    ):
        assert 0.0 <= metrics[name] <= 1.0, name
    deployed = [n for n in metrics if n.startswith("validation.") and "operating-point" in n]
    assert any(n.endswith(".benign_fpr") for n in deployed)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/report.md", "report/report.json"} <= artifacts


def test_train_registers_version_1_with_alias_champion(runs: SimpleNamespace) -> None:
    """The first registered version of a task becomes its champion."""
    registered = runs.first.registered

    assert (registered.name, registered.version) == (REGISTERED, "1")
    assert registered.uri == f"models:/{REGISTERED}/1"
    version = _client(runs.uri).get_model_version_by_alias(REGISTERED, "champion")
    assert str(version.version) == "1"
    assert version.run_id == runs.first.run_id


def test_train_second_version_leaves_champion_on_version_1(runs: SimpleNamespace) -> None:
    """A later training registers version 2 without taking the champion alias."""
    client = _client(runs.uri)

    assert runs.second.registered.version == "2"
    aliases = {k: str(v) for k, v in client.get_registered_model(REGISTERED).aliases.items()}
    assert aliases == {"champion": "1", "challenger": "2"}


def test_pyfunc_champion_predicts_like_score_frame(runs: SimpleNamespace) -> None:
    """The registered pyfunc model and score_frame on the local folder agree on every flow."""
    mlflow.set_tracking_uri(runs.uri)
    features = load_nsl_kdd(runs.test).features.head(400)

    pyfunc = mlflow.pyfunc.load_model(f"models:/{REGISTERED}@champion")
    served = pyfunc.predict(features)
    local = score_frame(FlowModel.load(runs.first.model_folder), features)

    assert list(served.columns) == ["class", "score", "attack_score", "alert", "techniques"]
    assert served["class"].tolist() == local["class"].tolist()
    assert served["alert"].tolist() == local["alert"].tolist()
    np.testing.assert_allclose(served["attack_score"], local["attack_score"], rtol=1e-6)


@pytest.mark.parametrize("suffix", ["@retired", "/9"])
def test_resolve_model_unknown_alias_or_version_is_a_model_error(
    runs: SimpleNamespace, suffix: str
) -> None:
    """An alias or version the registered model does not have is a ModelError naming it."""
    uri = f"models:/{REGISTERED}{suffix}"

    with pytest.raises(ModelError, match=f"cannot load '{uri}' from MLflow") as caught:
        resolve_model(uri)
    assert caught.value.field == "--model"
    assert "threattune models list" in str(caught.value)


def test_resolve_model_champion_alias_gives_the_version_1_folder(runs: SimpleNamespace) -> None:
    """models:/NAME@champion downloads the flow-model folder of version 1."""
    folder = resolve_model(f"models:/{REGISTERED}@champion")

    assert (folder / "manifest.json").is_file()
    assert (
        FlowModel.load(folder).manifest["trained_at"]
        == FlowModel.load(runs.first.model_folder).manifest["trained_at"]
    )


# ----------------------------------------------------------------------------- protocol


def test_train_same_seed_gives_identical_models(runs: SimpleNamespace) -> None:
    """Two trainings with the same seed choose the same setting and predict identically."""
    first = FlowModel.load(runs.first.model_folder)
    second = FlowModel.load(runs.second.model_folder)
    features = load_nsl_kdd(runs.test).features

    assert first.manifest["settings"] == second.manifest["settings"]
    assert first.manifest["rounds"] == second.manifest["rounds"]
    assert first.manifest["split"] == second.manifest["split"]
    np.testing.assert_array_equal(first.predict_proba(features), second.predict_proba(features))
    np.testing.assert_array_equal(first.baseline_proba(features), second.baseline_proba(features))


def test_train_split_matches_stratified_split_of_the_labels(runs: SimpleNamespace) -> None:
    """The stored split sizes are those of stratified_split on the task's labels and seed."""
    labels = runs.task.load().labels.to_numpy()
    codes = class_codes(labels, sorted(set(labels)), source="slice")

    train_rows, valid_rows = stratified_split(codes, 0.2, runs.task.seed)

    split = json.loads((runs.first.model_folder / "manifest.json").read_text())["split"]
    assert (split["train_rows"], split["validation_rows"]) == (len(train_rows), len(valid_rows))


def test_stratified_split_never_overlaps_and_covers_every_flow() -> None:
    """Training and validation positions are disjoint and together cover every flow."""
    labels = np.repeat(np.arange(4), [500, 120, 31, 7])

    train_rows, valid_rows = stratified_split(labels, 0.2, seed=3)

    assert not set(train_rows) & set(valid_rows)
    assert np.array_equal(np.sort(np.concatenate([train_rows, valid_rows])), np.arange(658))
    assert np.all(np.diff(train_rows) > 0) and np.all(np.diff(valid_rows) > 0)


def test_stratified_split_keeps_each_class_share() -> None:
    """Each class gives about ``fraction`` of its flows, and at least one, to validation."""
    labels = np.repeat(np.arange(4), [500, 120, 31, 2])

    _, valid_rows = stratified_split(labels, 0.2, seed=3)

    assert np.bincount(labels[valid_rows], minlength=4).tolist() == [100, 24, 6, 1]


def test_stratified_split_keeps_singleton_classes_in_training() -> None:
    """A class with a single flow stays in training, where the model can learn it."""
    labels = np.array([0] * 50 + [1] + [2] * 10)

    train_rows, valid_rows = stratified_split(labels, 0.2, seed=0)

    assert 50 in train_rows and 50 not in valid_rows


def test_stratified_split_is_determined_by_the_seed() -> None:
    """Same seed, same split; another seed, another split."""
    labels = np.repeat(np.arange(3), 100)

    same = [stratified_split(labels, 0.2, seed=7)[1] for _ in range(2)]
    other = stratified_split(labels, 0.2, seed=8)[1]

    assert np.array_equal(same[0], same[1])
    assert not np.array_equal(same[0], other)


def test_train_fits_preprocessing_on_the_training_split_only(tmp_path: Path) -> None:
    """A category and a value that occur only in validation flows are unknown to the model."""
    frame = samples.user_flows(300, seed=1)
    classes = sorted(frame["verdict"].unique())
    codes = class_codes(frame["verdict"].to_numpy(), classes, source="memory")
    train_rows, valid_rows = stratified_split(codes, 0.2, seed=42)
    frame.loc[valid_rows, "proto"] = "gre"
    frame.loc[valid_rows[0], "bytes"] = 10**9
    path = tmp_path / "flows.csv"
    frame.to_csv(path, index=False)
    task = samples.small_task("tiny", [path], reader="table", label_column="verdict", seed=42)

    with samples.single_thread_blas():
        result = training.train(task, output_dir=tmp_path / "run", track=False)

    model = FlowModel.load(result.model_folder)
    assert model.encoder.vocabularies["proto"] == ("icmp", "tcp", "udp")
    profiles = {c.name: c for c in model.fingerprint.columns}
    assert "gre" not in profiles["proto"].vocabulary
    assert profiles["bytes"].maximum < 10**9
    assert model.manifest["split"]["validation_rows"] == len(valid_rows)
    assert result.run_id is None and result.registered is None


def test_train_cross_validation_reports_every_fold(tmp_path: Path) -> None:
    """Cross-validation repeats the protocol per fold and summarises model and baseline."""
    path = tmp_path / "flows.csv"
    samples.user_flows(400, seed=2).to_csv(path, index=False)
    task = samples.small_task(
        "cv",
        [path],
        reader="table",
        label_column="verdict",
        evaluation="cross-validation",
        folds=2,
    )

    with samples.single_thread_blas():
        result = training.train(task, output_dir=tmp_path / "run", track=False)

    cv = result.cross_validation
    assert cv["folds"] == 2 and [f["fold"] for f in cv["per_fold"]] == [0, 1]
    assert set(cv["boosted-trees"]["per_class_f1_mean"]) == {"benign", "dos", "scan"}
    assert cv["boosted-trees"]["macro_f1_mean"] > 0.9
    assert any("cross-validation" in note for note in result.report.notes)


# ----------------------------------------------------------------------------- task errors


def test_train_without_a_benign_sounding_class_asks_for_benign_class(tmp_path: Path) -> None:
    """When no label names benign traffic, training stops and asks for --benign-class."""
    frame = samples.user_flows(100).replace({"verdict": {"benign": "ok"}})
    path = tmp_path / "flows.csv"
    frame.to_csv(path, index=False)

    with pytest.raises(ConfigError, match="cannot tell which class is benign") as caught:
        training.train(task_from_table(path, label_column="verdict"),
                       output_dir=tmp_path / "run", track=False)  # fmt: skip
    assert "--benign-class" in str(caught.value)


def test_train_missing_label_column_names_it(tmp_path: Path) -> None:
    """A task whose label column is not in the file fails naming that column."""
    path = tmp_path / "flows.csv"
    samples.user_flows(50).to_csv(path, index=False)

    with pytest.raises(DataError, match="label column not found") as caught:
        training.train(task_from_table(path, label_column="label"),
                       output_dir=tmp_path / "run", track=False)  # fmt: skip
    assert caught.value.field == "label"


def test_flow_task_table_reader_without_label_column_is_a_config_error() -> None:
    """A table task must say which column holds the class."""
    with pytest.raises(ConfigError, match="no label column"):
        FlowTask(name="t", reader="table", train=("flows.csv",))


def test_settings_grid_lists_are_choices_and_values_are_fixed() -> None:
    """A list in the task's model settings is a choice; a single value is fixed."""
    grid = settings_grid({"max_depth": [3, 5], "class_weight": "none", "max_rounds": 10})

    assert sorted(s.max_depth for s in grid) == [3, 5]
    assert {(s.class_weight, s.max_rounds) for s in grid} == {("none", 10)}


def test_settings_grid_unknown_setting_is_a_config_error() -> None:
    """A misspelt model setting is refused with the known names."""
    with pytest.raises(ConfigError, match="unknown boosted-trees setting") as caught:
        settings_grid({"max_dept": 4})
    assert caught.value.field == "model.max_dept"


def test_load_task_unknown_setting_suggests_the_close_one(tmp_path: Path) -> None:
    """A typo in a task file names the file, the setting and the likely intended one."""
    path = tmp_path / "task.yaml"
    path.write_text("train: [flows.csv]\nlabel_column: verdict\nbenign_clas: benign\n")

    with pytest.raises(ConfigError, match="unknown setting in task file") as caught:
        load_task(path)
    assert caught.value.field == "benign_clas"
    assert "did you mean 'benign_class'?" in str(caught.value)
