"""False-positive triage: verdicts from labels, clusters and what sets them apart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from threattune.errors import DataError
from threattune.findings import Severity
from threattune.triage import (
    LABEL_ANALYST,
    encode_for_clustering,
    triage_false_positives,
    verdicts_from_labels,
)
from threattune.verdicts import VerdictStore


def _alerts(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Alerts: 300 true positives (scans and floods), 200 false positives in two groups.

    The large false-positive group is a nightly backup: huge byte counts to port 873 over
    tcp. The small one is DNS over udp with ordinary sizes.
    """
    rng = np.random.default_rng(seed)
    tp = pd.DataFrame({
        "bytes": rng.lognormal(6, 1.0, 300), "duration": rng.exponential(1.0, 300),
        "packets": rng.poisson(20, 300).astype(float),
        "proto": rng.choice(["tcp", "icmp"], 300), "port": rng.choice(["80", "22", "445"], 300),
    })  # fmt: skip
    backup = pd.DataFrame({
        "bytes": rng.lognormal(17, 0.3, 150), "duration": rng.exponential(1.0, 150),
        "packets": rng.poisson(20, 150).astype(float),
        "proto": ["tcp"] * 150, "port": ["873"] * 150,
    })  # fmt: skip
    dns = pd.DataFrame({
        "bytes": rng.lognormal(6, 1.0, 50), "duration": rng.exponential(1.0, 50),
        "packets": rng.poisson(20, 50).astype(float),
        "proto": ["udp"] * 50, "port": ["53"] * 50,
    })  # fmt: skip
    features = pd.concat([tp, backup, dns], ignore_index=True)
    verdicts = np.array(["tp"] * 300 + ["fp"] * 200, dtype=object)
    causes = np.array([None] * 300 + ["backup-job"] * 150 + ["dns"] * 50, dtype=object)
    order = rng.permutation(len(features))
    return features.iloc[order].reset_index(drop=True), verdicts[order], causes[order]


def test_triage_finds_the_constructed_false_positive_group_and_its_feature() -> None:
    features, verdicts, causes = _alerts()
    ids = np.array([f"alert-{i}" for i in range(len(features))])

    report = triage_false_positives(
        features, verdicts, ids, categorical=["proto", "port"], max_clusters=6
    )

    assert report.false_positives == 200 and report.true_positives == 300
    largest = report.clusters[0]
    members = {int(i.split("-")[1]) for i in largest.examples}
    assert all(causes[m] == "backup-job" for m in members)
    assert largest.size == 150 and largest.share == pytest.approx(0.75)
    top = [f.name for f in largest.features[:2]]
    assert "bytes" in top or "port" in top
    by_name = {f.name: f for f in largest.features}
    assert by_name["bytes"].effect > 2.0 and by_name["bytes"].ks > 0.9
    assert any(f.name == "port" and f.top_values[0][0] == "873" for f in largest.features)
    assert any(g.size == 50 for g in report.clusters)
    assert report.silhouette


def test_triage_adds_the_analysts_categories_and_reports_findings() -> None:
    features, verdicts, causes = _alerts(seed=1)
    ids = np.array([f"alert-{i}" for i in range(len(features))])

    report = triage_false_positives(
        features, verdicts, ids, categorical=["proto", "port"], root_causes=causes
    )

    assert [(g.name, g.size) for g in report.categories] == [("backup-job", 150), ("dns", 50)]
    dns = report.categories[1]
    assert dns.features[0].name in {"proto", "port"}
    findings = report.findings()
    assert findings[0].severity == Severity.HIGH
    text = report.to_markdown()
    assert "backup-job" in text and "false positives" in text and "|" in text
    assert report.to_dict()["categories"][0]["size"] == 150


def test_triage_without_false_positives_is_empty() -> None:
    features, _, _ = _alerts()
    report = triage_false_positives(
        features, ["tp"] * len(features), [str(i) for i in range(len(features))],
        categorical=["proto", "port"],
    )  # fmt: skip
    assert report.false_positives == 0 and report.groups == [] and report.findings() == []


def test_triage_rejects_misaligned_inputs() -> None:
    features, verdicts, _ = _alerts()
    with pytest.raises(DataError, match="same alerts"):
        triage_false_positives(features, verdicts[:10], [str(i) for i in range(10)])


def test_encoding_uses_the_reference_scale() -> None:
    frame = pd.DataFrame({"bytes": [1.0, 10.0, 100.0], "proto": ["tcp", "udp", "tcp"]})
    matrix = encode_for_clustering(frame.iloc[:1], ["proto"], reference=frame)
    assert matrix.shape == (1, 3) and matrix[0, 0] < 0 and matrix[0, 1:].tolist() == [1.0, 0.0]


def test_verdicts_from_labels_mark_alerts_on_benign_flows_as_false_positives() -> None:
    alerts = pd.DataFrame({
        "alert_id": ["s:0", "s:4", "s:9"], "service": ["http", "private", "ftp_data"],
        "flag": ["SF", "REJ", "SF"],
    })  # fmt: skip

    found = verdicts_from_labels(
        alerts, ["normal", "DoS", "normal"], "normal", model_version="models:/m/3",
        root_cause_columns=["service", "flag"],
    )  # fmt: skip

    assert [v.verdict for v in found] == ["false-positive", "true-positive", "false-positive"]
    assert [v.root_cause for v in found] == ["http/sf", None, "ftp-data/sf"]
    assert [v.extra["true_class"] for v in found] == ["normal", "DoS", "normal"]
    assert all(v.analyst == LABEL_ANALYST and v.model_version == "m/3" for v in found)
    assert found[0].time < found[1].time < found[2].time

    store = VerdictStore("sqlite://")
    assert store.import_records(found).inserted == 3
    assert store.import_records(found).unchanged == 3
    assert store.count(verdict="false-positive") == 2


def test_verdicts_from_labels_with_cluster_ids_and_bad_input() -> None:
    alerts = pd.DataFrame({"alert_id": ["a", "b"]})
    found = verdicts_from_labels(
        alerts, ["BENIGN", "DDoS"], "BENIGN", model_version="m/1", cluster_ids=[3, 0]
    )
    assert [v.root_cause for v in found] == ["cluster-3", None]
    with pytest.raises(DataError, match="one true class per alert"):
        verdicts_from_labels(alerts, ["BENIGN"], "BENIGN", model_version="m/1")
    with pytest.raises(DataError, match="alert_id"):
        verdicts_from_labels(alerts.rename(columns={"alert_id": "id"}), ["x", "y"], "x",
                             model_version="m/1")  # fmt: skip
