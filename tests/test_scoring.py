"""Scoring files with a trained flow model: formats, batches, input checks and failures.

Two small models are trained once per module without MLflow: one on a KDDTrain+ slice
(headerless NSL-KDD input) and one on synthetic flows with a header row (a user's table).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import flow_samples as samples
from threattune import training
from threattune.errors import ConfigError, DataError, ModelError, SchemaMismatch
from threattune.evaluation import class_codes, labelled_flows
from threattune.flow_model import FlowModel
from threattune.scoring import SCORE_COLUMNS, iter_input, score_file, score_frame
from threattune.sources.flows import NSL_KDD_FEATURES, load_nsl_kdd
from threattune.tracking import resolve_model

BIG_ROWS = 40_000  # about 6 MB: more than one 4 MiB block of the CSV reader


@pytest.fixture(scope="module")
def kdd(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A model trained on 3,000 KDDTrain+ flows, and the first 40,000 lines of KDDTrain+."""
    folder = tmp_path_factory.mktemp("kdd-model")
    lines = samples.nsl_kdd_lines(data_root, BIG_ROWS)
    train = samples.write_lines(folder / "train.txt", lines[:3_000])
    task = samples.small_task("kdd", [train], reader="nsl-kdd", attack_mapping="nsl-kdd")
    with samples.single_thread_blas():
        result = training.train(task, output_dir=folder / "run", track=False)
    test = samples.write_nsl_kdd_slice(
        data_root, folder / "test.txt", 600, source=samples.NSL_KDD_TEST
    )
    return SimpleNamespace(model=FlowModel.load(result.model_folder), folder=result.model_folder,
                           lines=lines, test=test)  # fmt: skip


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A model trained on 600 synthetic flows from a CSV with a header row."""
    folder = tmp_path_factory.mktemp("table-model")
    path = folder / "flows.csv"
    samples.user_flows(600, seed=0).to_csv(path, index=False)
    task = samples.small_task("table", [path], reader="table", label_column="verdict")
    with samples.single_thread_blas():
        result = training.train(task, output_dir=folder / "run", track=False)
    return SimpleNamespace(model=FlowModel.load(result.model_folder), folder=result.model_folder)


def _unlabelled(rows: int = 200, seed: int = 5) -> pd.DataFrame:
    return samples.user_flows(rows, seed=seed).drop(columns=["verdict"])


def _read_scores(path: Path) -> pd.DataFrame:
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True)
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pandas()
    return pd.read_csv(path, keep_default_na=False)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


# ----------------------------------------------------------------------------- formats


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_score_file_writes_one_row_per_flow_in_each_format(
    kdd: SimpleNamespace, tmp_path: Path, suffix: str
) -> None:
    """CSV, JSON lines and Parquet outputs hold one scored row per input flow."""
    output = tmp_path / f"scores{suffix}"

    summary = score_file(kdd.model, kdd.test, output)

    scores = _read_scores(output)
    assert len(scores) == summary.rows == 600
    assert list(scores.columns) == ["alert_id", "attack", "difficulty", *SCORE_COLUMNS]
    assert scores["alert_id"].tolist()[:2] == [f"{kdd.test.name}:0", f"{kdd.test.name}:1"]
    assert scores["alert_id"].is_unique
    batched = _read_scores(Path(score_file(kdd.model, kdd.test, tmp_path / f"b{suffix}",
                                           batch_rows=256).output))  # fmt: skip
    assert batched["alert_id"].tolist() == scores["alert_id"].tolist()
    assert set(scores["class"]) <= set(kdd.model.classes)
    assert scores["alert"].tolist() == (scores["class"] != "normal").tolist()
    assert scores["score"].between(0, 1).all() and scores["attack_score"].between(0, 1).all()
    techniques = kdd.model.technique_labels()
    assert scores["techniques"].tolist() == scores["class"].map(techniques).tolist()
    assert summary.alerts == int(scores["alert"].sum())
    assert summary.by_class == scores["class"].value_counts().to_dict()
    assert _leftovers(tmp_path) == []


def test_score_file_jsonl_records_are_typed(kdd: SimpleNamespace, tmp_path: Path) -> None:
    """JSON lines carry scores as numbers, the alert flag as a boolean and carried columns as
    the text they were (identifiers must not change on the way through)."""
    output = tmp_path / "scores.jsonl"

    score_file(kdd.model, kdd.test, output)

    record = json.loads(output.read_text().splitlines()[0])
    assert isinstance(record["score"], float) and isinstance(record["alert"], bool)
    assert isinstance(record["difficulty"], str) and record["difficulty"].isdigit()


def test_score_file_nsl_kdd_41_and_43_fields_score_alike(
    kdd: SimpleNamespace, tmp_path: Path
) -> None:
    """Headerless NSL-KDD input scores with or without the attack name and difficulty."""
    features_only = [
        ",".join(line.rstrip("\n").split(",")[:41]) + "\n"
        for line in kdd.test.read_text().splitlines(True)
    ]
    narrow = samples.write_lines(tmp_path / "narrow.txt", features_only)

    wide = _read_scores(Path(score_file(kdd.model, kdd.test, tmp_path / "wide.csv").output))
    only = _read_scores(Path(score_file(kdd.model, narrow, tmp_path / "narrow.csv").output))

    assert list(only.columns) == ["alert_id", *SCORE_COLUMNS]
    assert only["class"].tolist() == wide["class"].tolist()
    np.testing.assert_allclose(only["attack_score"], wide["attack_score"])


def test_score_file_nsl_kdd_with_a_header_row_scores_alike(
    kdd: SimpleNamespace, tmp_path: Path
) -> None:
    """NSL-KDD features exported with a header row read by name."""
    frame = load_nsl_kdd(kdd.test).features
    with_header = tmp_path / "named.csv"
    frame.to_csv(with_header, index=False)

    named = _read_scores(Path(score_file(kdd.model, with_header, tmp_path / "a.csv").output))
    plain = _read_scores(Path(score_file(kdd.model, kdd.test, tmp_path / "b.csv").output))

    assert named["class"].tolist() == plain["class"].tolist()


def test_score_file_nsl_kdd_wrong_width_is_not_an_nsl_kdd_file(
    kdd: SimpleNamespace, tmp_path: Path
) -> None:
    """A headerless file with neither 41 nor 43 fields is refused at line 1."""
    lines = [",".join(line.split(",")[:30]) + "\n" for line in kdd.lines[:10]]
    path = samples.write_lines(tmp_path / "thirty.txt", lines)

    with pytest.raises(DataError, match="not an NSL-KDD file") as caught:
        score_file(kdd.model, path, tmp_path / "out.csv")
    assert (caught.value.line, caught.value.found) == (1, "30 fields")


def test_score_file_matches_score_frame(kdd: SimpleNamespace, tmp_path: Path) -> None:
    """Streaming a file gives the same decisions as scoring its flows in memory."""
    output = tmp_path / "scores.parquet"
    score_file(kdd.model, kdd.test, output, batch_rows=128)

    in_memory = score_frame(kdd.model, load_nsl_kdd(kdd.test).features)

    streamed = _read_scores(output)
    assert streamed["class"].tolist() == in_memory["class"].tolist()
    np.testing.assert_allclose(streamed["score"], in_memory["score"], rtol=1e-6)


def test_score_file_table_carries_identifier_columns(
    table: SimpleNamespace, tmp_path: Path
) -> None:
    """Columns dropped in training (addresses, timestamps, ids) pass through to the output."""
    source = tmp_path / "flows.csv"
    _unlabelled().to_csv(source, index=False)

    summary = score_file(table.model, source, tmp_path / "scores.csv")

    scores = _read_scores(tmp_path / "scores.csv")
    assert list(scores.columns) == ["alert_id", "src", "seen", "session", *SCORE_COLUMNS]
    assert scores["session"].tolist() == _unlabelled()["session"].tolist()
    assert summary.rows == 200
    assert not [f for f in summary.findings if f.kind == "unseen-category"]


def test_score_file_jsonl_writes_missing_values_as_null(
    table: SimpleNamespace, tmp_path: Path
) -> None:
    """A blank cell in a carried column is ``null`` in JSON lines, readable by strict parsers."""
    source = tmp_path / "flows.csv"
    frame = _unlabelled(3).assign(port=["80", "", "443"])
    frame.to_csv(source, index=False)
    output = tmp_path / "scores.jsonl"

    score_file(table.model, source, output, allow_extra=True)

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    records = [json.loads(line, parse_constant=refuse) for line in output.read_text().splitlines()]
    assert records[1]["port"] is None


# ----------------------------------------------------------------------------- batches


def test_iter_input_line_numbers_follow_the_file_across_batches(
    kdd: SimpleNamespace, tmp_path: Path
) -> None:
    """Each batch starts at the file line of its first flow; all flows are read once."""
    path = samples.write_lines(tmp_path / "big.txt", kdd.lines)

    batches = list(iter_input(kdd.model, path, batch_rows=5_000))

    assert len(batches) > 1
    starts = [line for line, _ in batches]
    sizes = [len(batch) for _, batch in batches]
    assert starts == [1 + sum(sizes[:i]) for i in range(len(sizes))]
    assert sum(sizes) == BIG_ROWS


def test_iter_input_csv_batches_hold_at_most_batch_rows(
    kdd: SimpleNamespace, tmp_path: Path
) -> None:
    """A CSV streams in several batches of at most ``batch_rows`` flows."""
    path = samples.write_lines(tmp_path / "flows.txt", kdd.lines[:2_000])

    sizes = [len(batch) for _, batch in iter_input(kdd.model, path, batch_rows=500)]

    assert sizes == [500, 500, 500, 500]


def test_iter_input_parquet_batches_hold_at_most_batch_rows(
    table: SimpleNamespace, tmp_path: Path
) -> None:
    """A Parquet file streams in several batches of at most ``batch_rows`` flows."""
    path = tmp_path / "flows.parquet"
    _unlabelled(2_000).to_parquet(path, index=False)

    batches = list(iter_input(table.model, path, batch_rows=300))

    assert [len(b) for _, b in batches] == [300] * 6 + [200]
    assert [line for line, _ in batches] == [2 + 300 * i for i in range(7)]


# ----------------------------------------------------------------------------- failures


def test_score_file_failure_after_first_batch_keeps_earlier_output(
    kdd: SimpleNamespace, tmp_path: Path
) -> None:
    """A bad row past the first batch fails the run; the old output stays, no partial file."""
    lines = list(kdd.lines)
    lines[35_000 - 1] = lines[35_000 - 1].rstrip("\n") + ",extra\n"
    path = samples.write_lines(tmp_path / "big.txt", lines)
    output = tmp_path / "scores.csv"
    output.write_text("earlier scores\n")

    with pytest.raises(DataError, match=r"line 35000 has 44 fields") as caught:
        score_file(kdd.model, path, output, batch_rows=1_000)

    assert caught.value.path == str(path)
    assert output.read_text() == "earlier scores\n"
    assert _leftovers(tmp_path) == []


def test_score_file_parquet_failure_in_a_later_batch_keeps_earlier_output(
    table: SimpleNamespace, tmp_path: Path
) -> None:
    """Text in a numeric column of the third batch: named error, old output kept."""
    frame = _unlabelled(1_000)
    frame["bytes"] = frame["bytes"].astype(str)
    frame.loc[650, "bytes"] = "n/a"
    source = tmp_path / "flows.parquet"
    frame.to_parquet(source, index=False)
    output = tmp_path / "scores.parquet"
    output.write_bytes(b"earlier")

    with pytest.raises(SchemaMismatch, match="numeric feature column holds text") as caught:
        score_file(table.model, source, output, batch_rows=300)

    assert (caught.value.field, caught.value.found) == ("bytes", "'n/a'")
    assert caught.value.line == 650 + 2
    assert output.read_bytes() == b"earlier"
    assert _leftovers(tmp_path) == []


def test_score_file_text_past_the_first_block_names_column_and_line(
    kdd: SimpleNamespace, tmp_path: Path
) -> None:
    """Text in a numeric column deep in a large file names the column and the line."""
    lines = list(kdd.lines)
    lines[35_000 - 1] = samples.replace_field(lines[35_000 - 1], 4, "abc")
    path = samples.write_lines(tmp_path / "big.txt", lines)

    with pytest.raises(DataError) as caught:
        score_file(kdd.model, path, tmp_path / "scores.csv")

    assert (caught.value.field, caught.value.line) == ("src_bytes", 35_000)


def test_score_file_empty_file_is_a_data_error(table: SimpleNamespace, tmp_path: Path) -> None:
    """A 0-byte input is refused and no output is created."""
    source = tmp_path / "empty.csv"
    source.write_text("")

    with pytest.raises(DataError, match="the file is empty"):
        score_file(table.model, source, tmp_path / "scores.csv")
    assert not (tmp_path / "scores.csv").exists()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_score_file_header_only_input_is_a_data_error(
    table: SimpleNamespace, tmp_path: Path, suffix: str
) -> None:
    """A header without rows is an error, and an earlier output is left as it was."""
    source = tmp_path / "header.csv"
    source.write_text("bytes,rate,proto,src,seen,session\n")
    output = tmp_path / f"scores{suffix}"
    output.write_bytes(b"earlier")

    with pytest.raises(DataError, match="no rows"):
        score_file(table.model, source, output)
    assert output.read_bytes() == b"earlier"


def test_score_file_semicolon_file_names_the_delimiter(
    table: SimpleNamespace, tmp_path: Path
) -> None:
    """A ';'-separated file is refused at its header, and reads when the delimiter is given."""
    source = tmp_path / "semicolon.csv"
    _unlabelled(20).to_csv(source, index=False, sep=";")

    with pytest.raises(DataError, match=r"the header has no ',' but 5 ';'") as caught:
        score_file(table.model, source, tmp_path / "scores.csv")
    assert "--delimiter ';'" in str(caught.value)

    assert score_file(table.model, source, tmp_path / "s.csv", delimiter=";").rows == 20


def test_score_file_row_with_too_many_fields_names_the_line(
    table: SimpleNamespace, tmp_path: Path
) -> None:
    """A row with an extra field is named by its line."""
    source = tmp_path / "wide.csv"
    _unlabelled(20).to_csv(source, index=False)
    lines = source.read_text().splitlines(True)
    lines[7] = lines[7].rstrip("\n") + ",surplus\n"
    source.write_text("".join(lines))

    with pytest.raises(DataError, match=r"line 8 has 7 fields, the header has 6"):
        score_file(table.model, source, tmp_path / "scores.csv")


def test_score_file_missing_feature_column_is_a_schema_mismatch(
    table: SimpleNamespace, tmp_path: Path
) -> None:
    """Input without one of the model's features names the missing column."""
    source = tmp_path / "flows.csv"
    _unlabelled().drop(columns=["rate"]).to_csv(source, index=False)

    with pytest.raises(SchemaMismatch, match="1 of the model's 3 feature columns are missing") as c:
        score_file(table.model, source, tmp_path / "scores.csv")
    assert (c.value.field, c.value.path) == ("rate", str(source))


