"""The fingerprint a model keeps of its input, and the checks scoring runs against it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from threattune.errors import SchemaMismatch
from threattune.findings import Severity
from threattune.fingerprint import ColumnProfile, Fingerprint, InputCheck
from threattune.preprocessing import PREPROCESSING_VERSION, FlowEncoder

TYPES = {"bytes": "numeric", "rate": "numeric", "proto": "categorical"}


def _training_frame(rows: int = 1_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "bytes": rng.integers(0, 10_000, rows).astype(float),
            "rate": rng.random(rows),
            "proto": rng.choice(["tcp", "udp", "icmp"], rows),
        }
    )
    frame.loc[::50, "rate"] = np.nan
    return frame


def _like_training(rows: int, seed: int) -> pd.DataFrame:
    """Flows drawn from the training flows: no value outside what training saw."""
    return _training_frame().sample(rows, replace=True, random_state=seed).reset_index(drop=True)


def _fingerprint(frame: pd.DataFrame | None = None, **options: object) -> Fingerprint:
    return Fingerprint.from_features(
        _training_frame() if frame is None else frame,
        TYPES,
        input_format=options.pop("input_format", {"reader": "table", "label_column": "y"}),
        passthrough=options.pop("passthrough", ("src", "y")),
    )


# ----------------------------------------------------------------------------- profiles


def test_fingerprint_from_features_profiles_each_column() -> None:
    """Categorical columns keep their sorted vocabulary, numeric ones range and quantiles."""
    frame = _training_frame()
    fingerprint = _fingerprint(frame)

    assert fingerprint.names == ["bytes", "rate", "proto"]
    assert fingerprint.categorical == ["proto"]
    proto = fingerprint.columns[2]
    assert proto.vocabulary == ("icmp", "tcp", "udp")
    bytes_ = fingerprint.columns[0]
    assert (bytes_.minimum, bytes_.maximum) == (frame["bytes"].min(), frame["bytes"].max())
    assert bytes_.p01 == pytest.approx(frame["bytes"].quantile(0.01))
    assert bytes_.p99 == pytest.approx(frame["bytes"].quantile(0.99))
    assert fingerprint.columns[1].missing_fraction == pytest.approx(20 / 1_000)
    assert fingerprint.preprocessing_version == PREPROCESSING_VERSION


def test_fingerprint_from_features_all_missing_column_has_no_range() -> None:
    """A numeric column with no finite value has no range, and checks skip it."""
    frame = pd.DataFrame({"bytes": [np.nan, np.inf], "rate": [1.0, 2.0], "proto": ["a", "b"]})

    fingerprint = _fingerprint(frame)

    assert fingerprint.columns[0].minimum is None and fingerprint.columns[0].maximum is None
    check = InputCheck(fingerprint)
    check.observe(pd.DataFrame({"bytes": [1e9], "rate": [1.5], "proto": ["a"]}))
    assert check.findings() == []


# ----------------------------------------------------------------------------- round trip


def test_fingerprint_to_dict_from_dict_round_trips_through_json() -> None:
    """A fingerprint written as JSON reads back equal, digest included."""
    fingerprint = _fingerprint()

    document = json.loads(json.dumps(fingerprint.to_dict()))
    again = Fingerprint.from_dict(document)

    assert again == fingerprint
    assert again.digest == fingerprint.digest == document["digest"]
    assert document["input_format"] == {"reader": "table", "label_column": "y"}
    assert document["passthrough"] == ["src", "y"]
    assert document["columns"][2]["vocabulary"] == ["icmp", "tcp", "udp"]
    assert set(document["columns"][0]) == {"name", "kind", "missing_fraction", "min", "max",
                                           "p01", "p99"}  # fmt: skip


def test_column_profile_from_dict_defaults_missing_optional_fields() -> None:
    """A minimal column description (older files) reads with defaults."""
    profile = ColumnProfile.from_dict({"name": "bytes", "kind": "numeric"})

    assert profile == ColumnProfile("bytes", "numeric")


def test_fingerprint_digest_is_stable_across_versions() -> None:
    """The digest of a fixed schema never changes, so models saved earlier compare equal."""
    frame = pd.DataFrame({"bytes": [1.0, 2.0], "proto": ["tcp", "udp"]})

    fingerprint = Fingerprint.from_features(
        frame, {"bytes": "numeric", "proto": "categorical"}, input_format={"reader": "table"}
    )

    assert fingerprint.digest == "b345254ec398557e"


def test_fingerprint_digest_ignores_ranges_but_not_schema() -> None:
    """Same columns, types and vocabularies: same digest; any schema change: another one."""
    base = _fingerprint(_training_frame(seed=0))

    other_values = _fingerprint(_training_frame(seed=1), input_format={"reader": "nsl-kdd"})
    frame = _training_frame()
    frame.loc[0, "proto"] = "gre"
    other_vocabulary = _fingerprint(frame)
    other_order = Fingerprint.from_features(
        _training_frame(), dict(reversed(TYPES.items())), input_format={}
    )

    assert other_values.digest == base.digest
    assert other_vocabulary.digest != base.digest
    assert other_order.digest != base.digest
    assert len(base.digest) == 16 and int(base.digest, 16) >= 0


# ----------------------------------------------------------------------------- columns


def test_fingerprint_check_columns_missing_column_is_a_schema_mismatch() -> None:
    """Input without a feature column names that column and the file."""
    fingerprint = _fingerprint()

    with pytest.raises(SchemaMismatch, match="1 of the model's 3 feature columns") as caught:
        fingerprint.check_columns(["bytes", "proto"], path="flows.csv")

    assert (caught.value.field, caught.value.path) == ("rate", "flows.csv")
    assert "no column rate" in str(caught.value)


def test_fingerprint_check_columns_extra_column_is_refused_unless_allowed() -> None:
    """A column that is neither feature nor known passthrough is refused, or carried."""
    fingerprint = _fingerprint()
    columns = ["src", "bytes", "rate", "proto", "note"]

    with pytest.raises(SchemaMismatch, match="1 columns are not features") as caught:
        fingerprint.check_columns(columns, path="flows.csv")
    assert caught.value.field == "note"
    assert "--ignore-extra-columns" in str(caught.value)

    assert fingerprint.check_columns(columns, path="flows.csv", allow_extra=True) == [
        "src",
        "note",
    ]


def test_fingerprint_check_columns_known_passthrough_is_returned() -> None:
    """Identifier and label columns seen in training pass through without complaint."""
    fingerprint = _fingerprint()

    carried = fingerprint.check_columns(["y", "bytes", "rate", "proto", "src"], path="f.csv")

    assert carried == ["y", "src"]


# ----------------------------------------------------------------------------- types


def test_fingerprint_check_types_text_in_numeric_column_names_column_and_line() -> None:
    """Text where the model expects a number names the column and the file's line."""
    fingerprint = _fingerprint()
    frame = pd.DataFrame({"bytes": ["1", "2", "many", "4"], "rate": [0.1] * 4,
                          "proto": ["tcp"] * 4})  # fmt: skip

    with pytest.raises(SchemaMismatch, match="numeric feature column holds text") as caught:
        fingerprint.check_types(frame, path="flows.csv", first_line=101)

    assert (caught.value.field, caught.value.line, caught.value.found) == ("bytes", 103, "'many'")


