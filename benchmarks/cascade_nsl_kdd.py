"""The two-stage filter, measured honestly on NSL-KDD and CICIDS2017.

NSL-KDD: stage one is trained on KDDTrain+ (the built-in ``nsl-kdd`` task, as
``threattune train nsl-kdd`` trains it, test sets left out). KDDTest+ is the new segment, in
file order: stage one's alerts on its first slice get verdicts from the labels and train stage
two; the rest of KDDTest+ measures stage one alone and the cascade.

CICIDS2017 (the class-capped sample): the 16 files are read and split per label, seeded, into
a training part (``--cic-train-fraction``) for stage one, a holdout run of the built-in task's
reader with depth 6; the rest is the segment, ordered by the flows' Timestamp (``--cic-order
time``) or shuffled with the seed (``shuffled``). Parts are written to a temporary folder
outside the repository and removed afterwards.

    python benchmarks/cascade_nsl_kdd.py [--nsl-kdd-model DIR] [--quick]
        [--min-class-verdicts N]

Stage two's threshold is chosen on out-of-fold scores of its own training verdicts
(``--threshold-folds 0``: on their 30 % validation part), the recall guard's floors on stage
one's validation split; the measured slice chooses nothing.
``--min-class-verdicts 0`` turns the recall guard off (the filter as it was first reported).
``benchmarks/cascade_cicids2017.py`` repeats the CICIDS2017 run over several seeds.

Prints a Markdown table: flows, attacks, alerts, false positives and recall before and after
stage two, the share of false positives removed and the recall points lost, with 95 % Wilson
intervals.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from threattune import training
from threattune.cascade import (
    DEFAULT_MIN_CLASS_VERDICTS,
    DEFAULT_THRESHOLD_FOLDS,
    CascadeEvaluation,
    Segment,
    cascade_from_labels,
    load_segment,
)
from threattune.catalog import dataset_path
from threattune.flow_model import FlowModel
from threattune.sources.flows import CICFLOWMETER_IDENTIFIERS
from threattune.tasks import BUILTIN_TASKS

QUICK_MODEL = {"max_depth": 6, "class_weight": "none", "max_rounds": 100}


def add_threshold_folds(parser: argparse.ArgumentParser) -> None:
    """The option that says where stage two's threshold is chosen."""
    parser.add_argument(
        "--threshold-folds", type=int, default=DEFAULT_THRESHOLD_FOLDS,
        help="stage two's threshold on out-of-fold scores over this many folds; 0: on the "
        "30 %% validation part alone",
    )  # fmt: skip


def nsl_kdd(args: argparse.Namespace, work: Path) -> tuple[CascadeEvaluation, dict]:
    task = replace(BUILTIN_TASKS["nsl-kdd"], tests={})
    if args.quick:
        task = replace(task, model=dict(QUICK_MODEL))
    if args.nsl_kdd_model:
        folder = Path(args.nsl_kdd_model)
    else:
        folder = training.train(task, output_dir=work / "nsl-kdd", track=False).model_folder
    model = FlowModel.load(folder, with_baseline=False)
    segment = load_segment(model, dataset_path("nsl-kdd", "KDDTest+.txt"))
    cascade, evaluation, _ = cascade_from_labels(
        model, segment, first_slice=args.first_slice, recall_budget=args.recall_budget,
        root_cause_columns=["service", "flag"], seed=args.seed,
        min_class_verdicts=args.min_class_verdicts, threshold_folds=args.threshold_folds,
    )  # fmt: skip
    evaluation.dataset = f"NSL-KDD (KDDTest+ after first {args.first_slice:.0%})"
    return evaluation, cascade.manifest


