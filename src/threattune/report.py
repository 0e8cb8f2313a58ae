"""Evaluation reports a SOC lead can read: Markdown, JSON and figures in one folder."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from threattune import _plots
from threattune.evaluation import Evaluation, class_codes, evaluate
from threattune.findings import Finding

logger = logging.getLogger(__name__)

__all__ = ["EvaluationReport", "summary_table"]

SUMMARY_METRICS = (
    ("accuracy", "accuracy"),
    ("macro_f1", "macro F1"),
    ("binary_accuracy", "binary accuracy"),
    ("detection_rate", "attack recall"),
    ("benign_fpr", "benign FPR"),
    ("average_precision", "attack AP"),
)


@dataclass
class EvaluationReport:
    """Evaluations of a model and its baseline on one or more labelled sets, with context."""

    title: str
    evaluations: list[Evaluation]
    context: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, evaluation: Evaluation, is_attack: np.ndarray, attack_score: np.ndarray) -> None:
        """Add one evaluation and the attack scores behind its PR curve."""
        self.evaluations.append(evaluation)
        self.curves.setdefault(evaluation.dataset, {})[evaluation.model] = (is_attack, attack_score)

    def add_model(
        self,
        model: Any,
        features: Any,
        labels: np.ndarray,
        dataset: str,
        *,
        source: str,
    ) -> list[Evaluation]:
        """Measure a flow model on labelled flows: the trees at their most probable class, at
        their operating point (when set), and the baseline at its most probable class."""
        codes = class_codes(labels, model.classes, source=source)
        proba = model.predict_proba(features)
        runs = [("boosted-trees", proba, None)]
        if model.operating_point is not None:
            decided = class_codes(model.decide(proba).classes, model.classes, source=source)
            runs.append(("boosted-trees@operating-point", proba, decided))
        if model.baseline is not None:
            runs.append(("baseline", model.baseline_proba(features), None))
        out = []
        for name, probabilities, predicted in runs:
            evaluation = evaluate(
                codes,
                probabilities,
                model.classes,
                model.benign_class,
                dataset=dataset,
                model=name,
                predicted=predicted,
                techniques=model.technique_labels(),
            )
            self.add(
                evaluation, codes != model.benign_index, 1.0 - probabilities[:, model.benign_index]
            )
            out.append(evaluation)
        return out

    def primary(self, dataset: str) -> Evaluation | None:
        """The model's evaluation as deployed: at its operating point when it has one."""
        return self.find(dataset, "boosted-trees@operating-point") or self.find(
            dataset, "boosted-trees"
        )

    def find(self, dataset: str, model: str) -> Evaluation | None:
        return next(
            (e for e in self.evaluations if e.dataset == dataset and e.model == model), None
        )

    def write(self, folder: Path) -> Path:
        """Write report.md, report.json and the PNGs; returns the Markdown file."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        figures: dict[str, list[str]] = {}
        for evaluation in self.evaluations:
            if evaluation is not self.primary(evaluation.dataset):
                continue
            slug = _slug(evaluation.dataset)
            confusion = _plots.confusion_png(
                evaluation.confusion,
                evaluation.classes,
                f"{evaluation.dataset}: confusion matrix",
                folder / f"confusion-{slug}.png",
            )
            curves = self.curves.get(evaluation.dataset, {})
            curve = _plots.pr_curve_png(
                {name: c for name, c in curves.items() if "@" not in name},
                f"{evaluation.dataset}: precision-recall of the attack score",
                folder / f"pr-curve-{slug}.png",
                points={
                    e.model: _alert_point(e)
                    for e in self.evaluations
                    if e.dataset == evaluation.dataset and "@" in e.model
                },
            )
            figures[evaluation.dataset] = [confusion.name, curve.name]

        document = {
            "title": self.title,
            "context": self.context,
            "evaluations": [e.to_dict() for e in self.evaluations],
            "findings": [f.to_dict() for f in self.findings],
            "figures": figures,
            "notes": self.notes,
            "sections": self.sections,
            **self.extra,
        }
        (folder / "report.json").write_text(json.dumps(document, indent=2, default=str))
        markdown = folder / "report.md"
        markdown.write_text(self.to_markdown(figures), encoding="utf-8")
        return markdown

    def to_markdown(self, figures: dict[str, list[str]] | None = None) -> str:
        """The report as Markdown."""
        lines = [f"# {self.title}", ""]
        for key, value in self.context.items():
            lines.append(f"- **{key}**: {value}")
        lines += ["", "## Summary", "", summary_table(self.evaluations), ""]
        for note in self.notes:
            lines += [f"> {note}", ""]
        for section in self.sections:
            lines += [section, ""]

        for dataset in dict.fromkeys(e.dataset for e in self.evaluations):
            model = self.primary(dataset)
            baseline = self.find(dataset, "baseline")
            if model is None:
                continue
            lines += [
                f"## {dataset}",
                "",
                f"{model.n_flows:,} flows; per class: {model.model}.",
                "",
            ]
            lines += [
                "| class | ATT&CK | precision | recall | F1 | support | baseline P | baseline R "
                "| baseline F1 |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for i, metrics in enumerate(model.per_class):
                b = baseline.per_class[i] if baseline else None
                lines.append(
                    f"| {metrics.name} | {metrics.techniques or '-'} | {metrics.precision:.4f} "
                    f"| {metrics.recall:.4f} | {metrics.f1:.4f} | {metrics.support:,} | "
                    + (f"{b.precision:.4f} | {b.recall:.4f} | {b.f1:.4f} |" if b else "- | - | - |")
                )
            lines.append("")
            for name in (figures or {}).get(dataset, []):
                lines += [f"![{name}]({name})", ""]

        if self.findings:
            lines += [
                "## Data findings",
                "",
                "| severity | kind | subject | finding |",
                "|---|---|---|---|",
            ]
            for finding in sorted(self.findings, key=lambda f: f.severity, reverse=True):
                lines.append(
                    f"| {finding.severity} | {finding.kind} | {finding.subject} | "
                    f"{finding.message} |"
                )
            lines.append("")
        return "\n".join(lines)


def summary_table(evaluations: list[Evaluation]) -> str:
    """One Markdown row per evaluation with the overall metrics."""
    header = "| set | model | flows | " + " | ".join(label for _, label in SUMMARY_METRICS) + " |"
    rule = "|---|---|---:|" + "---:|" * len(SUMMARY_METRICS)
    rows = [
        f"| {e.dataset} | {e.model} | {e.n_flows:,} | "
        + " | ".join(_percent(e.metric(name)) for name, _ in SUMMARY_METRICS)
        + " |"
        for e in evaluations
    ]
    return "\n".join([header, rule, *rows])


def _alert_point(evaluation: Evaluation) -> tuple[float, float]:
    """(recall, precision) of any-attack alerts, from the evaluation's confusion matrix."""
    counts = np.asarray(evaluation.confusion)
    benign = evaluation.classes.index(evaluation.benign_class)
    attack_rows = np.arange(len(counts)) != benign
    flagged = counts[:, attack_rows].sum(axis=1)
    true_alerts = flagged[attack_rows].sum()
    alerts = flagged.sum()
    recall = true_alerts / max(counts[attack_rows].sum(), 1)
    return float(recall), float(true_alerts / alerts) if alerts else 1.0


def _percent(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.2f} %"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "set"
