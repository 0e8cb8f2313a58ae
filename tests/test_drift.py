"""Data drift of a segment against a reference profile: statistics, flagging rule, profile."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from threattune.diagnosis import (
    DriftThresholds,
    ReferenceProfile,
    detect_drift,
    domain_classifier_drift,
    prediction_drift,
)
from threattune.diagnosis.drift import (
    benjamini_hochberg,
    chi_square_two_sample,
    cramers_v,
    population_stability_index,
)
from threattune.diagnosis.profile import OTHER, NumericProfile, category_labels
from threattune.errors import ConfigError, DataError
from threattune.findings import Severity, worst

KDD_COLUMNS = (
    "duration protocol_type service flag src_bytes dst_bytes land wrong_fragment urgent hot "
    "num_failed_logins logged_in num_compromised root_shell su_attempted num_root "
    "num_file_creations num_shells num_access_files num_outbound_cmds is_host_login "
    "is_guest_login count srv_count serror_rate srv_serror_rate rerror_rate srv_rerror_rate "
    "same_srv_rate diff_srv_rate srv_diff_host_rate dst_host_count dst_host_srv_count "
    "dst_host_same_srv_rate dst_host_diff_srv_rate dst_host_same_src_port_rate "
    "dst_host_srv_diff_host_rate dst_host_serror_rate dst_host_srv_serror_rate "
    "dst_host_rerror_rate dst_host_srv_rerror_rate label difficulty"
).split()
KDD_CATEGORICAL = ["protocol_type", "service", "flag"]
SERVICES = ["http", "dns", "smtp", "ssh", "ftp", "ntp", "ldap", "smb"]
SERVICE_WEIGHTS = [0.4, 0.2, 0.1, 0.08, 0.07, 0.06, 0.05, 0.04]


def flows(n: int, seed: int, *, shift: float = 0.0) -> pd.DataFrame:
    """Synthetic flow features; ``shift`` moves ``duration_s`` by that many standard deviations."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "duration_s": rng.normal(10.0, 2.0, n) + 2.0 * shift,
            "bytes_out": np.round(rng.lognormal(6.0, 1.5, n)),
            "failed_logins": np.where(rng.random(n) < 0.9, 0, rng.poisson(3, n)),
            "packets": rng.poisson(20, n),
            "proto": rng.choice(["tcp", "udp", "icmp"], n, p=[0.7, 0.25, 0.05]),
            "service": rng.choice(SERVICES, n, p=SERVICE_WEIGHTS),
            "fixed_window": np.full(n, 64240.0),
            "never_set": np.full(n, np.nan),
        }
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return flows(20_000, seed=1)


@pytest.fixture(scope="module")
def profile(reference: pd.DataFrame) -> ReferenceProfile:
    return ReferenceProfile.from_frame(reference, categorical=["proto", "service"], seed=0)


def above_info(report) -> list:
    return [f for f in report.findings if f.severity > Severity.INFO]


# Statistics


def test_psi_matches_its_definition_and_bounds_empty_bins() -> None:
    p, q = np.array([0.5, 0.5]), np.array([0.4, 0.6])
    expected = float(np.sum((q - p) * np.log(q / p)))

    assert population_stability_index([50, 50], [40, 60]) == pytest.approx(expected)
    assert population_stability_index([5, 5], [5, 5]) == 0.0
    assert math.isfinite(population_stability_index([10, 0], [9, 1]))
    assert math.isnan(population_stability_index([0, 0], [1, 1]))


def test_chi_square_matches_scipy_and_merges_sparse_bins() -> None:
    ref, cur = np.array([300, 200, 100]), np.array([280, 230, 90])
    expected = stats.chi2_contingency(np.vstack([ref, cur]), correction=False)

    statistic, dof, p = chi_square_two_sample(ref, cur)
    assert statistic == pytest.approx(expected.statistic)
    assert dof == 2 and p == pytest.approx(expected.pvalue)

    assert chi_square_two_sample([500, 400, 30, 30, 0], [50, 40, 3, 3, 6])[1] == 2
    assert chi_square_two_sample([500, 400, 1, 1, 0], [50, 40, 0, 1, 2])[1] == 1
    assert chi_square_two_sample([10, 0], [10, 0])[2] == 1.0


