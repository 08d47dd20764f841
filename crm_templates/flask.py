"""The CRM inside any Flask app (issue 11, item 1; SPEC §11): `CrmTemplates`.

In the style of Flask-Login and Flask-SQLAlchemy::

    from flask import Flask
    from crm_templates.flask import CrmTemplates

    crm = CrmTemplates()                      # options here are defaults for every app

    def create_app():
        app = Flask(__name__)
        app.config["CRM_STORE_URL"] = "sqlite:////srv/app/crm.db"
        crm.init_app(app)
        return app

    @crm.customer_loader
    def load_customer():                      # the current customer's id, or None
        return session.get("customer_id")

`init_app` opens the store named by ``CRM_STORE_URL`` (default: ``crm.db`` in the app's
instance folder), ensures the entities of ``CRM_SCHEMA_FILE`` when one is set, installs the CRM
functions and ``crm_*`` filters into the app's own Jinja environment (``app.jinja_env``: the
app's templates are trusted, so it is not sandboxed), keeps its state in
``app.extensions["crm_templates"]`` (a `CrmState`), adds the ``flask crm …`` commands, and
registers the store's close (which drains queued async writes) for interpreter exit.

Templates read and write for the customer the loader names (without a loader: Flask-Login's
``current_user.get_id()`` when Flask-Login is installed, set up on the app and the user is
authenticated; else no customer: reads answer their empty defaults, writes are refused with
the core's `MissingOptionError`). A ``customer_id`` or ``customer`` variable in the render
context takes precedence (SPEC §7). Every render keeps its own read cache and customer (the
extension's `RenderScopedTemplate`, issue 8), so concurrent requests of two customers never see
each other's data, also through macros imported without context.

User-authored templates belong in a sandbox: ``crm.sandboxed_environment(loader=...)``.

This module is an integration, like the page server: it imports Flask and Jinja2; the core
never imports it (SPEC §2).
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from flask import Flask, current_app, g, has_app_context, has_request_context
from flask.cli import AppGroup, with_appcontext

from renderers import RenderOptions

from .errors import CrmUsageError
from .extension import CrmExtension, OnError, none_as_empty
from .service import Crm
from .storage import open_store
from .webhooks import DeliveryWorker, start_worker

if TYPE_CHECKING:
    from jinja2 import Environment
    from jinja2.sandbox import SandboxedEnvironment

#: The key of `CrmState` in ``app.extensions``.
EXTENSION_KEY = "crm_templates"

#: The ``app.config`` keys the extension reads, with the constructor option each one falls
#: back to and that option's default. A key that is missing or None in ``app.config`` takes
#: the option; the page server's ``DEFAULTS`` use the same keys.
CONFIG: dict[str, tuple[str, Any]] = {
    "CRM_STORE_URL": ("store_url", None),  # None: sqlite:///<app.instance_path>/crm.db
    "CRM_SCHEMA_FILE": ("schema_file", None),  # crm.yaml / .json to ensure at init_app
    "CRM_ENSURE_SCHEMA": ("ensure_schema", True),  # False: leave the store's entities alone
    "CRM_ON_ERROR": ("on_error", None),  # None: "raise" under DEBUG/TESTING, else "log"
    "CRM_LOCALE": ("locale", "en_US"),  # crm_render's number/date formatting (renderers)
    "CRM_TIMEZONE": ("timezone", "UTC"),  # crm_render's datetime zone
    "CRM_WEBHOOKS_WORKER": ("webhooks_worker", True),  # False: deliver with the CLI instead
}
_OPTION_KEYS = {option: key for key, (option, _) in CONFIG.items()}

#: What a customer loader may return: a customer id (``int`` is taken as its text), None (no
#: customer), a provider ``(create: bool) -> id | None`` that may create the customer on the
#: first write, or a view of this app's service made by `Crm.bind` (used as it is: the page
#: server's session customer and its read-only previews).
CustomerLoader = Callable[[], Any]
L = TypeVar("L", bound=CustomerLoader)

_G_VIEW = "_crm_templates_view"


def flask_login_customer() -> str | None:
    """The default customer loader: Flask-Login's ``current_user.get_id()`` when Flask-Login
    is installed, the app has a ``LoginManager`` and the user is authenticated; else None.

    Flask-Login is imported only here, at call time: it stays an optional dependency.
    """
    if not has_request_context() or getattr(current_app, "login_manager", None) is None:
        return None
    try:
        from flask_login import current_user
    except ImportError:
        return None
    if not getattr(current_user, "is_authenticated", False):
        return None
    found = current_user.get_id()
    return None if found is None else str(found)


class CrmState:
    """One app's CRM: ``app.extensions["crm_templates"]``.

    ``crm`` is the trusted service (`Crm`) over the app's store (for the app's Python code:
    setup, imports, admin jobs); templates and `current_crm` get views of it bound to the
    current customer. ``store_url``, ``on_error`` and ``render_options`` are the settings
    `CrmTemplates.init_app` resolved.
    """

    def __init__(
        self,
        extension: CrmTemplates,
        crm: Crm,
        store_url: str,
        on_error: OnError,
        render_options: RenderOptions,
    ) -> None:
        self.extension = extension
        self.crm = crm
        self.store_url = store_url
        self.on_error: OnError = on_error
        self.render_options = render_options
        self._closed = False
        self._close_lock = threading.Lock()
        #: The webhook delivery worker (`crm_templates.webhooks`), or None when
        #: ``CRM_WEBHOOKS_WORKER`` is off; its thread runs once the store has webhooks.
        self.webhooks: DeliveryWorker | None = None

    # --- the current customer -------------------------------------------------------------

    def current_crm(self) -> Crm:
        """The service bound to the current customer (the loader's answer), for this call.

        The loader runs on every call (once per render, and per `CrmTemplates.current_crm`
        access), so a login or logout earlier in the request is honoured; a view for the same
        customer id is reused within one app context. Raises `CrmUsageError` for a loader
        answer of another type.
        """
        loaded = self.extension.load_customer()
        if isinstance(loaded, Crm):
            return loaded if not loaded.trusted else loaded.bind()
        if isinstance(loaded, int) and not isinstance(loaded, bool):
            loaded = str(loaded)
        if loaded == "":
            loaded = None
        if loaded is None or isinstance(loaded, str):
            cached = g.get(_G_VIEW) if has_app_context() else None
            if cached is not None and cached[0] is self and cached[1] == loaded:
                view: Crm = cached[2]
                return view
            view = self.crm.bind(loaded)
            if has_app_context():
                setattr(g, _G_VIEW, (self, loaded, view))
            return view
        if callable(loaded):
            return self.crm.bind(loaded)
        raise CrmUsageError(
            "a customer_loader must return a customer id (str or int), None, a provider "
            f"(create) -> id, or a view made by Crm.bind; got {type(loaded).__name__}"
        )

    def _request_crm_or_none(self) -> Crm | None:
        """For ``install_crm(request_crm=...)``: the current customer's view inside an app
        context of this app, None elsewhere (the environment's service answers then)."""
        if not has_app_context() or current_app.extensions.get(EXTENSION_KEY) is not self:
            return None
        return self.current_crm()

    # --- Jinja ----------------------------------------------------------------------------

    def install(self, env: Environment) -> Environment:
        """Add `CrmExtension` to ``env`` (once) and install this app's CRM into it: the
        current customer's view inside a request of this app, ``crm`` (as a view) elsewhere."""
        if CrmExtension.identifier not in env.extensions:
            env.add_extension(CrmExtension)
        env.install_crm(  # type: ignore[attr-defined]
            self.crm,
            on_error=self.on_error,
            request_crm=self._request_crm_or_none,
            render_options=self.render_options,
        )
        return env

    # --- shutdown -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once `close` ran."""
        return self._closed

    def close(self) -> None:
        """Drain queued async writes and close the store (idempotent, thread-safe)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        # Queued async writes first (their webhooks are queued in the store), then the worker.
        self.crm.flush()
        if self.webhooks is not None:
            self.webhooks.stop()
        self.crm.close()


class CrmTemplates:
    """The Flask extension: ``CrmTemplates(app, **options)`` or ``CrmTemplates(**options)``
    and ``init_app(app)`` per app (the app factory pattern).

    ``options`` are the defaults of the `CONFIG` keys, by option name (``store_url``,
    ``schema_file``, ``ensure_schema``, ``on_error``, ``locale``, ``timezone``); a key set (not
    None) in ``app.config`` wins. ``customer_loader`` may be given here instead of with the
    decorator. Unknown options raise `TypeError`.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        customer_loader: CustomerLoader | None = None,
        **options: Any,
    ) -> None:
        unknown = sorted(set(options) - set(_OPTION_KEYS))
        if unknown:
            raise TypeError(
                f"CrmTemplates got unknown option(s) {', '.join(unknown)}; the options are "
                f"{', '.join(sorted(_OPTION_KEYS))} (or the CRM_* keys in app.config)"
            )
        self.options: dict[str, Any] = dict(options)
        self._customer_loader = customer_loader
        self._app = app
        if app is not None:
            self.init_app(app)

    # --- binding an app -------------------------------------------------------------------

    def _setting(self, app: Flask, key: str) -> Any:
        value = app.config.get(key)
        if value is not None:
            return value
        option, default = CONFIG[key]
        value = self.options.get(option)
        return default if value is None else value

    def init_app(self, app: Flask) -> None:
        """Open the app's store, ensure its schema file, install the CRM into
        ``app.jinja_env``, add the ``flask crm`` commands and the shutdown hooks.

        Raises `RuntimeError` if the app already has it, `ValueError` for a bad
        ``CRM_ON_ERROR``, and the core's `CrmError` for a bad store URL or schema file (the
        store is closed again then).
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "this app already has crm_templates (app.extensions['crm_templates']); call "
                "init_app once per app"
            )
        on_error: Any = self._setting(app, "CRM_ON_ERROR") or (
            "raise" if app.debug or app.testing else "log"
        )
        if on_error not in ("raise", "log"):
            raise ValueError(f"CRM_ON_ERROR must be 'raise' or 'log'; got {on_error!r}")
        store_url = self._setting(app, "CRM_STORE_URL")
        if store_url is None:
            instance = Path(app.instance_path)
            instance.mkdir(parents=True, exist_ok=True)
            store_url = f"sqlite:///{instance / 'crm.db'}"
        render_options = RenderOptions(
            locale=self._setting(app, "CRM_LOCALE"), timezone=self._setting(app, "CRM_TIMEZONE")
        )
        crm = Crm(open_store(store_url))
        try:
            schema = self._setting(app, "CRM_SCHEMA_FILE")
            if schema is not None and self._setting(app, "CRM_ENSURE_SCHEMA"):
                from .loading import ensure_schema

                ensure_schema(crm, schema)
            state = CrmState(self, crm, store_url, on_error, render_options)
            state.install(app.jinja_env)
            if self._setting(app, "CRM_WEBHOOKS_WORKER"):
                state.webhooks = start_worker(crm.store)
        except BaseException:
            crm.close()
            raise
        app.extensions[EXTENSION_KEY] = state
        app.teardown_appcontext(_teardown)
        app.cli.add_command(command_group())
        # Drain at interpreter exit even when nobody calls close(); a weak reference, so an
        # app that is gone (a finished test's) is not kept alive by the atexit table.
        ref = weakref.ref(state)

        def close_at_exit() -> None:
            alive = ref()
            if alive is not None:
                alive.close()

        atexit.register(close_at_exit)

    def state(self, app: Flask | None = None) -> CrmState:
        """The `CrmState` of ``app`` (default: the current app, else the app given to the
        constructor). Raises `RuntimeError` when there is no app or it has no CRM."""
        if app is None:
            app = current_app._get_current_object() if has_app_context() else self._app  # type: ignore[attr-defined]
        if app is None:
            raise RuntimeError(
                "no Flask app: pass app=..., or work inside an app context (with app.app_context())"
            )
        found = app.extensions.get(EXTENSION_KEY)
        if not isinstance(found, CrmState):
            raise RuntimeError(f"crm_templates is not set up on app {app.name!r}: call init_app")
        return found

    # --- the current customer -------------------------------------------------------------

    def customer_loader(self, loader: L) -> L:
        """Decorator: register the function that names the current customer.

        It takes no arguments and returns the customer's id (``str``; an ``int`` is taken as
        its text), None for no customer, a provider ``(create: bool) -> id | None`` (called
        with ``create=True`` by the first write, so it may create the customer then), or a view
        of this app's service made by `Crm.bind` (used as it is). It runs inside the app
        context, once per render and per `current_crm` access. Replaces the default,
        `flask_login_customer`.
        """
        self._customer_loader = loader
        return loader

    def load_customer(self) -> Any:
        """What the registered loader (or `flask_login_customer`) answers now."""
        loader = self._customer_loader or flask_login_customer
        return loader()

    @property
    def service(self) -> Crm:
        """The current app's trusted service (`Crm`), for Python code that is not acting for
        a customer (setup, imports, jobs)."""
        return self.state().crm

    @property
    def current_crm(self) -> Crm:
        """The current app's service bound to the current customer: what templates use, for
        views written in Python (``crm.current_crm.set_field(slug=..., fieldKey=..., value=1)``).
        """
        return self.state().current_crm()

    # --- templates ------------------------------------------------------------------------

    def sandboxed_environment(
        self, app: Flask | None = None, **options: Any
    ) -> SandboxedEnvironment:
        """A `SandboxedEnvironment` with the app's CRM installed, for user-authored templates.

        ``options`` go to ``SandboxedEnvironment`` (``loader=...``, ``auto_reload=...``, more
        ``extensions``); the defaults are ``autoescape=True`` and ``finalize=none_as_empty``
        (a value that is not set prints as nothing). Its templates read and write for the
        same customer as the app's own, through the CRM functions only, and reach no Python
        internals. The sandbox does not choose the customer for them: a template that passes
        ``referenceId`` (or sets ``customer_id``) names whom it reads, as in SPEC §4.
        """
        from jinja2.sandbox import SandboxedEnvironment

        options.setdefault("autoescape", True)
        options.setdefault("finalize", none_as_empty)
        extensions = [*options.pop("extensions", ()), CrmExtension]
        env = SandboxedEnvironment(extensions=extensions, **options)
        self.state(app).install(env)
        return env

    # --- shutdown -------------------------------------------------------------------------

    def close(self, app: Flask | None = None) -> None:
        """Drain the app's queued async writes and close its store (idempotent). Also runs
        at interpreter exit; call it yourself where an app ends earlier (tests, workers)."""
        self.state(app).close()


def _teardown(exc: BaseException | None) -> None:
    """teardown_appcontext: drop the app context's cached customer view."""
    g.pop(_G_VIEW, None)


