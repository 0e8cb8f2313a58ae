"""Training time, and end-to-end scoring throughput and peak memory from CSV, trees beside baseline.

    python benchmarks/scoring_throughput.py [--rows 1000000 4000000] [--workdir /tmp/tt-bench]

Trains the built-in NSL-KDD task (without MLflow), writes CSV files of the given sizes by
repeating KDDTest+ (with a header, as a user's export would have), then scores each file in a
fresh process, once with the boosted trees through ``threattune.scoring.score_file`` and once
with the scikit-learn baseline through the same reader and writer. Each process reports its
wall time and peak resident memory. Results print as Markdown and land in
``benchmarks/results/scoring_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _train(workdir: Path) -> tuple[Path, dict[str, float]]:
    from threattune import tasks, training

    started = time.perf_counter()
    result = training.train(
        tasks.load_task("nsl-kdd"), output_dir=workdir / "nsl-kdd", track=False, register=False
    )
    total = time.perf_counter() - started
    chosen = result.chosen
    return result.model_folder, {
        "train_total_s": total,
        "grid_fits_s": sum(c.seconds for c in result.candidates),
        "grid_size": len(result.candidates),
        "chosen_fit_s": chosen.seconds,
        "chosen_rounds": chosen.rounds,
        "trees_with_choice_s": result.seconds["fit_trees"],
        "baseline_fit_s": result.seconds["fit_baseline"],
    }


def _write_input(rows: int, path: Path) -> None:
    import pandas as pd

    from threattune.catalog import dataset_path
    from threattune.sources.flows import NSL_KDD_COLUMNS, NSL_KDD_FEATURES

    if path.exists():
        return
    block = pd.read_csv(
        dataset_path("nsl-kdd", "KDDTest+.txt"), header=None, names=list(NSL_KDD_COLUMNS)
    )[list(NSL_KDD_FEATURES)]
    with path.open("w") as handle:
        handle.write(",".join(NSL_KDD_FEATURES) + "\n")
        written = 0
        while written < rows:
            part = block.iloc[: rows - written]
            part.to_csv(handle, header=False, index=False)
            written += len(part)


def _score_child(model: str, input_csv: str, output: str, which: str) -> None:
    """Runs in a fresh process: score one file, print seconds, rows and peak memory as JSON."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from threattune.flow_model import FlowModel
    from threattune.scoring import iter_input, score_file

    flow_model = FlowModel.load(Path(model), with_baseline=which == "baseline")
    started = time.perf_counter()
    if which == "trees":
        rows = score_file(flow_model, Path(input_csv), Path(output)).rows
    else:
        rows, writer = 0, None
        for _, batch in iter_input(flow_model, Path(input_csv)):
            features = batch[flow_model.fingerprint.names]
            proba = flow_model.baseline_proba(features)
            decisions = flow_model.decide(proba)
            out = pd.DataFrame(
                {
                    "class": decisions.classes,
                    "score": decisions.scores,
                    "attack_score": decisions.attack_scores,
                }
            )
            table = pa.Table.from_pandas(out, preserve_index=False)
            writer = writer or pacsv.CSVWriter(output, table.schema)
            writer.write_table(table)
            rows += len(out)
        writer.close()
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_rss_mb": peak_mb}))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _memory_gb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/threattune-bench"))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _score_child(*args.child)
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    model, training = _train(args.workdir)
    results = {
        "machine": f"{os.cpu_count()} cores, {_cpu_model()}, {_memory_gb():.0f} GiB, "
        f"Python {platform.python_version()}",
        "command": " ".join(["python", "benchmarks/scoring_throughput.py", *sys.argv[1:]]),
        "training": training,
        "scoring": [],
    }
    for rows in args.rows:
        csv_path = args.workdir / f"flows-{rows}.csv"
        _write_input(rows, csv_path)
        for which in ("trees", "baseline"):
            output = args.workdir / f"scores-{which}-{rows}.csv"
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    str(model),
                    str(csv_path),
                    str(output),
                    which,
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            measured = json.loads(child.stdout.strip().splitlines()[-1])
            measured |= {
                "model": which,
                "file_rows": rows,
                "file_mb": csv_path.stat().st_size / 2**20,
                "flows_per_s": measured["rows"] / measured["seconds"],
            }
            results["scoring"].append(measured)
            print(
                f"{which:9} {rows:>9,} rows: {measured['flows_per_s']:>10,.0f} flows/s, "
                f"peak {measured['peak_rss_mb']:.0f} MB",
                file=sys.stderr,
            )

    out = HERE / "results" / "scoring_throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"machine: {results['machine']}\n")
    print(
        f"training (NSL-KDD, KDDTrain+): {training['train_total_s']:.0f} s in all; boosted "
        f"trees {training['trees_with_choice_s']:.0f} s ({training['grid_size']} settings; the "
        f"chosen one, {training['chosen_rounds']} rounds, {training['chosen_fit_s']:.1f} s); "
        f"baseline {training['baseline_fit_s']:.0f} s\n"
    )
    print("| model | rows | file MB | seconds | flows/s | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for m in results["scoring"]:
        print(
            f"| {m['model']} | {m['file_rows']:,} | {m['file_mb']:.0f} | {m['seconds']:.1f} | "
            f"{m['flows_per_s']:,.0f} | {m['peak_rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
