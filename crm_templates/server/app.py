"""The app factory (Flask's flaskr pattern): ``create_app(site_dir, store_url=None, **config)``."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask

from .mail import init_mail
from .security import DEFAULT_CSP, init_security
from .state import CrmServer
from .urls import init_urls

# Every setting, with its default. Each can come from the environment (same name), and
# explicit create_app() arguments win over the environment.
DEFAULTS: dict[str, Any] = {
    "CRM_STORE_URL": None,  # None: sqlite file SITE_DIR/instance/crm.db
    "CRM_SECRET_KEY": None,  # None: generated once into SITE_DIR/instance/secret_key
    "CRM_ON_ERROR": None,  # None: "raise" in debug/testing, "log" otherwise
    "CRM_MAX_BODY": 64 * 1024,
    "CRM_COOKIE_SECURE": None,  # None: Secure unless debug/testing (serve: unless loopback)
    "CRM_SESSION_DAYS": 30,
    "CRM_OPERATOR_PASSWORD": None,
    "CRM_OPERATOR_PASSWORD_HASH": None,
    "CRM_OPERATOR_LIMIT": 10,  # operator sign-in attempts per IP per 5 minutes
    "CRM_SIGN_IN_MAX_AGE": 15 * 60,
    "CRM_SIGN_IN_LIMIT": 5,  # sign-in emails per address per window
    "CRM_SIGN_IN_IP_LIMIT": 20,  # sign-in emails per client IP per window
    "CRM_SIGN_IN_WINDOW": 15 * 60,
    "CRM_BASE_URL": None,  # None: links use the request's host only if TRUSTED_HOSTS lists it
    # Comma-separated host names for Flask's TRUSTED_HOSTS (unless that is given); None: serve
    # on loopback trusts the loopback names, anything else trusts no host (urls.py).
    "CRM_TRUSTED_HOSTS": None,
    "CRM_MAILER": None,  # None: log the link (logger crm_templates.mail)
    "CRM_MAIL_URL": None,  # smtp(s)://…: mail sign-in links (mail.py); None: log them
    "CRM_MAIL_FROM": None,  # the sender; None: the URL's from= or its user name (mail.py)
    "CRM_SITE_NAME": None,  # named in sign-in mails; None: the host name of the link
    "CRM_SEED": True,
    "CRM_API": True,  # the REST API under /api/crm (server/api; API keys required)
    "CRM_ENSURE_SCHEMA": True,  # ensure crm.yaml's entities at start (render: off, read-only)
    "CRM_CONTENT_SECURITY_POLICY": DEFAULT_CSP,
    "CRM_LOCALE": "en_US",
    "CRM_TIMEZONE": "UTC",
    # The admin playground's bounds (admin/playground.py, playground_render.py).
    "CRM_PLAYGROUND_MAX_SOURCE": 100 * 1024,  # bytes of template source (413 above)
    "CRM_PLAYGROUND_TIMEOUT": 3.0,  # seconds for a page backend and its render together
    "CRM_PLAYGROUND_MAX_OUTPUT": 1024 * 1024,  # characters of rendered HTML
}
_NOT_FROM_ENV = frozenset({"CRM_MAILER"})


def _from_env(key: str, default: Any, raw: str) -> Any:
    if key == "CRM_COOKIE_SECURE" or isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def _secret_key(instance: Path) -> str:
    """The persisted secret key, created on first use so sessions survive restarts."""
    path = instance / "secret_key"
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    instance.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    try:
        # O_EXCL: two processes starting at once agree on one key (the loser reads it).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key)
    return key


def create_app(
    site_dir: str | os.PathLike[str],
    store_url: str | None = None,
    test_config: Mapping[str, Any] | None = None,
    **config: Any,
) -> Flask:
    """A Flask app serving ``site_dir`` (``pages/``, ``templates/``, ``static/``, ``crm.yaml``).

    Settings: `DEFAULTS`, then ``CRM_*`` environment variables, then ``test_config``, then
    keyword arguments; ``store_url`` is ``CRM_STORE_URL``. Flask's own keys (``DEBUG``,
    ``TESTING``, ``SECRET_KEY`` …) pass through.
    """
    site = Path(site_dir).resolve()
    app = Flask(
        __name__,
        instance_path=str(site / "instance"),
        static_folder=str(site / "static"),
        static_url_path="/static",
    )
    settings: dict[str, Any] = dict(DEFAULTS)
    for key, default in DEFAULTS.items():
        raw = os.environ.get(key)
        if raw is not None and key not in _NOT_FROM_ENV:
            settings[key] = _from_env(key, default, raw)
    settings.update(test_config or {})
    settings.update(config)
    if store_url is not None:
        settings["CRM_STORE_URL"] = store_url
    app.config.update(settings)
    app.config["CRM_SITE_DIR"] = str(site)

    debug_or_testing = bool(app.debug or app.testing)
    on_error = app.config["CRM_ON_ERROR"] or ("raise" if debug_or_testing else "log")
    if on_error not in ("raise", "log"):
        raise ValueError(f"CRM_ON_ERROR must be 'raise' or 'log'; got {on_error!r}")
    app.config["CRM_ON_ERROR"] = on_error
    if app.config.get("TRUSTED_HOSTS") is None:
        app.config["TRUSTED_HOSTS"] = app.config["CRM_TRUSTED_HOSTS"]
    init_urls(app)  # validates CRM_BASE_URL and TRUSTED_HOSTS before anything opens
    init_mail(app)  # CRM_MAIL_URL → an SMTP mailer as CRM_MAILER

    secure = app.config["CRM_COOKIE_SECURE"]
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = app.config["CRM_SECRET_KEY"] or _secret_key(
            Path(app.instance_path)
        )
    app.config.update(
        SESSION_COOKIE_NAME="crm_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=(not debug_or_testing) if secure is None else bool(secure),
        PERMANENT_SESSION_LIFETIME=timedelta(days=app.config["CRM_SESSION_DAYS"]),
        MAX_CONTENT_LENGTH=app.config["CRM_MAX_BODY"],
        # CSRF tokens live as long as the session: a form left open for an hour still posts.
        WTF_CSRF_TIME_LIMIT=None,
    )
    init_security(app)
    CrmServer(app)
    return app
