"""Flow loaders: NSL-KDD, CICFlowMeter exports and a user's own tables, and their errors.

Real flows are sliced at run time from ``THREATTUNE_DATA`` into the test's temporary folder;
hostile inputs (Infinity cells, bad rows, wrong delimiters) are built here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import flow_samples as samples
from threattune.errors import ConfigError, DataError
from threattune.findings import Severity
from threattune.sources import flows
from threattune.sources.flows import (
    CICFLOWMETER_IDENTIFIERS,
    NSL_KDD_CATEGORIES,
    NSL_KDD_FEATURES,
    flow_table_from_frame,
    infer_feature_types,
    load_cicflowmeter,
    load_labelled_table,
    load_nsl_kdd,
    nsl_kdd_category,
)

CATEGORIES = {"normal", "DoS", "Probe", "R2L", "U2R"}
CIC = "cicids2017-improved-sample"


def _findings(table: flows.FlowTable, kind: str) -> dict[str, flows.Finding]:
    return {f.subject: f for f in table.findings if f.kind == kind}


# ----------------------------------------------------------------------------- NSL-KDD


@pytest.fixture(scope="module")
def kdd_lines(data_root: Path) -> list[str]:
    """The first 3,000 lines of KDDTrain+."""
    return samples.nsl_kdd_lines(data_root, 3_000)


def test_load_nsl_kdd_category_gives_five_classes_and_41_features(
    kdd_lines: list[str], tmp_path: Path
) -> None:
    """The default granularity maps attack names to the five NSL-KDD categories."""
    path = samples.write_lines(tmp_path / "train.txt", kdd_lines)

    table = load_nsl_kdd(path)

    assert len(table) == 3_000
    assert list(table.features.columns) == list(NSL_KDD_FEATURES)
    assert set(table.classes) <= CATEGORIES and {"normal", "DoS", "Probe"} <= set(table.classes)
    assert [c for c, k in table.feature_types.items() if k == "categorical"] == [
        "protocol_type",
        "service",
        "flag",
    ]
    assert table.labels.tolist() == table.context["category"].tolist()
    assert all(table.context["attack"].map(NSL_KDD_CATEGORIES) == table.context["category"])
    assert set(table.dropped) == {"attack", "difficulty"}
    numeric = [c for c, k in table.feature_types.items() if k == "numeric"]
    assert all(table.features[c].dtype == np.float64 for c in numeric)


def test_load_nsl_kdd_category_maps_the_17_test_only_attacks(
    data_root: Path, tmp_path: Path
) -> None:
    """Attack names that occur only in KDDTest+ (apache2, mscan, ...) get their category."""
    lines = samples.nsl_kdd_test_only_lines(data_root)
    assert len(lines) == 17
    path = samples.write_lines(tmp_path / "test-only.txt", lines)

    table = load_nsl_kdd(path)

    found = dict(zip(table.context["attack"], table.labels, strict=True))
    assert found == samples.NSL_KDD_TEST_ONLY_ATTACKS


def test_nsl_kdd_categories_follow_the_official_training_attack_types(data_root: Path) -> None:
    """The 22 training attacks map as the KDD'99 training_attack_types file says; 39 in all."""
    official = (data_root / "nsl-kdd" / "training_attack_types.txt").read_text().split("\n")
    pairs = [line.split() for line in official if line.strip()]
    assert len(pairs) == 22
    for attack, category in pairs:
        assert nsl_kdd_category(attack).lower() == category
    assert len(NSL_KDD_CATEGORIES) == 39 + 1
    assert set(NSL_KDD_CATEGORIES.values()) == CATEGORIES


def test_nsl_kdd_category_strips_the_kdd99_trailing_dot() -> None:
    """KDD'99 files end labels with a dot ("smurf."); NSL-KDD names match without it."""
    assert nsl_kdd_category("smurf.") == "DoS"
    assert nsl_kdd_category(" normal ") == "normal"
    assert nsl_kdd_category("zeroday") is None


def test_load_nsl_kdd_binary_gives_normal_and_attack(kdd_lines: list[str], tmp_path: Path) -> None:
    """Binary granularity: every non-normal flow is labelled ``attack``."""
    table = load_nsl_kdd(samples.write_lines(tmp_path / "t.txt", kdd_lines), granularity="binary")

    assert table.classes == ["attack", "normal"]
    expected = np.where(table.context["category"] == "normal", "normal", "attack")
    assert table.labels.tolist() == expected.tolist()


