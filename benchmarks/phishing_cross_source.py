"""Cross-source test of the phishing transformer: train without one phishing source, test on it.

For each held-out source: the grouped split without that source (and without any campaign it
shares with other sources) trains the transformer and the TF-IDF baseline on at most
``--train`` messages; the validation split (also without it) stops training and chooses each
model's operating point (at most 1 % of legitimate validation mail flagged); the test set is
every message of the held-out source plus the legitimate mail of the usual test split.

    THREATTUNE_DATA=../shared/data python benchmarks/phishing_cross_source.py \\
        --sources phishing_pot nazario_2015_2022 --json benchmarks/results/phishing_cross.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from threattune.models.text import TextClassifier, TextSettings
from threattune.models.text_baseline import TextBaseline, binary_scores, normalise_for_model
from threattune.operating_point import choose_threshold
from threattune.phishing import LEGITIMATE, PHISHING, build_corpus, leave_one_source_out


def _at_point(proba: np.ndarray, valid: np.ndarray, truth: np.ndarray, valid_truth: np.ndarray,
              benign: int) -> dict[str, float]:  # fmt: skip
    point = choose_threshold(valid_truth == PHISHING, 1.0 - valid[:, benign], "fpr<=0.01")
    scores = binary_scores(truth == PHISHING, 1.0 - proba[:, benign], point.threshold)
    scores["threshold"] = point.threshold
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", nargs="+", default=["phishing_pot"])
    parser.add_argument("--train", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    corpus = build_corpus(seed=args.seed)
    texts = np.asarray([normalise_for_model(t) for t in corpus.table["text"]], dtype=object)
    labels = corpus.table["label"].astype(str).to_numpy(dtype=object)
    results = {}
    for source in args.sources:
        split = leave_one_source_out(corpus, source, seed=args.seed)
        rng = np.random.default_rng(args.seed)
        train = split.train
        if len(train) > args.train:
            train = np.sort(rng.choice(train, size=args.train, replace=False))
        valid, test = split.validation, split.test
        started = time.perf_counter()
        model = TextClassifier(TextSettings(seed=args.seed)).fit(
            texts[train].tolist(), labels[train].tolist(),
            texts[valid].tolist(), labels[valid].tolist(), progress=True,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        benign = model.classes.index(LEGITIMATE)
        transformer = _at_point(model.predict_proba(texts[test].tolist()),
                                model.predict_proba(texts[valid].tolist()), labels[test],
                                labels[valid], benign)  # fmt: skip
        baseline = TextBaseline(positive=PHISHING, seed=args.seed).fit(
            texts[train].tolist(), labels[train].tolist(),
            validation_texts=texts[valid].tolist(), validation_labels=labels[valid].tolist(),
        )  # fmt: skip
        order = [baseline.classes.index(c) for c in model.classes]
        base = _at_point(baseline.predict_proba(texts[test].tolist())[:, order],
                         baseline.predict_proba(texts[valid].tolist())[:, order], labels[test],
                         labels[valid], benign)  # fmt: skip
        held = corpus.table["source"].to_numpy()[test] == source
        results[source] = {
            "train": len(train), "validation": len(valid), "test": len(test),
            "held_out_messages": int(held.sum()), "fine_tune_seconds": seconds,
            "transformer": transformer, "baseline": base,
        }  # fmt: skip
        print(source, json.dumps(results[source], indent=1), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
