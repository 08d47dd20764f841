"""The serve command's logging pieces (issue 8, item 8): secrets never reach the access log,
requests cannot forge log lines, and logging someone already configured is left alone. The
real process is tested in test_serve.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from crm_templates.server.logs import AccessLog, configure_logging, redact_query, request_target


@pytest.mark.parametrize(
    ("query", "logged"),
    [
        ("token=abc.def&next=/x", "token=REDACTED&next=/x"),
        ("next=/&token=abc", "next=/&token=REDACTED"),
        ("csrf_token=1&password=2&api_key=3&code=4&sig=5", "csrf_token=REDACTED&password=REDACTED&api_key=REDACTED&code=REDACTED&sig=REDACTED"),
        ("%74oken=abc", "%74oken=REDACTED"),  # a percent-encoded name is still a token
        ("preview_customer=cus_1&page=2", "preview_customer=cus_1&page=2"),
        ("token", "token"),
        ("", ""),
    ],
)  # fmt: skip
def test_redact_query(query: str, logged: str) -> None:
    assert redact_query(query) == logged


@pytest.mark.parametrize(
    ("path", "query", "logged"),
    [
        ("/auth/verify", "token=x", "/auth/verify?token=REDACTED"),
        ("/a\nFAKE 200", "", "/a%0AFAKE%20200"),  # a decoded %0a cannot start a new log line
        ("/\x1b[31mred", "", "/%1B%5B31mred"),  # nor colour the terminal
        ("/caf\xc3\xa9", "q=%C3%A9", "/caf%C3%A9?q=%C3%A9"),
        ("/100%", "", "/100%25"),
    ],
)
def test_request_target_is_printable_and_unambiguous(path: str, query: str, logged: str) -> None:
    environ = {"PATH_INFO": path, "QUERY_STRING": query, "SCRIPT_NAME": ""}
    assert request_target(environ) == logged


@pytest.fixture
def crm_level() -> Iterator[None]:
    """Restore the crm_templates logger's level afterwards."""
    logger = logging.getLogger("crm_templates")
    level = logger.level
    yield
    logger.setLevel(level)


def test_configured_logging_is_left_alone(crm_level: None) -> None:
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)  # as an application (or pytest) that set up logging would have
    try:
        before = list(root.handlers), root.level
        assert configure_logging("warning") is False
        assert (list(root.handlers), root.level) == before
        assert logging.getLogger("crm_templates").level == logging.WARNING
    finally:
        root.removeHandler(handler)


def test_unknown_level_is_refused(crm_level: None) -> None:
    with pytest.raises(ValueError, match="DEBUG, INFO, WARNING, ERROR"):
        configure_logging("loud")


def test_access_log_counts_bytes_and_reports_failures(caplog: Any) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("boom")
        start_response("201 Created", [("Content-Type", "text/plain")])
        return [b"abc", b"de"]

    logged = AccessLog(app)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/x", "QUERY_STRING": "token=t", "REMOTE_ADDR": "10.0.0.1", "SERVER_PROTOCOL": "HTTP/1.1"}  # fmt: skip
    caplog.set_level("INFO", logger="crm_templates.access")
    body = logged(environ, lambda status, headers, exc_info=None: None)
    assert b"".join(body) == b"abcde"
    assert caplog.records == []  # written once the server closes the body
    body.close()  # type: ignore[attr-defined]
    body.close()  # type: ignore[attr-defined]
    [record] = caplog.records
    assert record.getMessage().startswith('10.0.0.1 "POST /x?token=REDACTED HTTP/1.1" 201 5 bytes ')
    with pytest.raises(RuntimeError):
        logged({**environ, "PATH_INFO": "/boom"}, lambda *a: None)
    assert '"POST /boom?token=REDACTED HTTP/1.1" 500 0 bytes' in caplog.records[-1].getMessage()