def test_load_nsl_kdd_attack_gives_the_attack_names(kdd_lines: list[str], tmp_path: Path) -> None:
    """Attack granularity: the label is the attack name itself."""
    table = load_nsl_kdd(samples.write_lines(tmp_path / "t.txt", kdd_lines), granularity="attack")

    assert table.labels.tolist() == table.context["attack"].tolist()
    assert {"normal", "neptune"} <= set(table.classes)


def test_load_nsl_kdd_unknown_granularity_is_a_config_error(
    kdd_lines: list[str], tmp_path: Path
) -> None:
    """A misspelt granularity fails before any file is read."""
    with pytest.raises(ConfigError, match="granularity") as caught:
        load_nsl_kdd(tmp_path / "absent.txt", granularity="categories")
    assert caught.value.found == "categories"


def test_load_nsl_kdd_several_files_concatenate(kdd_lines: list[str], tmp_path: Path) -> None:
    """Files given together load as one table, in order."""
    first = samples.write_lines(tmp_path / "a.txt", kdd_lines[:100])
    second = samples.write_lines(tmp_path / "b.txt", kdd_lines[100:250])

    table = load_nsl_kdd([first, second])

    assert len(table) == 250
    assert str(first) in table.source and str(second) in table.source


def test_load_nsl_kdd_unknown_attack_name_names_file_and_line(
    kdd_lines: list[str], tmp_path: Path
) -> None:
    """An attack name outside the 39 is an error at its own (headerless) line."""
    lines = kdd_lines[:20]
    lines[11] = samples.replace_field(lines[11], 41, "zeroday")
    path = samples.write_lines(tmp_path / "unknown.txt", lines)

    with pytest.raises(DataError, match=r"unknown NSL-KDD attack name") as caught:
        load_nsl_kdd(path)

    error = caught.value
    assert (error.path, error.line, error.field) == (str(path), 12, "attack")
    assert "zeroday" in str(error)
    assert f"{path}:12" in str(error)


def test_load_nsl_kdd_row_with_too_many_fields_names_the_line(
    kdd_lines: list[str], tmp_path: Path
) -> None:
    """A row with an extra field fails with its line number in the message."""
    lines = kdd_lines[:20]
    lines[9] = lines[9].rstrip("\n") + ",7\n"
    path = samples.write_lines(tmp_path / "wide.txt", lines)

    with pytest.raises(DataError, match=r"line 10\b") as caught:
        load_nsl_kdd(path)
    assert caught.value.path == str(path)


def test_load_nsl_kdd_text_in_numeric_column_names_column_and_line(
    kdd_lines: list[str], tmp_path: Path
) -> None:
    """Text in a numeric NSL-KDD column is an error at that column and (headerless) line."""
    lines = kdd_lines[:20]
    lines[9] = samples.replace_field(lines[9], 4, "abc")
    path = samples.write_lines(tmp_path / "text.txt", lines)

    with pytest.raises(DataError, match="numeric column holds text") as caught:
        load_nsl_kdd(path)

    assert caught.value.field == "src_bytes"
    assert caught.value.line == 10


def test_load_nsl_kdd_empty_file_is_a_data_error(tmp_path: Path) -> None:
    """An empty file says so, with its path."""
    path = tmp_path / "empty.txt"
    path.write_text("")

    with pytest.raises(DataError, match="the file is empty") as caught:
        load_nsl_kdd(path)
    assert caught.value.path == str(path)


# ----------------------------------------------------------------------------- CICFlowMeter


def test_load_cicflowmeter_drops_identifier_columns_and_reports_them(data_root: Path) -> None:
    """Flow ID, addresses, ports and timestamps leave the features, named as INFO findings."""
    folder = data_root / CIC
    paths = [
        folder / "Botnet_736.csv",
        folder / "Heartbleed_11.csv",
        folder / "Infiltration_36.csv",
    ]

    table = load_cicflowmeter(paths)

    header = pd.read_csv(paths[0], nrows=0).columns
    identifiers = [c for c in CICFLOWMETER_IDENTIFIERS if c in header]
    assert {"Flow ID", "Src IP", "Dst IP", "Src Port", "Dst Port", "Timestamp"} <= set(identifiers)
    assert not set(identifiers) & set(table.features.columns)
    assert "Label" not in table.features.columns
    assert set(table.dropped) == set(identifiers)
    dropped = _findings(table, "dropped-column")
    assert set(dropped) == set(identifiers)
    assert all(f.severity == Severity.INFO for f in dropped.values())
    assert list(table.context.columns) == identifiers
    assert table.classes == ["Botnet", "Heartbleed", "Infiltration"]
    assert len(table) == 736 + 11 + 36
    assert set(table.feature_types.values()) == {"numeric"}


