"""`CrmServer`, the Flask extension object: one site, one store, one template environment.

Following Flask's extension guide, it is created once, bound with ``init_app(app)``, and keeps
its per-app state in ``app.extensions["crm"]`` (a `ServerState`), so several apps — one per
site — can live in one process (tests, benchmarks).
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask, current_app
from markupsafe import Markup

from ..cli import ensure_schema
from ..service import Crm
from ..storage import open_store
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

    def __init__(self, app: Flask, site: Site, crm: Crm) -> None:
        self.site = site
        self.crm = crm
        config = app.config
        # The default mailer logs the link and keeps the last messages here (tests read it).
        self.outbox: deque[MailMessage] = deque(maxlen=100)
        self.mailer: Mailer = config.get("CRM_MAILER") or self._log_mail
        # Limits and used tokens live in the store: every process of the site shares them.
        store, window = crm.store, config["CRM_SIGN_IN_WINDOW"]
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
        self._closed = False
        self._close_lock = threading.Lock()

    def _log_mail(self, message: MailMessage) -> None:
        self.outbox.append(message)
        mail_log.info("sign-in link for %s: %s", message.to, message.link)

    def _environment(self, app: Flask) -> SandboxedEnvironment:
        from flask_wtf.csrf import generate_csrf
        from jinja2 import ChoiceLoader, FileSystemLoader, PrefixLoader
        from jinja2.sandbox import SandboxedEnvironment

        from renderers import RenderOptions

        from ..extension import CrmExtension, none_as_empty
        from .customers import request_crm_or_none
        from .preview import PREVIEW_CSRF_KEY, in_preview

        site = self.site
        env = SandboxedEnvironment(
            extensions=[CrmExtension],
            autoescape=True,
            # Page templates load as "pages/<path>", layouts and includes by plain name from
            # templates/; the prefix keeps a layout from shadowing a page of the same name.
            loader=ChoiceLoader(
                [
                    PrefixLoader({"pages": FileSystemLoader(site.pages_dir)}),
                    FileSystemLoader(site.templates_dir),
                ]
            ),
            auto_reload=site.reload,
            # A value that is not set (or a read that failed under on_error="log") prints as
            # nothing, not as "None" (issue 9, item 4).
            finalize=none_as_empty,
        )

        def csrf_token() -> str:
            # A page shown in a preview gets a token of its own (another session key), which
            # the CSRF check never accepts: a form from a preview tab cannot write for the
            # operator after the preview ended in another tab (issue 8, fault 6).
            return str(generate_csrf(token_key=PREVIEW_CSRF_KEY if in_preview() else None))

        def csrf_field() -> Markup:
            return Markup('<input type="hidden" name="csrf_token" value="{}">').format(csrf_token())

        env.globals.update(csrf_token=csrf_token, csrf_field=csrf_field)
        env.install_crm(  # type: ignore[attr-defined]
            self.crm,
            on_error=app.config["CRM_ON_ERROR"],
            request_crm=request_crm_or_none,
            render_options=RenderOptions(
                locale=app.config["CRM_LOCALE"], timezone=app.config["CRM_TIMEZONE"]
            ),
        )
        return env

    def close(self) -> None:
        """Drain queued async writes and close the store (idempotent)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self.crm.close()


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
        """Open the store, ensure the site's schema, seed an empty store, install the routes."""
        from . import auth, operator, pages, preview
        from .seed import load_seed, store_is_empty

        config = app.config
        site = Site(config["CRM_SITE_DIR"], reload=bool(app.debug))
        store_url = config.get("CRM_STORE_URL") or site.default_store_url()
        crm = Crm(open_store(store_url))
        try:
            schema = site.schema_file
            if schema is not None and config.get("CRM_ENSURE_SCHEMA", True):
                ensure_schema(crm, schema)
            if config["CRM_SEED"] and site.seed_file is not None and store_is_empty(crm):
                load_seed(crm, site.seed_file)
                log.info("seeded the empty store from %s", site.seed_file)
            server = ServerState(app, site, crm)
        except BaseException:
            crm.close()
            raise
        app.extensions["crm"] = server
        # Stop draining at interpreter exit even when nobody calls close(); a weak reference
        # so a finished test's app is not kept alive by the atexit table.
        ref = weakref.ref(server)

        def close_at_exit() -> None:
            alive = ref()
            if alive is not None:
                alive.close()

        atexit.register(close_at_exit)

        app.register_blueprint(auth.bp)
        app.register_blueprint(operator.bp)
        preview.install(app)
        app.register_blueprint(pages.assets)
        app.register_blueprint(pages.bp)
        pages.register_error_pages(app)
