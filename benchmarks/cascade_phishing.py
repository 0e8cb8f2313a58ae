"""The two-stage filter on the phishing model, measured on mail it never trained on.

Stage one is a phishing model as ``threattune train phishing`` writes it (``--model``, default
``runs/phishing-full/model``). The new segment is built from the corpus with the model's seed:

- ``test+unsampled`` (the main rows): the held-out test split (no campaign shared with the
  training or validation split) and the training-split messages that the model's training
  sample left out (never trained on, though they share campaigns with messages that were);
- ``test``: the test split alone.

Messages are ordered by when they were sent: the Date header, else the day Enron-Spam writes
in each file name; undated last. In this corpus every legitimate message (1999-2002) precedes
nearly every phishing message (2004-2025), so one timeline cannot train and measure at once: a
first slice short of the legitimate share holds no phishing to learn from, a longer one leaves
no legitimate mail to measure false positives on. The script shows this on the test split and
then orders each label by its own timeline (``time-per-label``): the first ``--first-slice``
of the legitimate mail and of the phishing, each oldest first, give the verdicts (from the
labels: an alert on legitimate mail is a false positive); the rest, later in each label's
timeline, measures stage one alone and the cascade once. ``--order time-per-source`` orders
each source of the corpus (Enron-Spam, SpamAssassin, each phishing collection) by its own
timeline instead, as a SOC sees all its mail flows at once: every source then gives verdicts
from its older half and is measured on its newer half.

Settings and the split that chose them:
- stage one's threshold: its operating point (at most 1 % of legitimate validation mail
  flagged), and a recall-oriented one, ``fpr<=0.05`` on the validation scores stored with the
  model; both chosen on stage one's validation split;
- stage two's projection, scaling and regularisation: the fit part (70 %) of the first slice's
  verdicts, C by cross-validation within it; its threshold: out-of-fold scores of all the
  first slice's verdicts (5 folds, each scored by a stage two fitted the same way on the
  others; ``--threshold-folds 0``: the other 30 % alone), the highest that drops at most 1 %
  of their true positives at the upper end of its 95 % interval;
- the first slice (0.5) and the recall budget (1 %): fixed in advance;
- the measured slice chooses nothing.

Each message is scored once by stage one (int8, as ``threattune score`` runs it): the scores,
baseline scores and embeddings are kept per message and reused by every row.

    THREATTUNE_DATA=../shared/data python benchmarks/cascade_phishing.py \\
        --model runs/phishing-full/model --json benchmarks/results/cascade_phishing.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from threattune.cascade import (
    DEFAULT_THRESHOLD_FOLDS,
    CascadeEvaluation,
    Segment,
    cascade_from_labels,
    open_stage_one,
    split_segment,
    stage_one_proba,
    stage_one_version,
)
from threattune.errors import DataError
from threattune.mail_cascade import corpus_segment, model_texts
from threattune.mail_model import MailModel
from threattune.operating_point import OperatingPoint, choose_threshold

SEGMENTS = {"test+unsampled": ["test", "unsampled"], "test": ["test"]}


class _Memo:
    """Per-text results of a batch scorer: each message is scored once, whatever the batch."""

    def __init__(self, score: Callable[..., np.ndarray]) -> None:
        self.score = score
        self.known: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str], **options: Any) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.known]
        if missing:
            self.known.update(zip(missing, self.score(missing, **options), strict=True))
        if not texts:
            return self.score([], **options)
        return np.stack([self.known[t] for t in texts])


def _memoise(model: MailModel) -> None:
    model.predict_proba = _Memo(model.predict_proba)  # type: ignore[method-assign]
    model.baseline_proba = _Memo(model.baseline_proba)  # type: ignore[method-assign]
    model.classifier.embed = _Memo(model.classifier.embed)  # type: ignore[method-assign]


def _recall_point(model: MailModel, goal: str) -> OperatingPoint:
    """The threshold meeting ``goal`` on stage one's stored validation scores."""
    labels, proba = model.validation_scores()
    threat = 1.0 - proba[:, model.benign_index]
    return choose_threshold(labels.astype(str) != model.benign_class, threat, goal)