def test_score_file_extra_column_is_refused_unless_allowed(
    table: SimpleNamespace, tmp_path: Path
) -> None:
    """An unknown column stops scoring, unless allowed; then it is carried to the output."""
    source = tmp_path / "flows.csv"
    _unlabelled().assign(analyst_note="x").to_csv(source, index=False)

    with pytest.raises(SchemaMismatch, match="1 columns are not features of the model") as caught:
        score_file(table.model, source, tmp_path / "scores.csv")
    assert caught.value.field == "analyst_note"

    score_file(table.model, source, tmp_path / "scores.csv", allow_extra=True)
    assert "analyst_note" in _read_scores(tmp_path / "scores.csv").columns


def test_score_file_text_in_numeric_column_names_column_and_line(
    table: SimpleNamespace, tmp_path: Path
) -> None:
    """Text in a numeric feature column names the column, the line and the value."""
    frame = _unlabelled(50)
    frame["rate"] = frame["rate"].astype(str)
    frame.loc[30, "rate"] = "fast"
    source = tmp_path / "flows.csv"
    frame.to_csv(source, index=False)

    with pytest.raises(SchemaMismatch, match="numeric feature column holds text") as caught:
        score_file(table.model, source, tmp_path / "scores.csv")

    assert (caught.value.field, caught.value.line, caught.value.found) == ("rate", 32, "'fast'")
    assert f"{source}:32: field 'rate'" in str(caught.value)


