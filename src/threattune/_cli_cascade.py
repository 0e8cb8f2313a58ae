"""Commands of the two-stage filter and of false-positive triage.

``register(app)`` adds ``threattune cascade train|evaluate`` (flow and mail models) and
``threattune triage``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from threattune.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

__all__ = ["register"]

_MODEL_HELP = "Stage-one flow or mail model: a model folder or models:/NAME@ALIAS."
_SEGMENT_HELP = (
    "Flows: one labelled file, read as the model was trained (NSL-KDD, CICFlowMeter, table), "
    "in the order the flows were seen; each flow's alert id is FILE:ROW. Mail: LABEL=PATH "
    "(repeat it; mbox, .eml, folders, archives), each message's alert id a hash of its file "
    "name and Message-ID; or phishing:test, phishing:unsampled or phishing:test+unsampled, "
    "parts of the built-in corpus the model never trained on, alert id the corpus id."
)
_ORDER_HELP = (
    "Mail: order of the segment: time (Date header; undated last), time-per-label (each "
    "label's own timeline, so that the first slice holds the same share of every label), "
    "time-per-source (the same for each input file or corpus source) or file. Default: time "
    "for training, the training order for evaluation."
)
_MAX_PER_SOURCE_HELP = (
    "Mail, corpus segments: the --max-per-source the model was trained with, to rebuild its "
    "corpus split."
)
_STORE_HELP = (
    "Verdict store URL (sqlite:///verdicts.db). Without --from-labels, analysts' verdicts on "
    "the segment's alerts are read from it (or from a verdicts file, .csv or .jsonl, as "
    "'threattune verdicts import' reads); with --from-labels, the derived verdicts are "
    "imported into it."
)
_FROM_LABELS_HELP = (
    "Derive verdicts from the segment's labels (an alert on benign traffic is a false "
    "positive), for public datasets nobody has judged."
)
_ROOT_CAUSE_HELP = (
    "Comma-separated feature columns whose values name a false positive's root cause when "
    "verdicts come from labels, such as service,flag for NSL-KDD, or source for mail (the "
    "mail file or corpus source a message came from)."
)


def register(app: typer.Typer) -> None:
    """Add the ``cascade`` sub-app and the ``triage`` command to ``app``."""
    cascade_app = typer.Typer(
        help="The two-stage filter: stage one alerts, a stage-two model trained on analysts' "
        "verdicts removes false positives within a recall-loss budget.",
        no_args_is_help=True,
    )
    cascade_app.command("train")(train_command)
    cascade_app.command("evaluate")(evaluate_command)
    app.add_typer(cascade_app, name="cascade")
    app.command("triage")(triage_command)


def train_command(
    model: Annotated[str, typer.Option(help=_MODEL_HELP)],
    segment: Annotated[list[str], typer.Option(help=_SEGMENT_HELP)],
    output: Annotated[Path, typer.Option(help="Folder for the cascade and its evaluation.")],
    verdicts: Annotated[str | None, typer.Option(help=_STORE_HELP)] = None,
    from_labels: Annotated[bool, typer.Option(help=_FROM_LABELS_HELP)] = False,
    first_slice: Annotated[
        float,
        typer.Option(
            help="Share of the segment, from its start, whose verdicts train stage two; the "
            "rest measures it."
        ),
    ] = 0.3,
    recall_budget: Annotated[
        float,
        typer.Option(help="Share of stage one's true positives stage two may drop (0.01 = 1%)."),
    ] = 0.01,
    root_cause_columns: Annotated[str, typer.Option(help=_ROOT_CAUSE_HELP)] = "",
    track: Annotated[
        bool, typer.Option(help="Log to MLflow and register threattune-TASK-stage2.")
    ] = True,
    min_class_verdicts: Annotated[
        int,
        typer.Option(
            help="Recall guard: alerts of a stage-one class with fewer true-positive verdicts "
            "than this are dropped only below the class's floor on stage one's validation "
            "split; 0 turns the guard off."
        ),
    ] = 50,
    threshold_folds: Annotated[
        int,
        typer.Option(
            help="Stage two's threshold is chosen on out-of-fold scores of all the verdicts "
            "over this many folds; 0 chooses it on the 30% validation part alone."
        ),
    ] = 5,
    order: Annotated[str, typer.Option(help=_ORDER_HELP)] = "time",
    max_per_source: Annotated[int | None, typer.Option(help=_MAX_PER_SOURCE_HELP)] = None,
) -> None:
    """Train stage two on the verdicts of a segment's first slice; measure it on the rest.

    Example: threattune cascade train --model models:/threattune-nsl-kdd@champion
    --segment KDDTest+.txt --from-labels --root-cause-columns service,flag --output cascade

    Mail: threattune cascade train --model models:/threattune-phishing@champion
    --segment legitimate=ham/ --segment phishing=lures.mbox --verdicts sqlite:///verdicts.db
    --output mail-cascade
    """
    from threattune import cascade as two_stage
    from threattune.verdicts import VerdictStore

    if not from_labels and verdicts is None:
        raise ConfigError(
            "stage two needs verdicts",
            field="--verdicts",
            fix="pass --verdicts STORE_URL with analysts' verdicts, or --from-labels",
        )
    flow_model = two_stage.open_stage_one(model)
    # a folder is recorded whole, so that the cascade opens from any working folder
    reference = model if model.startswith("models:/") else str(Path(model).resolve())
    flows = _load_segment(flow_model, segment, order, max_per_source)
    causes = [c.strip() for c in root_cause_columns.split(",") if c.strip()]
    if from_labels:
        cascade, evaluation, derived = two_stage.cascade_from_labels(
            flow_model,
            flows,
            first_slice=first_slice,
            recall_budget=recall_budget,
            root_cause_columns=causes,
            stage_one_reference=reference,
            min_class_verdicts=min_class_verdicts,
            threshold_folds=threshold_folds,
        )
        if verdicts is not None:
            with VerdictStore(verdicts) as store:
                summary = store.import_records(derived, source=f"labels of {flows.source}")
            typer.echo(f"verdicts: {summary.inserted} imported into {verdicts}")
    else:
        with _verdict_store(verdicts or "") as store_url:
            cascade, evaluation = _train_from_store(
                flow_model, flows, store_url, first_slice, recall_budget, reference,
                min_class_verdicts, threshold_folds,
            )  # fmt: skip

    folder = cascade.save(output / "cascade")
    _write_evaluation(output, evaluation.to_dict(), evaluation.to_markdown())
    typer.echo(evaluation.to_markdown())
    if track:
        registered = two_stage.track_cascade(cascade, evaluation=evaluation)
        if registered is not None:
            typer.echo(f"registered: {registered.uri}")
    typer.echo(f"cascade: {folder}")


@contextmanager
def _verdict_store(value: str) -> Iterator[str]:
    """The store URL to read verdicts from: ``value``, or a temporary store of a verdicts file."""
    from threattune.verdicts import IMPORT_FORMATS, VerdictStore

    path = Path(value)
    if "://" in value or path.suffix.lower() not in IMPORT_FORMATS:
        yield value
        return
    if not path.is_file():
        raise ConfigError("verdicts file not found", path=path, field="--verdicts",
                          fix="pass a verdicts file or a store URL")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="threattune-verdicts-") as folder:
        url = f"sqlite:///{Path(folder) / 'verdicts.db'}"
        with VerdictStore(url) as store:
            summary = store.import_file(path)
        logger.info("read %d verdicts from %s", summary.inserted, path)
        yield url


def _load_segment(
    model: Any, specs: list[str], order: str | None, max_per_source: int | None
) -> Any:
    """The labelled segment: one flow file, or mail (LABEL=PATH inputs or a corpus part)."""
    from threattune import cascade as two_stage

    if getattr(model, "kind", None) == "mail":
        from threattune.mail_cascade import load_mail_segment

        return load_mail_segment(model, specs, order=order or "time",
                                 max_per_source=max_per_source)  # fmt: skip
    if len(specs) != 1:
        raise ConfigError(
            "a flow model takes one segment file", field="--segment",
            expected="one labelled file", found=f"{len(specs)}: {', '.join(specs)}",
            fix="concatenate the flows into one file in the order they were seen",
        )  # fmt: skip
    return two_stage.load_segment(model, Path(specs[0]))


def _train_from_store(
    flow_model: Any,
    flows: Any,
    store_url: str,
    first_slice: float,
    budget: float,
    ref: str,
    min_class_verdicts: int,
    threshold_folds: int,
) -> tuple[Any, Any]:
    """Stage two from analysts' verdicts on the first slice's alerts, measured on the rest.

    The latest verdict on each alert counts, whichever model version it names: a verdict says
    whether the flow or message is a threat, which does not depend on the version.
    """
    from threattune import cascade as two_stage
    from threattune.verdicts import VerdictStore

    first_rows, rest_rows = two_stage.split_segment(flows, first_slice)
    first, rest = flows.subset(first_rows), flows.subset(rest_rows)
    proba = two_stage.stage_one_proba(flow_model, first.features)
    alerted = np.flatnonzero(flow_model.decide(proba).alerts)
    with VerdictStore(store_url) as store:
        judged = two_stage.verdicts_for_alerts(store, first.alert_ids[alerted])
    mail = getattr(flow_model, "kind", None) == "mail"
    if judged.empty:
        raise DataError(
            "no stored verdict names an alert of the segment's first slice",
            path=flows.source,
            expected=("message alert ids" if mail else "alert ids FILE:ROW")
            + ", such as " + str(first.alert_ids[alerted[0] if len(alerted) else 0]),
            found=f"{len(alerted)} alerts in the first slice",
            fix="record verdicts under the alert ids of the segment, or use --from-labels",
        )  # fmt: skip
    position = {alert_id: row for row, alert_id in enumerate(first.alert_ids)}
    disputed = judged.attrs.get("disputed", [])
    # in the segment's order, so that the store's order cannot change what stage two learns
    judged = judged.assign(row=[position[a] for a in judged["alert_id"]])
    judged = judged.sort_values("row", kind="mergesort").reset_index(drop=True)
    rows = judged["row"].to_numpy()
    typer.echo(
        f"verdicts: {len(judged):,} on the {len(alerted):,} stage-one alerts of the first slice"
        + (f" ({len(alerted) - len(judged):,} alerts have none and are left out)"
           if len(judged) < len(alerted) else "")
    )  # fmt: skip
    if disputed:
        typer.echo(
            f"verdicts: analysts disagree on {len(disputed):,} alerts (such as "
            f"{', '.join(disputed[:3])}); the latest verdict on each counts"
        )
    if mail:
        last = first.last_time(rows)
        times = [last] if last is not None else None
    else:
        times = [t.to_pydatetime() for t in judged["time"]]
    cascade = two_stage.train_stage_two(
        flow_model,
        first.features.iloc[rows],
        judged["alert_id"].to_numpy(),
        judged["verdict"].to_numpy(),
        recall_budget=budget,
        stage_one_reference=ref,
        verdict_times=times,
        min_class_verdicts=min_class_verdicts,
        proba=proba[rows],
        threshold_folds=threshold_folds,
    )
    kind = "mail" if mail else "flow"
    cascade.manifest["segment"] = two_stage.segment_manifest(flows, first_slice, len(first_rows),
                                                             kind=kind)  # fmt: skip
    cascade.manifest["segment"]["verdicts"] = f"{len(judged)} stored verdicts"
    evaluation = two_stage.evaluate_cascade(
        cascade, rest.features, rest.labels, rest.alert_ids, dataset=Path(flows.source).name,
        measured_from=rest.first_time(),
    )  # fmt: skip
    return cascade, evaluation


def evaluate_command(
    cascade: Annotated[Path, typer.Option(help="Cascade folder written by 'cascade train'.")],
    segment: Annotated[list[str], typer.Option(help=_SEGMENT_HELP)],
    output: Annotated[Path, typer.Option(help="Folder for evaluation.md and evaluation.json.")],
    model: Annotated[
        str | None,
        typer.Option(help="Stage-one model, when not where the cascade's manifest says."),
    ] = None,
    skip_rows: Annotated[
        int,
        typer.Option(
            help="Leave out the segment's first N flows or messages, such as the slice that "
            "trained the cascade (see segment.training_flows or training_messages in "
            "cascade.json)."
        ),
    ] = 0,
    order: Annotated[str | None, typer.Option(help=_ORDER_HELP)] = None,
    max_per_source: Annotated[int | None, typer.Option(help=_MAX_PER_SOURCE_HELP)] = None,
) -> None:
    """Measure stage one alone and the cascade on a labelled segment.

    Refuses a segment whose alerts overlap the verdicts that trained stage two, and mail in
    time order that does not start after the last training alert.
    """
    from threattune import cascade as two_stage

    stage_one = two_stage.open_stage_one(model) if model else None
    loaded = two_stage.Cascade.load(cascade, stage_one)
    order = order or (loaded.manifest.get("segment") or {}).get("order") or "time"
    flows = _load_segment(loaded.stage_one, segment, order, max_per_source)
    if not 0 <= skip_rows < len(flows):
        raise ConfigError(
            "--skip-rows must leave flows or messages to measure", field="--skip-rows",
            expected=f"between 0 and {len(flows) - 1} (the segment holds {len(flows):,})",
            found=str(skip_rows),
            fix="skip the training slice only: segment.training_flows (or training_messages) "
            "in cascade.json",
        )  # fmt: skip
    if skip_rows:
        flows = flows.subset(np.arange(skip_rows, len(flows)))
    evaluation = two_stage.evaluate_cascade(
        loaded, flows.features, flows.labels, flows.alert_ids, dataset=Path(flows.source).name,
        measured_from=flows.first_time(),
    )  # fmt: skip
    _write_evaluation(output, evaluation.to_dict(), evaluation.to_markdown())
    typer.echo(evaluation.to_markdown())


def triage_command(
    model: Annotated[str, typer.Option(help=_MODEL_HELP)],
    segment: Annotated[list[str], typer.Option(help=_SEGMENT_HELP)],
    output: Annotated[Path, typer.Option(help="Folder for triage.md and triage.json.")],
    verdicts: Annotated[
        str | None,
        typer.Option(
            help="Verdict store URL (or a .csv / .jsonl verdicts file) with analysts' verdicts "
            "on the segment's alerts."
        ),
    ] = None,
    from_labels: Annotated[bool, typer.Option(help=_FROM_LABELS_HELP)] = False,
    root_cause_columns: Annotated[str, typer.Option(help=_ROOT_CAUSE_HELP)] = "",
    max_clusters: Annotated[
        int, typer.Option(help="Most clusters to try; silhouette chooses among 2..N.")
    ] = 8,
    max_per_source: Annotated[int | None, typer.Option(help=_MAX_PER_SOURCE_HELP)] = None,
) -> None:
    """Group a model's false positives on a segment by root cause, for a SOC lead to fix.

    Flows are grouped over the model's input features; mail over the model's text embeddings,
    each group described by its header, link and attachment evidence and its words.

    Example: threattune triage --model models:/threattune-nsl-kdd@champion
    --segment KDDTest+.txt --from-labels --root-cause-columns service,flag --output triage

    Mail: threattune triage --model models:/threattune-phishing@champion
    --segment legitimate=ham/ --segment phishing=lures.mbox --from-labels --output triage
    """
    from threattune import cascade as two_stage
    from threattune import tracking
    from threattune.triage import triage_false_positives, verdicts_from_labels
    from threattune.verdicts import VerdictStore

    if not from_labels and verdicts is None:
        raise ConfigError(
            "triage needs verdicts",
            field="--verdicts",
            fix="pass --verdicts STORE_URL with analysts' verdicts, or --from-labels",
        )
    stage_one = tracking.open_model(model, with_baseline=False)
    mail = getattr(stage_one, "kind", None) == "mail"
    labelled = _load_segment(stage_one, segment, "file" if mail else None, max_per_source)
    proba = two_stage.stage_one_proba(stage_one, labelled.features)
    alerts = labelled.subset(np.flatnonzero(stage_one.decide(proba).alerts))
    causes = [c.strip() for c in root_cause_columns.split(",") if c.strip()]
    if from_labels:
        frame = alerts.features.assign(alert_id=alerts.alert_ids)
        found = verdicts_from_labels(
            frame,
            alerts.labels,
            stage_one.benign_class,
            model_version=two_stage.stage_one_version(stage_one),
            root_cause_columns=causes,
        )
        judged = [v.verdict for v in found]
        root_causes = [v.root_cause for v in found] if causes else None
        rows = np.arange(len(alerts))
    else:
        with _verdict_store(verdicts or "") as store_url, VerdictStore(store_url) as store:
            table = two_stage.verdicts_for_alerts(store, alerts.alert_ids)
        position = {alert_id: row for row, alert_id in enumerate(alerts.alert_ids)}
        rows = np.array([position[a] for a in table["alert_id"]], dtype=int)
        judged, root_causes = table["verdict"].tolist(), table["root_cause"].tolist()
    judged_alerts = alerts.subset(rows)

    if mail:
        features, categorical, embedding, texts = _mail_triage_inputs(stage_one, judged_alerts)
    else:
        features, embedding, texts = judged_alerts.features, None, None
        categorical = list(stage_one.encoder.categorical)
    report = triage_false_positives(
        features,
        judged,
        judged_alerts.alert_ids,
        categorical=categorical,
        root_causes=root_causes,
        max_clusters=max_clusters,
        context={"model": model, "segment": ", ".join(segment)},
        embedding=embedding,
        texts=texts,
    )
    output.mkdir(parents=True, exist_ok=True)
    (output / "triage.md").write_text(report.to_markdown(), encoding="utf-8")
    (output / "triage.json").write_text(
        json.dumps(report.to_dict(), indent=2, default=str), encoding="utf-8"
    )
    for finding in report.findings():
        typer.echo(f"[{finding.severity}] {finding.subject}: {finding.message}")
    typer.echo(f"triage: {output / 'triage.md'}")


def _mail_triage_inputs(model: Any, alerts: Any) -> tuple[Any, list[str], Any, list[str]]:
    """What mail false positives are grouped and described by: embedding, evidence, words.

    The file or corpus source a message came from is left out: on labelled inputs it names
    the label, not a cause; analysts' categories (or ``--root-cause-columns source``) give it.
    """
    import pandas as pd

    from threattune.mail_cascade import EVIDENCE_FEATURES, evidence_matrix, model_texts

    texts = model_texts(alerts.features)
    features = pd.DataFrame(evidence_matrix(alerts.features), columns=list(EVIDENCE_FEATURES))
    embedding = model.classifier.embed(texts) if texts else np.zeros((0, 1))
    return features, [], embedding, texts


def _write_evaluation(output: Path, content: dict[str, Any], markdown: str) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "evaluation.json").write_text(
        json.dumps(content, indent=2, default=str), encoding="utf-8"
    )
    (output / "evaluation.md").write_text(markdown, encoding="utf-8")