# --- flask crm … -------------------------------------------------------------------------------

# The store commands of ``crm-templates`` that `flask crm` offers, on the app's store. Those not
# defined (yet) in crm_templates.cli are left out.
APP_COMMANDS = ("ensure", "entries", "customers", "export", "import")


def _on_app_store(command: click.Command) -> click.Command:
    """``command`` (a ``crm-templates`` command with a ``--store`` option) as a ``flask crm``
    command: the same arguments and options and the same callback, with ``--store``
    defaulting to the app's store URL."""
    assert command.callback is not None
    original: Callable[..., Any] = command.callback
    params: list[click.Parameter] = []
    for param in command.params:
        if param.name == "store_url":
            param = click.Option(
                ["--store", "store_url"],
                default=None,
                help="Store URL; default: the app's (CRM_STORE_URL, else instance/crm.db).",
            )
        params.append(param)

    @with_appcontext
    def callback(**kwargs: Any) -> Any:
        if kwargs.get("store_url") is None:
            state = current_app.extensions.get(EXTENSION_KEY)
            if not isinstance(state, CrmState):
                raise click.ClickException("crm_templates is not set up on this app")
            kwargs["store_url"] = state.store_url
        return click.get_current_context().invoke(original, **kwargs)

    return click.Command(
        command.name,
        params=params,
        callback=callback,
        help=command.help,
        short_help=command.short_help,
        epilog=command.epilog,
    )


def command_group() -> click.Group:
    """The ``flask crm`` group: `APP_COMMANDS` of ``crm-templates``, on the app's store."""
    from .cli import CrmGroup
    from .cli import main as cli_main

    class CrmAppGroup(CrmGroup, AppGroup):
        """CRM errors become one-line messages and exit status 1 (as in crm-templates)."""

    group = CrmAppGroup("crm", help="The CRM of this app (crm-templates commands on its store).")
    for name in APP_COMMANDS:
        command = cli_main.commands.get(name)
        if command is not None and any(p.name == "store_url" for p in command.params):
            group.add_command(_on_app_store(command))
    return group


def current_state() -> CrmState:
    """The current app's `CrmState` (inside an app context)."""
    found = current_app.extensions.get(EXTENSION_KEY)
    if not isinstance(found, CrmState):
        raise RuntimeError("crm_templates is not set up on the current app: call init_app")
    return found


__all__ = [
    "APP_COMMANDS",
    "CONFIG",
    "EXTENSION_KEY",
    "CrmState",
    "CrmTemplates",
    "CustomerLoader",
    "command_group",
    "current_state",
    "flask_login_customer",
]