def test_cramers_v_is_zero_to_one_whatever_the_sample_sizes() -> None:
    assert cramers_v([10, 20, 30], [100, 200, 300]) == pytest.approx(0.0)
    assert cramers_v([10, 0], [0, 1000]) == pytest.approx(1.0)
    assert cramers_v([60, 40], [40, 60]) == pytest.approx(cramers_v([6000, 4000], [40, 60]))


def test_benjamini_hochberg_matches_the_step_up_rule() -> None:
    q = benjamini_hochberg([0.01, 0.04, 0.03, 0.5, np.nan])

    assert q[:4] == pytest.approx([0.04, 0.0533333, 0.0533333, 0.5])
    assert math.isnan(q[4])


# Profile


def test_mostly_zero_counts_get_a_zero_bin_and_a_resolved_tail(profile: ReferenceProfile) -> None:
    failed = profile.feature("failed_logins")
    labels = failed.bin_labels()

    assert isinstance(failed, NumericProfile)
    assert "= 0" in labels
    assert failed.proportions[labels.index("= 0")] == pytest.approx(0.9, abs=0.01)
    assert failed.edges.size - 1 >= 5
    assert np.all(np.diff(profile.feature("bytes_out").edges) > 0)


def test_constant_and_all_nan_columns_are_profiled(profile: ReferenceProfile) -> None:
    fixed, empty = profile.feature("fixed_window"), profile.feature("never_set")

    assert fixed.bin_labels()[fixed.counts.argmax()] == "= 64240"
    assert empty.edges.size == 0
    assert empty.counts.tolist() == [0, 20_000, 0]


def test_categories_keep_top_k_and_an_other_bucket(reference: pd.DataFrame) -> None:
    small = ReferenceProfile.from_frame(reference, categorical=["proto", "service"], top_k=3)
    service = small.feature("service")

    assert service.categories == ("http", "dns", "smtp")
    assert service.bin_labels()[-1] == OTHER
    assert service.counts.sum() == len(reference)
    assert category_labels(pd.Series([6.0, np.nan, 7.0])).tolist() == ["6", "<missing>", "7"]


def test_profile_round_trips_through_json(
    profile: ReferenceProfile, reference: pd.DataFrame, tmp_path: Path
) -> None:
    segment = flows(3_000, seed=2, shift=0.5)
    plain = ReferenceProfile.load(profile.save(tmp_path / "profile.json"))
    packed = ReferenceProfile.load(profile.save(tmp_path / "profile.json.gz"))

    assert plain.to_dict() == profile.to_dict() == packed.to_dict()
    json.loads((tmp_path / "profile.json").read_text())
    before = detect_drift(profile, segment, max_rows=1_000, folds=3)
    after = detect_drift(plain, segment, max_rows=1_000, folds=3)
    pd.testing.assert_frame_equal(before.table, after.table)
    assert before.findings == after.findings
    assert before.to_dict() == after.to_dict()


def test_profile_from_chunks_equals_profile_from_frame(
    profile: ReferenceProfile, reference: pd.DataFrame
) -> None:
    chunked = ReferenceProfile.from_chunks(
        lambda: (
            reference.iloc[start : start + 3_000] for start in range(0, len(reference), 3_000)
        ),
        categorical=["proto", "service"],
        seed=0,
    )

    assert chunked.to_dict() == profile.to_dict()


def test_profile_rejects_unusable_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        ReferenceProfile.from_frame(pd.DataFrame({"a": [1.0]}), categorical=["b"])
    with pytest.raises(DataError) as error:
        ReferenceProfile.from_frame(pd.DataFrame({"a": ["x", "1"]}), categorical=[])
    assert error.value.field == "a"
    with pytest.raises(DataError):
        ReferenceProfile.from_frame(pd.DataFrame({"a": []}))
    (tmp_path / "broken.json").write_text('{"format": "something else"}')
    with pytest.raises(DataError):
        ReferenceProfile.load(tmp_path / "broken.json")


# Feature drift


def test_same_distribution_raises_no_finding_above_info(profile: ReferenceProfile) -> None:
    report = detect_drift(profile, flows(20_000, seed=2), max_rows=2_000, folds=3)

    assert above_info(report) == []
    assert report.drifted == []
    assert set(report.table["status"]) <= {"stable", "negligible"}
    assert report.multivariate is not None
    assert abs(report.multivariate.auc - 0.5) < 0.05
    assert report.multivariate.ci_low <= 0.5