def test_score_file_unknown_output_format_is_a_config_error(
    table: SimpleNamespace, tmp_path: Path
) -> None:
    """An output suffix threattune cannot write is refused before reading."""
    with pytest.raises(ConfigError, match="unknown output format"):
        score_file(table.model, tmp_path / "flows.csv", tmp_path / "scores.xlsx")


def test_score_file_output_over_input_is_a_config_error(
    table: SimpleNamespace, tmp_path: Path
) -> None:
    """Scoring never overwrites its own input."""
    source = tmp_path / "flows.csv"
    _unlabelled(10).to_csv(source, index=False)

    with pytest.raises(ConfigError, match="overwrite the input"):
        score_file(table.model, source, source)


# ----------------------------------------------------------------------------- findings


def test_score_file_reports_unseen_categories_and_out_of_range_values(
    table: SimpleNamespace, tmp_path: Path
) -> None:
    """Values the model never saw come back as findings in the summary."""
    frame = _unlabelled(200)
    frame.loc[:19, "proto"] = "gre"
    frame.loc[0, "bytes"] = 10**9
    source = tmp_path / "flows.csv"
    frame.to_csv(source, index=False)

    summary = score_file(table.model, source, tmp_path / "scores.csv")

    found = {(f.kind, f.subject): f for f in summary.findings}
    assert found[("unseen-category", "proto")].evidence["examples"] == {"gre": 20}
    assert ("out-of-range", "bytes") in found
    assert summary.findings[0].kind == "unseen-category"


