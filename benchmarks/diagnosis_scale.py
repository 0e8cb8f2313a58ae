"""Time and peak memory of a diagnosis of 1,000,000 flows x 80 features (synthetic).

Trains a small model on 20,000 synthetic flows, writes a 1,000,000-row segment (Parquet) whose
traffic has shifted, diagnoses it and prints one Markdown table row. Nothing is downloaded.

    python benchmarks/diagnosis_scale.py [--rows 1000000] [--features 80] [--folder /tmp/bench]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from threattune import training
from threattune.diagnosis import diagnose
from threattune.tasks import FlowTask


def synthetic_flows(rows: int, features: int, *, shift: float, seed: int) -> pd.DataFrame:
    """Log-normal numeric features, one protocol column and a benign/dos/scan label."""
    rng = np.random.default_rng(seed)
    label = rng.choice(["benign", "dos", "scan"], size=rows, p=[0.7, 0.2, 0.1])
    level = np.select([label == "dos", label == "scan"], [1.5, -1.0], 0.0)
    columns = {}
    for j in range(features - 1):
        mean = level * (1 if j % 3 == 0 else 0) + (shift if j % 10 == 0 else 0.0)
        columns[f"f{j:02d}"] = rng.lognormal(mean, 1.0, rows).astype(np.float32).round(3)
    columns["proto"] = rng.choice(["tcp", "udp", "icmp"], size=rows, p=[0.7, 0.25, 0.05])
    columns["verdict"] = label
    return pd.DataFrame(columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=80)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/threattune-diagnosis-bench"))
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)

    train = args.folder / "train.csv"
    synthetic_flows(20_000, args.features, shift=0.0, seed=0).to_csv(train, index=False)
    task = FlowTask(
        name="bench",
        reader="table",
        train=(str(train),),
        label_column="verdict",
        model={"max_depth": 4, "class_weight": "none", "max_rounds": 20},
        operating_goal=None,
        base_dir=args.folder,
    )
    model = training.train(task, output_dir=args.folder / "run", track=False).model_folder
    segment = args.folder / "segment.parquet"
    frame = synthetic_flows(args.rows, args.features, shift=0.5, seed=1)
    frame.drop(columns="verdict").to_parquet(segment, index=False)
    del frame

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = diagnose(model, None, segment)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result.write(args.folder / "diagnosis")

    print("| rows | features | rows diagnosed | seconds | peak RSS MiB | findings > info |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {result.rows_read:,} | {args.features} | {result.rows_diagnosed:,} | {seconds:.1f} "
        f"| {peak:,.0f} (before: {before / 1024:,.0f}) | {len(result.above())} |"
    )
    print("stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()))


if __name__ == "__main__":
    main()
