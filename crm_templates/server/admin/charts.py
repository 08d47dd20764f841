"""Server-side SVG charts of the Reports tab, drawn by pygal (issue 12, item 6).

No JavaScript and no external URL: pygal's script (its config and the tooltip script it would
load from a CDN), its comments (which name pygal.org) and the XML declaration are removed.
Each SVG is ``role="img"`` labelled by its own ``<title>`` (``aria-labelledby``). Text (field
and option labels) goes through pygal's XML serialiser, which escapes it.

Two forms:

- `inline_svg`: for the report page; the ``<style>`` is removed too, because the server's CSP
  (``style-src 'self'``) forbids inline style elements — the same rules are served once as a
  stylesheet by `chart_css` (pygal's CSS with its per-chart ``#chart-<uuid>`` scope replaced by
  the ``.crm-chart`` class every chart carries);
- `standalone_svg`: a self-contained ``image/svg+xml`` document (its style kept) for download.

Colours follow the admin theme's custom properties (``--text``, ``--line``), so charts follow
light and dark mode; series colours are mid-tones legible on both.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree

import pygal
from pygal.style import Style

from ...reports import Chart

PALETTE = (
    "#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#dc2626", "#65a30d",
)  # fmt: skip
MAX_SLICES = 64  # the stylesheet has colours for this many pie slices
STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="var(--text, #0f172a)",
    foreground_strong="var(--text, #0f172a)",
    foreground_subtle="var(--line, #cbd5e1)",
    opacity=".85",
    opacity_hover="1",
    colors=PALETTE,
    font_family="inherit",
    title_font_size=18,
    label_font_size=13,
    major_label_font_size=13,
    legend_font_size=14,
    value_font_size=14,
)
_SCOPE = re.compile(r"#chart-[0-9a-f-]+")


def _cleaner(chart_id: str, keep_style: bool) -> Callable[[Any], Any]:
    def clean(root: Any) -> Any:
        for parent in list(root.iter()):
            for child in list(parent):
                tag = child.tag if isinstance(child.tag, str) else "#comment"
                name = tag.rsplit("}", 1)[-1]
                if name in ("script", "#comment") or (name == "style" and not keep_style):
                    parent.remove(child)
        title = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "title"), None)
        if title is not None:
            title.set("id", f"{chart_id}-title")
            root.set("aria-labelledby", f"{chart_id}-title")
        root.set("role", "img")
        root.set("id", chart_id)
        if keep_style:
            # The style's rules are scoped to pygal's random id: keep them pointing at ours.
            for style in root.iter("style"):
                style.text = _SCOPE.sub(f"#{chart_id}", style.text or "")
        return root

    return clean


def _config(chart: Chart, chart_id: str, keep_style: bool) -> dict[str, Any]:
    return {
        "style": STYLE,
        "title": chart.title,
        "js": [],
        "disable_xml_declaration": True,
        "classes": ["pygal-chart", "crm-chart"],
        "show_legend": False,
        "print_values": False,
        "truncate_label": 40,
        "no_data_text": "No values yet",
        "width": 800,
        "height": 420,
    }


def _values(chart: Chart) -> list[tuple[str, float]]:
    return [(row.label, float(row.value or 0)) for row in chart.bucketed]


def _graph(chart: Chart, chart_id: str, keep_style: bool) -> Any:
    graph = _plain_graph(chart, chart_id, keep_style)
    graph.add_xml_filter(_cleaner(chart_id, keep_style))
    return graph


def _plain_graph(chart: Chart, chart_id: str, keep_style: bool) -> Any:
    config = _config(chart, chart_id, keep_style)
    rows = _values(chart)
    kind = chart.chart
    if kind == "pie" or (kind == "kpi" and chart.aggregation_type != "numeric"):
        if len(rows) <= MAX_SLICES:
            graph = pygal.Pie(
                **{**config, "show_legend": True}, legend_at_bottom=True, inner_radius=0.4
            )
            for label, value in rows:
                if value:
                    graph.add(label, [value])
            return graph
        kind = "bar"
    if kind == "line":
        graph = pygal.Line(
            x_label_rotation=30 if len(rows) > 2 else 0, include_x_axis=True, fill=True, **config
        )
    elif kind == "kpi":
        graph = pygal.HorizontalBar(**{**config, "print_values": True})
    else:
        graph = pygal.Bar(x_label_rotation=30 if len(rows) > 6 else 0, **config)
    graph.x_labels = [label for label, _ in rows]
    graph.add(chart.value_header, [value for _, value in rows])
    return graph


def inline_svg(chart: Chart, chart_id: str) -> str:
    """The chart as an ``<svg>`` element for an HTML page (no style: see `chart_css`)."""
    return str(_graph(chart, chart_id, keep_style=False).render(is_unicode=True))


def standalone_svg(chart: Chart, chart_id: str = "chart") -> str:
    """The chart as a self-contained SVG document (styles kept, no script)."""
    return str(_graph(chart, chart_id, keep_style=True).render(is_unicode=True))


@functools.cache
def chart_css() -> str:
    """pygal's stylesheet for `STYLE`, scoped to ``.crm-chart`` (computed once)."""
    captured: list[str] = []

    def capture(root: Any) -> Any:
        captured.extend(style.text or "" for style in root.iter("style"))
        return root

    graph = pygal.Pie(style=STYLE, js=[], disable_xml_declaration=True)
    graph.add_xml_filter(capture)
    for n in range(MAX_SLICES):
        graph.add(str(n), [1])
    graph.render(is_unicode=True)
    css = "\n".join(captured)
    return _SCOPE.sub(".crm-chart", css)


def parse_svg(svg: str) -> Any:
    """Parse an SVG produced here (tests and checks)."""
    return ElementTree.fromstring(svg)
