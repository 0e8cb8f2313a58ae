"""The command-line faces of the mail model: train phishing, evaluate and score mail."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from threattune.errors import ConfigError
from threattune.mail_model import MailModel

_MEASURES = ("precision", "recall", "f1", "fpr", "auc", "accuracy")


def train_phishing(
    *,
    output: Path | None,
    register: bool,
    alias: str | None,
    seed: int | None,
    goal: str | None,
    base_model: str | None,
    max_train: int,
    trainable_layers: int,
    max_length: int,
    epochs: int,
    max_per_source: int | None,
    include_spam: bool,
) -> None:
    """Fine-tune the phishing model and print what it chose and measured."""
    from threattune.mail_training import train_phishing as train
    from threattune.models.text import DEFAULT_BASE_MODEL, TextSettings

    seed = 0 if seed is None else seed
    settings = TextSettings(
        base_model=base_model or DEFAULT_BASE_MODEL,
        max_length=max_length,
        head_tokens=min(max_length * 3 // 4, max_length - 2),
        trainable_layers=None if trainable_layers < 0 else trainable_layers,
        epochs=epochs,
        seed=seed,
    )
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    output = output or Path("runs") / f"phishing-{stamp}"
    typer.echo(f"training phishing: fine-tuning {settings.base_model} on the mail corpus",
               err=True)  # fmt: skip
    result = train(
        output,
        settings=settings,
        max_train=max_train or None,
        include_spam=include_spam,
        max_per_source=max_per_source,
        goal=goal if goal is not None else "fpr<=0.01",
        seed=seed,
        register=register,
        alias=alias,
        progress=sys.stderr.isatty(),
    )
    history = result.history
    typer.echo("\n# phishing\n")
    typer.echo(
        f"split (grouped by campaign): train {result.split['train']:,}, validation "
        f"{result.split['validation']:,}, test {result.split['test']:,}"
    )
    typer.echo(
        f"fine-tuned {history['trainable_layers']} of "
        f"{history['trainable_layers'] + history['frozen_layers']} layers; best epoch "
        f"{history['best_epoch']} by validation loss"
    )
    point = result.operating_point
    if point:
        from threattune.operating_point import goal_from_dict

        goal_text = goal_from_dict(point["goal"])
        typer.echo(f"operating point: threat score >= {point['threshold']:.4g} "
                   f"(chosen on validation for {goal_text})")  # fmt: skip
    typer.echo("\n" + measures_table(result.test, "test"))
    typer.echo(f"\nmodel:   {result.model_folder}")
    typer.echo(f"report:  {result.report_path}")
    if result.registered is not None:
        typer.echo(f"MLflow:  {result.registered.uri} (run {result.run_id})")
    typer.echo("time:    " + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items()))


def measures_table(measures: dict[str, dict[str, float]], split: str) -> str:
    """A Markdown table of detection measures per model."""
    lines = [
        f"| {split} | precision | recall | F1 | FPR (legitimate) | AUC | accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in measures.items():
        lines.append(
            f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | "
            f"{m['fpr']:.2%} | {m['auc']:.4f} | {m['accuracy']:.4f} |"
        )
    return "\n".join(lines)


def evaluate_mail(model: MailModel, specs: list[str], *, reference: str, output: Path) -> None:
    """Evaluate a mail model on its corpus test split or on labelled mail files."""
    from threattune._jsonfile import write_json
    from threattune.findings import Severity
    from threattune.mail_training import evaluate_on_messages, evaluate_on_split
    from threattune.sources.mail import MailReader

    if specs == ["phishing"]:
        measures, count = evaluate_on_split(model)
        what = f"the corpus's held-out test split ({count:,} messages)"
        skipped, first_skipped = 0, ""
    else:
        reader = MailReader()
        messages, labels = [], []
        for spec in specs:
            label, sep, path = spec.partition("=")
            if not sep or label not in model.classes:
                raise ConfigError(
                    "a labelled mail input is LABEL=PATH",
                    field="LABEL=PATH",
                    expected="LABEL=PATH with LABEL one of "
                    + ", ".join(model.classes)
                    + "; or the word phishing alone for the corpus test split",
                    found=spec,
                    fix="for example: legitimate=ham/ phishing=phish.mbox",
                )
            for message in reader.read(Path(path)):
                messages.append(message)
                labels.append(label)
        measures = evaluate_on_messages(model, messages, labels)
        what = ", ".join(specs) + f" ({len(messages):,} messages)"
        unreadable = [i for i in reader.issues if i.severity >= Severity.MEDIUM]
        skipped = len(unreadable)
        first_skipped = (
            f" (first: {unreadable[0].subject}: {unreadable[0].message})" if unreadable else ""
        )
    output.mkdir(parents=True, exist_ok=True)
    table = measures_table(measures, "measured")
    point = model.operating_point
    lines = [
        f"# threattune evaluation: phishing model on {what}",
        "",
        f"Model: {reference}. Transformer at its operating point "
        + (f"(threat score >= {point['threshold']:.4g})" if point else "(most probable class)")
        + "; baseline at 0.5.",
        "",
        table,
    ]
    (output / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_json(output / "report.json", {"model": reference, "input": what, "measures": measures,
                                        "skipped_messages": skipped})  # fmt: skip
    typer.echo(table)
    if skipped:
        typer.echo(f"skipped {skipped} unreadable message(s){first_skipped}")
    typer.echo(f"\nreport: {output / 'report.md'}")


def after_stage_two(stage_one_alerts: int | None) -> str:
    """How many alerts stage one raised, for the summary of two-stage scoring."""
    if stage_one_alerts is None:
        return ""
    return f" after stage two, of {stage_one_alerts:,} from stage one"


def score_messages(
    model: MailModel, inputs: list[Path], output: Path, *, cascade: Any = None
) -> None:
    """Score mail files (through both stages with a ``cascade``) and print what was found."""
    from threattune.mail_scoring import SKIPPED_KINDS, score_mail

    summary = score_mail(model, inputs, output, progress=sys.stderr.isatty(), cascade=cascade)
    typer.echo(
        f"scored {summary.messages:,} messages in {summary.seconds:.1f} s "
        f"({summary.messages_per_second:,.1f} messages/s): {summary.alerts:,} alerts"
        + after_stage_two(summary.stage_one_alerts)
    )
    for name, count in summary.by_class.items():
        typer.echo(f"  {name:28} {count:>10,}")
    for technique, count in summary.by_technique.items():
        typer.echo(f"  alerts as {technique:18} {count:>10,}")
    skipped = [f for f in summary.findings if f.kind in SKIPPED_KINDS]
    repaired = len(summary.findings) - len(skipped)
    if skipped:
        typer.echo(f"skipped {len(skipped)} unreadable messages; first: "
                   f"{skipped[0].subject}: {skipped[0].message}")  # fmt: skip
    if repaired:
        typer.echo(f"repaired {repaired} messages while parsing (charsets, encodings, cut parts)")
    typer.echo(f"output: {output}")
