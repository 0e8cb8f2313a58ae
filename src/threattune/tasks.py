"""Training tasks: which flows to learn from, which to test on, and how to judge the result.

A task is built in (``nsl-kdd``, ``cicids2017``), read from a YAML task file, or made on the
spot from a user's labelled CSV or Parquet file. A task file looks like::

    name: branch-office-flows
    reader: table              # table (a header row), cicflowmeter or nsl-kdd
    train: [flows/train.csv]   # relative to the task file, or dataset:NAME/FILE
    test:
      march: [flows/march.csv]
    label_column: verdict
    benign_class: benign
    attack_mapping: mapping.yaml   # class -> ATT&CK techniques (optional)
    drop_columns: [session_id]
    evaluation: holdout            # or cross-validation (stratified, 5 folds)
    model:
      max_depth: [6, 10]           # a list is a choice that the validation split makes
    operating_goal: fpr<=0.01      # alert threshold chosen on validation; none = top class

The operating goal is a benign false-positive rate (``fpr<=0.01``), a precision
(``precision>=0.99``) or an alert budget (``alerts<=200/day@5000000``), met on the validation
split; ``none`` keeps the most probable class as the decision.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from threattune import catalog
from threattune.errors import ConfigError
from threattune.sources import flows
from threattune.sources.flows import FlowTable

logger = logging.getLogger(__name__)

__all__ = ["BUILTIN_TASKS", "FlowTask", "load_task", "task_from_table"]

READERS = ("nsl-kdd", "cicflowmeter", "table")
EVALUATIONS = ("holdout", "cross-validation")
BENIGN_NAMES = ("benign", "normal", "legitimate", "ham", "clean")


@dataclass(frozen=True)
class FlowTask:
    """Everything a training run of a flow model needs to know."""

    name: str
    reader: str
    train: tuple[str, ...]
    tests: dict[str, tuple[str, ...]] = field(default_factory=dict)
    label_column: str | None = None
    benign_class: str | None = None
    attack_mapping: str | None = None
    granularity: str = "category"
    drop_columns: tuple[str, ...] = ()
    keep_columns: tuple[str, ...] = ()
    categorical: tuple[str, ...] | None = None
    evaluation: str = "holdout"
    folds: int = 5
    validation_fraction: float = 0.2
    seed: int = 42
    model: dict[str, Any] = field(default_factory=dict)
    operating_goal: str | None = "fpr<=0.01"
    delimiter: str = ","
    description: str = ""
    base_dir: Path = field(default_factory=Path.cwd)

    def __post_init__(self) -> None:
        if self.reader not in READERS:
            raise ConfigError(
                "unknown reader", field="reader", expected=", ".join(READERS), found=self.reader
            )
        if self.evaluation not in EVALUATIONS:
            raise ConfigError(
                "unknown evaluation",
                field="evaluation",
                expected=", ".join(EVALUATIONS),
                found=self.evaluation,
            )
        if self.reader != "nsl-kdd" and not self.label_column:
            raise ConfigError(
                "the task has no label column",
                field="label_column",
                fix="name the column that holds each flow's class (--label-column)",
            )
        if not 0.05 <= self.validation_fraction <= 0.5:
            raise ConfigError(
                "validation fraction out of range",
                field="validation_fraction",
                expected="between 0.05 and 0.5",
                found=str(self.validation_fraction),
            )

    def resolve(self, reference: str) -> Path:
        """A file of the task: ``dataset:NAME/FILE`` through the catalog, else a path."""
        if reference.startswith("dataset:"):
            name, _, relative = reference.removeprefix("dataset:").partition("/")
            return catalog.dataset_path(name, relative)
        path = Path(reference).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def input_format(self) -> dict[str, Any]:
        """How this task's files are read, stored in the model's fingerprint."""
        out: dict[str, Any] = {"reader": self.reader}
        if self.reader == "nsl-kdd":
            out["granularity"] = self.granularity
        else:
            out["label_column"] = self.label_column
        return out

    def load(
        self, references: tuple[str, ...] | None = None, *, deduplicate: bool = True
    ) -> FlowTable:
        """Load the training files, or the given ones, as a labelled flow table.

        ``deduplicate=False`` keeps every row of a CICFlowMeter export, so that row N of the
        table is row N of the file (a segment's alert ids ``FILE:ROW`` rely on it).
        """
        paths = [self.resolve(r) for r in (references or self.train)]
        if self.reader == "nsl-kdd":
            return flows.load_nsl_kdd(paths, granularity=self.granularity)
        if self.reader == "cicflowmeter":
            return flows.load_cicflowmeter(
                paths,
                label_column=self.label_column or flows.CICFLOWMETER_LABEL,
                keep_columns=self.keep_columns,
                delimiter=self.delimiter,
                deduplicate=deduplicate,
            )
        tables = [
            flows.load_labelled_table(
                path,
                label_column=self.label_column or "",
                drop_columns=self.drop_columns,
                categorical=self.categorical,
                delimiter=self.delimiter,
            )
            for path in paths
        ]
        return tables[0] if len(tables) == 1 else _concat(tables)

    def choose_benign(self, classes: list[str]) -> str:
        """The benign class: the task's, or the one class with a benign-sounding name."""
        if self.benign_class is not None:
            if self.benign_class not in classes:
                raise ConfigError(
                    "benign class not among the labels",
                    field="benign_class",
                    expected=", ".join(classes),
                    found=self.benign_class,
                )
            return self.benign_class
        matches = [c for c in classes if c.strip().lower() in BENIGN_NAMES]
        if len(matches) != 1:
            raise ConfigError(
                "cannot tell which class is benign traffic",
                field="benign_class",
                expected="one class named like benign, normal or legitimate",
                found=", ".join(classes),
                fix="pass --benign-class with the label of benign flows",
            )
        return matches[0]


def _concat(tables: list[FlowTable]) -> FlowTable:
    import pandas as pd

    first = tables[0]
    for other in tables[1:]:
        if list(other.features.columns) != list(first.features.columns):
            raise ConfigError("the training files have different columns", path=other.source)
    return FlowTable(
        features=pd.concat([t.features for t in tables], ignore_index=True),
        labels=pd.concat([t.labels for t in tables], ignore_index=True),
        feature_types=first.feature_types,
        context=pd.concat([t.context for t in tables], ignore_index=True),
        dropped=first.dropped,
        findings=[f for t in tables for f in t.findings],
        source=", ".join(t.source for t in tables),
    )


BUILTIN_TASKS: dict[str, FlowTask] = {
    "nsl-kdd": FlowTask(
        name="nsl-kdd",
        reader="nsl-kdd",
        train=("dataset:nsl-kdd/KDDTrain+.txt",),
        tests={
            "KDDTest+": ("dataset:nsl-kdd/KDDTest+.txt",),
            "KDDTest-21": ("dataset:nsl-kdd/KDDTest-21.txt",),
        },
        benign_class="normal",
        attack_mapping="nsl-kdd",
        description="NSL-KDD: five classes (normal, DoS, Probe, R2L, U2R) from KDDTrain+; "
        "KDDTest+ and KDDTest-21 evaluated once, never used to choose a setting",
    ),
    "cicids2017": FlowTask(
        name="cicids2017",
        reader="cicflowmeter",
        train=tuple(
            f"dataset:cicids2017-improved-sample/{name}"
            for name in (
                "BENIGN_5000.csv",
                "Botnet_736.csv",
                "DDoS_5000.csv",
                "DoS_GoldenEye_5000.csv",
                "DoS_Hulk_5000.csv",
                "DoS_Slowhttptest_1740.csv",
                "DoS_Slowloris_3859.csv",
                "FTP-Patator_3972.csv",
                "Heartbleed_11.csv",
                "Infiltration_-_Portscan_5000.csv",
                "Infiltration_36.csv",
                "Portscan_5000.csv",
                "SSH-Patator_2961.csv",
                "Web_Attack_-_Brute_Force_73.csv",
                "Web_Attack_-_SQL_Injection_13.csv",
                "Web_Attack_-_XSS_18.csv",
            )
        ),  # fmt: skip
        label_column="Label",
        benign_class="BENIGN",
        attack_mapping="cicids2017",
        evaluation="cross-validation",
        model={"max_depth": 6},
        description="CICIDS2017 (improved, class-capped sample): 16 labels, stratified 5-fold "
        "cross-validation, identifiers dropped; depth fixed at 6 to keep 16-class fits short",
    ),
}


def load_task(reference: str | Path) -> FlowTask:
    """A built-in task by name, or a YAML task file by path."""
    text = str(reference)
    if text in BUILTIN_TASKS:
        return BUILTIN_TASKS[text]
    path = Path(text)
    if path.suffix.lower() not in {".yaml", ".yml"}:
        close = difflib.get_close_matches(text, BUILTIN_TASKS, n=1)
        raise ConfigError(
            "unknown task",
            field="TASK",
            expected="a built-in task (" + ", ".join(BUILTIN_TASKS) + "), a YAML task file, "
            "or a CSV/Parquet file with --label-column",
            found=text,
            fix=f"did you mean '{close[0]}'?" if close else None,
        )
    if not path.is_file():
        raise ConfigError("task file not found", path=path)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}",
            path=path,
            line=mark.line + 1 if mark else None,
        ) from exc
    return _task_from_spec(spec, path)


