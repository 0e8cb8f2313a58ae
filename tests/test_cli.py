"""The ``threattune`` command line: help, data, attack, train, evaluate, score and models.

Commands run in-process through Typer's test runner; one run of the installed entry point
checks what a shell sees on an error (``error: ...`` on stderr, exit status 2).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

import flow_samples as samples
from threattune.cli import app
from threattune.errors import ThreatTuneError

TASK = "cli-kdd"
REGISTERED = f"threattune-{TASK}"
TASK_FILE = """\
name: cli-kdd
reader: nsl-kdd
train: [train.txt]
test:
  kddtest: [test.txt]
benign_class: normal
attack_mapping: nsl-kdd
model:
  max_depth: 4
  class_weight: none
  max_rounds: 30
"""

runner = CliRunner()


def _invoke(*args: str) -> object:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """``threattune train`` on a YAML task file over a KDDTrain+ slice, registered in MLflow."""
    folder = tmp_path_factory.mktemp("cli")
    samples.write_nsl_kdd_slice(data_root, folder / "train.txt", 5_000)
    samples.write_nsl_kdd_slice(data_root, folder / "test.txt", 500, source=samples.NSL_KDD_TEST)
    task_file = folder / "task.yaml"
    task_file.write_text(TASK_FILE)
    with samples.tracking_store(folder) as uri, samples.single_thread_blas():
        result = _invoke("train", task_file, "--output", folder / "run")
        yield SimpleNamespace(folder=folder, uri=uri, result=result, model=folder / "run" / "model",
                              test=folder / "test.txt")  # fmt: skip


# ----------------------------------------------------------------------------- help


@pytest.mark.parametrize(
    "command",
    [
        [], ["data"], ["data", "list"], ["data", "verify"], ["data", "inspect"], ["attack"],
        ["attack", "show"], ["attack", "coverage"], ["train"], ["evaluate"], ["score"],
        ["threshold"], ["models"], ["models", "list"], ["models", "alias"], ["models", "show"],
    ],
    ids=lambda c: " ".join(c) or "threattune",
)  # fmt: skip
def test_cli_help_works_for_every_command(command: list[str]) -> None:
    """``--help`` prints usage and exits 0 for every command and subcommand."""
    result = _invoke(*command, "--help")

    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_cli_version_prints_the_version() -> None:
    """``--version`` prints the package version."""
    from threattune import __version__

    result = _invoke("--version")

    assert result.exit_code == 0 and result.output.strip() == f"threattune {__version__}"


# ----------------------------------------------------------------------------- data


def test_cli_data_list_shows_nsl_kdd_present(data_root: Path) -> None:
    """``data list`` names the data folder and shows nsl-kdd as present."""
    result = _invoke("data", "list")

    assert result.exit_code == 0, result.output
    assert str(data_root) in result.output
    row = next(line for line in result.output.splitlines() if line.startswith("nsl-kdd "))
    assert row.split()[1] == "present"


def test_cli_data_list_json_is_machine_readable(data_root: Path) -> None:
    """``data list --json`` prints one JSON object per dataset."""
    result = _invoke("data", "list", "--json")

    statuses = json.loads(result.stdout)
    assert "nsl-kdd" in json.dumps(statuses)
    assert len(statuses) == len([p for p in data_root.iterdir() if p.is_dir()])


def test_cli_data_verify_nsl_kdd_checks_every_file(data_root: Path) -> None:
    """``data verify nsl-kdd`` lists its files and ends with the dataset's status."""
    result = _invoke("data", "verify", "nsl-kdd")

    assert result.exit_code == 0, result.output
    assert "KDDTrain+.txt" in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("nsl-kdd: present") and str(data_root / "nsl-kdd") in last