def test_load_cicflowmeter_keep_columns_keeps_an_identifier_as_feature(data_root: Path) -> None:
    """``keep_columns`` keeps a named identifier (here the destination port) as a feature."""
    table = load_cicflowmeter(data_root / CIC / "Heartbleed_11.csv", keep_columns=["Dst Port"])

    assert "Dst Port" in table.features.columns
    assert "Dst Port" not in table.dropped
    assert "Src Port" in table.dropped


def test_load_cicflowmeter_infinity_and_nan_become_missing(data_root: Path, tmp_path: Path) -> None:
    """CICFlowMeter's Infinity (rates over a zero duration) and NaN cells read as missing."""
    header, rows = samples.cicflowmeter_rows(data_root, "Botnet_736.csv", 20)
    bytes_rate, packets_rate = header.index("Flow Bytes/s"), header.index("Flow Packets/s")
    rows[0][bytes_rate] = "Infinity"
    rows[1][bytes_rate] = "NaN"
    rows[2][packets_rate] = "-Infinity"
    path = samples.write_csv(tmp_path / "infinity.csv", header, rows)

    table = load_cicflowmeter(path)

    column = table.features["Flow Bytes/s"]
    assert column.dtype == np.float64
    assert column.iloc[:2].isna().all() and column.iloc[2:].notna().all()
    assert np.isnan(table.features["Flow Packets/s"].iloc[2])
    assert not np.isinf(table.features.select_dtypes("number").to_numpy()).any()
    missing = _findings(table, "missing-values")
    assert missing["Flow Bytes/s"].evidence["fraction"] == pytest.approx(2 / 20)
    assert missing["Flow Packets/s"].evidence["fraction"] == pytest.approx(1 / 20)
    assert missing["Flow Bytes/s"].severity == Severity.MEDIUM


def test_load_cicflowmeter_drops_duplicate_flows_with_a_finding(data_root: Path) -> None:
    """Flows equal once identifiers are gone are kept once, and the count is reported."""
    path = data_root / CIC / "Portscan_5000.csv"
    raw = pd.read_csv(path)
    features = raw.drop(columns=[c for c in CICFLOWMETER_IDENTIFIERS if c in raw.columns])
    expected = int(features.duplicated().sum())
    assert expected > 0

    table = load_cicflowmeter(path)

    assert len(table) == len(raw) - expected
    assert len(table.context) == len(table) == len(table.labels)
    finding = _findings(table, "duplicate-flows")[str(path)]
    assert finding.evidence == {"dropped_rows": expected}
    assert finding.severity == Severity.LOW
    assert not table.features.assign(label=table.labels).duplicated().any()


def test_load_cicflowmeter_deduplicate_false_keeps_every_flow(
    data_root: Path, tmp_path: Path
) -> None:
    """Turning deduplication off keeps repeated flows and reports none."""
    header, rows = samples.cicflowmeter_rows(data_root, "Botnet_736.csv", 5)
    path = samples.write_csv(tmp_path / "twice.csv", header, rows + rows)

    kept = load_cicflowmeter(path, deduplicate=False)
    deduplicated = load_cicflowmeter(path)

    assert len(kept) == 10 and not _findings(kept, "duplicate-flows")
    assert len(deduplicated) == 5


def test_load_cicflowmeter_missing_label_column_names_it(data_root: Path) -> None:
    """A label column that is not in the file is an error naming the column and the file."""
    path = data_root / CIC / "Heartbleed_11.csv"

    with pytest.raises(DataError, match="label column not found") as caught:
        load_cicflowmeter(path, label_column="Verdict")

    assert caught.value.field == "Verdict"
    assert caught.value.path == str(path)
    assert "--label-column" in str(caught.value)


