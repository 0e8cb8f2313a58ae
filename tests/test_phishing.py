"""The phishing corpus on the first messages of each real source, its splits and the era check."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from threattune.era import EraResult, era_features, header_artefacts, measure_era
from threattune.errors import ConfigError
from threattune.findings import Severity
from threattune.models.text_baseline import TextBaseline
from threattune.phishing import (
    CACHE_ENV,
    LEGITIMATE,
    PHISHING,
    SOURCES,
    SPAM,
    PhishingCorpus,
    build_corpus,
    leave_one_source_out,
)
from threattune.sources.mail import parse_message

PER_SOURCE = 200
PHISHING_SOURCES = ("nazario_2004_2005", "nazario_text", "nazario_2015_2022", "phishing_pot")


@pytest.fixture(scope="module")
def cache(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("cache")
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous


@pytest.fixture(scope="module")
def corpus(cache: Path) -> PhishingCorpus:
    return build_corpus(max_per_source=PER_SOURCE)


def test_labels_and_counts(corpus: PhishingCorpus) -> None:
    table = corpus.table
    assert set(table["label"]) == {PHISHING, LEGITIMATE}
    assert set(table["source"]) == {source.name for source in SOURCES}
    assert table["id"].is_unique
    assert (table["text"].str.len() > 0).all()

    kept = table.groupby(["source", "label"]).size()
    counts = corpus.counts
    assert (counts.loc[kept.index, "kept"].to_numpy() == kept.to_numpy()).all()
    assert (counts["parsed"] >= counts["kept"]).all()
    assert (counts.groupby("source")["parsed"].sum() <= PER_SOURCE).all()
    for source in PHISHING_SOURCES:
        assert set(table.loc[table["source"] == source, "label"]) == {PHISHING}


def test_years_follow_each_source(corpus: PhishingCorpus) -> None:
    years = corpus.table.groupby("source")["year"]
    assert years.min()["nazario_2015_2022"] >= 2015
    assert years.max()["nazario_2015_2022"] <= 2022
    assert years.min()["phishing_pot"] >= 2019
    assert set(corpus.table.loc[corpus.table["source"] == "spamassassin", "year"]) == {2002}
    assert corpus.table.loc[corpus.table["source"] == "nazario_text", "year"].isna().all()
    assert years.max()["enron"] <= 2005


def test_exact_duplicates_are_dropped(corpus: PhishingCorpus) -> None:
    assert not corpus.table["text"].str.lower().duplicated().any()
    dropped = corpus.counts.loc[("nazario_2004_2005", PHISHING), "duplicates_dropped"]
    assert dropped > 0


def test_text_only_sources_keep_no_header_signals(corpus: PhishingCorpus) -> None:
    table = corpus.table
    text_only = table["source"].isin(["enron", "nazario_text", "nazario_2015_2022"])
    assert not table.loc[text_only, "hdr_present"].any()
    assert table.loc[~text_only, "hdr_present"].all()
    assert (table.loc[table["source"] == "phishing_pot", "hdr_received_hops"] > 0).mean() > 0.9


def test_skipped_messages_are_findings(corpus: PhishingCorpus) -> None:
    kinds = {finding.kind for finding in corpus.findings}
    assert "mailbox-pseudo-message" in kinds
    assert corpus.counts["skipped"].sum() >= 1


def test_grouped_split_keeps_campaigns_whole(corpus: PhishingCorpus) -> None:
    split = corpus.split(test_fraction=0.2, validation_fraction=0.1, seed=1)
    campaigns = corpus.table["campaign"].to_numpy()
    assert split.spanning(campaigns) == 0
    assert len(split.train) + len(split.validation) + len(split.test) == len(corpus)
    for part in (split.train, split.validation, split.test):
        assert set(corpus.labels[part]) == {PHISHING, LEGITIMATE}


def test_second_build_reads_the_cache(corpus: PhishingCorpus) -> None:
    started = time.perf_counter()
    again = build_corpus(max_per_source=PER_SOURCE)
    assert time.perf_counter() - started < 10
    pd.testing.assert_frame_equal(again.table, corpus.table)
    pd.testing.assert_frame_equal(again.counts, corpus.counts)


def test_spam_is_a_third_class_on_request(cache: Path) -> None:
    corpus = build_corpus(max_per_source=100, include_spam=True, sources=["spamassassin"])
    assert set(corpus.table["label"]) == {LEGITIMATE, SPAM}
    assert corpus.counts.loc[("spamassassin", SPAM), "kept"] > 0


def test_unknown_source_is_refused(cache: Path) -> None:
    with pytest.raises(ConfigError):
        build_corpus(sources=["nowhere"])


def test_leave_one_source_out(corpus: PhishingCorpus) -> None:
    split = leave_one_source_out(corpus, "phishing_pot", seed=0)
    sources = corpus.table["source"].to_numpy()
    held = np.flatnonzero(sources == "phishing_pot")

    assert "phishing_pot" not in set(sources[split.train])
    assert "phishing_pot" not in set(sources[split.validation])
    assert set(held) <= set(split.test.tolist())
    assert set(corpus.labels[split.test]) == {PHISHING, LEGITIMATE}
    assert set(sources[split.test][corpus.labels[split.test] == PHISHING]) == {"phishing_pot"}
    assert split.spanning(corpus.table["campaign"].to_numpy()) == 0
    with pytest.raises(ConfigError):
        leave_one_source_out(corpus, "enron")


def test_era_features_never_read_the_body(corpus: PhishingCorpus) -> None:
    table = corpus.table
    features = era_features(table)
    scrambled = table.assign(
        text="completely different words", subject="other", url_count=99, html=False
    )
    pd.testing.assert_frame_equal(era_features(scrambled), features)
    without_text = table.drop(columns=["text", "subject", "url_count", "html"])
    pd.testing.assert_frame_equal(era_features(without_text), features)
    assert features["year"].notna().mean() > 0.7


def test_header_artefacts_ignore_headers_written_in_the_body() -> None:
    raw = (
        b"From: a@b.example\nSubject: hi\nMessage-ID: <1.2@b.example>\n\n"
        b"X-Mailer: not a header\nDKIM-Signature: nor this\n"
    )
    artefacts = header_artefacts(message_from_bytes(raw, policy=policy.default))
    assert artefacts["hdr_x_mailer"] is False
    assert artefacts["hdr_dkim_signature"] is False
    assert artefacts["hdr_count"] == 3
    assert parse_message(raw).text.startswith("X-Mailer")


def test_measure_era(corpus: PhishingCorpus) -> None:
    split = corpus.split(seed=0)
    table = corpus.table
    baseline = TextBaseline(c_grid=(1.0,), min_df=2).fit(
        table["text"].iloc[split.train].tolist(),
        corpus.labels[split.train],
        validation_texts=table["text"].iloc[split.validation].tolist(),
        validation_labels=corpus.labels[split.validation],
    )
    result = measure_era(corpus, split, baseline=baseline)

    assert isinstance(result, EraResult)
    assert 0 <= result.era_f1 <= 1
    assert 0.5 <= result.era_auc <= 1
    assert 0 <= result.headers_f1 <= 1
    assert result.baseline_f1_all is not None
    assert result.year_matched.window == 0
    assert set(result.year_matched.years) <= set(result.era_window.years)
    assert result.era_window.messages >= result.year_matched.messages
    assert result.findings[0].kind == "era-confound"
    if result.era_f1 >= 0.9:
        assert result.findings[0].severity == Severity.HIGH
    assert result.importance
    assert result.to_dict()["findings"][0]["kind"] == "era-confound"
