"""Logging for ``crm-templates serve``: where log lines go, and one access-log line per request
(issue 8, item 8).

`configure_logging` gives the command readable lines on stderr unless the process already has
logging set up; `AccessLog` is a WSGI middleware writing one line per request on the
``crm_templates.access`` logger. Neither waitress nor Flask writes an access log, and the one
werkzeug's development server writes shows query strings as sent — sign-in tokens included —
so `serve` uses `AccessLog` under both servers and silences werkzeug's (`quiet_request_handler`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    from werkzeug.serving import WSGIRequestHandler

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
access_log = logging.getLogger("crm_templates.access")

# Query parameters whose values are secrets (sign-in tokens, passwords, keys): the access log
# keeps the name and writes REDACTED for the value.
SECRET_PARAMETER = re.compile(
    r"token|password|passwd|secret|signature|api_?key|session|^(code|key|sig)$", re.IGNORECASE
)
REDACTED = "REDACTED"
# Printable ASCII that may stay as it is in a logged URL; everything else (control characters,
# spaces, non-ASCII) is percent-encoded, so a request cannot forge or garble log lines. The
# path arrives decoded, so its "%" is encoded again; the query arrives as sent.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "%?"

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def configure_logging(level: str = "INFO", stream: IO[str] | None = None) -> bool:
    """Send log lines to ``stream`` (stderr) as ``time LEVEL logger: message``.

    ``level`` (one of `LEVELS`) applies to the ``crm_templates`` loggers — the sign-in links of
    the default mailer (``crm_templates.mail``, INFO), the access log (``crm_templates.access``,
    INFO), server errors. Other libraries log at WARNING and above (or ``level``, if higher).

    Logging that is already set up is left alone: when the root logger has a handler (a
    ``logging.config`` call, an embedding application), only the ``crm_templates`` level is set
    and False is returned. Raises ValueError for an unknown level.
    """
    name = level.upper()
    if name not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}; got {level!r}")
    numeric = logging.getLevelName(name)
    logging.getLogger("crm_templates").setLevel(numeric)
    root = logging.getLogger()
    if root.handlers:
        return False
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(max(numeric, logging.WARNING))
    return True


def redact_query(query: str) -> str:
    """``query`` (a raw query string) with the values of secret parameters replaced.

    ``token=abc&next=/x`` → ``token=REDACTED&next=/x``; see `SECRET_PARAMETER`.
    """
    parts = []
    for part in query.split("&"):
        name, eq, _value = part.partition("=")
        if eq and SECRET_PARAMETER.search(unquote(name)):
            part = f"{name}={REDACTED}"
        parts.append(part)
    return "&".join(parts)


def request_target(environ: dict[str, Any]) -> str:
    """The logged form of a request's path and query: percent-encoded, secrets redacted."""
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    # WSGI strings are bytes decoded as latin-1; encode back to log what was sent.
    target = quote(path.encode("latin-1", "replace"), safe=_PATH_SAFE)
    query = environ.get("QUERY_STRING", "")
    if query:
        target += "?" + quote(redact_query(query).encode("latin-1", "replace"), safe=_QUERY_SAFE)
    return target


class AccessLog:
    """WSGI middleware: one INFO line per request on ``crm_templates.access``, written when
    the response has been sent (or failed)::

        127.0.0.1 "GET /auth/verify?token=REDACTED HTTP/1.1" 303 189 bytes 4.2 ms

    client address, method, path and query (secret values redacted, see `redact_query`),
    protocol, status, response body bytes sent, and the time from the request reaching the app
    to the last byte handed to the server. Wrap a Flask app with
    ``app.wsgi_app = AccessLog(app.wsgi_app)``.
    """

    def __init__(self, app: WSGIApp, logger: logging.Logger = access_log) -> None:
        self.app = app
        self.logger = logger

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        status: list[str] = []

        def recording_start_response(
            status_line: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            status[:] = [status_line.split(" ", 1)[0]]
            return start_response(status_line, headers, exc_info)

        try:
            body = self.app(environ, recording_start_response)
        except BaseException:
            self._write(environ, "500", 0, started)
            raise
        return _CountedBody(body, lambda sent: self._write(environ, "".join(status), sent, started))

    def _write(self, environ: dict[str, Any], status: str, sent: int, started: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        self.logger.info(
            '%s "%s %s %s" %s %d bytes %.1f ms',
            environ.get("REMOTE_ADDR", "-"),
            environ.get("REQUEST_METHOD", "-"),
            request_target(environ),
            environ.get("SERVER_PROTOCOL", "-"),
            status or "-",
            sent,
            (time.perf_counter() - started) * 1000,
        )


class _CountedBody:
    """A response body that counts the bytes handed out and reports once it is closed."""

    def __init__(self, body: Iterable[bytes], done: Callable[[int], None]) -> None:
        self._body = body
        self._done: Callable[[int], None] | None = done
        self._sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self._sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            done, self._done = self._done, None
            if done is not None:
                done(self._sent)


def quiet_request_handler() -> type[WSGIRequestHandler]:
    """werkzeug's development-server handler without its own request lines, which print query
    strings (and so sign-in tokens) as sent; `AccessLog` writes the lines instead.

    Built on first use: the ``crm-templates`` command imports this module at start-up and must
    not load werkzeug then.
    """
    from werkzeug.serving import WSGIRequestHandler

    class QuietRequestHandler(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            """Write nothing: `AccessLog` logs the request."""

    return QuietRequestHandler
