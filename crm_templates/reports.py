"""The Reports tab's semantics (issue 12, item 6; seed: ``reporting_config``): which fields an
entity reports, how each is aggregated (by the store: `Store.aggregate`) and what table of
numbers each chart shows. No jinja2/flask here (SPEC §2): the admin draws the charts.

Rules (the seed names the settings; where it is silent these are our decisions):

- A field is reported when it has a ``reporting_config`` with ``reportable`` not false, in
  declaration order. Fields without one are not on the tab.
- ``aggregation_type`` defaults from the field type: number → numeric, boolean → boolean,
  date/datetime → date, anything else → categorical.
- ``preferred_chart`` defaults: numeric → histogram with a ``bucket_size``, else kpi;
  categorical → bar; boolean → pie; date → line. A chart that cannot show the aggregation is
  replaced and the report says so: categorical/boolean as histogram or line → bar; date as
  pie or kpi → line... (see `_chart_for`). Numbers drawn as pie, bar or line show the
  histogram buckets.
- kpi (numeric): count, sum, average, minimum, maximum of the numbers; with a ``baseline``
  each of average, minimum and maximum is compared with it (below / within / above).
- histogram: buckets ``[k·size, (k+1)·size)`` of ``bucket_size``; without one, a width from
  1, 2 or 5 × 10ⁿ giving at most 10 buckets over min..max (a second store query). With a
  baseline each bucket says whether it lies below, within, across or above it.
- pie / bar (categorical, boolean): one row per option in the field's order (zero counts
  included), then values that are not options (most first), then "Other values" beyond the
  store's bucket limit, then "No value" (entries without one) when there are any. A
  multiselect entry counts once in each option it holds (so shares are of selections).
  Booleans read "Yes" / "No".
- line (date): entries per day, week (Monday first) or month of the value's UTC calendar date.
- Empty buckets between the first and last non-empty bucket are filled with 0 (at most
  `MAX_FILLED` buckets; beyond that only non-empty buckets are listed). Entries without a value
  are never bucketed: histogram and line report them as "entries without a value".
- Only the entity's current entries count (the store's contract).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from .errors import CrmValidationError
from .model import Entity, Field
from .storage.aggregations import (
    DATE_INTERVALS,
    Aggregation,
    AggregationResult,
    Bucket,
    Metric,
    histogram_key,
)
from .storage.base import Store

MAX_FILLED = 1000
TERMS_SIZE = 1000
AUTO_BUCKETS = 10
DEFAULT_INTERVAL = "month"
_NUMERIC_CHARTS = ("kpi", "histogram", "pie", "bar", "line")


@dataclass(frozen=True, slots=True)
class Row:
    """One row of a chart's data table: a label, its number, and (with a baseline) how the
    row compares with it (``"below"``, ``"within"``, ``"across"``, ``"above"`` or "")."""

    label: str
    value: float | int | None
    baseline: str = ""


@dataclass(frozen=True, slots=True)
class Chart:
    """A reported field: the chart drawn (``kpi``, ``histogram``, ``pie``, ``bar``, ``line``),
    the ``configured`` one (None: default), its data ``rows`` with the table's column headers
    (``label_header``, ``value_header``), the store's counts (``entries``, ``missing``),
    ``metric`` for numbers, the baseline and ``notes`` (why a chart was replaced)."""

    field: Field
    aggregation_type: str
    chart: str
    configured: str | None
    title: str
    label_header: str
    value_header: str
    rows: tuple[Row, ...]
    entries: int
    missing: int
    metric: Metric | None = None
    baseline: tuple[float | None, float | None] | None = None
    notes: tuple[str, ...] = ()

    @property
    def bucketed(self) -> tuple[Row, ...]:
        """The rows a chart draws (kpi: min, average, max; others: every row)."""
        if self.chart == "kpi" and self.aggregation_type == "numeric":
            return tuple(r for r in self.rows if r.label in ("Minimum", "Average", "Maximum"))
        if self.chart == "kpi":
            return self.rows[:2]
        return self.rows


@dataclass(frozen=True, slots=True)
class Report:
    """An entity's Reports tab: its entry count, the date ``interval`` used and the charts."""

    entity: Entity
    entries: int
    interval: str
    charts: tuple[Chart, ...]


def aggregation_type(f: Field) -> str:
    """The field's aggregation type: configured, else from its type (module docstring)."""
    rc = f.reporting_config
    if rc is not None and rc.aggregation_type:
        return rc.aggregation_type
    return {"number": "numeric", "boolean": "boolean", "date": "date", "datetime": "date"}.get(
        f.type, "categorical"
    )


def reported_fields(entity: Entity) -> list[Field]:
    """The fields on the Reports tab: a ``reporting_config`` whose ``reportable`` is true."""
    return [f for f in entity.fields if f.reporting_config and f.reporting_config.reportable]


