"""The diagnosis report: ``diagnosis.json`` and a self-contained ``diagnosis.html``.

The HTML page needs no network: styles are inline and charts are PNG images embedded as
base64 data URIs. Every value from the segment (column names, categories, labels) is escaped
by Jinja2's autoescaping, so a category such as ``<script>`` shows as text.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from jinja2 import Environment, select_autoescape  # noqa: E402

if TYPE_CHECKING:
    from threattune.diagnosis.diagnose import Diagnosis

__all__ = ["render_html", "write_report"]

logger = logging.getLogger(__name__)

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>threattune diagnosis: {{ d.current }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
.critical { background: #7b0000; color: #fff; } .high { background: #d9534f; color: #fff; }
.medium { background: #f0ad4e; } .low { background: #d9edf7; } .info { background: #f7f7f7; }
code { font-size: 0.9em; } img { max-width: 100%; }
</style></head><body>
<h1>Diagnosis of {{ "new mail" if d.text else "a new segment" }}</h1>
<table>
<tr><th>model</th><td><code>{{ d.model }}</code></td></tr>
<tr><th>reference</th><td><code>{{ d.reference }}</code></td></tr>
<tr><th>{{ "new mail" if d.text else "segment" }}</th><td><code>{{ d.current }}</code></td></tr>
<tr><th>{{ d.unit }}</th><td>{{ "{:,}".format(d.rows_read) }} read,
 {{ "{:,}".format(d.rows_diagnosed) }} diagnosed</td></tr>
<tr><th>worst severity</th><td class="{{ d.severity }}">{{ d.severity }}</td></tr>
</table>
<h2>Findings, most severe first</h2>
<table><tr><th>severity</th><th>kind</th><th>subject</th><th>what was found</th></tr>
{% for f in findings %}<tr><td class="{{ f.severity }}">{{ f.severity }}</td>
<td>{{ f.kind }}</td><td>{{ f.subject }}</td><td>{{ f.message }}</td></tr>
{% endfor %}</table>
{% for title, chart in charts %}<h2>{{ title }}</h2>
<img alt="{{ title }}" src="data:image/png;base64,{{ chart }}">
{% endfor %}
{% if estimate %}<h2>Label-free estimate</h2><table>
<tr><th></th><th>estimate</th><th>interval</th><th>validation</th><th>with labels</th></tr>
<tr><th>benign FPR</th><td>{{ pct(estimate.fpr) }}</td>
<td>{{ pct(estimate.fpr_ci[0]) }} to {{ pct(estimate.fpr_ci[1]) }}</td>
<td>{{ pct(estimate.validation_fpr) }}</td><td>{{ pct(estimate.true_fpr) }}</td></tr>
<tr><th>precision</th><td>{{ pct(estimate.precision) }}</td>
<td>{{ pct(estimate.precision_ci[0]) }} to {{ pct(estimate.precision_ci[1]) }}</td>
<td>{{ pct(estimate.validation_precision) }}</td><td>{{ pct(estimate.true_precision) }}</td></tr>
</table><p>Calibration: {{ estimate.calibration }}; {{ estimate.alerts }} alerts in
{{ estimate.rows }} rows.</p>{% endif %}
{% if text %}{% if text.unlike %}<h2>Messages most unlike the reference</h2>
<table><tr><th>message</th><th>subject</th><th>source</th><th>domain score</th>
<th>threat score</th><th>alert</th></tr>
{% for e in text.unlike %}<tr><td>{{ e.message }}</td><td>{{ e.subject }}</td>
<td><code>{{ e.source }}</code></td><td>{{ "%.2f"|format(e.domain_score) }}</td>
<td>{{ "%.3f"|format(e.threat_score) }}</td><td>{{ "yes" if e.alert else "" }}</td></tr>
{% endfor %}</table>{% endif %}
{% if examples %}<h2>Most novel messages, for an analyst</h2>
<table><tr><th>message</th><th>subject</th><th>source</th><th>decision</th><th>label</th>
<th>novelty</th><th>threat score</th></tr>
{% for e in examples %}<tr><td>{{ e.row }}</td><td>{{ e.subject }}</td>
<td><code>{{ e.source }}</code></td><td>{{ e.predicted }}</td><td>{{ e.label or "" }}</td>
<td>{{ "%.2f"|format(e.score) }}</td><td>{{ "%.3f"|format(e.threat_score) }}</td></tr>
{% endfor %}</table>{% endif %}
<h2>Predictions and text shape</h2>
<table><tr><th>measure</th><th>reference</th><th>new mail</th><th>effect</th><th>p</th>
<th>severity</th><th>compared with</th></tr>
{% for r in measures %}<tr><td>{{ r.measure }}</td><td>{{ pct(r.reference) }}</td>
<td>{{ pct(r.current) }}</td><td>{{ num(r.effect) }} {{ r.effect_name }}</td>
<td>{{ num(r.p_value) }}</td><td>{{ r.severity or r.status or "" }}</td><td>{{ r.basis }}</td></tr>
{% endfor %}</table>
<h2>Tokenizer and pipeline</h2>
<table><tr><th>field</th><th>stored with the model</th><th>loaded now</th><th></th></tr>
{% for r in text.fingerprint %}<tr><td>{{ r.field }}</td><td><code>{{ r.stored }}</code></td>
<td><code>{{ r.loaded }}</code></td>
<td>{{ "" if r.stored|string == r.loaded|string else "differs" }}</td></tr>
{% endfor %}</table>{% elif examples %}<h2>Most novel rows, for an analyst</h2>
<table><tr><th>row</th><th>predicted</th><th>label</th><th>novelty</th><th>features</th></tr>
{% for e in examples %}<tr><td>{{ e.row }}</td><td>{{ e.predicted }}</td>
<td>{{ e.label or "" }}</td><td>{{ "%.2f"|format(e.score) }}</td>
<td><code>{% for k, v in e.features.items() %}{{ k }}={{ v }} {% endfor %}</code></td></tr>
{% endfor %}</table>{% endif %}
{% if labels %}<h2>Labels in the {{ "labelled mail" if d.text else "segment" }}</h2>
<table><tr><th>label</th><th>{{ d.unit }}</th><th>absent from training</th><th>novelty flags</th>
<th>model alerts</th></tr>
{% for name, e in labels.items() %}<tr><td>{{ name }}</td><td>{{ e.rows }}</td>
<td>{{ "yes" if e.novel else "" }}</td><td>{{ pct(e.flag_rate) }}</td>
<td>{{ pct(e.alert_rate) }}</td></tr>{% endfor %}</table>{% endif %}
{% if drift %}<h2>Features, by drift</h2>
<table><tr><th>feature</th><th>type</th><th>PSI</th><th>KS D</th><th>Cramér's V</th>
<th>status</th></tr>
{% for r in drift %}<tr><td>{{ r.feature }}</td><td>{{ r.type }}</td><td>{{ num(r.psi) }}</td>
<td>{{ num(r.ks_d) }}</td><td>{{ num(r.cramers_v) }}</td><td>{{ r.status }}</td></tr>
{% endfor %}</table>{% endif %}
<p>Timings (s): {% for k, v in d.seconds.items() %}{{ k }} {{ "%.1f"|format(v) }}; {% endfor %}</p>
</body></html>
"""