def test_score_file_space_after_comma_is_not_an_unseen_category(
    table: SimpleNamespace, tmp_path: Path
) -> None:
    """A CSV written with ', ' separators: the model strips the values, the check must too."""
    source = tmp_path / "spaced.csv"
    _unlabelled(100).to_csv(source, index=False)
    lines = source.read_text().splitlines()
    source.write_text("\n".join([lines[0], *(line.replace(",", ", ") for line in lines[1:])]))

    summary = score_file(table.model, source, tmp_path / "scores.csv")

    assert [f for f in summary.findings if f.kind == "unseen-category"] == []


# ----------------------------------------------------------------------------- decisions


def _model_with_threshold(folder: Path, tmp_path: Path, threshold: float) -> FlowModel:
    copy = shutil.copytree(folder, tmp_path / f"model-{threshold}")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["operating_point"] = {"threshold": threshold}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return FlowModel.load(copy, with_baseline=False)


def test_score_frame_operating_point_threshold_decides_alerts(
    kdd: SimpleNamespace, tmp_path: Path
) -> None:
    """With an operating point, the attack score against its threshold decides the alert."""
    features = load_nsl_kdd(kdd.test).features
    everything = score_frame(_model_with_threshold(kdd.folder, tmp_path, 0.0), features)
    nothing = score_frame(_model_with_threshold(kdd.folder, tmp_path, 1.01), features)
    half = score_frame(_model_with_threshold(kdd.folder, tmp_path, 0.5), features)

    assert everything["alert"].all() and "normal" not in set(everything["class"])
    assert not nothing["alert"].any() and set(nothing["class"]) == {"normal"}
    assert half["alert"].tolist() == (half["attack_score"] >= 0.5).tolist()


