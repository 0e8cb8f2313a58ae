"""The ``threattune`` command line: parses, calls one function per command, prints.

Errors that threattune raises on purpose print to stderr as ``error: ...`` with where, what was
expected, what was found and the fix, and exit with status 2; nothing else is printed for them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from threattune import __version__
from threattune.errors import ConfigError, ThreatTuneError

app = typer.Typer(
    name="threattune",
    help="Fine-tune threat classifiers for your SOC, and keep them trustworthy in production.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(
    help="The dataset catalog: list, verify and inspect datasets.", no_args_is_help=True
)
attack_app = typer.Typer(
    help="MITRE ATT&CK: class-to-technique mappings and their coverage.", no_args_is_help=True
)
models_app = typer.Typer(
    help="Registered model versions and their aliases in MLflow.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
app.add_typer(attack_app, name="attack")
verdicts_app = typer.Typer(
    help="Analysts' verdicts on alerts: import, list and summarise.", no_args_is_help=True
)
app.add_typer(models_app, name="models")
app.add_typer(verdicts_app, name="verdicts")


def _register_wings() -> None:
    """Commands that live beside the wings they drive."""
    from threattune._cli_cascade import register as register_cascade
    from threattune._cli_diagnose import register as register_diagnose
    from threattune._cli_serve import register as register_serve

    register_diagnose(app)
    register_cascade(app)
    register_serve(app)


_STORE_HELP = "Verdict store URL: sqlite:///verdicts.db, or postgresql+pg8000://USER@HOST/DB."

logger = logging.getLogger("threattune.cli")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"threattune {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log progress to stderr.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("mlflow", "alembic", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


# ----------------------------------------------------------------------------- data


@data_app.command("list")
def data_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show every catalogued dataset as present, missing or failing its checksum."""
    from threattune import catalog

    root = catalog.data_root()
    statuses = [catalog.dataset_status(d, root) for d in catalog.load_catalog().values()]
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in statuses], indent=2))
        return
    typer.echo(f"datasets under {root} (THREATTUNE_DATA)\n")
    typer.echo(f"{'dataset':42} {'status':18} {'files':>5}  licence")
    for status in statuses:
        typer.echo(
            f"{status.dataset.name:42} {status.status:18} {len(status.files):>5}  "
            f"{status.dataset.licence[:60]}"
        )


@data_app.command("verify")
def data_verify(name: Annotated[str, typer.Argument(help="Dataset name, e.g. nsl-kdd.")]) -> None:
    """Check every file of one dataset against its sha256; exit 1 on any problem."""
    from threattune import catalog

    status = catalog.verify(name)
    for file in status.files:
        typer.echo(f"{file.state:18} {file.relative_path}")
    typer.echo(f"\n{status.dataset.name}: {status.status} (looked in {status.folder})")
    if not status.ok:
        typer.echo(f"get it from {status.dataset.publisher}", err=True)
        raise typer.Exit(1)


@data_app.command("inspect")
def data_inspect(
    path: Annotated[Path, typer.Argument(help="A labelled CSV or Parquet file of flows.")],
    label_column: Annotated[str, typer.Option(help="The column that holds each flow's class.")],
    delimiter: Annotated[str, typer.Option(help="CSV field delimiter.")] = ",",
) -> None:
    """Show the feature types threattune infers for a file, the columns it drops and why."""
    from threattune.sources.flows import load_labelled_table

    table = load_labelled_table(path, label_column=label_column, delimiter=delimiter)
    typer.echo(
        f"{len(table):,} flows, {len(table.feature_types)} features, {len(table.classes)} classes\n"
    )
    typer.echo(
        "classes: " + ", ".join(f"{c} ({n:,})" for c, n in table.labels.value_counts().items())
    )
    typer.echo("\nfeature                                   type")
    for column, kind in table.feature_types.items():
        typer.echo(f"{column[:40]:41} {kind}")
    if table.dropped:
        typer.echo("\ndropped columns:")
        for column, why in table.dropped.items():
            typer.echo(f"  {column}: {why}")
    _print_findings(table.findings, minimum="low")


# ----------------------------------------------------------------------------- attack