def write_report(diagnosis: Diagnosis, folder: Path) -> Path:
    """Write ``diagnosis.json`` and ``diagnosis.html`` into ``folder``; returns the HTML path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "diagnosis.json").write_text(
        json.dumps(diagnosis.to_dict(), indent=2, allow_nan=False), encoding="utf-8"
    )
    path = folder / "diagnosis.html"
    path.write_text(render_html(diagnosis), encoding="utf-8")
    logger.info("wrote the diagnosis report to %s", path)
    return path


def render_html(diagnosis: Diagnosis) -> str:
    """The report page, every value escaped, charts inline."""
    environment = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = environment.from_string(_TEMPLATE)
    drift = diagnosis.drift.records() if diagnosis.drift is not None else []
    drift = sorted(drift, key=lambda r: -(r.get("psi") or 0.0))[:40]
    novelty = diagnosis.novelty
    text = diagnosis.text
    measures = []
    if text is not None:
        measures = [text.prediction["alert_rate"], text.prediction["threat_score"], *text.shape]
        for record in measures:
            record.setdefault("status", None)
    return template.render(
        d=diagnosis,
        text=text,
        measures=measures,
        findings=[f for f in diagnosis.findings],
        charts=_charts(diagnosis),
        estimate=diagnosis.estimate,
        examples=novelty.examples if novelty is not None else [],
        labels=novelty.by_label if novelty is not None else {},
        drift=drift,
        pct=_percent,
        num=_number,
    )


def _charts(diagnosis: Diagnosis) -> list[tuple[str, str]]:
    charts = []
    if diagnosis.drift is not None:
        records = [r for r in diagnosis.drift.records() if r.get("psi") is not None]
        records = sorted(records, key=lambda r: -r["psi"])[:15]
        if records:
            fig, ax = plt.subplots(figsize=(8, 0.3 * len(records) + 1.2))
            ax.barh([str(r["feature"]) for r in records][::-1], [r["psi"] for r in records][::-1])
            ax.axvline(0.1, color="orange", linestyle="--", label="moderate")
            ax.axvline(0.25, color="red", linestyle="--", label="major")
            ax.set_xlabel("population stability index")
            ax.legend(loc="lower right")
            charts.append(("Drift by feature (PSI, top 15)", _png(fig)))
    novelty = diagnosis.novelty
    if novelty is not None and len(novelty.scores):
        fig, ax = plt.subplots(figsize=(8, 3))
        top = float(np.quantile(np.concatenate([novelty.scores, novelty.reference_scores]), 0.99))
        bins = np.linspace(0, max(top, 1.5), 50)
        ax.hist(np.clip(novelty.reference_scores, 0, bins[-1]), bins, alpha=0.5, density=True,
                label="reference")  # fmt: skip
        ax.hist(np.clip(novelty.scores, 0, bins[-1]), bins, alpha=0.5, density=True,
                label="segment" if diagnosis.text is None else "new mail")  # fmt: skip
        ax.axvline(1.0, color="red", linestyle="--", label="threshold (5 % of reference)")
        ax.set_xlabel("novelty score / threshold of the predicted class")
        ax.legend()
        charts.append(("Novelty scores", _png(fig)))
    if diagnosis.text is not None:
        charts += _text_charts(diagnosis.text)
    if diagnosis.adversarial is not None and diagnosis.adversarial.by_class:
        ranked = diagnosis.adversarial.ranked()
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(ranked) + 1.2))
        names = [name for name, _ in ranked][::-1]
        for key, label in (("flip_25", "±25 %"), ("flip_10", "±10 %")):
            ax.barh(names, [entry[key] for _, entry in ranked][::-1], label=label)
        ax.set_xlabel("share of alerts that turn benign")
        ax.set_xlim(0, 1)
        ax.legend(loc="lower right")
        charts.append(("Evasion by attack class", _png(fig)))
    return charts


def _text_charts(text: Any) -> list[tuple[str, str]]:
    """Threat scores and token lengths of the new mail beside the reference."""
    charts = []
    pairs = (
        ("Threat scores", "threat score", text.reference_threat, text.current_threat,
         np.linspace(0.0, 1.0, 41)),
        ("Token lengths", f"tokens (cut at {text.max_length})", text.reference_lengths,
         text.current_lengths, np.linspace(0, max(text.max_length, 1), 33)),
    )  # fmt: skip
    for title, label, reference, current, bins in pairs:
        if not len(reference) or not len(current):
            continue
        fig, ax = plt.subplots(figsize=(8, 3))
        ax.hist(reference, bins, alpha=0.5, density=True, label="reference")
        ax.hist(current, bins, alpha=0.5, density=True, label="new mail")
        ax.set_xlabel(label)
        ax.legend()
        charts.append((title, _png(fig)))
    return charts


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _percent(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.2%}"


def _number(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return ""
    return f"{value:.3f}"
