"""The Reports tab (issue 12, item 6): ``/admin/reports`` (entities with reports),
``/admin/entities/<slug>/reports`` (a chart and a data table per reported field),
``…/reports/<field_key>.csv`` (that table as CSV) and ``…/reports/<field_key>.svg`` (the chart
as a standalone SVG). The numbers come from `crm_templates.reports` (aggregated by the store);
the charts from `charts` (pygal, server-side, no JavaScript).

Query parameter ``interval`` (``day``, ``week``, ``month``; default ``month``) groups date
fields; anything else is a 400 naming the accepted values. An unknown entity, or a field that
is not reported, is a 404.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import Response, abort, current_app, request, url_for
from flask.typing import ResponseReturnValue
from markupsafe import Markup

from ...errors import CrmValidationError
from ...model import Entity
from ...reports import (
    DEFAULT_INTERVAL,
    Chart,
    Report,
    build_charts,
    build_report,
    reported_fields,
)
from ...storage.aggregations import DATE_INTERVALS
from ...transfer import escape_cell
from ..state import state
from . import bp
from .charts import chart_css, inline_svg, standalone_svg
from .context import NAVIGATION, render_admin

NAVIGATION.append(("Reports", "crm_admin.reports_index"))

#: The CSP of a standalone SVG: its own inline style, nothing else (no script, no fetch).
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'"


def _entity(slug: str) -> Entity:
    entity = state().crm.store.get_entity(slug)
    if entity is None:
        abort(404, f"There is no entity {slug!r}.")
    return entity


def _interval() -> str:
    interval = request.args.get("interval", DEFAULT_INTERVAL)
    if interval not in DATE_INTERVALS:
        abort(400, f"interval must be one of {', '.join(DATE_INTERVALS)}; got {interval!r}")
    return interval


def _maybe_url(endpoint: str, **values: Any) -> str | None:
    """A link to another concern's view when this app has it (else the crumb is plain text)."""
    if endpoint not in current_app.view_functions:
        return None
    return url_for(endpoint, **values)


def _chart(entity: Entity, field_key: str) -> Chart:
    fields = [f for f in entity.fields if f.key == field_key]
    reported = [f for f in fields if f.reporting_config and f.reporting_config.reportable]
    if not reported:
        abort(404, f"{entity.name} has no reported field {field_key!r}.")
    try:
        report = build_charts(state().crm.store, entity, reported, _interval())
    except CrmValidationError as exc:
        abort(400, str(exc))
    return report.charts[0]


def number_text(value: float | int | None) -> str:
    """A number for the table and the CSV: whole numbers without decimals, others as Python
    writes them (``12.5``); None as an empty string."""
    if value is None:
        return ""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


@bp.get("/reports")
def reports_index() -> ResponseReturnValue:
    """Every entity with how many of its fields are reported and a link to its report."""
    crm = state().crm
    entities = [(entity, len(reported_fields(entity))) for entity in crm.list_entities()]
    return render_admin("admin/reports_index.html", title="Reports", entities=entities)


@bp.get("/entities/<slug>/reports")
def entity_reports(slug: str) -> ResponseReturnValue:
    """The entity's Reports tab: a chart and its data table per reported field."""
    entity = _entity(slug)
    interval = _interval()
    report: Report = build_report(state().crm.store, entity, interval)
    charts = [
        (chart, Markup(inline_svg(chart, f"report-chart-{n}")))
        for n, chart in enumerate(report.charts, start=1)
    ]
    return render_admin(
        "admin/reports.html",
        title=f"{entity.name}: reports",
        breadcrumbs=[
            ("Reports", url_for("crm_admin.reports_index")),
            (entity.name, _maybe_url("crm_admin.entity", slug=slug)),
        ],
        report=report,
        charts=charts,
        intervals=DATE_INTERVALS,
        has_dates=any(c.aggregation_type == "date" for c in report.charts),
        number_text=number_text,
        reports_stylesheet=url_for("crm_admin.static", filename="reports.css"),
        charts_stylesheet=url_for("crm_admin.report_chart_css"),
    )


@bp.get("/reports/charts.css")
def report_chart_css() -> ResponseReturnValue:
    """pygal's chart styles, scoped to ``.crm-chart`` (the page's inline SVGs carry none)."""
    response = Response(chart_css(), mimetype="text/css")
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


def table_csv(chart: Chart) -> str:
    """A chart's data table as CSV: a header row, then label, number (and the baseline
    comparison when a baseline is set). Text cells are protected against formula injection
    (`crm_templates.transfer.escape_cell`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    header = [chart.label_header, chart.value_header]
    if chart.baseline:
        header.append("Against baseline")
    writer.writerow([escape_cell(cell) for cell in header])
    for row in chart.rows:
        cells = [escape_cell(row.label), number_text(row.value)]
        if chart.baseline:
            cells.append(escape_cell(row.baseline) if row.baseline else "")
        writer.writerow(cells)
    return out.getvalue()


@bp.get("/entities/<slug>/reports/<field_key>.csv")
def report_csv(slug: str, field_key: str) -> ResponseReturnValue:
    """One chart's data table as a CSV download."""
    chart = _chart(_entity(slug), field_key)
    response = Response(table_csv(chart), mimetype="text/csv")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="{slug}-{field_key}.csv"'  # slug and key: [a-zA-Z0-9_.-]
    )
    return response


@bp.get("/entities/<slug>/reports/<field_key>.svg")
def report_svg(slug: str, field_key: str) -> ResponseReturnValue:
    """One chart as a standalone SVG document (``image/svg+xml``, no script)."""
    chart = _chart(_entity(slug), field_key)
    response = Response(standalone_svg(chart), mimetype="image/svg+xml")
    response.headers["Content-Security-Policy"] = SVG_CSP
    return response