def cicids_segment(
    seed: int, train_fraction: float, order: str, work: Path, quick: bool
) -> tuple[FlowModel, Segment]:
    """Stage one trained on a stratified part of the CICIDS2017 sample; the rest as a segment.

    ``order`` is ``time`` (by the flows' Timestamp) or ``shuffled`` (with ``seed``). Files and
    the model go to ``work``, which should be one folder per seed and train fraction.
    """
    base = BUILTIN_TASKS["cicids2017"]
    raw = pd.concat(
        [pd.read_csv(base.resolve(reference), low_memory=False) for reference in base.train],
        ignore_index=True,
    )
    train_rows, rest_rows = training.stratified_split(
        raw["Label"].to_numpy(), 1.0 - train_fraction, seed
    )
    rest = raw.iloc[rest_rows]
    if order == "time":
        stamps = pd.to_datetime(rest["Timestamp"], errors="coerce", format="mixed")
        rest = rest.iloc[np.argsort(stamps.to_numpy(), kind="stable")]
    else:
        rest = rest.sample(frac=1.0, random_state=seed)
    # exact repeats once identifiers are gone, kept once (the first seen), as training does
    keyed = rest.drop(columns=[c for c in CICFLOWMETER_IDENTIFIERS if c in rest.columns])
    rest = rest[~keyed.astype(str).duplicated().to_numpy()]
    work.mkdir(parents=True, exist_ok=True)
    train_file = work / "cicids-train.csv"
    segment_file = work / f"cicids-segment-{order}.csv"
    if not train_file.exists():
        raw.iloc[train_rows].to_csv(train_file, index=False)
    rest.to_csv(segment_file, index=False)

    folder = work / "cicids" / "model" / "manifest.json"
    if folder.exists():
        model = FlowModel.load(folder.parent, with_baseline=False)
    else:
        task = replace(
            base, train=(str(train_file),), evaluation="holdout", tests={},
            model=dict(QUICK_MODEL) if quick else {"max_depth": 6},
        )  # fmt: skip
        result = training.train(task, output_dir=work / "cicids", track=False)
        model = FlowModel.load(result.model_folder, with_baseline=False)
    return model, load_segment(model, segment_file)


def cicids(args: argparse.Namespace, work: Path, order: str) -> tuple[CascadeEvaluation, dict]:
    model, segment = cicids_segment(args.seed, args.cic_train_fraction, order, work, args.quick)
    cascade, evaluation, _ = cascade_from_labels(
        model, segment, first_slice=args.cic_first_slice, recall_budget=args.recall_budget,
        seed=args.seed, min_class_verdicts=args.min_class_verdicts,
        threshold_folds=args.threshold_folds,
    )  # fmt: skip
    evaluation.dataset = (
        f"CICIDS2017 ({1 - args.cic_train_fraction:.0%} held out, {order} order, after "
        f"first {args.cic_first_slice:.0%})"
    )
    return evaluation, cascade.manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nsl-kdd-model", help="an NSL-KDD model folder to reuse")
    parser.add_argument("--quick", action="store_true", help="one small setting, no grid")
    parser.add_argument("--first-slice", type=float, default=0.3)
    parser.add_argument("--recall-budget", type=float, default=0.01)
    parser.add_argument("--cic-train-fraction", type=float, default=0.4)
    parser.add_argument("--cic-first-slice", type=float, default=0.5)
    parser.add_argument("--cic-order", choices=["time", "shuffled", "both"], default="both")
    parser.add_argument("--skip", choices=["nsl-kdd", "cicids2017"], action="append", default=[])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--min-class-verdicts", type=int, default=DEFAULT_MIN_CLASS_VERDICTS,
        help="recall guard: true-positive verdicts a stage-one class needs to be filtered "
        "freely; 0 turns the guard off",
    )  # fmt: skip
    add_threshold_folds(parser)
    parser.add_argument("--work", help="folder for models and parts (default: a temporary one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="threattune-cascade-") as scratch:
        work = Path(args.work) if args.work else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        runs = []
        if "nsl-kdd" not in args.skip:
            runs.append(("nsl-kdd", lambda: nsl_kdd(args, work)))
        if "cicids2017" not in args.skip:
            orders = ["time", "shuffled"] if args.cic_order == "both" else [args.cic_order]
            for order in orders:
                runs.append((f"cicids2017-{order}", lambda o=order: cicids(args, work, o)))
        for name, run in runs:
            started = time.perf_counter()
            evaluation, manifest = run()
            rows.append(evaluation.markdown_row())
            v = manifest["validation"]
            guard = manifest.get("recall_guard") or {}
            notes.append(
                f"- {name}: stage two trained on {manifest['training']['verdicts']} verdicts "
                f"({manifest['training']['false_positives']} FPs), threshold "
                f"{v['threshold']:.4g}; recall guard "
                + (
                    f"on unfamiliar classes {', '.join(guard['unfamiliar_classes']) or 'none'}, "
                    f"{evaluation.kept_by_guard} measured alerts kept by it"
                    if guard
                    else "off"
                )
                + f"; {time.perf_counter() - started:.0f} s"
            )

    print(f"Recall budget {args.recall_budget:.0%} of stage-one true positives; 95 % Wilson "
          "intervals.\n")  # fmt: skip
    print(CascadeEvaluation.markdown_header())
    print("\n".join(rows))
    print()
    print("\n".join(notes))


if __name__ == "__main__":
    main()