def test_fingerprint_check_types_converts_numbers_infinity_and_blanks() -> None:
    """Numbers written as text, Infinity and empty cells convert in place."""
    fingerprint = _fingerprint()
    frame = pd.DataFrame({"bytes": [" 7", "Infinity", "-inf", ""], "rate": [0.1] * 4,
                          "proto": ["tcp"] * 4})  # fmt: skip

    fingerprint.check_types(frame, path="flows.csv", first_line=2)

    values = frame["bytes"].tolist()
    assert values[:3] == [7.0, np.inf, -np.inf] and np.isnan(values[3])


# ----------------------------------------------------------------------------- input check


def test_input_check_training_like_data_has_no_findings() -> None:
    """Flows like the training flows raise nothing, however they are batched."""
    frame = _training_frame()
    check = InputCheck(_fingerprint(frame))

    for start in range(0, len(frame), 300):
        check.observe(frame.iloc[start : start + 300])

    assert check.rows == len(frame)
    assert check.findings() == []


def test_input_check_unseen_categories_are_findings_with_severity_by_share() -> None:
    """Unseen values: HIGH above 5 % of rows, MEDIUM above 0.1 %, LOW below."""
    fingerprint = _fingerprint()
    frame = _like_training(10_000, seed=3)
    frame.loc[:999, "proto"] = "gre"  # 10 %

    check = InputCheck(fingerprint)
    check.observe(frame)
    high = check.findings()[0]

    assert (high.kind, high.subject, high.severity) == ("unseen-category", "proto", Severity.HIGH)
    assert high.evidence["rows"] == 1_000 and high.evidence["examples"] == {"gre": 1_000}
    assert "treats them as missing" in high.message

    for rows, severity in ((50, Severity.MEDIUM), (5, Severity.LOW)):
        frame = _like_training(10_000, seed=3)
        frame.loc[: rows - 1, "proto"] = "sctp"
        check = InputCheck(fingerprint)
        check.observe(frame)
        assert [(f.subject, f.severity) for f in check.findings()] == [("proto", severity)]