def _chart_for(kind: str, preferred: str | None, has_bucket: bool) -> tuple[str, str | None]:
    """(chart drawn, note) for an aggregation type and a configured chart."""
    if kind == "numeric":
        if preferred is None:
            return ("histogram" if has_bucket else "kpi"), None
        return preferred, None
    if kind in ("categorical", "boolean"):
        default = "pie" if kind == "boolean" else "bar"
        if preferred is None:
            return default, None
        if preferred in ("pie", "bar", "kpi"):
            return preferred, None
        return "bar", f"{preferred} needs numbers or dates; drawn as a bar chart"
    if preferred is None or preferred == "line":
        return "line", None
    if preferred in ("bar", "histogram"):
        return "bar", None
    return "line", f"{preferred} does not suit dates; drawn as a line"


def _nice_width(low: float, high: float) -> float:
    """A bucket width of 1, 2 or 5 × 10ⁿ giving at most `AUTO_BUCKETS` buckets over
    ``low``..``high`` (1 when they are equal)."""
    span = high - low
    if span <= 0 or not math.isfinite(span):
        return 1.0
    power = 10.0 ** math.floor(math.log10(span / AUTO_BUCKETS))
    for step in (1, 2, 5, 10, 20, 50):
        width = step * power
        if math.floor(high / width) - math.floor(low / width) + 1 <= AUTO_BUCKETS:
            return width
    return 100 * power


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.6g}"


def _against(value: float | None, low: float | None, high: float | None) -> str:
    if value is None:
        return ""
    if low is not None and value < low:
        return "below"
    if high is not None and value > high:
        return "above"
    return "within"


def _bucket_against(start: float, end: float, low: float | None, high: float | None) -> str:
    if low is not None and end <= low:
        return "below"
    if high is not None and start > high:
        return "above"
    if (low is None or start >= low) and (high is None or end <= high):
        return "within"
    return "across"


def _filled_histogram(buckets: tuple[Bucket, ...], width: float) -> list[tuple[float, int]]:
    if not buckets:
        return []
    counts = {round(float(b.key) / width): b.count for b in buckets}
    first, last = min(counts), max(counts)
    if last - first + 1 > MAX_FILLED:
        return [(histogram_key(i, width), counts[i]) for i in sorted(counts)]
    return [(histogram_key(i, width), counts.get(i, 0)) for i in range(first, last + 1)]


def _next_start(day: date, interval: str) -> date:
    if interval == "day":
        return day + timedelta(days=1)
    if interval == "week":
        return day + timedelta(days=7)
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def _filled_dates(buckets: tuple[Bucket, ...], interval: str) -> list[tuple[str, int]]:
    counts = {str(b.key): b.count for b in buckets}
    if not counts:
        return []
    first, last = date.fromisoformat(min(counts)), date.fromisoformat(max(counts))
    out: list[tuple[str, int]] = []
    day = first
    while day <= last:
        out.append((day.isoformat(), counts.get(day.isoformat(), 0)))
        if len(out) > MAX_FILLED:
            return sorted(counts.items())
        day = _next_start(day, interval)
    return out


def date_label(start: str, interval: str) -> str:
    """A bucket's label: ``2026-02-01`` (day), ``Week of 2026-01-26``, ``2026-02`` (month)."""
    if interval == "week":
        return f"Week of {start}"
    if interval == "month":
        return start[:7]
    return start


def _term_rows(f: Field, kind: str, result: AggregationResult) -> list[Row]:
    counts: dict[Any, int] = {b.key: b.count for b in result.buckets}
    rows: list[Row] = []
    if kind == "boolean":
        rows = [Row("Yes", counts.pop(True, 0)), Row("No", counts.pop(False, 0))]
    else:
        for option in f.options:
            rows.append(Row(option.label, counts.pop(option.value, 0)))
    for key, count in counts.items():  # values that are not options, most first (store order)
        rows.append(Row(str(key), count))
    if result.other:
        rows.append(Row("Other values", result.other))
    if result.missing:
        rows.append(Row("No value", result.missing))
    return rows


def _requests(f: Field, kind: str, chart: str, interval: str) -> list[Aggregation]:
    rc = f.reporting_config
    if kind == "numeric":
        if chart == "kpi":
            return [Aggregation("metric", f.key)]
        if rc is not None and rc.bucket_size:
            return [Aggregation("histogram", f.key, interval=rc.bucket_size)]
        return [Aggregation("metric", f.key)]  # the width needs min..max first
    if kind in ("categorical", "boolean"):
        if kind == "boolean":
            return [Aggregation("terms", f.key, value_type="boolean", size=TERMS_SIZE)]
        return [Aggregation("terms", f.key, size=TERMS_SIZE)]
    return [Aggregation("date_histogram", f.key, interval=interval)]


def _needs_width(f: Field, kind: str, chart: str) -> bool:
    """A numeric chart drawn from buckets without a configured ``bucket_size``."""
    rc = f.reporting_config
    return kind == "numeric" and chart != "kpi" and not (rc and rc.bucket_size)


def build_report(store: Store, entity: Entity, interval: str = DEFAULT_INTERVAL) -> Report:
    """The Reports tab of ``entity``: one `Chart` per reported field, aggregated by ``store``
    in one `Store.aggregate` call (plus one for histograms without a ``bucket_size``).

    ``interval``: ``day``, ``week`` or ``month`` for date fields (`CrmValidationError`
    otherwise).
    """
    return build_charts(store, entity, reported_fields(entity), interval)


