"""``/admin/playground``: render a site page or a typed template as a customer (issue 12, item 7).

The operator picks a customer (searched by email, name or id, `customer_list.find_customers`)
and a page of the site (its source fills the editor) or types a template, and sees

* the page rendered as that customer by `playground_render.render_source`: read-only (a
  preview never writes), in the site's sandbox, bounded in time and output, errors shown
  with their line — never a 500;
* lint's diagnostics of the source (`lint.lint_source` against the store's entities), listed
  with links to the lines of a numbered source view that marks them.

The rendered HTML is shown **isolated**: in ``<iframe sandbox srcdoc="…">`` (escaped into the
attribute). ``sandbox`` without ``allow-same-origin`` or ``allow-scripts`` gives the frame an
opaque origin and runs none of its scripts, so the rendered page can neither read the admin
page nor use the operator's cookies; it also inherits the admin's CSP (srcdoc documents do).

Views (all behind the admin's operator gate):

* ``GET /admin/playground?page=/path&customer=ID&q=text`` — the page's source, rendered;
* ``POST /admin/playground`` (form, CSRF): ``action`` = ``render`` (default: the typed
  ``source``), ``load`` (the chosen page's source) or ``find`` (customers matching ``q``); a
  full page, the no-JavaScript path;
* ``POST /admin/playground/render`` (same fields, CSRF): JSON ``{ok, results, lines, source?}``
  with the HTML of the preview/diagnostics region and of the numbered source, which
  ``admin/static/playground.js`` swaps in while the operator types.

A source over `MAX_SOURCE` bytes (setting ``CRM_PLAYGROUND_MAX_SOURCE``) is refused with 413
(the site's body cap ``CRM_MAX_BODY``, 64 KB by default, refuses larger posts first, also 413);
an unknown page or customer is 422. Renders write nothing, so no audit record; each render is
logged at INFO (logger ``crm_templates.admin``): operator, page, customer — never the source.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, jsonify, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from ...customer_list import find_customers
from ...lint import Problem, lint_source, schema_from_entities
from ...model import Customer
from ..playground_render import Rendered, render_source
from ..preview import allow_in_preview
from ..site import PageRoute
from ..state import state
from . import bp
from .context import NAVIGATION, operator_id, render_admin

log = logging.getLogger("crm_templates.admin")

MAX_SOURCE = 100 * 1024  # bytes of UTF-8 template source
CUSTOMER_CHOICES = 50  # customers offered in the select (newest first, or the search's matches)
ACTIONS = ("render", "load", "find")

NAVIGATION.append(("Playground", "crm_admin.playground"))


class PlaygroundInputError(Exception):
    """A request the playground cannot serve: ``status`` (413, 422) and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Playground:
    """Everything the playground page and its fragments show."""

    pages: list[str]
    page: str
    query: str
    customers: list[Customer]
    matched: int
    customer: Customer | None
    source: str
    problems: list[Problem] = field(default_factory=list)
    rendered: Rendered | None = None
    message: str | None = None  # why nothing was rendered (no customer, bad input)

    @property
    def marks(self) -> dict[int, list[str]]:
        """Line → messages: lint's problems and the render error's line."""
        marks: dict[int, list[str]] = {}
        for problem in self.problems:
            marks.setdefault(problem.line, []).append(problem.message)
        error = self.rendered.error if self.rendered is not None else None
        if error is not None and error.line is not None:
            marks.setdefault(error.line, []).append(error.message)
        return marks

    @property
    def lines(self) -> list[str]:
        """The source's lines (one empty line for an empty source)."""
        return self.source.split("\n") if self.source else [""]


def _routable_pages() -> list[str]:
    site = state().site
    return [url for url in site.urls if (r := site.route(url)) and r.template is not None]


def _route(page: str) -> PageRoute | None:
    if not page:
        return None
    route = state().site.route(page)
    if route is None or route.template is None:
        raise PlaygroundInputError(422, f"There is no page {page!r} with a template on this site.")
    return route


def _page_source(route: PageRoute) -> str:
    assert route.template is not None
    path = state().site.pages_dir / route.template.removeprefix("pages/")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlaygroundInputError(422, f"The page {route.url!r} cannot be read: {exc}") from exc


def _max_source() -> int:
    return int(current_app.config.get("CRM_PLAYGROUND_MAX_SOURCE", MAX_SOURCE))


