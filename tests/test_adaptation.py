"""Adaptation: warm-started boosting on a labelled sample cuts false positives at equal recall."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from flow_samples import single_thread_blas, small_task
from threattune import tracking, training
from threattune.adaptation import adapt, threshold_for_recall
from threattune.cli import app
from threattune.flow_model import FlowModel

TINY = {"max_depth": 4, "class_weight": "none", "max_rounds": 20}


def _flows(rows: int, *, backups: float, seed: int) -> pd.DataFrame:
    """Benign web traffic and DoS floods; ``backups`` of the benign flows are large UDP copies."""
    rng = np.random.default_rng(seed)
    verdict = rng.choice(["benign", "dos"], size=rows, p=[0.7, 0.3])
    backup = (verdict == "benign") & (rng.random(rows) < backups)
    large = (verdict == "dos") | backup
    return pd.DataFrame(
        {
            "bytes": np.where(large, rng.uniform(3_000, 6_000, rows),
                              rng.uniform(100, 1_000, rows)).round(),
            "rate": rng.random(rows).round(4),
            "proto": np.where(backup, "udp", rng.choice(["tcp", "udp"], size=rows,
                                                         p=[0.9, 0.1])),
            "verdict": verdict,
        }
    ).assign(proto=lambda f: np.where(f["verdict"] == "dos", "tcp", f["proto"]))  # fmt: skip


@pytest.fixture()
def champion(tmp_path: Path) -> Path:
    _flows(3_000, backups=0.0, seed=0).to_csv(tmp_path / "train.csv", index=False)
    with single_thread_blas():
        result = training.train(
            small_task("backups", [tmp_path / "train.csv"], reader="table",
                       label_column="verdict", model=dict(TINY), base_dir=tmp_path),
            output_dir=tmp_path / "run",
            track=False,
        )  # fmt: skip
    return result.model_folder


def test_adaptation_cuts_false_positives_at_equal_recall(
    champion: Path, tmp_path: Path, mlflow_uri: str
) -> None:
    segment = tmp_path / "segment.csv"
    _flows(4_000, backups=0.3, seed=1).to_csv(segment, index=False)

    with single_thread_blas():
        result = adapt(champion, segment, output_dir=tmp_path / "adapted", fraction=0.2)

    assert result.before["fpr"] > 0.1
    assert result.after["fpr"] < result.before["fpr"] / 3
    assert result.after["recall"] >= result.before["recall"] - 0.02
    assert result.rounds_added > 0
    adapted = FlowModel.load(result.model_folder)
    assert adapted.classes == ["benign", "dos"]
    assert adapted.operating_point["threshold"] == pytest.approx(result.threshold)
    assert result.registered is not None
    names = tracking.aliases(result.registered.name)
    assert {k: str(v) for k, v in names.items()} == {"challenger": result.registered.version}
    assert (tmp_path / "adapted" / "adaptation.json").is_file()


def test_threshold_for_recall() -> None:
    scores = np.array([0.9, 0.8, 0.3, 0.7, 0.1])
    attack = np.array([1, 1, 0, 1, 0])
    assert threshold_for_recall(attack, scores, 1.0) == 0.7
    assert threshold_for_recall(attack, scores, 0.5) == 0.8


def test_cli_commands_are_registered() -> None:
    from threattune._cli_diagnose import register

    register(app)
    runner = CliRunner()
    for command in ("diagnose", "adapt"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert "--model" in result.output