def test_cli_data_inspect_shows_types_and_dropped_columns(tmp_path: Path) -> None:
    """``data inspect`` prints the inferred feature types and why columns were dropped."""
    path = tmp_path / "flows.csv"
    samples.user_flows(300).to_csv(path, index=False)

    result = _invoke("data", "inspect", path, "--label-column", "verdict")

    assert result.exit_code == 0, result.output
    assert "300 flows, 3 features, 3 classes" in result.output
    lines = {line.split()[0]: line.split()[-1] for line in result.output.splitlines() if line}
    assert (lines["bytes"], lines["proto"]) == ("numeric", "categorical")
    assert "src: identifier: looks like network addresses" in result.output
    assert "seen: identifier: looks like timestamps" in result.output


def test_cli_data_inspect_missing_label_column_raises_naming_it(tmp_path: Path) -> None:
    """A wrong --label-column surfaces as a threattune error naming the column."""
    path = tmp_path / "flows.csv"
    samples.user_flows(50).to_csv(path, index=False)

    result = _invoke("data", "inspect", path, "--label-column", "label")

    assert isinstance(result.exception, ThreatTuneError)
    assert "field 'label': label column not found" in str(result.exception)


# ----------------------------------------------------------------------------- attack


def test_cli_attack_show_lists_classes_with_techniques() -> None:
    """``attack show nsl-kdd`` prints each class with its ATT&CK technique IDs."""
    result = _invoke("attack", "show", "nsl-kdd")

    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert {"DoS", "Probe", "R2L", "U2R"} <= set(rows)
    assert " T1" in rows["DoS"]


def test_cli_attack_coverage_prints_markdown() -> None:
    """``attack coverage`` prints a Markdown table of the tactics a mapping covers."""
    result = _invoke("attack", "coverage", "nsl-kdd")

    assert result.exit_code == 0, result.output
    assert "coverage of mapping 'nsl-kdd'" in result.output
    assert "| Tactic | ID | Techniques | Classes |" in result.output


# ----------------------------------------------------------------------------- train


def test_cli_train_task_file_writes_model_report_and_registers(trained: SimpleNamespace) -> None:
    """``train TASK.yaml`` prints the summary, the model and report paths and the MLflow URI."""
    result = trained.result

    assert result.exit_code == 0, result.output
    assert f"# {TASK}" in result.stdout
    assert "chosen on the validation split: depth 4" in result.stdout
    assert "| kddtest | boosted-trees |" in result.stdout
    assert f"model:   {trained.model}" in result.stdout
    assert f"MLflow:  models:/{REGISTERED}/1" in result.stdout
    assert (trained.model / "manifest.json").is_file()
    assert (trained.folder / "run" / "report" / "report.md").is_file()


def test_cli_train_csv_without_label_column_asks_for_it(tmp_path: Path) -> None:
    """A CSV task without --label-column is refused with the command that fixes it."""
    path = tmp_path / "flows.csv"
    samples.user_flows(50).to_csv(path, index=False)

    result = _invoke("train", path)

    assert isinstance(result.exception, ThreatTuneError)
    assert "needs --label-column" in str(result.exception)
    assert f"threattune train {path} --label-column NAME" in str(result.exception)


# ----------------------------------------------------------------------------- evaluate


def test_cli_evaluate_writes_a_report_for_the_trained_model(
    trained: SimpleNamespace, tmp_path: Path
) -> None:
    """``evaluate`` scores labelled flows with model and baseline and writes a report."""
    result = _invoke(
        "evaluate", trained.test, "--model", trained.model, "--name", "march",
        "--output", tmp_path / "report",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "| march | boosted-trees | 500 |" in result.stdout
    assert "| march | baseline | 500 |" in result.stdout
    document = json.loads((tmp_path / "report" / "report.json").read_text())
    assert {e["model"] for e in document["evaluations"]} >= {"boosted-trees", "baseline"}
    assert (tmp_path / "report" / "report.md").is_file()


# ----------------------------------------------------------------------------- score


def test_cli_score_writes_scores_for_the_trained_model(
    trained: SimpleNamespace, tmp_path: Path
) -> None:
    """``score`` writes one row per flow and prints the class counts."""
    output = tmp_path / "scores.csv"

    result = _invoke("score", trained.test, "--model", trained.model, "--output", output)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("scored 500 flows")
    assert f"output: {output}" in result.stdout
    assert len(pd.read_csv(output)) == 500


def test_cli_score_with_the_champion_uri_matches_the_folder(
    trained: SimpleNamespace, tmp_path: Path
) -> None:
    """Scoring through models:/NAME@champion gives the folder's scores."""
    by_folder, by_alias = tmp_path / "folder.csv", tmp_path / "alias.csv"

    _invoke("score", trained.test, "--model", trained.model, "--output", by_folder)
    result = _invoke("score", trained.test, "--model", f"models:/{REGISTERED}@champion",
                     "--output", by_alias)  # fmt: skip

    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_csv(by_alias), pd.read_csv(by_folder))