def test_load_cicflowmeter_text_in_second_file_names_that_file_and_line(
    data_root: Path, tmp_path: Path
) -> None:
    """Text in a numeric column of the second file names that file and its own line."""
    header, rows = samples.cicflowmeter_rows(data_root, "Botnet_736.csv", 400)
    duration = header.index("Flow Duration")
    first = samples.write_csv(tmp_path / "first.csv", header, rows[:200])
    rows[204][duration] = "slow"
    second = samples.write_csv(tmp_path / "second.csv", header, rows[200:])

    with pytest.raises(DataError, match="numeric column holds text") as caught:
        load_cicflowmeter([first, second])

    assert caught.value.field == "Flow Duration"
    assert (caught.value.path, caught.value.line) == (str(second), 6)


# ----------------------------------------------------------------------------- user tables


@pytest.fixture()
def user_csv(tmp_path: Path) -> Path:
    path = tmp_path / "flows.csv"
    samples.user_flows(300).to_csv(path, index=False)
    return path


def test_load_labelled_table_infers_types_and_drops_identifiers(user_csv: Path) -> None:
    """Numbers are numeric, text is categorical, addresses/timestamps/ids are dropped."""
    table = load_labelled_table(user_csv, label_column="verdict")

    assert table.feature_types == {"bytes": "numeric", "rate": "numeric", "proto": "categorical"}
    assert set(table.dropped) == {"src", "seen", "session"}
    assert "addresses" in table.dropped["src"]
    assert "timestamps" in table.dropped["seen"]
    assert "distinct" in table.dropped["session"]
    assert set(_findings(table, "dropped-column")) == {"src", "seen", "session"}
    assert table.classes == ["benign", "dos", "scan"]
    assert list(table.context.columns) == ["src", "seen", "session"]
    assert table.features["bytes"].dtype == np.float64
    assert set(table.features["proto"]) == {"tcp", "udp", "icmp"}


def test_load_labelled_table_reads_parquet_like_csv(user_csv: Path, tmp_path: Path) -> None:
    """The same flows as Parquet give the same types, drops and features."""
    parquet = tmp_path / "flows.parquet"
    pd.read_csv(user_csv).to_parquet(parquet, index=False)

    from_csv = load_labelled_table(user_csv, label_column="verdict")
    from_parquet = load_labelled_table(parquet, label_column="verdict")

    assert from_parquet.feature_types == from_csv.feature_types
    assert from_parquet.dropped == from_csv.dropped
    pd.testing.assert_frame_equal(from_parquet.features, from_csv.features)


def test_load_labelled_table_categorical_overrides_inference(user_csv: Path) -> None:
    """Naming the categorical columns turns inference off: the rest are numeric."""
    table = load_labelled_table(
        user_csv,
        label_column="verdict",
        drop_columns=["src", "seen", "session"],
        categorical=["proto"],
    )

    assert table.feature_types == {"bytes": "numeric", "rate": "numeric", "proto": "categorical"}
    assert all(why == "dropped by the task" for why in table.dropped.values())


def test_load_labelled_table_missing_label_column_names_it(user_csv: Path) -> None:
    """A --label-column that is not in the header is named in the error, with the fix."""
    with pytest.raises(DataError, match="label column not found") as caught:
        load_labelled_table(user_csv, label_column="label")

    assert caught.value.field == "label"
    assert "verdict" in caught.value.found
    assert "--label-column" in str(caught.value)


def test_load_labelled_table_unknown_drop_column_is_a_config_error(user_csv: Path) -> None:
    """A column to drop that the file lacks is named."""
    with pytest.raises(ConfigError, match="column to drop not found") as caught:
        load_labelled_table(user_csv, label_column="verdict", drop_columns=["sesion"])
    assert caught.value.field == "sesion"


def test_load_labelled_table_unlabelled_flow_names_its_line(tmp_path: Path) -> None:
    """A flow without a label is an error at its line (header is line 1)."""
    path = tmp_path / "gap.csv"
    path.write_text("bytes,verdict\n1,benign\n2,dos\n3,\n4,benign\n")

    with pytest.raises(DataError, match="a flow has no label") as caught:
        load_labelled_table(path, label_column="verdict")
    assert (caught.value.line, caught.value.field) == (4, "verdict")


def test_load_labelled_table_empty_file_is_a_data_error(tmp_path: Path) -> None:
    """A 0-byte file is refused before parsing."""
    path = tmp_path / "empty.csv"
    path.write_text("")

    with pytest.raises(DataError, match="the file is empty"):
        load_labelled_table(path, label_column="verdict")