def _check_size(source: str) -> None:
    limit = _max_source()
    if len(source.encode("utf-8")) > limit:
        raise PlaygroundInputError(
            413,
            f"The template source is larger than the {limit // 1024} KB the playground "
            "renders; shorten it.",
        )


def _build(values: MultiDict[str, str], *, posted: bool) -> Playground:
    """Read the playground's fields (a form or the query string), render, lint."""
    crm = state().crm
    action = values.get("action") or ("render" if posted else "load")
    if action not in ACTIONS:
        raise PlaygroundInputError(422, f"Unknown action {action!r}; one of {', '.join(ACTIONS)}.")
    pages = _routable_pages()
    page = (values.get("page") or "").strip()
    route = _route(page)
    query = (values.get("q") or "").strip()
    customers, matched = find_customers(crm.store, query or None, limit=CUSTOMER_CHOICES)
    wanted = (values.get("customer") or "").strip()
    if action == "find" and customers and wanted not in {c.id for c in customers}:
        wanted = customers[0].id  # the search's first match, unless the chosen one matched
    customer = None
    if wanted:
        customer = crm.get_customer(wanted)
        if customer is None:
            raise PlaygroundInputError(422, f"There is no customer {wanted!r}.")
    elif customers:
        customer = customers[0]  # the newest (or first matching) customer until one is picked
    if customer is not None and customer.id not in {c.id for c in customers}:
        customers = [customer, *customers]
    if route is not None and (action == "load" or "source" not in values):
        source = _page_source(route)
    else:  # loading "no page" keeps what was typed
        source = values.get("source") or ""
    source = source.replace("\r\n", "\n")
    _check_size(source)
    view = Playground(pages, page, query, customers, matched, customer, source)
    view.problems = lint_source(source, schema_from_entities(crm.list_entities()), "source")
    if query and not matched:
        view.message = f"No customer matches {query!r}."
    if customer is None:
        view.message = view.message or "Pick a customer to render as."
    elif not source.strip():
        view.message = view.message or "Type a template, or choose a page and load its source."
    else:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        view.rendered = render_source(app, source, customer, route)
        log.info(
            "playground: operator %s rendered %s as customer %s",
            operator_id(),
            f"page {page}" + (" (edited)" if action != "load" else "") if page else "a template",
            customer.id,
        )
    return view


def _context(view: Playground) -> dict[str, Any]:
    return {"pg": view, "max_source_kb": _max_source() // 1024}


@bp.route("/playground", methods=["GET", "POST"])
def playground() -> ResponseReturnValue:
    """The playground page (GET: a page's source; POST: the no-JavaScript form)."""
    posted = request.method == "POST"
    values = request.form if posted else request.args
    try:
        view = _build(values, posted=posted)
        status = 200
    except PlaygroundInputError as exc:
        # The form again, as sent, with the message; nothing rendered.
        source = (values.get("source") or "").replace("\r\n", "\n")
        crm = state().crm
        customers, matched = find_customers(crm.store, None, limit=CUSTOMER_CHOICES)
        view = Playground(
            _routable_pages(),
            (values.get("page") or "").strip(),
            (values.get("q") or "").strip(),
            customers,
            matched,
            None,
            source if len(source.encode("utf-8")) <= _max_source() else "",
            message=exc.message,
        )
        status = exc.status
    return render_admin(
        "admin/playground.html",
        title="Template playground",
        breadcrumbs=[],
        status=status,
        playground_stylesheet=url_for("crm_admin.static", filename="playground.css"),
        playground_script=url_for("crm_admin.static", filename="playground.js"),
        **_context(view),
    )


@bp.post("/playground/render")
def playground_render() -> ResponseReturnValue:
    """The live preview: JSON with the HTML of the results region and the numbered source."""
    try:
        view = _build(request.form, posted=True)
    except PlaygroundInputError as exc:
        return jsonify({"ok": False, "status": exc.status, "error": exc.message}), exc.status
    context = _context(view)
    body: dict[str, Any] = {
        "ok": True,
        "results": render_template("admin/_playground_results.html", **context),
        "lines": render_template("admin/_playground_lines.html", **context),
    }
    if request.form.get("action") == "load":
        body["source"] = view.source
    return jsonify(body)


# Both POSTs only render (read-only, `render_source`): they work while the operator previews.
allow_in_preview("crm_admin.playground")
allow_in_preview("crm_admin.playground_render")
