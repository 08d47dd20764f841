"""`CrmServer`, the page server's Flask extension: one site, one store, one template environment.

Following Flask's extension guide, it is created once, bound with ``init_app(app)``, and keeps
its per-app state in ``app.extensions["crm"]`` (a `ServerState`), so several apps — one per
site — can live in one process (tests, benchmarks).

The store, the Jinja installation, the customer and the shutdown are those of
`crm_templates.flask.CrmTemplates` (issue 11, item 1: one integration, not two): the server
binds it with the session customer (or an operator's preview) as its customer loader and takes
its pages' sandboxed environment from it. What is the server's own is here: the site, the seed,
mail, rate limits, tokens.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask, current_app
from markupsafe import Markup

from ..flask import CrmState, CrmTemplates
from ..service import Crm
from .sessions import Housekeeping, RateLimit, SingleUseTokens
from .site import Site

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

log = logging.getLogger("crm_templates.server")
mail_log = logging.getLogger("crm_templates.mail")


@dataclass(frozen=True)
class MailMessage:
    """One outgoing email (the sign-in link)."""

    to: str
    subject: str
    body: str
    link: str
    html: str | None = None  # the HTML alternative of ``body`` (mail.sign_in_message)


Mailer = Callable[[MailMessage], None]


class ServerState:
    """Everything one app serves from: ``app.extensions["crm"]``."""

    def __init__(self, app: Flask, site: Site, crm_state: CrmState) -> None:
        self.site = site
        self.crm_state = crm_state
        self.crm: Crm = crm_state.crm
        config = app.config
        # The default mailer logs the link and keeps the last messages here (tests read it).
        self.outbox: deque[MailMessage] = deque(maxlen=100)
        self.mailer: Mailer = config.get("CRM_MAILER") or self._log_mail
        # Limits and used tokens live in the store: every process of the site shares them.
        store, window = self.crm.store, config["CRM_SIGN_IN_WINDOW"]
        self.sign_in_per_email = RateLimit(
            store, "sign-in-email", config["CRM_SIGN_IN_LIMIT"], window
        )
        self.sign_in_per_ip = RateLimit(store, "sign-in-ip", config["CRM_SIGN_IN_IP_LIMIT"], window)
        self.operator_attempts = RateLimit(
            store, "operator-sign-in", config["CRM_OPERATOR_LIMIT"], 300
        )
        self.sign_in_tokens = SingleUseTokens(store)
        self.housekeeping = Housekeeping(store)
        self.env = self._environment(app)

    def _log_mail(self, message: MailMessage) -> None:
        self.outbox.append(message)
        mail_log.info("sign-in link for %s: %s", message.to, message.link)

    def _environment(self, app: Flask) -> SandboxedEnvironment:
        from flask_wtf.csrf import generate_csrf
        from jinja2 import ChoiceLoader, FileSystemLoader, PrefixLoader

        from .preview import PREVIEW_CSRF_KEY, in_preview

        site = self.site
        # Sandboxed, autoescaped, and a value that is not set (or a read that failed under
        # on_error="log") prints as nothing, not as "None" (issue 9, item 4); the CRM of the
        # app, for the session customer (CrmTemplates.sandboxed_environment).
        env = self.crm_state.extension.sandboxed_environment(
            app,
            # Page templates load as "pages/<path>", layouts and includes by plain name from
            # templates/; the prefix keeps a layout from shadowing a page of the same name.
            loader=ChoiceLoader(
                [
                    PrefixLoader({"pages": FileSystemLoader(site.pages_dir)}),
                    FileSystemLoader(site.templates_dir),
                ]
            ),
            auto_reload=site.reload,
        )

        def csrf_token() -> str:
            # A page shown in a preview gets a token of its own (another session key), which
            # the CSRF check never accepts: a form from a preview tab cannot write for the
            # operator after the preview ended in another tab (issue 8, fault 6).
            return str(generate_csrf(token_key=PREVIEW_CSRF_KEY if in_preview() else None))

        def csrf_field() -> Markup:
            return Markup('<input type="hidden" name="csrf_token" value="{}">').format(csrf_token())

        env.globals.update(csrf_token=csrf_token, csrf_field=csrf_field)
        return env

    def close(self) -> None:
        """Drain queued async writes and close the store (idempotent; `CrmState.close`)."""
        self.crm_state.close()


def state() -> ServerState:
    """The current app's `ServerState`."""
    found = current_app.extensions["crm"]
    assert isinstance(found, ServerState)
    return found


class CrmServer:
    """The Flask extension: ``CrmServer(app)`` or ``CrmServer().init_app(app)``."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Bind `CrmTemplates` (store, schema, Jinja, customer, shutdown), seed an empty
        store, install the routes."""
        from ..loading import load_seed, store_is_empty
        from . import admin, auth, operator, pages, preview
        from .customers import request_crm_or_none

        config = app.config
        site = Site(config["CRM_SITE_DIR"], reload=bool(app.debug))
        # The store defaults to crm.db in the app's instance folder, which is SITE_DIR/instance
        # (create_app); the session customer, or the customer an operator previews, is whom
        # the templates read and write for (customers.request_crm).
        extension = CrmTemplates(schema_file=site.schema_file, customer_loader=request_crm_or_none)
        extension.init_app(app)
        crm_state = extension.state(app)
        try:
            crm = crm_state.crm
            if config["CRM_SEED"] and site.seed_file is not None and store_is_empty(crm):
                load_seed(crm, site.seed_file)
                log.info("seeded the empty store from %s", site.seed_file)
            server = ServerState(app, site, crm_state)
        except BaseException:
            crm_state.close()
            raise
        app.extensions["crm"] = server

        app.register_blueprint(auth.bp)
        app.register_blueprint(operator.bp)
        app.register_blueprint(admin.bp)
        preview.install(app)
        app.register_blueprint(pages.assets)
        app.register_blueprint(pages.bp)
        pages.register_error_pages(app)
        if config.get("CRM_API", True):
            from .api import init_api

            init_api(app)  # after the error pages: the API answers its errors as JSON