def test_load_labelled_table_semicolon_file_names_the_delimiter(tmp_path: Path) -> None:
    """A file split by ';' is caught at its header, with the --delimiter fix."""
    path = tmp_path / "semicolon.csv"
    path.write_text("bytes;proto;verdict\n1;tcp;benign\n2;udp;dos\n")

    with pytest.raises(DataError, match=r"the header has no ',' but 2 ';'") as caught:
        load_labelled_table(path, label_column="verdict")
    assert caught.value.line == 1
    assert "--delimiter ';'" in str(caught.value)


def test_load_labelled_table_semicolon_file_reads_with_its_delimiter(tmp_path: Path) -> None:
    """The same file reads when its delimiter is given."""
    path = tmp_path / "semicolon.csv"
    path.write_text("bytes;proto;verdict\n1;tcp;benign\n2;udp;dos\n")

    table = load_labelled_table(path, label_column="verdict", delimiter=";")

    assert table.features["bytes"].tolist() == [1.0, 2.0]


def test_load_labelled_table_header_only_file_has_no_rows(tmp_path: Path) -> None:
    """A header without rows is an error at line 2."""
    path = tmp_path / "header.csv"
    path.write_text("bytes,proto,verdict\n")

    with pytest.raises(DataError, match="has a header but no rows") as caught:
        load_labelled_table(path, label_column="verdict")
    assert caught.value.line == 2


def test_load_labelled_table_row_with_too_many_fields_names_the_line(tmp_path: Path) -> None:
    """A row with an extra field fails with that row's line number."""
    path = tmp_path / "wide.csv"
    path.write_text("bytes,proto,verdict\n1,tcp,benign\n2,udp,dos\n3,tcp,benign,extra\n")

    with pytest.raises(DataError, match=r"line 4\b"):
        load_labelled_table(path, label_column="verdict")


def test_load_labelled_table_text_in_numeric_column_names_column_and_line(
    tmp_path: Path,
) -> None:
    """One text value in a numeric column is an error naming the column and the line."""
    frame = pd.DataFrame({"bytes": [str(i) for i in range(300)], "verdict": ["benign"] * 300})
    frame.loc[150, "bytes"] = "lots"
    path = tmp_path / "text.csv"
    frame.to_csv(path, index=False)

    with pytest.raises(DataError, match="numeric column holds text") as caught:
        load_labelled_table(path, label_column="verdict", categorical=[])

    error = caught.value
    assert (error.field, error.line, error.found) == ("bytes", 152, "'lots'")
    assert f"{path}:152: field 'bytes'" in str(error)


def test_load_labelled_table_missing_file_is_a_data_error(tmp_path: Path) -> None:
    """A path that does not exist is named, with a hint about relative paths."""
    with pytest.raises(DataError, match="file not found"):
        load_labelled_table(tmp_path / "nowhere.csv", label_column="verdict")


# ----------------------------------------------------------------------------- inference


def test_infer_feature_types_reads_infinity_text_as_numeric() -> None:
    """Text columns of numbers and Infinity are numeric, not categories."""
    frame = pd.DataFrame({"rate": ["1.5", "Infinity", "-inf", "2"] * 10})

    types, dropped = infer_feature_types(frame)

    assert types == {"rate": "numeric"} and dropped == {}


def test_flow_table_from_frame_turns_infinity_into_missing() -> None:
    """Numeric features are float64 with infinity as missing, and findings say how many."""
    frame = pd.DataFrame({"rate": [1.0, np.inf, -np.inf, 4.0], "label": ["a", "b", "a", "b"]})

    table = flow_table_from_frame(frame, label_column="label", source="memory")

    assert table.features["rate"].isna().tolist() == [False, True, True, False]
    assert _findings(table, "missing-values")["rate"].evidence["fraction"] == 0.5


def test_flow_table_from_frame_reports_constant_columns() -> None:
    """A column with one value on every row is an INFO finding."""
    frame = pd.DataFrame({"flag": [0, 0, 0], "bytes": [1, 2, 3], "label": ["a", "b", "a"]})

    table = flow_table_from_frame(frame, label_column="label", source="memory")

    finding = _findings(table, "constant-column")["flag"]
    assert finding.severity == Severity.INFO and finding.evidence == {"value": "0.0"}