@attack_app.command("show")
def attack_show(
    mapping: Annotated[
        str,
        typer.Argument(help="A built-in mapping (nsl-kdd, cicids2017, phishing) or a YAML file."),
    ] = "nsl-kdd",
) -> None:
    """Print each class with its ATT&CK techniques and tactics."""
    attack = _mapping(mapping)
    for name in attack.classes:
        techniques = attack.techniques_for(name)
        shown = "; ".join(f"{t.id} {t.name}" for t in techniques) or "(benign or unmapped)"
        typer.echo(f"{name:28} {shown}")


@attack_app.command("coverage")
def attack_coverage(
    mapping: Annotated[str, typer.Argument(help="A built-in mapping or a YAML file.")] = "nsl-kdd",
) -> None:
    """Report which ATT&CK tactics and techniques a mapping's classes cover (Markdown)."""
    typer.echo(_mapping(mapping).coverage().to_markdown())


def _mapping(reference: str):  # noqa: ANN202 - AttackMapping, imported lazily
    from threattune.attack import AttackMapping

    if reference.endswith((".yaml", ".yml")):
        return AttackMapping.from_yaml(reference)
    return AttackMapping.builtin(reference)


# ----------------------------------------------------------------------------- train


@app.command()
def train(
    task: Annotated[
        str,
        typer.Argument(
            help="A built-in task (nsl-kdd, cicids2017, phishing), a YAML "
            "task file, or a labelled CSV/Parquet file."
        ),
    ],
    label_column: Annotated[
        str | None,
        typer.Option(help="With a CSV/Parquet file: the column that holds each flow's class."),
    ] = None,
    benign_class: Annotated[
        str | None, typer.Option(help="With a CSV/Parquet file: the label of benign flows.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(help="Folder for the model and report (default: runs/TASK-TIMESTAMP)."),
    ] = None,
    register: Annotated[bool, typer.Option(help="Register the model in MLflow.")] = True,
    alias: Annotated[
        str | None,
        typer.Option(
            help="Registry alias to point at the new version (default: champion, when no "
            "version has it yet)."
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for splits and fitting.")] = None,
    delimiter: Annotated[
        str | None, typer.Option(help="CSV field delimiter of a CSV task (default: ,).")
    ] = None,
    goal: Annotated[
        str | None,
        typer.Option(
            help="Operating goal met on the validation split: fpr<=0.01, precision>=0.99, "
            "alerts<=200/day@5000000, or none for the most probable class "
            "(default: the task's, fpr<=0.01)."
        ),
    ] = None,
    base_model: Annotated[
        str | None,
        typer.Option(
            help="phishing: the pretrained encoder, a hub name (distilbert-base-uncased) or a "
            "local folder (default: the shipped all-MiniLM-L6-v2)."
        ),
    ] = None,
    max_train: Annotated[
        int,
        typer.Option(help="phishing: train on at most this many messages (0 for all)."),
    ] = 10_000,
    trainable_layers: Annotated[
        int,
        typer.Option(
            help="phishing: top encoder layers to train; the rest are frozen and cached "
            "(0 trains the head only, -1 every layer)."
        ),
    ] = 1,
    max_length: Annotated[
        int, typer.Option(help="phishing: tokens per message, head and tail kept.")
    ] = 128,
    epochs: Annotated[
        int, typer.Option(help="phishing: most epochs; the validation loss stops earlier.")
    ] = 3,
    max_per_source: Annotated[
        int | None,
        typer.Option(help="phishing: read at most this many messages per source (quick runs)."),
    ] = None,
    include_spam: Annotated[
        bool, typer.Option(help="phishing: keep spam as a third class.")
    ] = False,
) -> None:
    """Train a model and its scikit-learn baseline, evaluate, track and register them.

    Flow tasks train boosted trees; the phishing task fine-tunes a pretrained transformer.
    """
    from dataclasses import replace

    from threattune import tasks, training

    if task == "phishing":
        from threattune._cli_mail import train_phishing

        train_phishing(
            output=output, register=register, alias=alias, seed=seed, goal=goal,
            base_model=base_model, max_train=max_train, trainable_layers=trainable_layers,
            max_length=max_length, epochs=epochs, max_per_source=max_per_source,
            include_spam=include_spam,
        )  # fmt: skip
        return
    path = Path(task)
    if path.suffix.lower() in {".csv", ".parquet", ".pq", ".tsv"}:
        if label_column is None:
            raise ThreatTuneError(
                "a CSV or Parquet task needs --label-column",
                field="--label-column",
                fix=f"threattune train {task} --label-column NAME",
            )
        flow_task = tasks.task_from_table(
            path, label_column=label_column, benign_class=benign_class, delimiter=delimiter or ","
        )
    else:
        flow_task = tasks.load_task(task)
    if seed is not None:
        flow_task = replace(flow_task, seed=seed)
    if goal is not None:
        flow_task = replace(flow_task, operating_goal=goal)
    if delimiter is not None:
        flow_task = replace(flow_task, delimiter=delimiter)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    output = output or Path("runs") / f"{flow_task.name}-{stamp}"

    typer.echo(
        f"training {flow_task.name}: {flow_task.description or flow_task.train[0]}", err=True
    )
    result = training.train(flow_task, output_dir=output, register=register, alias=alias)

    from threattune.report import summary_table

    typer.echo(f"\n# {flow_task.name}\n")
    typer.echo(f"chosen on the validation split: {training._describe(result.chosen)}")
    typer.echo(f"operating point: {result.report.context['operating point']}\n")
    typer.echo(summary_table(result.report.evaluations))
    if result.cross_validation is not None:
        typer.echo("\n" + training._describe_cv(result.cross_validation))
    typer.echo(f"\nmodel:   {result.model_folder}")
    typer.echo(f"report:  {result.report_path}")
    if result.registered is not None:
        typer.echo(f"MLflow:  {result.registered.uri} (run {result.run_id})")
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    typer.echo(f"time:    {timing}")


# ----------------------------------------------------------------------------- evaluate


@app.command()
def evaluate(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Labelled flow files, read as the model was trained (NSL-KDD, CICFlowMeter, "
            "table). For a mail model: LABEL=PATH pairs (phishing=inbox.mbox, "
            "legitimate=ham/), or 'phishing' for the corpus's held-out test split."
        ),
    ],
    model: Annotated[str, typer.Option(help="A model folder or models:/NAME@ALIAS.")],
    name: Annotated[
        str | None, typer.Option(help="Name of this labelled set in the report.")
    ] = None,
    output: Annotated[
        Path, typer.Option(help="Folder for report.md, report.json and PNGs.")
    ] = Path("report"),
) -> None:
    """Evaluate a model and its baseline on labelled flows or mail and write a report."""
    from threattune import tracking
    from threattune.evaluation import labelled_flows
    from threattune.report import EvaluationReport, summary_table

    flow_model = tracking.open_model(model)
    if getattr(flow_model, "kind", "flow") == "mail":
        from threattune._cli_mail import evaluate_mail

        evaluate_mail(flow_model, [str(f) for f in files], reference=model, output=output)
        return
    features, labels, source = labelled_flows(flow_model, list(files))
    dataset = name or ", ".join(p.name for p in files)
    report = EvaluationReport(
        title=f"threattune evaluation: {flow_model.manifest.get('task', 'model')} on {dataset}",
        evaluations=[],
        context={"model": model, "labelled flows": source},
    )
    report.add_model(flow_model, features, labels, dataset, source=source)
    path = report.write(output)
    typer.echo(summary_table(report.evaluations))
    typer.echo(f"\nreport: {path}")


# ----------------------------------------------------------------------------- score


@app.command()
def score(
    input_file: Annotated[
        list[Path],
        typer.Argument(
            metavar="INPUT...",
            help="Unlabelled flows (CSV or Parquet) or, for a mail model, mbox and .eml files, "
            "folders and archives of mail.",
        ),
    ],
    output: Annotated[Path, typer.Option(help="Scores: .csv, .jsonl or .parquet.")],
    model: Annotated[
        str | None,
        typer.Option(
            help="A model folder or models:/NAME@ALIAS. With --cascade, by default the "
            "stage one its manifest names."
        ),
    ] = None,
    cascade: Annotated[
        Path | None,
        typer.Option(
            help="Two-stage scoring: a folder 'threattune cascade train' wrote. Stage two "
            "filters stage one's alerts; 'alert' is then the cascade's, beside stage_one_alert, "
            "stage_two_score and guarded (kept by the recall guard)."
        ),
    ] = None,
    batch_rows: Annotated[int, typer.Option(help="Flows per batch; memory grows with it.")] = 65536,
    delimiter: Annotated[str, typer.Option(help="CSV field delimiter.")] = ",",
    ignore_extra_columns: Annotated[
        bool,
        typer.Option(
            help="Accept columns that are not features of the model (they are carried through to "
            "the output) instead of refusing the file."
        ),
    ] = False,
) -> None:
    """Score flows or mail in batches: class, score, alert and ATT&CK technique per row.

    Example: threattune score flows.csv --model models:/threattune-nsl-kdd@champion
    --output scores.parquet

    Two stages: threattune score flows.csv --cascade cascade/cascade --output scores.parquet
    """
    from threattune import tracking
    from threattune._cli_mail import after_stage_two
    from threattune.scoring import score_file

    missing = [str(path) for path in input_file if not path.exists()]
    if missing:
        raise ThreatTuneError(
            "input not found", path=missing[0], fix="name files or folders that exist"
        )
    if model is None and cascade is None:
        raise ConfigError(
            "nothing to score with", field="--model",
            fix="pass --model FOLDER_OR_URI, or --cascade FOLDER for two-stage scoring",
        )  # fmt: skip
    two_stage = _open_cascade(cascade, model) if cascade is not None else None
    if two_stage is not None:
        flow_model = two_stage.stage_one
    else:
        flow_model = tracking.open_model(str(model), with_baseline=False)
    if getattr(flow_model, "kind", "flow") == "mail":
        from threattune._cli_mail import score_messages

        score_messages(flow_model, input_file, output, cascade=two_stage)
        return
    if len(input_file) != 1:
        raise ThreatTuneError(
            "a flow model scores one file at a time",
            field="INPUT",
            found=f"{len(input_file)} files",
            fix="run 'threattune score' once per file",
        )
    summary = score_file(
        flow_model,
        input_file[0],
        output,
        batch_rows=batch_rows,
        delimiter=delimiter,
        allow_extra=ignore_extra_columns,
        progress=sys.stderr.isatty(),
        cascade=two_stage,
    )
    typer.echo(
        f"scored {summary.rows:,} flows in {summary.seconds:.1f} s "
        f"({summary.flows_per_second:,.0f} flows/s): {summary.alerts:,} alerts"
        + after_stage_two(summary.stage_one_alerts)
    )
    for cls, count in summary.by_class.items():
        typer.echo(f"  {cls:28} {count:>10,}")
    _print_findings(summary.findings, minimum="low")
    typer.echo(f"output: {output}")


def _open_cascade(folder: Path, model: str | None) -> Any:
    """The cascade in ``folder``; its stage one is ``model`` when given, else its own reference."""
    from threattune import cascade as two_stage

    stage_one = two_stage.open_stage_one(model) if model is not None else None
    return two_stage.Cascade.load(folder, stage_one=stage_one)


# ----------------------------------------------------------------------------- threshold


@app.command()
def threshold(
    model: Annotated[str, typer.Option(help="A model folder or models:/NAME@ALIAS.")],
    goal: Annotated[
        str,
        typer.Option(
            help="fpr<=0.01 (benign false-positive rate), precision>=0.99, or "
            "alerts<=200/day@5000000 (alert budget at an event rate)."
        ),
    ],
    prior: Annotated[
        float | None,
        typer.Option(help="Expected share of attacks in production, to re-weight precision."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the PR curve PNG and JSON (default: operating-point/ inside a "
            "model folder, or in the current folder for a registry model or with --no-store)."
        ),
    ] = None,
    store: Annotated[
        bool, typer.Option(help="Store the point with the model (folder manifest or registry tag).")
    ] = True,
    calibration: Annotated[
        str,
        typer.Option(
            help="auto: calibrate the attack score where cross-validated Brier score on the "
            "validation split says it helps; or none, sigmoid, isotonic."
        ),
    ] = "auto",
) -> None:
    """Choose the alert threshold for a goal on the model's validation split; no retraining."""
    from threattune.errors import ConfigError
    from threattune.tuning import choose_operating_point

    if calibration not in ("auto", "none", "sigmoid", "isotonic"):
        raise ConfigError(
            "unknown calibration",
            field="--calibration",
            expected="auto, none, sigmoid or isotonic",
            found=calibration,
            fix="pass one of the expected values",
        )
    if output is None:
        # a trial (--no-store) leaves the model folder as it was, figure and curve included
        local = Path(model)
        inside = local.is_dir() and store
        output = local / "operating-point" if inside else Path("operating-point")
    result = choose_operating_point(
        model, goal, output=output, prior=prior, store=store, calibration=calibration
    )
    point = result.point
    state = "met" if point.achievable else "NOT met: closest point shown"
    goal_kind = getattr(point.goal, "kind", "")
    if point.achievable and goal_kind == "fpr" and point.fpr_ci[1] > point.goal.fpr:
        state += (
            f" on validation, but its 95 % interval reaches {point.fpr_ci[1]:.2%}: "
            "too few benign events to be sure"
        )
    elif (
        point.achievable
        and goal_kind == "precision"
        and point.precision_ci[0] < point.goal.precision
    ):
        state += (
            f" on validation, but its 95 % interval reaches down to {point.precision_ci[0]:.2%}:"
            " too few alerts to be sure"
        )
    typer.echo(f"calibration: {result.calibration.reason}")
    typer.echo(f"goal {point.goal}: {state}")
    if result.calibration.method == "none":
        typer.echo(f"threshold on {result.score_name}: {point.threshold:.6g}")
    else:
        typer.echo(
            f"threshold on the calibrated attack probability: {point.threshold:.6g} "
            f"(alerts where {result.score_name} >= {result.raw_threshold:.6g})"
        )
    typer.echo(
        f"validation precision {point.precision:.4f} "
        f"[{point.precision_ci[0]:.4f}, {point.precision_ci[1]:.4f}], recall "
        f"{point.recall:.4f} [{point.recall_ci[0]:.4f}, {point.recall_ci[1]:.4f}], "
        f"benign FPR {point.fpr:.4%} [{point.fpr_ci[0]:.4%}, {point.fpr_ci[1]:.4%}]"
    )
    typer.echo(f"stored in: {result.stored_in}")
    typer.echo(f"curve:     {result.figure}")
    if not point.achievable:
        raise typer.Exit(1)


# ----------------------------------------------------------------------------- models


@models_app.command("list")
def models_list(
    name: Annotated[str | None, typer.Argument(help="A registered model name.")] = None,
) -> None:
    """List registered model versions, newest first, with their aliases."""
    from threattune import tracking

    rows = tracking.list_versions(name)
    if not rows:
        typer.echo(f"no registered models in {tracking.tracking_uri()}")
        return
    typer.echo(f"{'name':32} {'version':>7}  {'aliases':20} created")
    for row in rows:
        typer.echo(f"{row['name']:32} {row['version']:>7}  {row['aliases']:20} {row['created']}")


@models_app.command("alias")
def models_alias(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    alias: Annotated[str, typer.Argument(help="Alias, e.g. champion.")],
    version: Annotated[str, typer.Argument(help="Version the alias should point at.")],
) -> None:
    """Point an alias of a registered model at a version (for instance promote a challenger)."""
    from threattune import tracking

    tracking.set_alias(name, alias, version)
    typer.echo(f"models:/{name}@{alias} -> version {version}")


@models_app.command("show")
def models_show(
    model: Annotated[str, typer.Argument(help="A model folder or models:/NAME@ALIAS.")],
) -> None:
    """Show a model's classes, techniques, settings and input columns."""
    from threattune import tracking

    flow_model = tracking.open_model(model, with_baseline=False)
    manifest = flow_model.manifest
    typer.echo(f"task:      {manifest.get('task')}  (trained {manifest.get('trained_at')})")
    typer.echo(f"settings:  {manifest.get('settings')} rounds={manifest.get('rounds')}")
    typer.echo(f"operating point: {manifest.get('operating_point') or 'most probable class'}")
    typer.echo("classes:")
    for cls, techniques in flow_model.technique_labels().items():
        marker = " (benign)" if cls == flow_model.benign_class else ""
        typer.echo(f"  {cls}{marker}: {techniques or '-'}")
    if getattr(flow_model, "kind", "flow") == "mail":
        typer.echo(f"base model: {manifest.get('base_model')}")
        typer.echo("input:")
        for key, value in flow_model.fingerprint.items():
            typer.echo(f"  {key}: {value}")
        return
    typer.echo(f"input ({flow_model.fingerprint.digest}):")
    for column in flow_model.fingerprint.columns:
        typer.echo(f"  {column.name}: {column.kind}")


# ----------------------------------------------------------------------------- verdicts


@verdicts_app.command("import")
def verdicts_import(
    files: Annotated[list[Path], typer.Argument(help="CSV or JSON-lines files of verdicts.")],
    store: Annotated[str, typer.Option(help=_STORE_HELP)] = "sqlite:///verdicts.db",
) -> None:
    """Import verdicts; re-importing a file changes nothing, a bad row imports nothing."""
    from threattune.verdicts import VerdictStore

    with VerdictStore(store) as verdict_store:
        for path in files:
            summary = verdict_store.import_file(path)
            typer.echo(
                f"{path}: {summary.inserted} new, {summary.updated} updated, "
                f"{summary.unchanged} unchanged"
            )


@verdicts_app.command("list")
def verdicts_list(
    store: Annotated[str, typer.Option(help=_STORE_HELP)] = "sqlite:///verdicts.db",
    model_version: Annotated[str | None, typer.Option(help="Only this model version.")] = None,
    verdict: Annotated[str | None, typer.Option(help="tp, fp or btp.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
) -> None:
    """List stored verdicts, newest first."""
    from threattune.verdicts import VerdictStore, normalise_verdict

    with VerdictStore(store) as verdict_store:
        rows = verdict_store.list(
            model_version=model_version,
            verdict=normalise_verdict(verdict) if verdict else None,
            limit=limit,
            newest_first=True,
        )
    for row in rows:
        typer.echo(
            f"{row.time.isoformat()}  {row.alert_id:20} {row.model_version:28} "
            f"{row.verdict:22} {row.root_cause or '-':20} {row.analyst}"
        )


@verdicts_app.command("stats")
def verdicts_stats(
    store: Annotated[str, typer.Option(help=_STORE_HELP)] = "sqlite:///verdicts.db",
    model_version: Annotated[str | None, typer.Option(help="Only this model version.")] = None,
) -> None:
    """Counts per verdict and root cause, and the false-positive share with its interval."""
    from threattune.verdicts import VerdictStore

    with VerdictStore(store) as verdict_store:
        stats = verdict_store.stats(model_version)
    typer.echo(json.dumps(stats, indent=2, default=str))


def _print_findings(findings: list, *, minimum: str = "low") -> None:
    from threattune.findings import Severity

    floor = Severity[minimum.upper()]
    shown = [f for f in findings if f.severity >= floor]
    if shown:
        typer.echo("\nfindings:")
        for finding in shown:
            typer.echo(
                f"  [{finding.severity}] {finding.kind} {finding.subject}: {finding.message}"
            )


_register_wings()


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Entry point of the ``threattune`` command."""
    import signal

    # SIGTERM unwinds like Ctrl-C, so partial outputs are removed and earlier ones kept.
    signal.signal(signal.SIGTERM, _terminated)
    if not sys.stdout.isatty():
        # Help piped to a file or pager is laid out 100 columns wide, not cut at 80 (Typer
        # reads this when it first formats help; a terminal keeps its own width).
        os.environ.setdefault("TERMINAL_WIDTH", "100")
    try:
        app()
    except ThreatTuneError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        # A file the system refused (no such folder, no permission, disk full): name it and stop.
        where = exc.filename if exc.filename is not None else "a file"
        typer.echo(
            f"error: cannot use {where}: {exc.strerror or exc}; check the path, its folder and "
            "the permissions, and that the disk has room",
            err=True,
        )
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
