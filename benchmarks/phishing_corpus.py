"""Phishing corpus counts, the TF-IDF baseline, the era check and cross-source results.

    THREATTUNE_DATA=../shared/data python benchmarks/phishing_corpus.py [--json out.json]
        [--max-per-source N] [--skip-cross-source] [--skip-spam-model]

Builds the corpus without and with spam (parsing once, then from the cache), prints messages
per source and label, years per source and campaign statistics, fits the TF-IDF baseline on
the campaign-grouped split (C chosen on validation) and scores test at threshold 0.5, measures
the era-only model, and for each phishing source trains without it and tests on it. Every
phase prints its wall time. Results print as Markdown; ``--json`` also writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threattune.campaigns import Split
from threattune.era import measure_era
from threattune.models.text_baseline import TextBaseline, binary_scores
from threattune.phishing import PHISHING, PhishingCorpus, build_corpus, leave_one_source_out


def _timed(results: dict[str, Any], name: str, started: float) -> None:
    seconds = round(time.perf_counter() - started, 1)
    results.setdefault("wall_s", {})[name] = seconds
    print(f"\n_{name}: {seconds} s_")


def _fit(corpus: PhishingCorpus, split: Split) -> TextBaseline:
    table = corpus.table
    return TextBaseline().fit(
        table["text"].iloc[split.train].tolist(),
        corpus.labels[split.train],
        validation_texts=table["text"].iloc[split.validation].tolist(),
        validation_labels=corpus.labels[split.validation],
    )


def _score(corpus: PhishingCorpus, split: Split, model: TextBaseline) -> dict[str, Any]:
    table = corpus.table
    scores = model.positive_proba(table["text"].iloc[split.test].tolist())
    truth = corpus.is_positive()[split.test]
    overall = binary_scores(truth, scores)
    by_source = {}
    sources = table["source"].to_numpy()[split.test]
    labels = corpus.labels[split.test]
    for source, label in sorted(set(zip(sources, labels, strict=True))):
        mine = (sources == source) & (labels == label)
        flagged = float((scores[mine] >= 0.5).mean())
        by_source[f"{source}/{label}"] = {"messages": int(mine.sum()), "flagged": flagged}
    return {"test": overall, "by_source": by_source, "c": model.c, "scores": scores}


def _print_corpus(corpus: PhishingCorpus, results: dict[str, Any], key: str) -> None:
    counts = corpus.counts
    print(f"\n### Corpus ({key}): {len(corpus)} messages\n")
    print(counts.to_string())
    totals = corpus.table["label"].value_counts().to_dict()
    print(f"\nby label: {totals}")
    print(f"\ncampaigns: {json.dumps(corpus.campaign_stats)}")
    kinds: dict[str, int] = {}
    for finding in corpus.findings:
        kinds[finding.kind] = kinds.get(finding.kind, 0) + int(finding.evidence.get("messages", 1))
    print(f"\nfindings (messages per kind): {kinds}")
    years = corpus.years()
    spans = {
        key: ", ".join(f"{y}:{n}" for y, n in zip(group.year, group.messages, strict=True))
        for key, group in years.groupby(["source", "label"])
    }
    print("\nyears per source (year:messages, -1 = unknown):\n")
    for (source, label), span in spans.items():
        print(f"- {source}/{label}: {span}")
    results[key] = {
        "messages": len(corpus),
        "by_label": totals,
        "counts": counts.reset_index().to_dict(orient="records"),
        "campaigns": corpus.campaign_stats,
        "findings": kinds,
        "years": {f"{s}/{lab}": span for (s, lab), span in spans.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--max-per-source", type=int, default=None)
    parser.add_argument("--skip-cross-source", action="store_true")
    parser.add_argument("--skip-spam-model", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("threattune.sources.mail").setLevel(logging.ERROR)
    pd.set_option("display.width", 160)
    results: dict[str, Any] = {}

    started = time.perf_counter()
    corpus = build_corpus(max_per_source=args.max_per_source, seed=args.seed)
    _timed(results, "build_without_spam", started)
    _print_corpus(corpus, results, "without_spam")
    started = time.perf_counter()
    with_spam = build_corpus(max_per_source=args.max_per_source, include_spam=True, seed=args.seed)
    _timed(results, "build_with_spam", started)
    _print_corpus(with_spam, results, "with_spam")

    started = time.perf_counter()
    split = corpus.split(seed=args.seed)
    print(f"\n### Grouped split\n\n{json.dumps(split.stats)}")
    model = _fit(corpus, split)
    baseline = _score(corpus, split, model)
    _timed(results, "baseline_fit_and_score", started)
    print(f"\n### TF-IDF baseline (C={model.c}, validation F1 {model.validation_f1})\n")
    print(json.dumps(baseline["test"], indent=1))
    print(json.dumps(baseline["by_source"], indent=1))
    top = model.top_features(15)
    for label, features in top.items():
        print(f"\ntop {label}: {features}")
    results["baseline"] = {key: value for key, value in baseline.items() if key != "scores"} | {
        "validation_f1": model.validation_f1,
        "top_features": top,
    }

    started = time.perf_counter()
    era = measure_era(corpus, split, baseline_proba=baseline["scores"], seed=args.seed)
    _timed(results, "era", started)
    print("\n### Era-only model\n")
    print(json.dumps(era.to_dict(), indent=1, default=str))
    results["era"] = era.to_dict()

    if not args.skip_spam_model:
        started = time.perf_counter()
        spam_split = with_spam.split(seed=args.seed)
        spam_model = _fit(with_spam, spam_split)
        spam_scores = _score(with_spam, spam_split, spam_model)
        _timed(results, "baseline_with_spam", started)
        print("\n### TF-IDF baseline, three classes (phishing against the rest)\n")
        print(json.dumps(spam_scores["test"], indent=1))
        print(json.dumps(spam_scores["by_source"], indent=1))
        results["baseline_with_spam"] = {
            key: value for key, value in spam_scores.items() if key != "scores"
        }

    if not args.skip_cross_source:
        print("\n### Cross-source: train without one phishing source, test on it\n")
        results["cross_source"] = {}
        phishing_sources = sorted(
            set(corpus.table.loc[corpus.table["label"] == PHISHING, "source"])
        )
        for source in phishing_sources:
            started = time.perf_counter()
            held_split = leave_one_source_out(corpus, source, seed=args.seed)
            held_model = _fit(corpus, held_split)
            held = _score(corpus, held_split, held_model)
            _timed(results, f"cross_source_{source}", started)
            held_out = held["by_source"][f"{source}/{PHISHING}"]
            row = {
                "recall_on_held_out": held_out["flagged"],
                "held_out_messages": held_out["messages"],
                "dropped_shared_campaign": held_split.stats["dropped_shared_campaign"],
                **held["test"],
                "c": held["c"],
            }
            print(f"- {source}: {json.dumps(row)}")
            results["cross_source"][source] = row

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=_plain), encoding="utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


if __name__ == "__main__":
    main()
