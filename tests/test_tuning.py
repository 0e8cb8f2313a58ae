"""Choosing a trained model's operating point again, in a folder and in the MLflow registry."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import flow_samples as samples
from threattune import tracking, training
from threattune.errors import ModelError
from threattune.evaluation import class_codes
from threattune.flow_model import REFERENCE_PROFILE, VALIDATION_SCORES, FlowModel
from threattune.tuning import choose_operating_point


@pytest.fixture(scope="module")
def trained(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A small NSL-KDD model, trained and registered in a private SQLite MLflow store."""
    folder = tmp_path_factory.mktemp("tuning")
    train = samples.write_nsl_kdd_slice(data_root, folder / "train.txt", 4_000)
    task = samples.small_task("tuning", [train], reader="nsl-kdd", attack_mapping="nsl-kdd")
    with samples.tracking_store(folder) as uri, samples.single_thread_blas():
        result = training.train(task, output_dir=folder / "run", track=True)
        yield SimpleNamespace(folder=folder, uri=uri, model_folder=result.model_folder,
                              registered=result.registered)  # fmt: skip


def test_train_stores_validation_scores_and_reference_profile(trained: SimpleNamespace) -> None:
    """Re-tuning and diagnosis need these files; they must come with every model."""
    assert (trained.model_folder / VALIDATION_SCORES).is_file()
    assert (trained.model_folder / REFERENCE_PROFILE).is_file()
    model = FlowModel.load(trained.model_folder)
    labels, proba = model.validation_scores()
    assert proba.shape == (len(labels), len(model.classes))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_threshold_in_folder_meets_goal_and_keeps_history(
    trained: SimpleNamespace, tmp_path: Path
) -> None:
    """A precision goal on a folder rewrites its manifest and keeps the earlier point."""
    choose_operating_point(str(trained.model_folder), "fpr<=0.01", output=tmp_path / "first")
    before = json.loads((trained.model_folder / "manifest.json").read_text())["operating_point"]

    result = choose_operating_point(
        str(trained.model_folder), "precision>=0.995", output=tmp_path / "op"
    )

    manifest = json.loads((trained.model_folder / "manifest.json").read_text())
    assert result.point.achievable and result.point.precision >= 0.995
    assert manifest["operating_point"]["threshold"] == pytest.approx(result.point.threshold)
    assert manifest["operating_point_history"][-1] == before
    assert result.figure.is_file() and result.curve.is_file()


def test_threshold_changes_decisions_without_retraining(
    trained: SimpleNamespace, tmp_path: Path
) -> None:
    """Scoring honours the new point: a stricter goal never raises more alerts."""
    model_before = FlowModel.load(trained.model_folder)
    labels, proba = model_before.validation_scores()
    loose = choose_operating_point(str(trained.model_folder), "fpr<=0.05", output=tmp_path / "a")
    alerts_loose = FlowModel.load(trained.model_folder).decide(proba).alerts.sum()
    strict = choose_operating_point(str(trained.model_folder), "fpr<=0.001", output=tmp_path / "b")
    alerts_strict = FlowModel.load(trained.model_folder).decide(proba).alerts.sum()

    assert strict.point.threshold >= loose.point.threshold
    assert alerts_strict <= alerts_loose
    codes = class_codes(labels, model_before.classes, source="validation")
    assert codes.shape == labels.shape


def test_threshold_on_registry_version_is_read_back_by_open_model(
    trained: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A point stored on a registry version overrides the trained one when the model loads."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained.uri)
    uri = f"models:/{trained.registered.name}@champion"

    result = choose_operating_point(uri, "fpr<=0.002", output=tmp_path / "op")
    model = tracking.open_model(uri, with_baseline=False)

    assert result.stored_in.startswith("registry version ")
    assert model.operating_point["threshold"] == pytest.approx(result.point.threshold)


def test_threshold_on_model_without_validation_scores_is_a_model_error(
    trained: SimpleNamespace, tmp_path: Path
) -> None:
    """A model folder from before validation scores were stored says to retrain."""
    copy = tmp_path / "old-model"
    copy.mkdir()
    for path in trained.model_folder.iterdir():
        if path.name != VALIDATION_SCORES:
            (copy / path.name).write_bytes(path.read_bytes())

    with pytest.raises(ModelError, match="no validation scores"):
        choose_operating_point(str(copy), "fpr<=0.01", output=tmp_path / "op")