def _task_from_spec(spec: Any, path: Path) -> FlowTask:
    if not isinstance(spec, dict):
        raise ConfigError(
            "a task file holds a mapping of settings", path=path, found=type(spec).__name__
        )
    known = {
        "name", "reader", "train", "test", "label_column", "benign_class", "attack_mapping",
        "granularity", "drop_columns", "keep_columns", "categorical", "evaluation", "folds",
        "validation_fraction", "seed", "model", "description", "operating_goal", "delimiter",
    }  # fmt: skip
    unknown = sorted(set(spec) - known)
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        raise ConfigError(
            "unknown setting in task file",
            path=path,
            field=unknown[0],
            expected=", ".join(sorted(known)),
            fix=f"did you mean '{close[0]}'?" if close else None,
        )
    for required in ("train",):
        if required not in spec:
            raise ConfigError("missing setting", path=path, field=required)

    def as_tuple(value: Any, name: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(
            "expected a file or a list of files", path=path, field=name, found=repr(value)
        )

    tests = spec.get("test") or {}
    if isinstance(tests, (str, list)):
        tests = {"test": tests}
    mapping = spec.get("attack_mapping")
    if mapping is not None and str(mapping).endswith((".yaml", ".yml")):
        mapping_path = Path(mapping)
        mapping = str(mapping_path if mapping_path.is_absolute() else path.parent / mapping_path)
    try:
        return FlowTask(
            name=str(spec.get("name", path.stem)),
            reader=spec.get("reader", "table"),
            train=as_tuple(spec["train"], "train"),
            tests={str(k): as_tuple(v, f"test.{k}") for k, v in tests.items()},
            label_column=spec.get("label_column"),
            benign_class=spec.get("benign_class"),
            attack_mapping=mapping,
            granularity=spec.get("granularity", "category"),
            drop_columns=as_tuple(spec.get("drop_columns"), "drop_columns"),
            keep_columns=as_tuple(spec.get("keep_columns"), "keep_columns"),
            categorical=as_tuple(spec["categorical"], "categorical")
            if "categorical" in spec
            else None,
            evaluation=spec.get("evaluation", "holdout"),
            folds=int(spec.get("folds", 5)),
            validation_fraction=float(spec.get("validation_fraction", 0.2)),
            seed=int(spec.get("seed", 42)),
            model=dict(spec.get("model") or {}),
            operating_goal=spec.get("operating_goal", "fpr<=0.01"),
            delimiter=str(spec.get("delimiter", ",")),
            description=str(spec.get("description", "")),
            base_dir=path.parent.resolve(),
        )
    except ConfigError as exc:
        exc.path = exc.path or str(path)
        raise ConfigError(
            exc.message,
            path=path,
            field=exc.field,
            expected=exc.expected,
            found=exc.found,
            fix=exc.fix,
        ) from exc


def task_from_table(
    path: Path,
    *,
    label_column: str,
    benign_class: str | None = None,
    attack_mapping: str | None = None,
    drop_columns: tuple[str, ...] = (),
    delimiter: str = ",",
) -> FlowTask:
    """A task made on the spot from one labelled CSV or Parquet file of a user's flows."""
    path = Path(path).resolve()
    return FlowTask(
        name=path.stem,
        reader="table",
        train=(str(path),),
        label_column=label_column,
        benign_class=benign_class,
        attack_mapping=attack_mapping,
        drop_columns=drop_columns,
        delimiter=delimiter,
        description=f"flows from {path.name}, labelled by column '{label_column}'",
        base_dir=path.parent,
    )
