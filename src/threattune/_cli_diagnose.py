"""The ``diagnose`` and ``adapt`` commands: why a model misbehaves on a new segment, and the fix.

``register(app)`` adds both commands to the ``threattune`` command line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from threattune.errors import ThreatTuneError

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    """Add ``threattune diagnose`` and ``threattune adapt`` to ``app``."""
    app.command("diagnose")(diagnose_command)
    app.command("adapt")(adapt_command)


def diagnose_command(
    model: Annotated[str, typer.Option(help="A model folder or models:/NAME@ALIAS.")],
    current: Annotated[
        list[Path],
        typer.Option(
            help="The new segment's flows (CSV or Parquet), read as for scoring; for a mail "
            "model, mail: mbox or .eml files, folders or archives (repeat for several)."
        ),
    ],
    output: Annotated[Path, typer.Option(help="Folder for diagnosis.json and diagnosis.html.")],
    reference: Annotated[
        list[Path] | None,
        typer.Option(
            help="Reference flows file or saved profile (default: the profile stored with the "
            "model); for a mail model, reference mail (default: the stored reference "
            "embeddings)."
        ),
    ] = None,
    labels: Annotated[
        list[str] | None,
        typer.Option(
            help="Truth, when known: a column of the segment file (NSL-KDD: attack) or a file "
            "with one label per segment row; for a mail model, labelled mail as LABEL=PATH "
            "(repeat for several)."
        ),
    ] = None,
    max_rows: Annotated[
        int, typer.Option(help="Segment rows sampled for the checks after the pipeline audit.")
    ] = 200_000,
    max_messages: Annotated[
        int, typer.Option(help="Messages sampled on each side, for a mail model.")
    ] = 2_000,
    multivariate: Annotated[
        bool, typer.Option(help="Train a domain classifier to find combined drift.")
    ] = True,
    adversarial: Annotated[
        bool, typer.Option(help="Check how many alerts small feature changes turn benign.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed of the samples.")] = 0,
) -> None:
    """Diagnose a new network segment or new mail: pipeline audit, drift, novelty and (flows)
    the label-free precision and false-positive estimate and evasion, ranked as findings with a
    severity each.

    Exit status 0 when nothing is above LOW, 1 when a finding is MEDIUM or worse, 2 on error.

    Example: threattune diagnose --model models:/threattune-nsl-kdd@champion
    --current segment.csv --labels attack --output diagnosis/

    Mail: threattune diagnose --model models:/threattune-phishing@champion
    --current inbox.mbox --labels phishing=reported.mbox --output diagnosis/
    """
    from threattune.diagnosis.diagnose import diagnose
    from threattune.findings import Severity

    try:
        result = diagnose(
            model,
            _one_or_all(reference),
            _one_or_all(current),
            _one_or_all(labels),
            max_rows=max_rows,
            max_messages=max_messages,
            multivariate=multivariate,
            adversarial=adversarial,
            seed=seed,
        )
        page = result.write(output)
    except ThreatTuneError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None

    typer.echo(f"{result.rows_diagnosed:,} of {result.rows_read:,} {result.unit} diagnosed; "
               f"worst: {result.severity}")  # fmt: skip
    for finding in result.above(Severity.LOW)[:15]:
        typer.echo(f"  {str(finding.severity).upper():8} {finding.kind:18} {finding.message}")
    typer.echo(f"report: {page}")
    if result.severity >= Severity.MEDIUM:
        raise typer.Exit(1)


def _one_or_all(values: list[Path] | list[str] | None) -> Path | str | list | None:
    """None, the one value given, or all of them (several are for mail)."""
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)


def adapt_command(
    model: Annotated[str, typer.Option(help="The current model: a folder or models:/NAME@ALIAS.")],
    sample: Annotated[
        list[str],
        typer.Option(
            help="A labelled flows file of the new segment, read as in training; for a mail "
            "model, labelled mail as LABEL=PATH (repeat for several)."
        ),
    ],
    output: Annotated[Path, typer.Option(help="Folder for the adapted model and adaptation.json.")],
    fraction: Annotated[
        float | None,
        typer.Option(
            help="Share of the sample used to adapt; the rest measures before and after "
            "(default: 0.05 of flows, 0.5 of mail, split by campaign)."
        ),
    ] = None,
    max_rounds: Annotated[int, typer.Option(help="Most boosting rounds added (flows).")] = 50,
    epochs: Annotated[int, typer.Option(help="Most epochs of continued training (mail).")] = 2,
    register_model: Annotated[
        bool,
        typer.Option(
            "--register/--no-register",
            help="Register the adapted model in MLflow with the alias 'challenger'.",
        ),
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed of the splits.")] = 0,
) -> None:
    """Continue training a model on a small labelled sample of a new segment or new mail,
    choose the new alert threshold at the current model's recall, and compare false positives
    before and after.

    A flow model gets more boosting rounds; a mail model's top transformer layer and head
    train further. The adapted model is registered with the alias 'challenger'; 'champion' is
    not moved.

    Example: threattune adapt --model models:/threattune-nsl-kdd@champion
    --sample segment-labelled.csv --fraction 0.05 --output adapted/

    Mail: threattune adapt --model models:/threattune-phishing@champion
    --sample legitimate=ham/ --sample phishing=reported.mbox --output adapted/
    """
    from threattune import tracking
    from threattune.adaptation import adapt
    from threattune.errors import ConfigError

    try:
        opened = tracking.open_model(model, with_baseline=False)
        if getattr(opened, "kind", "flow") == "mail":
            from threattune.text_adaptation import adapt_mail

            result = adapt_mail(
                opened,
                sample,
                output_dir=output,
                fraction=0.5 if fraction is None else fraction,
                epochs=epochs,
                register=register_model,
                model_ref=model,
                seed=seed,
            )
        else:
            if len(sample) != 1:
                raise ConfigError(
                    "a flow model adapts on one labelled flows file",
                    field="--sample",
                    expected="one file",
                    found=", ".join(sample),
                )
            result = adapt(
                model,
                Path(sample[0]),
                output_dir=output,
                fraction=0.05 if fraction is None else fraction,
                max_rounds=max_rounds,
                register=register_model,
                seed=seed,
            )
    except ThreatTuneError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None

    before, after = result.before, result.after
    unit = str(result.extra.get("unit", "flows"))
    if unit == "messages":
        typer.echo(
            f"continued training on {result.sample_rows:,} messages (best epoch "
            f"{result.rounds_added}); measured on {result.evaluation_rows:,} messages at recall "
            f"{result.target_recall:.3f}:"
        )
    else:
        typer.echo(
            f"{result.rounds_added} rounds added on {result.sample_rows:,} flows; measured on "
            f"{result.evaluation_rows:,} flows at recall {result.target_recall:.3f}:"
        )
    benign = "legitimate-mail FPR" if unit == "messages" else "benign FPR"
    typer.echo(f"  {benign} {before['fpr']:.4%} -> {after['fpr']:.4%}")
    typer.echo(f"  recall     {before['recall']:.4%} -> {after['recall']:.4%}")
    equal = result.extra.get("at_equal_recall")
    if equal:
        typer.echo(
            f"  at equal recall on the measured {unit} ({equal['recall']:.2%}): {benign} "
            f"{equal['fpr_before']:.4%} -> {equal['fpr_after']:.4%}"
        )
    if result.registered is not None:
        typer.echo(f"registered {result.registered.name} version {result.registered.version} "
                   "as challenger")  # fmt: skip
    typer.echo(json.dumps({"model": str(result.model_folder)}))