def test_the_reference_frame_itself_shows_no_drift(
    profile: ReferenceProfile, reference: pd.DataFrame
) -> None:
    report = detect_drift(profile, reference, max_rows=2_000, folds=3)

    assert above_info(report) == []
    assert report.table["psi"].max() == pytest.approx(0.0)
    assert report.multivariate is not None and report.multivariate.auc < 0.55


def test_shift_in_one_numeric_feature_flags_that_feature_only(profile: ReferenceProfile) -> None:
    report = detect_drift(profile, flows(5_000, seed=3, shift=0.6), multivariate=False)

    assert report.drifted == ["duration_s"]
    (finding,) = above_info(report)
    assert (finding.kind, finding.subject) == ("feature-drift", "duration_s")
    assert finding.severity >= Severity.MEDIUM
    assert finding.evidence["psi"] >= 0.1 and finding.evidence["ks_q"] <= 0.01
    row = report.table.set_index("feature").loc["duration_s"]
    assert row["ks_d"] > 0.2 and row["status"] == "drift"


def test_new_category_is_flagged(profile: ReferenceProfile) -> None:
    segment = flows(5_000, seed=4)
    segment.loc[segment.sample(frac=0.15, random_state=0).index, "service"] = "rdp"

    report = detect_drift(profile, segment, multivariate=False)

    assert report.drifted == ["service"]
    (finding,) = above_info(report)
    assert finding.subject == "service"
    assert finding.evidence["new_categories"]["rdp"] == pytest.approx(0.15, abs=0.01)
    assert "rdp" in finding.message and finding.evidence["cramers_v"] >= 0.1


def test_negligible_shift_on_many_rows_is_not_flagged() -> None:
    rng = np.random.default_rng(5)
    n = 200_000
    reference = pd.DataFrame({"rtt_ms": rng.normal(0, 1, n), "payload": rng.exponential(1, n)})
    segment = pd.DataFrame(
        {"rtt_ms": rng.normal(0.05, 1, n), "payload": rng.exponential(1, n) * 1.05}
    )

    report = detect_drift(ReferenceProfile.from_frame(reference), segment, multivariate=False)

    table = report.table.set_index("feature")
    assert (table["chi2_p"] < 1e-6).all()
    assert (table["status"] == "negligible").all()
    assert (table["psi"] < 0.01).all()
    assert above_info(report) == []


def test_small_segment_does_not_flag_noise(profile: ReferenceProfile) -> None:
    report = detect_drift(profile, flows(30, seed=6), multivariate=False)

    assert report.drifted == []
    assert above_info(report) == []
    assert report.table["psi"].max() > 0.1


def test_constant_and_all_nan_columns_drift_when_they_change(profile: ReferenceProfile) -> None:
    segment = flows(2_000, seed=7).assign(fixed_window=1024.0, never_set=3.0)

    report = detect_drift(profile, segment, multivariate=False)

    assert set(report.drifted) == {"fixed_window", "never_set"}
    assert all(f.severity == Severity.HIGH for f in above_info(report))


def test_absent_feature_is_reported_and_extra_columns_are_ignored(
    profile: ReferenceProfile,
) -> None:
    segment = flows(2_000, seed=8).drop(columns=["packets"]).assign(vlan=7)

    report = detect_drift(profile, segment, max_rows=500, folds=3)

    kinds = {(f.kind, f.subject, f.severity) for f in report.findings}
    assert ("missing-feature", "packets", Severity.HIGH) in kinds
    assert ("unprofiled-feature", "segment", Severity.INFO) in kinds
    assert report.table.set_index("feature").loc["packets", "status"] == "missing"


def test_report_is_json_ready_and_sorted(profile: ReferenceProfile) -> None:
    segment = flows(3_000, seed=9, shift=2.0)
    segment["service"] = "dns"

    report = detect_drift(profile, segment, max_rows=1_000, folds=3)

    severities = [f.severity for f in report.findings]
    assert severities == sorted(severities, reverse=True)
    assert worst(report.findings) == Severity.HIGH
    document = json.dumps(report.to_dict(), allow_nan=False)
    assert '"feature-drift"' in document and '"multivariate-drift"' in document
    assert report.records()[0]["feature"] == "duration_s"


