"""Small flow inputs for the flow-pipeline tests.

Real flows are sliced at run time from the datasets under ``THREATTUNE_DATA`` and written into
the test's own temporary folder; synthetic flows are built here with a fixed seed. Nothing in
this module holds dataset content.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from threattune.tasks import FlowTask

# One boosted-trees setting, small enough that a fit on a few thousand flows takes a second.
SMALL_MODEL: dict[str, Any] = {"max_depth": 4, "class_weight": "none", "max_rounds": 30}

NSL_KDD_TRAIN = "KDDTrain+.txt"
NSL_KDD_TEST = "KDDTest+.txt"

# The attack names that occur in the NSL-KDD test files only, never in KDDTrain+.
NSL_KDD_TEST_ONLY_ATTACKS = {
    "apache2": "DoS", "mailbomb": "DoS", "processtable": "DoS", "udpstorm": "DoS",
    "mscan": "Probe", "saint": "Probe",
    "named": "R2L", "sendmail": "R2L", "snmpgetattack": "R2L", "snmpguess": "R2L",
    "worm": "R2L", "xlock": "R2L", "xsnoop": "R2L",
    "httptunnel": "U2R", "ps": "U2R", "sqlattack": "U2R", "xterm": "U2R",
}  # fmt: skip


def nsl_kdd_lines(data_root: Path, count: int, *, source: str = NSL_KDD_TRAIN) -> list[str]:
    """The first ``count`` lines of an NSL-KDD file, each with its line ending."""
    lines: list[str] = []
    with (data_root / "nsl-kdd" / source).open(encoding="utf-8") as handle:
        for line in handle:
            if len(lines) == count:
                break
            lines.append(line if line.endswith("\n") else line + "\n")
    return lines


def write_lines(path: Path, lines: Sequence[str]) -> Path:
    """Write text lines (with their endings) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="utf-8")
    return path


def write_nsl_kdd_slice(
    data_root: Path, path: Path, count: int, *, source: str = NSL_KDD_TRAIN
) -> Path:
    """Copy the first ``count`` lines of an NSL-KDD file to ``path`` (a temporary folder)."""
    return write_lines(path, nsl_kdd_lines(data_root, count, source=source))


def replace_field(line: str, position: int, value: str) -> str:
    """``line`` with its comma-separated field at ``position`` replaced by ``value``."""
    fields = line.rstrip("\n").split(",")
    fields[position] = value
    return ",".join(fields) + "\n"


def nsl_kdd_test_only_lines(data_root: Path) -> list[str]:
    """One line of KDDTest+ for each of the 17 attack names absent from KDDTrain+."""
    wanted = dict.fromkeys(NSL_KDD_TEST_ONLY_ATTACKS)
    found: dict[str, str] = {}
    with (data_root / "nsl-kdd" / NSL_KDD_TEST).open(encoding="utf-8") as handle:
        for line in handle:
            attack = line.rstrip("\n").split(",")[41]
            if attack in wanted and attack not in found:
                found[attack] = line
                if len(found) == len(wanted):
                    break
    return [found[name] for name in wanted if name in found]


def cicflowmeter_rows(data_root: Path, name: str, count: int) -> tuple[list[str], list[list[str]]]:
    """The header and the first ``count`` rows of a CICIDS2017 sample file."""
    path = data_root / "cicids2017-improved-sample" / name
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [row for _, row in zip(range(count), reader, strict=False)]
    return header, rows


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """Write a CSV file with a header row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def user_flows(rows: int = 600, *, seed: int = 0) -> pd.DataFrame:
    """Synthetic labelled flows as a user's export might hold them.

    Columns: ``bytes`` and ``rate`` (numbers), ``proto`` (text categories), ``src`` (IPv4
    addresses), ``seen`` (timestamps), ``session`` (a distinct id per flow) and ``verdict``
    (benign, dos or scan). Each class has a clear signature so that a small model learns it.
    """
    rng = np.random.default_rng(seed)
    verdict = rng.choice(["benign", "dos", "scan"], size=rows, p=[0.5, 0.25, 0.25])
    proto = np.where(verdict == "scan", "icmp", rng.choice(["tcp", "udp"], size=rows))
    return pd.DataFrame(
        {
            "bytes": np.where(verdict == "dos", 5_000, 100) + rng.integers(0, 50, size=rows),
            "rate": rng.random(rows).round(6),
            "proto": proto,
            "src": [f"10.{i % 3}.{i % 250}.{i % 7 + 1}" for i in range(rows)],
            "seen": pd.date_range("2024-03-05 10:00", periods=rows, freq="s").astype(str),
            "session": [f"sess-{i:06d}-{seed}" for i in range(rows)],
            "verdict": verdict,
        }
    )


def small_task(name: str, train: Sequence[str | Path], **settings: Any) -> FlowTask:
    """A task with the small boosted-trees setting and no operating goal unless given."""
    settings.setdefault("model", dict(SMALL_MODEL))
    settings.setdefault("operating_goal", None)
    settings.setdefault("base_dir", Path.cwd())
    return FlowTask(name=name, train=tuple(str(p) for p in train), **settings)


@contextmanager
def single_thread_blas() -> Iterator[None]:
    """Run without BLAS/OpenMP threads: on a busy shared machine the baseline's solver is many
    times slower with two threads fighting for one core than with one thread."""
    with threadpool_limits(limits=1):
        yield


@contextmanager
def tracking_store(folder: Path) -> Iterator[str]:
    """A private SQLite MLflow store in ``folder`` for a module-scoped fixture; chdir there."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(folder)
        yield uri


def env_with_data(data_root: Path) -> dict[str, str]:
    """The process environment with ``THREATTUNE_DATA`` set, for a subprocess."""
    return {**os.environ, "THREATTUNE_DATA": str(data_root)}