def test_input_check_missing_category_is_not_unseen() -> None:
    """A missing categorical value is not an unseen category."""
    frame = _like_training(100, seed=6)
    frame.loc[:9, "proto"] = None

    check = InputCheck(_fingerprint())
    check.observe(frame)

    assert check.findings() == []


def test_input_check_out_of_range_values_are_findings_with_severity_by_share() -> None:
    """Values beyond the training range: MEDIUM above 1 % of rows, LOW below."""
    fingerprint = _fingerprint()
    frame = _like_training(1_000, seed=4)
    frame.loc[:49, "bytes"] = 1e12  # 5 %
    frame.loc[0, "rate"] = -1.0  # 0.1 %

    check = InputCheck(fingerprint)
    check.observe(frame)
    found = {f.subject: f for f in check.findings()}

    assert found["bytes"].kind == "out-of-range" and found["bytes"].severity == Severity.MEDIUM
    assert found["bytes"].evidence == {"rows": 50, "share": 0.05}
    assert found["rate"].severity == Severity.LOW
    assert [f.subject for f in check.findings()] == ["bytes", "rate"]


def test_input_check_counts_add_up_over_batches() -> None:
    """Counts and shares are over the whole input, not the last batch."""
    check = InputCheck(_fingerprint())
    for seed in range(4):
        frame = _like_training(250, seed=seed)
        frame.loc[0, "proto"] = "gre"
        check.observe(frame)

    (finding,) = check.findings()
    assert check.rows == 1_000
    assert finding.evidence["rows"] == 4 and finding.evidence["share"] == pytest.approx(0.004)


def test_input_check_findings_sort_most_severe_first() -> None:
    """A HIGH unseen-category finding comes before a LOW out-of-range one."""
    frame = _like_training(1_000, seed=5)
    frame.loc[:199, "proto"] = "gre"
    frame.loc[0, "bytes"] = 1e12

    check = InputCheck(_fingerprint())
    check.observe(frame)

    assert [f.severity for f in check.findings()] == [Severity.HIGH, Severity.LOW]


def test_input_check_infinity_is_missing_not_out_of_range() -> None:
    """Infinity (CICFlowMeter's rate over a zero duration) is missing, as in training."""
    frame = _like_training(1_000, seed=7)
    frame.loc[:99, "rate"] = np.inf

    check = InputCheck(_fingerprint())
    check.observe(frame)

    assert check.findings() == []


# ----------------------------------------------------------------------------- encoder


def test_flow_encoder_unseen_category_and_infinity_become_missing() -> None:
    """Codes follow the training vocabulary; unseen values and infinity are NaN."""
    encoder = FlowEncoder.fit(_training_frame(), TYPES)
    frame = pd.DataFrame({"bytes": [1.0, np.inf], "rate": [0.5, 0.25], "proto": ["udp", "gre"]})

    matrix = encoder.transform(frame)

    assert matrix.dtype == np.float32
    assert matrix[0].tolist() == [1.0, 0.5, 2.0]
    assert np.isnan(matrix[1, 0]) and np.isnan(matrix[1, 2])


def test_flow_encoder_to_dict_from_dict_round_trips() -> None:
    """The saved encoder rebuilds to the same encoder, with the preprocessing version."""
    encoder = FlowEncoder.fit(_training_frame(), TYPES)

    document = json.loads(json.dumps(encoder.to_dict()))

    assert document["version"] == PREPROCESSING_VERSION
    assert FlowEncoder.from_dict(document) == encoder