# ----------------------------------------------------------------------------- models


def test_cli_models_list_shows_the_registered_version(trained: SimpleNamespace) -> None:
    """``models list`` shows the task's registered model and its version."""
    result = _invoke("models", "list")

    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith(REGISTERED))
    assert row.split()[1] == "1"


def test_cli_models_list_shows_the_champion_alias(trained: SimpleNamespace) -> None:
    """``models list`` shows which version is the champion."""
    result = _invoke("models", "list", REGISTERED)

    row = next(line for line in result.stdout.splitlines() if line.startswith(REGISTERED))
    assert "champion" in row


def test_cli_models_alias_points_an_alias_at_a_version(trained: SimpleNamespace) -> None:
    """``models alias NAME ALIAS VERSION`` sets the alias in the registry."""
    result = _invoke("models", "alias", REGISTERED, "reviewed", "1")

    assert result.exit_code == 0, result.output
    assert f"models:/{REGISTERED}@reviewed -> version 1" in result.stdout
    mlflow.set_tracking_uri(trained.uri)
    version = mlflow.MlflowClient().get_model_version_by_alias(REGISTERED, "reviewed")
    assert str(version.version) == "1"


def test_cli_models_show_prints_classes_techniques_and_inputs(trained: SimpleNamespace) -> None:
    """``models show`` prints the task, benign class, techniques and the input columns."""
    result = _invoke("models", "show", trained.model)

    assert result.exit_code == 0, result.output
    assert f"task:      {TASK}" in result.stdout
    assert "  normal (benign): -" in result.stdout
    assert "  protocol_type: categorical" in result.stdout
    assert "  src_bytes: numeric" in result.stdout


def test_cli_models_show_folder_that_is_not_a_model_raises(tmp_path: Path) -> None:
    """``models show`` on a folder that is not a model surfaces the ModelError."""
    result = _invoke("models", "show", tmp_path)

    assert isinstance(result.exception, ThreatTuneError)
    assert "not a threattune flow model folder" in str(result.exception)


# ----------------------------------------------------------------------------- entry point


def test_cli_train_unknown_task_suggests_the_close_name() -> None:
    """A misspelt built-in task is refused with the likely intended name."""
    result = _invoke("train", "nsl-kd")

    assert isinstance(result.exception, ThreatTuneError)
    assert "did you mean 'nsl-kdd'?" in str(result.exception)


def test_cli_score_with_a_folder_that_is_not_a_model_writes_nothing(tmp_path: Path) -> None:
    """Scoring with a folder that is not a model fails before any output is written."""
    flows = tmp_path / "flows.csv"
    samples.user_flows(10).to_csv(flows, index=False)

    result = _invoke("score", flows, "--model", tmp_path, "--output", tmp_path / "scores.csv")

    assert isinstance(result.exception, ThreatTuneError)
    assert "not a threattune flow model folder" in str(result.exception)
    assert not (tmp_path / "scores.csv").exists()


def test_threattune_entry_point_error_prints_to_stderr_and_exits_2(tmp_path: Path) -> None:
    """The installed command prints a threattune error as ``error: ...`` and exits with 2."""
    script = Path(sys.executable).with_name("threattune")
    if not script.is_file():
        pytest.skip("the threattune entry point is not installed beside this Python")

    result = subprocess.run(
        [str(script), "data", "inspect", "nowhere.csv", "--label-column", "verdict"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: nowhere.csv: file not found\n")
    assert "fix:      check the path" in result.stderr
    assert "Traceback" not in result.stderr
