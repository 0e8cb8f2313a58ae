"""Diagnosis of a new segment: each kind of finding from a constructed case, none on a twin."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flow_samples import (
    NSL_KDD_TEST,
    NSL_KDD_TEST_ONLY_ATTACKS,
    nsl_kdd_lines,
    single_thread_blas,
    small_task,
    write_lines,
)
from threattune import training
from threattune.diagnosis import diagnose
from threattune.diagnosis.audit import unit_change
from threattune.diagnosis.estimate import label_free_estimate
from threattune.findings import Severity
from threattune.sources.flows import NSL_KDD_COLUMNS

TINY = {"max_depth": 4, "class_weight": "none", "max_rounds": 20}
XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def nsl_model(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small NSL-KDD model trained on 6,000 lines, and the next 3,000 as a twin segment."""
    folder = tmp_path_factory.mktemp("nsl")
    lines = nsl_kdd_lines(data_root, 9_000)
    train = write_lines(folder / "train.txt", lines[:6_000])
    twin = write_lines(folder / "twin.txt", lines[6_000:])
    with single_thread_blas():
        result = training.train(
            small_task("nsl", [train], reader="nsl-kdd", model=dict(TINY), base_dir=folder),
            output_dir=folder / "run",
            track=False,
        )
    return {"model": result.model_folder, "twin": twin, "folder": folder, "lines": lines}


def _frame(lines: list[str]) -> pd.DataFrame:
    rows = [line.rstrip("\n").split(",") for line in lines]
    return pd.DataFrame(rows, columns=list(NSL_KDD_COLUMNS))


def test_identical_segment_has_nothing_above_info(nsl_model: dict) -> None:
    with single_thread_blas():
        result = diagnose(nsl_model["model"], None, nsl_model["twin"])
    assert result.rows_read == 3_000
    assert [f.to_dict() for f in result.above(Severity.INFO)] == []
    assert result.drift is not None and result.drift.drifted == []
    assert result.novelty is not None and result.novelty.rate < 0.1


def test_pipeline_changes_are_named_by_column(nsl_model: dict, tmp_path: Path) -> None:
    frame = _frame(nsl_model["lines"][6_000:])
    frame["src_bytes"] = frame["src_bytes"].astype(float) * 1000
    frame["dst_host_count"] = (frame["dst_host_count"].astype(float) * 0.4).round()
    frame.loc[frame.index % 3 == 0, "service"] = XSS
    frame.loc[frame.index[:40], "hot"] = "unknown"
    frame = frame.rename(columns={"dst_bytes": "dst_byte_count"})
    segment = tmp_path / "segment.csv"
    frame.to_csv(segment, index=False)

    with single_thread_blas():
        result = diagnose(nsl_model["model"], None, segment, multivariate=False)
    by_kind = {(f.kind, f.subject): f for f in result.findings}

    missing = by_kind[("missing-column", "dst_bytes")]
    assert missing.severity == Severity.CRITICAL
    assert missing.evidence["renamed_to"] == "dst_byte_count"
    assert by_kind[("unit-change", "src_bytes")].evidence["factor"].startswith("x1000")
    assert by_kind[("unseen-category", "service")].severity == Severity.HIGH
    assert ("type-change", "hot") in by_kind
    assert "dst_host_count" in result.drift.drifted
    assert by_kind[("feature-drift", "dst_host_count")].severity >= Severity.MEDIUM
    assert result.findings[0].kind == "missing-column"

    page = result.write(tmp_path / "report")
    html = page.read_text(encoding="utf-8")
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
    assert "data:image/png;base64," in html
    assert (tmp_path / "report" / "diagnosis.json").is_file()


def test_novel_attacks_are_counted_and_flagged(nsl_model: dict, data_root: Path) -> None:
    novel = []
    with (data_root / "nsl-kdd" / NSL_KDD_TEST).open(encoding="utf-8") as handle:
        for line in handle:
            if line.split(",")[41] in NSL_KDD_TEST_ONLY_ATTACKS:
                novel.append(line)
            if len(novel) == 400:
                break
    segment = _frame(nsl_model["lines"][6_000:7_600] + novel)

    with single_thread_blas():
        result = diagnose(nsl_model["model"], None, segment, labels="attack", multivariate=False)
    novel_labels = {k: v for k, v in result.novelty.by_label.items() if v["novel"]}
    assert set(novel_labels) <= set(NSL_KDD_TEST_ONLY_ATTACKS) | {"imap", "warezmaster"}
    assert sum(v["rows"] for v in novel_labels.values()) >= 400
    flagged = sum(v["rows"] * v["flag_rate"] for v in novel_labels.values()) / sum(
        v["rows"] for v in novel_labels.values()
    )
    assert flagged > 0.2
    assert any(f.kind == "novel-class" and f.severity >= Severity.MEDIUM for f in result.findings)
    assert result.estimate is not None and result.estimate.true_fpr is not None
    assert result.novelty.examples


def test_evasion_near_the_decision_boundary(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rows = 3_000
    verdict = rng.choice(["benign", "dos"], size=rows)
    train = pd.DataFrame(
        {
            "bytes": np.where(verdict == "dos", rng.uniform(1_001, 3_000, rows),
                              rng.uniform(100, 999, rows)).round(),
            "rate": rng.random(rows).round(4),
            "proto": rng.choice(["tcp", "udp"], size=rows),
            "verdict": verdict,
        }
    )  # fmt: skip
    train.to_csv(tmp_path / "train.csv", index=False)
    segment = train.copy()
    dos = segment["verdict"] == "dos"
    segment.loc[dos, "bytes"] = rng.uniform(1_015, 1_080, int(dos.sum())).round()
    segment.to_csv(tmp_path / "segment.csv", index=False)
    with single_thread_blas():
        result = training.train(
            small_task("synthetic", [tmp_path / "train.csv"], reader="table",
                       label_column="verdict", model=dict(TINY), base_dir=tmp_path),
            output_dir=tmp_path / "run",
            track=False,
        )  # fmt: skip
        diagnosis = diagnose(
            result.model_folder, None, tmp_path / "segment.csv", labels="verdict",
            multivariate=False,
        )  # fmt: skip
    evasion = [f for f in diagnosis.findings if f.kind == "evasion"]
    assert evasion and evasion[0].subject == "dos"
    assert evasion[0].severity >= Severity.MEDIUM
    assert evasion[0].evidence["flip_10"] > 0.5
    assert diagnosis.adversarial.features == ["bytes"]


def test_unit_change_needs_the_whole_distribution_to_move() -> None:
    rng = np.random.default_rng(0)
    seconds = rng.lognormal(0, 1, 1_000)
    assert unit_change(seconds, seconds * 1_000) is not None
    assert unit_change(seconds * 1_000, seconds)[0].startswith("/")
    assert unit_change(seconds, rng.lognormal(0, 1, 1_000)) is None
    assert unit_change(seconds, np.concatenate([seconds, seconds * 1e6])) is None


def test_label_free_estimate_covers_the_truth() -> None:
    rng = np.random.default_rng(1)
    p = rng.beta(0.3, 0.6, 20_000)
    truth = rng.random(20_000) < p
    alerts = p > 0.5
    estimate = label_free_estimate(p, alerts)
    true_fpr = (alerts & ~truth).sum() / (~truth).sum()
    assert estimate.fpr_ci[0] <= true_fpr <= estimate.fpr_ci[1]
    assert estimate.precision_ci[0] <= truth[alerts].mean() <= estimate.precision_ci[1]