# ----------------------------------------------------------------------------- model errors


def test_flow_model_load_folder_that_is_not_a_model_is_a_model_error(tmp_path: Path) -> None:
    """A folder without a manifest is refused, listing what a model folder holds."""
    (tmp_path / "notes.txt").write_text("not a model")

    with pytest.raises(ModelError, match="not a threattune flow model folder") as caught:
        FlowModel.load(tmp_path)

    assert "manifest.json" in caught.value.expected and caught.value.found == "notes.txt"


def test_flow_model_load_broken_json_names_file_and_line(
    kdd: SimpleNamespace, tmp_path: Path
) -> None:
    """A damaged model file is a ModelError naming the file and the JSON line."""
    copy = shutil.copytree(kdd.folder, tmp_path / "model")
    (copy / "fingerprint.json").write_text('{\n  "columns": [\n}')

    with pytest.raises(ModelError, match="not valid JSON") as caught:
        FlowModel.load(copy)
    assert caught.value.path == str(copy / "fingerprint.json") and caught.value.line == 3


def test_flow_model_load_newer_format_is_a_model_error(
    kdd: SimpleNamespace, tmp_path: Path
) -> None:
    """A model written by a newer threattune asks for an upgrade."""
    copy = shutil.copytree(kdd.folder, tmp_path / "model")
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps(manifest | {"format_version": 99}))

    with pytest.raises(ModelError, match="newer threattune"):
        FlowModel.load(copy)


