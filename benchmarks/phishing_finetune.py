"""Fine-tuning and inference speed of the phishing transformer, beside the plain ways.

Measures, in one run on this machine:

1. the threattune fine-tune (frozen, cached lower layers run int8; top layer trained; 128
   tokens head and tail; dynamic padding; length-grouped batches; early stopping) on
   ``--train`` messages of the grouped training split: wall time, and test precision, recall,
   F1 and false-positive rate at the operating point chosen on validation (at most 1 % of
   legitimate validation mail flagged);
2. inference on ``--infer`` test messages: the int8 path against plain fp32, messages/s;
3. plain full fine-tuning (every layer trained, fp32, same tokens, same early stopping) against
   the threattune fine-tune on the same ``--compare-train`` messages, F1 on the same test split,
   and full fine-tuning's seconds per message-epoch, which gives its wall time on ``--train``
   messages for the epochs it ran.

    THREATTUNE_DATA=../shared/data python benchmarks/phishing_finetune.py \\
        --json benchmarks/results/phishing_finetune.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from threattune.models.text import TextClassifier, TextSettings
from threattune.models.text_baseline import TextBaseline, binary_scores, normalise_for_model
from threattune.operating_point import choose_threshold
from threattune.phishing import LEGITIMATE, PHISHING, build_corpus


def _measure(proba: np.ndarray, classes: list[str], truth: np.ndarray, valid_proba: np.ndarray,
             valid_truth: np.ndarray) -> dict[str, float]:  # fmt: skip
    """Test measures at the threshold chosen on validation (FPR <= 1 %), and F1 at 0.5."""
    benign = classes.index(LEGITIMATE)
    point = choose_threshold(valid_truth == PHISHING, 1.0 - valid_proba[:, benign], "fpr<=0.01")
    scores = binary_scores(truth == PHISHING, 1.0 - proba[:, benign], point.threshold)
    scores["threshold"] = point.threshold
    scores["f1_at_0.5"] = binary_scores(truth == PHISHING, 1.0 - proba[:, benign], 0.5)["f1"]
    scores["accuracy"] = float(
        ((1.0 - proba[:, benign] >= point.threshold) == (truth == PHISHING)).mean()
    )
    return scores


def _fit(settings: TextSettings, texts: list[str], labels: list[str], valid_texts: list[str],
         valid_labels: list[str]) -> tuple[TextClassifier, float, float]:  # fmt: skip
    """The fitted model, its wall seconds and this process's CPU seconds (all threads)."""
    started, cpu = time.perf_counter(), time.process_time()
    model = TextClassifier(settings).fit(texts, labels, valid_texts, valid_labels, progress=True)
    return model, time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10_000)
    parser.add_argument("--infer", type=int, default=2_000)
    parser.add_argument("--compare-train", type=int, default=1_500)
    parser.add_argument("--compare-validation", type=int, default=1_500)
    parser.add_argument("--compare-epochs", type=int, default=2)
    parser.add_argument("--skip-main", action="store_true")
    parser.add_argument("--skip-compare", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    corpus = build_corpus(seed=args.seed)
    split = corpus.split(seed=args.seed)
    rng = np.random.default_rng(args.seed)
    train = np.sort(rng.choice(split.train, size=min(args.train, len(split.train)), replace=False))
    texts = np.asarray([normalise_for_model(t) for t in corpus.table["text"]], dtype=object)
    labels = corpus.table["label"].astype(str).to_numpy(dtype=object)
    valid, test = split.validation, split.test
    result: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
        },  # fmt: skip
        "messages": {"train": len(train), "validation": len(valid), "test": len(test)},
    }
    settings = TextSettings(seed=args.seed)

    if not args.skip_main:
        started = time.perf_counter()
        baseline = TextBaseline(positive=PHISHING, seed=args.seed).fit(
            texts[train].tolist(), labels[train].tolist(),
            validation_texts=texts[valid].tolist(), validation_labels=labels[valid].tolist(),
        )  # fmt: skip
        base_seconds = time.perf_counter() - started
        order = [baseline.classes.index(c) for c in (LEGITIMATE, PHISHING)]
        result["baseline"] = {
            "seconds": base_seconds,
            "test": _measure(
                baseline.predict_proba(texts[test].tolist())[:, order],
                [LEGITIMATE, PHISHING],
                labels[test],
                baseline.predict_proba(texts[valid].tolist())[:, order],
                labels[valid],
            ),  # fmt: skip
        }
        model, seconds, cpu = _fit(settings, texts[train].tolist(), labels[train].tolist(),
                                   texts[valid].tolist(), labels[valid].tolist())  # fmt: skip
        valid_proba = model.predict_proba(texts[valid].tolist())
        test_proba = model.predict_proba(texts[test].tolist())
        result["threattune"] = {
            "settings": {
                k: getattr(settings, k)
                for k in (
                    "max_length",
                    "trainable_layers",
                    "epochs",
                    "learning_rate",
                    "batch_size",
                    "int8",
                )
            },  # fmt: skip
            "fine_tune_seconds": seconds,
            "fine_tune_cpu_seconds": cpu,
            "history": model.history.to_dict(),
            "test": _measure(test_proba, model.classes, labels[test], valid_proba, labels[valid]),
        }
        print(json.dumps(result["threattune"]["test"], indent=1), flush=True)

        sample = texts[test[: args.infer]].tolist()
        speeds = {}
        for name, int8 in (("int8", True), ("fp32", False)):
            model.predict_proba(sample[:64], int8=int8)  # warm up (and quantise once)
            started = time.perf_counter()
            proba = model.predict_proba(sample, int8=int8)
            elapsed = time.perf_counter() - started
            phishing = proba[:, model.classes.index(PHISHING)].tolist()
            speeds[name] = {"messages": len(sample), "seconds": elapsed,
                            "messages_per_second": len(sample) / elapsed,
                            "phishing": phishing}  # fmt: skip
        agree = np.mean(
            (np.asarray(speeds["int8"].pop("phishing")) >= 0.5)
            == (np.asarray(speeds["fp32"].pop("phishing")) >= 0.5)
        )
        result["inference"] = {**speeds, "decisions_agree": float(agree)}
        print(json.dumps(result["inference"], indent=1), flush=True)

    if not args.skip_compare:
        small = np.sort(rng.choice(train, size=min(args.compare_train, len(train)), replace=False))
        small_valid = np.sort(rng.choice(valid, size=min(args.compare_validation, len(valid)),
                                         replace=False))  # fmt: skip
        compare = {}
        for name, chosen in (
            ("threattune", replace(settings, epochs=args.compare_epochs)),
            ("full", replace(settings, epochs=args.compare_epochs, trainable_layers=None,
                             learning_rate=5e-5, head_learning_rate=1e-3, int8=False)),
        ):  # fmt: skip
            model, seconds, cpu = _fit(
                chosen, texts[small].tolist(), labels[small].tolist(),
                texts[small_valid].tolist(), labels[small_valid].tolist(),
            )  # fmt: skip
            valid_proba = model.predict_proba(texts[small_valid].tolist(), int8=chosen.int8)
            test_proba = model.predict_proba(texts[test].tolist(), int8=chosen.int8)
            epochs_run = len(model.history.epochs)
            compare[name] = {
                "fine_tune_seconds": seconds,
                "fine_tune_cpu_seconds": cpu,
                "epochs_run": epochs_run,
                "seconds_per_message_epoch": model.history.train_seconds
                / (len(small) * epochs_run),
                "history": model.history.to_dict(),
                "test": _measure(
                    test_proba, model.classes, labels[test], valid_proba, labels[small_valid]
                ),  # fmt: skip
            }
            print(name, json.dumps(compare[name]["test"], indent=1), flush=True)
        full = compare["full"]
        full["extrapolated_seconds_on_train"] = (
            full["seconds_per_message_epoch"] * len(train) * full["epochs_run"]
        )
        result["comparison"] = {"train": len(small), "validation": len(small_valid), **compare}

    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
