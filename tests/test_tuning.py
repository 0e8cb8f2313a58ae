"""Choosing a trained model's operating point again, in a folder and in the MLflow registry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import flow_samples as samples
from threattune import tracking, training
from threattune.calibration import Calibrator
from threattune.errors import ModelError
from threattune.evaluation import class_codes
from threattune.flow_model import REFERENCE_PROFILE, VALIDATION_SCORES, FlowModel
from threattune.scoring import score_frame
from threattune.sources.flows import load_nsl_kdd
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


# ----------------------------------------------------------------------------- calibration


def _flows(data_root: Path, folder: Path) -> pd.DataFrame:
    path = samples.write_nsl_kdd_slice(
        data_root, folder / "flows.txt", 600, source=samples.NSL_KDD_TEST
    )
    return load_nsl_kdd(path).features


def _with_point(source: Path, target: Path, point: dict | None) -> FlowModel:
    copy = shutil.copytree(source, target)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["operating_point"] = point
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return FlowModel.load(copy, with_baseline=False)


def test_scoring_honours_the_stored_calibration(
    trained: SimpleNamespace, data_root: Path, tmp_path: Path
) -> None:
    """Reported attack scores are calibrated probabilities and the threshold applies to them."""
    calibrator = Calibrator("sigmoid", a=0.5, b=2.0, on_logit=True)
    point = {"threshold": 0.9, "calibration": calibrator.to_dict()}
    model = _with_point(trained.model_folder, tmp_path / "calibrated", point)
    features = _flows(data_root, tmp_path)

    scored = score_frame(model, features)

    raw = 1.0 - model.predict_proba(features)[:, model.benign_index]
    expected = calibrator.transform(raw)
    np.testing.assert_allclose(scored["attack_score"].to_numpy(), expected)
    assert scored["alert"].tolist() == (expected >= 0.9).tolist()
    assert 0 < scored["alert"].sum() < len(scored)
    assert (scored["alert"] != (raw >= 0.9)).any()


def test_model_folder_without_calibration_still_scores_on_the_raw_score(
    trained: SimpleNamespace, data_root: Path, tmp_path: Path
) -> None:
    """Points stored before calibration (and no point at all) keep their meaning."""
    features = _flows(data_root, tmp_path)
    old = _with_point(trained.model_folder, tmp_path / "old", {"threshold": 0.5})
    none = _with_point(trained.model_folder, tmp_path / "none", None)

    scored, argmax = score_frame(old, features), score_frame(none, features)

    raw = 1.0 - old.predict_proba(features)[:, old.benign_index]
    assert old.calibrator is None and none.calibrator is None
    np.testing.assert_allclose(scored["attack_score"].to_numpy(), raw)
    assert scored["alert"].tolist() == (raw >= 0.5).tolist()
    np.testing.assert_allclose(argmax["attack_score"].to_numpy(), raw)


def test_threshold_stores_calibration_in_folder_and_scoring_alerts_as_on_validation(
    trained: SimpleNamespace, tmp_path: Path
) -> None:
    """A forced calibration is stored with the point; validation alerts match its counts."""
    copy = shutil.copytree(trained.model_folder, tmp_path / "model")

    result = choose_operating_point(
        str(copy), "fpr<=0.01", output=tmp_path / "op", calibration="isotonic"
    )

    model = FlowModel.load(copy, with_baseline=False)
    labels, proba = model.validation_scores()
    decided = model.decide(proba)
    attack = labels != model.benign_class
    assert model.calibrator is not None and model.calibrator.method == "isotonic"
    assert int((decided.alerts & attack).sum()) == result.point.true_positives
    assert int((decided.alerts & ~attack).sum()) == result.point.false_positives
    np.testing.assert_allclose(
        decided.attack_scores, model.calibrator.transform(1.0 - proba[:, model.benign_index])
    )


def test_threshold_calibration_travels_in_the_registry_tag(
    trained: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The version tag holds the calibration; loading the version applies it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained.uri)
    uri = f"models:/{trained.registered.name}@champion"

    result = choose_operating_point(uri, "fpr<=0.02", output=tmp_path / "op", calibration="sigmoid")
    model = tracking.open_model(uri, with_baseline=False)

    assert model.operating_point["calibration"]["method"] == "sigmoid"
    assert model.calibrator == result.calibration
    labels, proba = model.validation_scores()
    decided = model.decide(proba)
    assert int(decided.alerts.sum()) == result.point.alerts