def test_resolve_model_missing_folder_is_a_model_error(tmp_path: Path) -> None:
    """A model path that does not exist is named, with the registry URI form as the fix."""
    with pytest.raises(ModelError, match="model not found") as caught:
        resolve_model(tmp_path / "no-such-model")
    assert "models:/" in str(caught.value)


def test_resolve_model_unknown_registry_uri_is_a_model_error(mlflow_uri: str) -> None:
    """A models:/ URI the store does not know fails naming the URI and the tracking store."""
    uri = "models:/threattune-absent@champion"
    with pytest.raises(ModelError, match=f"cannot load '{uri}' from MLflow") as caught:
        resolve_model(uri)
    assert mlflow_uri in caught.value.found


# ----------------------------------------------------------------------------- evaluation


def test_class_codes_unknown_label_names_labels_and_classes(table: SimpleNamespace) -> None:
    """Labels the model has no class for are listed beside the model's classes."""
    labels = np.array(["benign", "dos", "exfil", "scan", "c2", "exfil"])

    with pytest.raises(DataError, match="2 labels are not classes of the model") as caught:
        class_codes(labels, table.model.classes, source="march.csv")

    assert caught.value.found == "c2, exfil"
    assert caught.value.expected == "benign, dos, scan"
    assert class_codes(labels[[0, 1, 3]], table.model.classes, source="x").tolist() == [0, 1, 2]


def test_labelled_flows_unknown_label_names_its_csv_line_and_column(
    table: SimpleNamespace, tmp_path: Path
) -> None:
    """An unknown label in a labelled CSV is reported at its file line and label column."""
    frame = samples.user_flows(20, seed=9)
    frame.loc[5, "verdict"] = "exfil"
    source = tmp_path / "march.csv"
    frame.to_csv(source, index=False)
    with pytest.raises(DataError) as caught:
        labelled_flows(table.model, [source])

    assert (caught.value.path, caught.value.line, caught.value.field) == (str(source), 7, "verdict")


def test_labelled_flows_without_label_column_is_a_data_error(
    table: SimpleNamespace, tmp_path: Path
) -> None:
    """Evaluating unlabelled flows names the missing label column."""
    source = tmp_path / "flows.csv"
    _unlabelled(10).to_csv(source, index=False)

    with pytest.raises(DataError, match="label column not found") as caught:
        labelled_flows(table.model, [source])
    assert caught.value.field == "verdict"


def test_labelled_flows_reads_nsl_kdd_with_the_model_granularity(kdd: SimpleNamespace) -> None:
    """NSL-KDD test files read as the model was trained: 41 features, category labels."""
    features, labels, source = labelled_flows(kdd.model, [kdd.test])

    assert list(features.columns) == list(NSL_KDD_FEATURES)
    assert set(labels) <= {"normal", "DoS", "Probe", "R2L", "U2R"}
    assert len(labels) == 600 and source == str(kdd.test)
