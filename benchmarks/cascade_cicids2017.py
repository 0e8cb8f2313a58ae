"""The two-stage filter on CICIDS2017 over several seeds, with and without the recall guard.

Each seed draws its own stratified part of the class-capped sample to train stage one (a
holdout run of the built-in task's reader, depth 6; ``--quick``: one setting of at most 100
rounds) and keeps the rest, in capture-time order, as the segment. Stage one's alerts on the
first half of the segment get verdicts from the labels and train stage two, whose threshold is
chosen on out-of-fold scores of those verdicts; the recall guard's floors come from stage
one's validation split. The second half is measured once, first with the guard off
(``min_class_verdicts=0``, the filter as first reported), then with it on.

    python benchmarks/cascade_cicids2017.py --quick [--seeds 42,0,1,2] [--goal "fpr<=0.05"]
        [--json out.json]

``--goal`` moves stage one's operating point (``threattune threshold``, chosen on stage one's
validation split) before the segment is scored: the model's own point by default, a
recall-oriented one such as ``fpr<=0.05`` to let stage one raise more alerts for stage two to
filter.

A seed whose first half holds fewer than 10 false positives trains no stage two; it is listed
and left out of the pooled rows. Pooled rows add up the counts of the seeds that trained one;
the seeds share flows, so their Wilson intervals are narrower than independent samples would
give.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from cascade_nsl_kdd import add_threshold_folds, cicids_segment

from threattune.cascade import (
    DEFAULT_MIN_CLASS_VERDICTS,
    CascadeEvaluation,
    cascade_from_labels,
)
from threattune.errors import DataError
from threattune.flow_model import FlowModel
from threattune.tuning import choose_operating_point

COUNTS = (
    "flows", "attacks", "alerts_before", "alerts_after", "false_positives_before",
    "false_positives_after", "true_positives_before", "true_positives_after", "kept_by_guard",
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="42,0,1,2,3,4,5,6,7,8,9")
    parser.add_argument("--quick", action="store_true", help="one small setting, no grid")
    parser.add_argument("--train-fraction", type=float, default=0.4)
    parser.add_argument("--first-slice", type=float, default=0.5)
    parser.add_argument("--recall-budget", type=float, default=0.01)
    parser.add_argument("--min-class-verdicts", type=int, default=DEFAULT_MIN_CLASS_VERDICTS)
    add_threshold_folds(parser)
    parser.add_argument("--goal", help="stage one's operating point, e.g. fpr<=0.05")
    parser.add_argument("--work", help="folder for models and parts (default: a temporary one)")
    parser.add_argument("--json", help="write every seed's counts and settings here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    guards = {"guard off": 0, "guard on": args.min_class_verdicts}
    rows: dict[str, list[CascadeEvaluation]] = {name: [] for name in guards}
    records, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="threattune-cascade-cic-") as scratch:
        work = Path(args.work) if args.work else Path(scratch)
        for seed in (int(s) for s in args.seeds.split(",")):
            started = time.perf_counter()
            folder = work / f"seed-{seed}-train-{args.train_fraction:g}"
            model, segment = cicids_segment(seed, args.train_fraction, "time", folder, args.quick)
            if args.goal:
                choose_operating_point(str(model.folder), args.goal, output=folder / "point")
                model = FlowModel.load(model.folder, with_baseline=False)
            for name, minimum in guards.items():
                try:
                    cascade, evaluation, _ = cascade_from_labels(
                        model, segment, first_slice=args.first_slice,
                        recall_budget=args.recall_budget, seed=seed,
                        min_class_verdicts=minimum, threshold_folds=args.threshold_folds,
                    )  # fmt: skip
                except DataError as error:
                    skipped.append(f"seed {seed}: {error.message} ({error.found})")
                    break
                evaluation.dataset = f"seed {seed}, {name}"
                rows[name].append(evaluation)
                guard = cascade.manifest.get("recall_guard") or {}
                records.append({
                    "seed": seed, "guard": name, "goal": args.goal,
                    "threshold_folds": args.threshold_folds, "evaluation": evaluation.to_dict(),
                    "stage_two_threshold": cascade.threshold,
                    "training_false_positives": cascade.manifest["training"]["false_positives"],
                    "unfamiliar_classes": guard.get("unfamiliar_classes"),
                    "floors": guard.get("floors"),
                })  # fmt: skip
            logging.getLogger(__name__).warning(
                "seed %d done in %.0f s", seed, time.perf_counter() - started
            )

    point = f"stage one at {args.goal}" if args.goal else "stage one at its own operating point"
    print(f"{point}. Recall budget {args.recall_budget:.0%} of stage-one true positives; guard on: "
          f"min_class_verdicts {args.min_class_verdicts}; 95 % Wilson intervals.\n")  # fmt: skip
    print(CascadeEvaluation.markdown_header())
    for name in guards:
        for evaluation in rows[name]:
            print(evaluation.markdown_row())
    for name in guards:
        if rows[name]:
            pooled = CascadeEvaluation(
                dataset=f"**pooled, {name}** ({len(rows[name])} seeds)",
                **{key: sum(getattr(e, key) for e in rows[name]) for key in COUNTS},
            )
            print(pooled.markdown_row())
    for line in skipped:
        print(f"- no stage two for {line}")
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