def build_charts(
    store: Store, entity: Entity, fields: list[Field], interval: str = DEFAULT_INTERVAL
) -> Report:
    """`build_report` for some of the entity's reported fields (one chart's SVG or CSV)."""
    if interval not in DATE_INTERVALS:
        raise CrmValidationError(
            f"interval must be one of {', '.join(DATE_INTERVALS)}; got {interval!r}"
        )
    plans = []
    requests: list[Aggregation] = []
    for f in fields:
        kind = aggregation_type(f)
        rc = f.reporting_config
        chart, note = _chart_for(
            kind, rc.preferred_chart if rc else None, bool(rc and rc.bucket_size)
        )
        wanted = _requests(f, kind, chart, interval)
        plans.append((f, kind, chart, note, len(requests), len(wanted)))
        requests.extend(wanted)
    results = store.aggregate(entity.slug, requests)
    # Histograms without a bucket size: a width from min..max, then one more query.
    extra: list[Aggregation] = []
    for f, kind, chart, _note, start, _count in plans:
        if _needs_width(f, kind, chart):
            metric = results[start].metric
            low = metric.min if metric and metric.min is not None else 0.0
            high = metric.max if metric and metric.max is not None else 0.0
            extra.append(Aggregation("histogram", f.key, interval=_nice_width(low, high)))
    later = iter(store.aggregate(entity.slug, extra) if extra else [])
    entries = store.count_entries(entity.slug) if not results else results[0].entries
    charts = []
    for f, kind, chart, note, start, count in plans:
        mine = results[start : start + count]
        if _needs_width(f, kind, chart):
            mine = [*mine, next(later)]
        charts.append(_chart(f, kind, chart, note, mine, interval))
    return Report(entity=entity, entries=entries, interval=interval, charts=tuple(charts))


def _chart(
    f: Field,
    kind: str,
    chart: str,
    note: str | None,
    results: list[AggregationResult],
    interval: str,
) -> Chart:
    rc = f.reporting_config
    low = rc.baseline_min if rc else None
    high = rc.baseline_max if rc else None
    baseline = (low, high) if (low is not None or high is not None) else None
    configured = rc.preferred_chart if rc else None
    first = results[0]
    common: dict[str, Any] = {
        "field": f,
        "aggregation_type": kind,
        "chart": chart,
        "configured": configured,
        "entries": first.entries,
        "missing": first.missing,
        "baseline": baseline,
        "notes": (note,) if note else (),
    }
    if kind == "numeric":
        metric = first.metric
        rows: tuple[Row, ...]
        if chart == "kpi":
            metric = metric or Metric()
            rows = (
                Row("Count", metric.count),
                Row("Sum", metric.sum),
                Row("Average", metric.avg, _against(metric.avg, low, high) if baseline else ""),
                Row("Minimum", metric.min, _against(metric.min, low, high) if baseline else ""),
                Row("Maximum", metric.max, _against(metric.max, low, high) if baseline else ""),
            )
            return Chart(
                title=f"{f.label}: key figures",
                label_header="Statistic",
                value_header=f.label,
                rows=rows,
                metric=metric,
                **common,
            )
        histogram = results[-1]
        width = float(histogram.request.interval)  # type: ignore[arg-type]
        rows = tuple(
            Row(
                f"{_number(start)} to under {_number(start + width)}",
                count,
                _bucket_against(start, start + width, low, high) if baseline else "",
            )
            for start, count in _filled_histogram(histogram.buckets, width)
        )
        return Chart(
            title=f"{f.label}: entries per {_number(width)}-wide range",
            label_header=f"{f.label} range",
            value_header="Entries",
            rows=rows,
            metric=metric,
            **common,
        )
    if kind in ("categorical", "boolean") and chart == "kpi":
        holding = first.entries - first.missing
        top = [r for r in _term_rows(f, kind, first) if r.label not in ("Other values", "No value")]
        top.sort(key=lambda r: -(r.value or 0))
        rows = (
            Row("Entries with a value", holding),
            Row("Entries without a value", first.missing),
            *([Row(f"Most common: {top[0].label}", top[0].value)] if holding and top else []),
        )
        return Chart(
            title=f"{f.label}: key figures",
            label_header="Statistic",
            value_header="Entries",
            rows=rows,
            **common,
        )
    if kind in ("categorical", "boolean"):
        rows = tuple(_term_rows(f, kind, first))
        return Chart(
            title=f"{f.label}: entries per value",
            label_header=f.label,
            value_header="Entries",
            rows=rows,
            **common,
        )
    rows = tuple(
        Row(date_label(start, interval), count)
        for start, count in _filled_dates(first.buckets, interval)
    )
    return Chart(
        title=f"{f.label}: entries per {interval}",
        label_header={"day": "Day", "week": "Week", "month": "Month"}[interval],
        value_header="Entries",
        rows=rows,
        **common,
    )
