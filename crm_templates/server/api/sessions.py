"""No cookie session under ``/api/crm`` (issue 13: "cookies are never accepted for the API";
item 7: B9).

Flask opens the app's session (verifying and decoding the signed cookie, building a signing
serializer) for every request before the view is known, and saves it afterwards (adding
``Vary: Cookie`` once anything read it). The API authenticates by key only, so a session there
is never used: `ApiSkipsSessions` wraps the app's session interface and gives requests under
``/api/crm`` Flask's read-only `NullSession` — empty, whatever cookie was sent; writing to it
raises — and never saves it (no ``Set-Cookie``, no ``Vary: Cookie`` on API answers). Every
other path is the wrapped interface's business, unchanged. Opening and saving took ~25 µs of
each API request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask.sessions import NullSession, SessionInterface, SessionMixin

from .spec import PREFIX

if TYPE_CHECKING:
    from flask import Flask, Request, Response


def _api_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class ApiSkipsSessions(SessionInterface):
    """The app's session interface (``inner``) for every path but ``/api/crm`` and below,
    which get a `NullSession` that is never saved."""

    _OWN = frozenset({"open_session", "save_session", "is_null_session", "make_null_session"})

    def __init__(self, inner: SessionInterface) -> None:
        self.inner = inner
        # Everything else (cookie name, domain, flags, null_session_class …) is the inner
        # interface's own, overrides included: extensions such as Flask-Login ask for them.
        for name in dir(SessionInterface):
            if not name.startswith("_") and name not in self._OWN:
                setattr(self, name, getattr(inner, name))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def make_null_session(self, app: Flask) -> NullSession:
        return self.inner.make_null_session(app)

    def is_null_session(self, obj: object) -> bool:
        return isinstance(obj, NullSession) or self.inner.is_null_session(obj)

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        if _api_path(request.path):
            return NullSession()
        return self.inner.open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        self.inner.save_session(app, session, response)


def install(app: Flask) -> None:
    """Wrap ``app.session_interface`` (once)."""
    if not isinstance(app.session_interface, ApiSkipsSessions):
        app.session_interface = ApiSkipsSessions(app.session_interface)


__all__ = ["ApiSkipsSessions", "install"]
