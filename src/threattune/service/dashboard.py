"""The dashboard's content: numbers from the store, charts as SVG geometry.

Charts are computed here as plain shapes (bars, polylines, ticks, a legend) in an SVG
coordinate system and drawn by the ``dashboard.html`` template, which autoescapes every
label. Nothing is fetched from the network and the page runs no script.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from threattune.service.served import ModelSet
from threattune.service.store import ServiceStore, hour_of

logger = logging.getLogger(__name__)

__all__ = ["Chart", "build_dashboard", "line_chart", "stacked_bars"]

PALETTE = (
    "#2f6fb3",
    "#d9822b",
    "#3a9a5b",
    "#c23b3b",
    "#7b5ea7",
    "#8c6d46",
    "#d35fa5",
    "#5f6b7a",
    "#b5a622",
    "#2aa1b3",
)
OTHER = "#a6adb4"
WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 12, 40
MAX_SERIES = len(PALETTE)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str


@dataclass(frozen=True)
class Line:
    points: str
    colour: str
    label: str
    dots: tuple[tuple[float, float, str], ...]


@dataclass
class Chart:
    """One chart: shapes in a ``width`` x ``height`` SVG, with axes and a legend."""

    key: str
    title: str
    description: str
    width: int = WIDTH
    height: int = HEIGHT
    bars: list[Bar] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    empty: str | None = None

    @property
    def plot(self) -> dict[str, float]:
        """The plot area: left, top, right, bottom."""
        return {
            "left": LEFT,
            "top": TOP,
            "right": self.width - RIGHT,
            "bottom": self.height - BOTTOM,
        }


def _limited(series: dict[str, list[float]]) -> list[tuple[str, list[float], str]]:
    """The biggest series in palette colours, the rest summed as 'other'."""
    ordered = sorted(series.items(), key=lambda item: (-sum(item[1]), item[0]))
    shown = ordered[: MAX_SERIES - 1] if len(ordered) > MAX_SERIES else ordered
    out = [(name, values, PALETTE[i]) for i, (name, values) in enumerate(shown)]
    rest = ordered[len(shown) :]
    if rest:
        total = [sum(v[i] for _, v in rest) for i in range(len(rest[0][1]))]
        out.append((f"other ({len(rest)})", total, OTHER))
    return out


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def _time_ticks(
    starts: Sequence[datetime], x_of: Any, *, hourly: bool, count: int = 6
) -> list[tuple[float, str]]:
    if not starts:
        return []
    step = max(1, len(starts) // count)
    form = "%m-%d %H:00" if hourly else "%Y-%m-%d"
    return [(x_of(i), starts[i].strftime(form)) for i in range(0, len(starts), step)]


def stacked_bars(
    key: str,
    title: str,
    description: str,
    starts: Sequence[datetime],
    series: dict[str, list[float]],
    *,
    hourly: bool,
    empty: str,
) -> Chart:
    """Bars per time bucket, one segment per series, stacked; the legend names each series."""
    chart = Chart(key, title, description)
    plot = chart.plot
    totals = [sum(values[i] for values in series.values()) for i in range(len(starts))]
    if not starts or not any(totals):
        chart.empty = empty
        return chart
    top = _nice_max(max(totals))
    slot = (plot["right"] - plot["left"]) / len(starts)
    width = max(1.0, slot * 0.8)
    height = plot["bottom"] - plot["top"]
    stacked = [0.0] * len(starts)
    for name, values, colour in _limited(series):
        chart.legend.append((colour, name))
        for i, value in enumerate(values):
            if value <= 0:
                continue
            bar_height = height * value / top
            y = plot["bottom"] - height * stacked[i] / top - bar_height
            label = f"{name}: {value:,.0f} ({starts[i].strftime('%Y-%m-%d %H:00')} UTC)"
            chart.bars.append(
                Bar(
                    plot["left"] + slot * i + (slot - width) / 2,
                    y,
                    width,
                    bar_height,
                    colour,
                    label,
                )
            )
            stacked[i] += value
    chart.y_ticks = [(plot["bottom"] - height * f, f"{top * f:,.10g}") for f in (0, 0.5, 1)]
    chart.x_ticks = _time_ticks(starts, lambda i: plot["left"] + slot * (i + 0.5), hourly=hourly)
    return chart


def line_chart(
    key: str,
    title: str,
    description: str,
    series: dict[str, list[tuple[datetime, float]]],
    *,
    empty: str,
    percent: bool = True,
    top: float | None = None,
) -> Chart:
    """One polyline per series over time; values are shares unless ``percent`` is False."""
    chart = Chart(key, title, description)
    plot = chart.plot
    points = [(t, v) for values in series.values() for t, v in values]
    if not points:
        chart.empty = empty
        return chart
    first = min(t for t, _ in points)
    last = max(t for t, _ in points)
    span = (last - first).total_seconds()
    ceiling = top if top is not None else _nice_share(max(v for _, v in points))
    height = plot["bottom"] - plot["top"]

    def x_of(moment: datetime) -> float:
        if span <= 0:
            return (plot["left"] + plot["right"]) / 2
        share = (moment - first).total_seconds() / span
        return plot["left"] + 8 + share * (plot["right"] - plot["left"] - 16)

    def y_of(value: float) -> float:
        return plot["bottom"] - height * min(value, ceiling) / ceiling

    def shown(value: float) -> str:
        return f"{value:.1%}" if percent else f"{value:.3g}"

    ordered = sorted(series.items(), key=lambda item: item[0])[:MAX_SERIES]
    for i, (name, values) in enumerate(ordered):
        colour = PALETTE[i]
        values = sorted(values)
        coords = [(x_of(t), y_of(v)) for t, v in values]
        chart.lines.append(
            Line(
                points=" ".join(f"{x:.1f},{y:.1f}" for x, y in coords),
                colour=colour,
                label=name,
                dots=tuple(
                    (x, y, f"{name}: {shown(v)} ({t.strftime('%Y-%m-%d %H:%M')} UTC)")
                    for (x, y), (t, v) in zip(coords, values, strict=True)
                ),
            )
        )
        chart.legend.append((colour, name))
    chart.y_ticks = [(y_of(ceiling * f), shown(ceiling * f)) for f in (0, 0.5, 1)]
    moments = sorted({t for t, _ in points})
    step = max(1, len(moments) // 6)
    form = "%m-%d %H:%M" if span < 3 * 86400 else "%Y-%m-%d"
    chart.x_ticks = [(x_of(t), t.strftime(form)) for t in moments[::step]]
    return chart


def _nice_share(value: float) -> float:
    for ceiling in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0):
        if value <= ceiling:
            return ceiling
    return _nice_max(value)


# --- the page --------------------------------------------------------------------------------


def build_dashboard(
    store: ServiceStore, models: ModelSet, *, hours: int, recent: int = 15
) -> dict[str, Any]:
    """Everything the dashboard template shows, for the last ``hours`` hours."""
    now = datetime.now(UTC)
    hourly = hours <= 72
    last_hour = hour_of(now)
    first_hour = last_hour - hours + 1
    bucket_hours = 1 if hourly else 24
    first_bucket = first_hour // bucket_hours
    buckets = last_hour // bucket_hours - first_bucket + 1
    starts = [
        datetime.fromtimestamp((first_bucket + i) * bucket_hours * 3600, UTC)
        for i in range(buckets)
    ]

    by_class: dict[str, list[float]] = defaultdict(lambda: [0.0] * buckets)
    by_technique: dict[str, list[float]] = defaultdict(lambda: [0.0] * buckets)
    total = 0
    for hour, alert_class, technique, count in store.alert_volume(first_hour):
        slot = hour // bucket_hours - first_bucket
        if not 0 <= slot < buckets:
            continue
        total += count
        by_class[alert_class][slot] += count
        for technique_id in [t for t in technique.split(";") if t] or ["(no technique)"]:
            by_technique[technique_id][slot] += count
    span = f"the last {hours} hours, per {'hour' if hourly else 'day'} (UTC)"
    charts = [
        stacked_bars(
            "volume-class",
            "Alerts by class",
            f"Alerts raised in {span}.",
            starts,
            dict(by_class),
            hourly=hourly,
            empty="No alerts in this window.",
        ),
        stacked_bars(
            "volume-technique",
            "Alerts by ATT&CK technique",
            f"Alerts in {span}, counted once per technique of their class.",
            starts,
            dict(by_technique),
            hourly=hourly,
            empty="No alerts in this window.",
        ),
        _false_positive_chart(store, now - timedelta(hours=hours), bucket_hours, hourly),
        _drift_chart(store),
    ]

    stats = store.verdicts.stats()
    diagnoses = store.diagnoses(limit=500)
    latest: dict[str, Any] = {}
    for record in diagnoses:
        latest[record.model_version] = record
    return {
        "generated_at": now,
        "hours": hours,
        "alerts_in_window": total,
        "charts": charts,
        "served": [m.status() for m in models.models],
        "versions": store.served_versions(),
        "verdict_stats": stats,
        "latest_diagnoses": sorted(latest.values(), key=lambda r: r.model_version),
        "recent_alerts": store.alerts(limit=recent),
        "recent_verdicts": store.verdicts.list(limit=recent, newest_first=True),
    }


def _false_positive_chart(
    store: ServiceStore, since: datetime, bucket_hours: int, hourly: bool
) -> Chart:
    """The false-positive share of judged alerts per time bucket and model version.

    An alert judged more than once counts once, with its latest verdict.
    """
    latest: dict[tuple[str, str], Any] = {}
    for verdict in store.verdicts.list(since=since, limit=None):
        latest[(verdict.alert_id, verdict.model_version)] = verdict
    counts: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for verdict in latest.values():
        bucket = hour_of(verdict.time) // bucket_hours
        counts[(verdict.model_version, bucket)][1] += 1
        if verdict.verdict == "false-positive":
            counts[(verdict.model_version, bucket)][0] += 1
    series: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for (version, bucket), (false_positives, judged) in counts.items():
        start = datetime.fromtimestamp(bucket * bucket_hours * 3600, UTC)
        series[version].append((start, false_positives / judged))
    unit = "hour" if hourly else "day"
    return line_chart(
        "false-positives",
        "False-positive share of judged alerts",
        f"Per {unit} of the verdict time and model version: false positives / judged alerts.",
        dict(series),
        empty="No verdicts in this window.",
    )


def _drift_chart(store: ServiceStore) -> Chart:
    series: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for record in store.diagnoses(limit=500):
        share = record.summary.get("drifted_share")
        if share is not None:
            series[record.model_version].append((record.diagnosed_at, float(share)))
    return line_chart(
        "drift",
        "Drift: share of features drifting",
        "Per diagnosis report received, by model version: drifting / tested features.",
        dict(series),
        empty="No diagnosis received yet (POST /api/v1/diagnoses).",
    )
