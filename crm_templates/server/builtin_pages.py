"""The server's customer-facing pages in the site's look (issue 11, item 8).

Sign-in, "check your email", the sign-in confirmation and the error pages are templates named
``crm/<name>.html``. They render through the site's own sandboxed environment (`ServerState.env`,
autoescaped) with one more loader after the site's: a site's ``templates/crm/<name>.html`` wins
over the built-in file of the same name (Flask's override convention for blueprint templates),
and the built-in ones extend ``crm/base.html``, which sits inside the site's layout:

* ``templates/layout.html`` (else ``templates/base.html``) of the site when it has one — it must
  define the blocks ``title`` (inside ``<title>``) and ``content`` (inside ``<main>``), as the
  sample sites' layouts do;
* else ``crm/standalone.html``, the server's own look.

Every page gets the context a site page gets (`base_context`: ``customer``, ``is_customer``,
``request``, ``query``, ``var`` …), so a layout that shows "Sign in"/"Sign out" works
unchanged, plus the page's own variables (`PAGES`). When the site's layout or override fails to
render (a template error, a layout without a ``content`` block, a CRM read that raises) the page
is rendered again from the built-in templates alone in the standalone look, and the failure is
logged: an error page never fails because the site is broken.

The operator pages (``crm/operator*.html``) and the preview banner stay in the server's own
look, rendered by Flask from the package only: they are not the site's, a site cannot restyle
or hide the banner, and their forms need the operator's real CSRF token even in a preview.
"""

from __future__ import annotations

import logging
import weakref
from pathlib import Path
from typing import Any

from flask import g, request, url_for
from jinja2 import ChoiceLoader, FileSystemLoader, Template
from jinja2.sandbox import SandboxedEnvironment

from ..model import Customer

log = logging.getLogger("crm_templates.server")

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
# The site layouts built-in pages sit in, first found wins (relative to the site's templates/).
LAYOUT_NAMES = ("layout.html", "base.html")
STANDALONE = "crm/standalone.html"
# Rendered by the built-in crm/base.html around the page: how a layout without a `content`
# block (which would show an empty page) is noticed.
MARKER = "data-crm-page"

# Each built-in page and the variables it gets besides `base_context` (the override contract).
PAGES: dict[str, tuple[str, ...]] = {
    "sign_in": ("next", "email", "error", "action"),
    "sign_in_sent": ("email", "minutes"),
    "sign_in_confirm": ("email", "token", "asked_here", "signed_in_as", "has_visitor", "action"),
    "error": ("status", "message", "details"),
}

_overlays: weakref.WeakKeyDictionary[SandboxedEnvironment, tuple[Any, Any]] = (
    weakref.WeakKeyDictionary()
)


class _Variables:
    """``var`` on a built-in page: no page variables (a layout reading one gets undefined)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)

    def __getitem__(self, name: str) -> Any:
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return False


def base_context(
    customer: Customer | None,
    *,
    is_customer: bool,
    preview: bool,
    variables: Any = None,
    with_form: bool = True,
) -> dict[str, Any]:
    """What every template of the site sees: site pages (`pages._serve_page`) and built-in
    pages alike. ``request`` is a plain `pages.RequestView` (never Flask's request); its
    ``form`` is empty unless ``with_form`` (an error page must not read a body that may be
    the reason for the error, such as a 413)."""
    from .customers import is_operator, session_visitor_id
    from .pages import RequestView

    view = (
        RequestView.current() if with_form else RequestView(request.path, request.method, form={})
    )

    return {
        "customer": customer,
        "customer_id": None if customer is None else customer.id,
        "is_customer": is_customer,
        "is_operator": is_operator(),
        "visitor_id": None if preview else session_visitor_id(),
        "preview": preview,
        "request": view,
        "query": request.args.to_dict(),
        "var": _Variables() if variables is None else variables,
    }


def _builtin_context() -> dict[str, Any]:
    """`base_context` for a built-in page: the session's customer, or the previewed one (and
    the service read-only) in an operator preview."""
    from .customers import current_customer, is_signed_in
    from .preview import preview_crm

    previewed = g.get("crm_previewed")
    if isinstance(previewed, Customer):
        if "crm" not in g:
            preview_crm(previewed)
        return base_context(
            previewed, is_customer=bool(previewed.email), preview=True, with_form=False
        )
    return base_context(
        current_customer(), is_customer=is_signed_in(), preview=False, with_form=False
    )


def _environments(env: SandboxedEnvironment) -> tuple[SandboxedEnvironment, SandboxedEnvironment]:
    """(the site's environment with the built-in templates after the site's own, the same with
    the built-in templates only). Overlays of ``env``: the same sandbox, autoescape, CRM
    functions and globals (``csrf_field``); made once per environment."""
    found = _overlays.get(env)
    if found is None:
        builtin = FileSystemLoader(TEMPLATES_DIR)
        assert env.loader is not None
        found = (
            env.overlay(loader=ChoiceLoader([env.loader, builtin])),
            env.overlay(loader=builtin),
        )
        _overlays[env] = found
    return found


def forget_templates(env: SandboxedEnvironment) -> None:
    """Drop every compiled template of ``env`` and of its built-in page overlays (which keep
    copies of its cache), so each is loaded from disk again: for the reload watcher, which
    knows a file changed even when its modification time (Jinja's up-to-date check) did not."""
    for each in (env, *_overlays.get(env, ())):
        if each.cache is not None:
            each.cache.clear()


def layout_name(templates_dir: Path) -> str:
    """The template built-in pages extend: the site's layout (`LAYOUT_NAMES`) or `STANDALONE`."""
    for name in LAYOUT_NAMES:
        if (templates_dir / name).is_file():
            return name
    return STANDALONE


def _is_builtin(template: Template) -> bool:
    return template.filename is not None and Path(template.filename).is_relative_to(TEMPLATES_DIR)


def asset_urls() -> dict[str, str]:
    """``crm_stylesheet`` and ``crm_icon``: the URLs crm/standalone.html links."""
    return {
        "crm_stylesheet": url_for("crm_assets.static", filename="crm.css"),
        "crm_icon": url_for("crm_assets.static", filename="favicon.svg"),
    }


def render_builtin(name: str, /, **variables: Any) -> str:
    """The HTML of built-in page ``crm/<name>.html`` (a site's override wins) with
    ``variables`` (see `PAGES`), inside the site's layout; falls back to the built-in
    template in the standalone look when the site's templates fail (logged)."""
    from .state import state

    server = state()
    site_env, builtin_env = _environments(server.env)
    template_name = f"crm/{name}.html"
    try:
        context = {**_builtin_context(), **asset_urls(), **variables}
        context["crm_layout"] = layout_name(server.site.templates_dir)
        template = site_env.get_template(template_name)
        html = template.render(context)
        if not _is_builtin(template) or MARKER in html:
            return html
        log.error(
            "built-in page %s: the layout %s has no {%% block content %%}; shown in the "
            "server's own look instead",
            template_name,
            context["crm_layout"],
        )
    except Exception:
        log.exception(
            "built-in page %s failed in the site's templates; shown in the server's own look",
            template_name,
        )
        context = _fallback_context()
        context.update(asset_urls())
        context.update(variables)
    context["crm_layout"] = STANDALONE
    return builtin_env.get_template(template_name).render(context)


def _fallback_context() -> dict[str, Any]:
    """A context that needs nothing that could have failed (the store, the session)."""
    try:
        return _builtin_context()
    except Exception:
        log.exception("built-in page: the page context failed; rendering without it")
        return {"customer": None, "is_customer": False, "preview": False, "query": {}}