def test_invalid_settings_raise() -> None:
    with pytest.raises(ConfigError):
        DriftThresholds(psi_moderate=0.3, psi_major=0.2)
    profile = ReferenceProfile.from_frame(flows(200, seed=0))
    with pytest.raises(ConfigError):
        detect_drift(profile, flows(200, seed=1), alpha=0)
    with pytest.raises(DataError):
        detect_drift(profile, flows(200, seed=1).iloc[:0])
    with pytest.raises(ConfigError):
        detect_drift(profile, flows(200, seed=1), predictions=["benign"] * 200)


# Multivariate and prediction drift


def test_domain_classifier_finds_a_joint_shift_and_names_its_features(
    profile: ReferenceProfile,
) -> None:
    segment = flows(4_000, seed=10, shift=1.5)
    segment["proto"] = np.where(segment["proto"] == "tcp", "udp", "tcp")

    result = domain_classifier_drift(profile, segment, max_rows=2_000, folds=3)

    assert result.auc > 0.8 and result.ci_low > 0.75 and result.p_value < 1e-6
    assert set(result.top_features(2)) == {"duration_s", "proto"}


def test_prediction_drift_for_labels_and_scores(reference: pd.DataFrame) -> None:
    rng = np.random.default_rng(11)
    labels = rng.choice(["benign", "scan", "dos"], len(reference), p=[0.8, 0.15, 0.05])
    profile = ReferenceProfile.from_frame(
        reference, categorical=["proto", "service"], predictions=labels
    )
    same = rng.choice(["benign", "scan", "dos"], 4_000, p=[0.8, 0.15, 0.05])
    moved = rng.choice(["benign", "scan", "dos"], 4_000, p=[0.5, 0.15, 0.35])

    quiet = detect_drift(profile, flows(4_000, seed=12), predictions=same, multivariate=False)
    loud = detect_drift(profile, flows(4_000, seed=12), predictions=moved, multivariate=False)

    assert above_info(quiet) == [] and quiet.prediction is not None
    assert [f.kind for f in above_info(loud)] == ["prediction-drift"]
    assert loud.prediction is not None and loud.prediction["status"] == "drift"
    scores = prediction_drift(rng.beta(1, 8, 5_000), rng.beta(2, 4, 5_000))
    assert [f.kind for f in scores.findings] == ["prediction-drift"]
    assert scores.findings[0].evidence["ks_d"] > 0.2
    assert prediction_drift(rng.beta(1, 8, 5_000), rng.beta(1, 8, 5_000)).findings == []


# A real slice: NSL-KDD


@pytest.fixture(scope="module")
def kdd(data_root: Path) -> dict[str, pd.DataFrame]:
    folder = data_root / "nsl-kdd"
    if not (folder / "KDDTrain+.txt").is_file():
        pytest.skip(f"NSL-KDD not found under {folder}")
    train = pd.read_csv(folder / "KDDTrain+.txt", header=None, names=KDD_COLUMNS, nrows=40_000)
    test = pd.read_csv(folder / "KDDTest+.txt", header=None, names=KDD_COLUMNS)
    features = KDD_COLUMNS[:41]
    return {
        "reference": train.iloc[:20_000][features],
        "next": train.iloc[20_000:][features],
        "test": test[features],
    }


@pytest.fixture(scope="module")
def kdd_profile(kdd: dict[str, pd.DataFrame]) -> ReferenceProfile:
    return ReferenceProfile.from_frame(kdd["reference"], categorical=KDD_CATEGORICAL)


def test_nsl_kdd_next_rows_of_the_training_file_show_little_drift(
    kdd: dict[str, pd.DataFrame], kdd_profile: ReferenceProfile
) -> None:
    report = detect_drift(kdd_profile, kdd["next"], max_rows=2_000, folds=3)

    assert report.drifted == []
    assert above_info(report) == []
    assert report.multivariate is not None and report.multivariate.auc < 0.55


def test_nsl_kdd_test_set_drifts(
    kdd: dict[str, pd.DataFrame], kdd_profile: ReferenceProfile
) -> None:
    report = detect_drift(kdd_profile, kdd["test"], max_rows=2_000, folds=3)

    assert {"service", "flag", "dst_host_serror_rate"} <= set(report.drifted)
    assert len(report.drifted) >= 5
    assert "num_outbound_cmds" not in report.drifted
    assert report.multivariate is not None and report.multivariate.auc > 0.75
    multivariate = [f for f in report.findings if f.kind == "multivariate-drift"]
    assert multivariate and multivariate[0].severity == Severity.HIGH