def _composition(segment: Segment, rows: np.ndarray) -> dict[str, Any]:
    part = segment.features.iloc[rows]
    labels = segment.labels[rows]
    times = pd.to_datetime(part["time"], utc=True)
    out: dict[str, Any] = {"messages": len(rows)}
    for label in sorted(set(segment.labels)):
        mine = times[labels == label]
        out[label] = {
            "messages": int((labels == label).sum()),
            "by_source": part["source"][labels == label].value_counts().to_dict(),
            "first": str(mine.min().date()) if mine.notna().any() else None,
            "last": str(mine.max().date()) if mine.notna().any() else None,
            "undated": int(mine.isna().sum()),
        }
    return out


def _one_timeline(model: MailModel, first_slice: float, max_per_source: int | None) -> dict:
    """The test split in one timeline: what a first slice would hold."""
    segment = corpus_segment(model, ["test"], order="time", max_per_source=max_per_source)
    first, rest = split_segment(segment, first_slice)
    legit_share = float((segment.labels != "phishing").mean())
    return {
        "first_slice": first_slice,
        "legitimate_share": legit_share,
        "first": _composition(segment, first),
        "rest": _composition(segment, rest),
    }


def _row(
    model: MailModel,
    segment: Segment,
    name: str,
    point: dict[str, Any],
    args: argparse.Namespace,
    seed: int,
) -> dict[str, Any]:
    model.manifest["operating_point"] = point
    started = time.perf_counter()
    try:
        cascade, evaluation, verdicts = cascade_from_labels(
            model, segment, first_slice=args.first_slice, recall_budget=args.recall_budget,
            root_cause_columns=["source"], seed=seed, threshold_folds=args.threshold_folds,
        )  # fmt: skip
    except DataError as error:
        first, _ = split_segment(segment, args.first_slice)
        alerts = model.decide(stage_one_proba(model, segment.subset(first).features)).alerts
        labels = segment.labels[first]
        return {
            "segment": name, "threshold": point["threshold"], "goal": point["goal_text"],
            "seed": seed, "trained": False, "reason": error.message,
            "first_slice_true_positives": int((alerts & (labels == "phishing")).sum()),
            "first_slice_false_positives": int((alerts & (labels != "phishing")).sum()),
        }  # fmt: skip
    first, rest = split_segment(segment, args.first_slice)
    measured = segment.subset(rest)
    decided = cascade.decide(measured.features)
    legit = measured.labels != "phishing"
    sources = measured.features["source"]
    by_source = {
        source: {
            "before": int((decided.stage_one.alerts & legit & (sources == source)).sum()),
            "after": int((decided.alerts & legit & (sources == source)).sum()),
        }
        for source in sorted(set(sources[legit]))
    }
    manifest = cascade.manifest
    evaluation.dataset = (
        f"{name}, last {1 - args.first_slice:.0%} of each {args.order.removeprefix('time-per-')} "
        f"({point['goal_text']})"
    )
    return {
        "segment": name, "threshold": point["threshold"], "goal": point["goal_text"],
        "seed": seed, "trained": True, "evaluation": evaluation.to_dict(),
        "markdown_row": evaluation.markdown_row(),
        "false_positives_by_source": by_source,
        "training": manifest["training"], "validation": manifest["validation"],
        "regularisation": manifest["regularisation"], "segment_split": manifest["segment"],
        "training_false_positives_by_source": pd.Series(
            [v.root_cause for v in verdicts if v.verdict == "false-positive"]
        ).value_counts().to_dict(),
        "first": _composition(segment, first), "rest": _composition(segment, rest),
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/phishing-full/model")
    parser.add_argument("--first-slice", type=float, default=0.5)
    parser.add_argument("--recall-budget", type=float, default=0.01)
    parser.add_argument(
        "--recall-goal", default="fpr<=0.05",
        help="second stage-one threshold, chosen on its validation scores",
    )  # fmt: skip
    parser.add_argument("--segments", default="test+unsampled,test")
    parser.add_argument(
        "--threshold-folds", type=int, default=DEFAULT_THRESHOLD_FOLDS,
        help="stage two's threshold on out-of-fold scores over this many folds; 0: on the "
        "30 %% validation part alone",
    )  # fmt: skip
    parser.add_argument("--order", choices=["time-per-label", "time-per-source"],
                        default="time-per-label")  # fmt: skip
    parser.add_argument(
        "--seeds", default="0,1,2,3,4,5,6,7,8,9",
        help="seeds of stage two's fit/validation split; the first is reported",
    )  # fmt: skip
    parser.add_argument("--max-per-source", type=int, help="as the model was trained")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model = open_stage_one(args.model)
    _memoise(model)  # type: ignore[arg-type]
    operating = dict(model.operating_point or {})
    recall = _recall_point(model, args.recall_goal).to_dict()  # type: ignore[arg-type]
    points = {"operating point": operating, "recall-oriented": recall}
    results: dict[str, Any] = {
        "model": args.model, "stage_one_version": stage_one_version(model), "points": points,
        "first_slice": args.first_slice, "recall_budget": args.recall_budget,
        "order": args.order, "threshold_folds": args.threshold_folds,
        "machine": f"{platform.processor() or platform.machine()}, torch threads {args.threads}",
    }  # fmt: skip
    results["one_timeline"] = _one_timeline(
        model,  # type: ignore[arg-type]
        args.first_slice,
        args.max_per_source,
    )

    seeds = [int(s) for s in args.seeds.split(",")]
    rows: list[dict[str, Any]] = []
    for name in args.segments.split(","):
        segment = corpus_segment(
            model,  # type: ignore[arg-type]
            SEGMENTS[name],
            order=args.order,
            max_per_source=args.max_per_source,
        )
        scoring = time.perf_counter()
        texts = model_texts(segment.features)
        proba = model.predict_proba(texts)
        loosest = min(p["threshold"] for p in points.values())
        threat = 1.0 - proba[:, model.benign_index]
        alerted = [t for t, s in zip(texts, threat, strict=True) if s >= loosest]
        model.baseline_proba(alerted)
        model.classifier.embed(alerted)
        results.setdefault("scoring_seconds", {})[name] = round(time.perf_counter() - scoring, 1)
        for label, point in points.items():
            for seed in seeds:
                row = _row(model, segment, name, point, args, seed)  # type: ignore[arg-type]
                row["point"] = label
                rows.append(row)
    results["rows"] = rows
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    _print(results, seeds[0])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")


def _print(results: dict[str, Any], seed: int) -> None:
    timeline = results["one_timeline"]
    first = timeline["first"]
    phishing = first.get("phishing", {}).get("messages", 0)
    legitimate = first.get("legitimate", {}).get("messages", 0)
    print(
        f"One timeline (test split): legitimate mail is {timeline['legitimate_share']:.1%} of "
        f"it; the first {timeline['first_slice']:.0%} holds {phishing} phishing and "
        f"{legitimate} legitimate messages.\n"
    )
    print(f"Order {results['order']}, stage two seed {seed}; 95 % Wilson intervals.\n")
    print(CascadeEvaluation.markdown_header("mail"))
    for row in results["rows"]:
        if row["seed"] != seed:
            continue
        if row["trained"]:
            print(row["markdown_row"])
        else:
            print(f"| {row['segment']} ({row['goal']}) | not trained: {row['reason']} "
                  f"({row['first_slice_true_positives']} TP, "
                  f"{row['first_slice_false_positives']} FP verdicts) |")  # fmt: skip
    print("\nOver seeds (pooled counts of the measured slice; the seeds share messages):")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in results["rows"]:
        if row["trained"]:
            groups.setdefault((row["segment"], row["point"]), []).append(row["evaluation"])
    for (segment, point), evaluations in groups.items():
        removed = [e["false_positives_removed"] for e in evaluations]
        lost = [e["recall_points_lost"] for e in evaluations]
        print(f"- {segment}, {point}: {len(evaluations)} seeds, FPs removed "
              f"{min(removed):.1%}-{max(removed):.1%}, recall points lost "
              f"{min(lost):.2f}-{max(lost):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
