"""Rendering a typed template as a customer, read-only and bounded (the admin playground, issue
12 item 7; previews never write, SPEC §8).

`render_source` renders an operator's template source in the site's sandboxed environment as
a chosen customer, exactly as a preview does, with these bounds:

* **never writes**: the service is the customer's read-only view (`preview.preview_crm`,
  `crm_templates.access.ReadOnlyStore`): ``SetCrmFields`` and the other CRM write functions
  answer ``{ok: False, error: 'preview'}``, every writing store method raises `PreviewError`;
* **sandboxed**: the site's `SandboxedEnvironment` (an overlay of it whose values are bounded
  in size — `playground_bounds`: no string, list or integer a template makes can exceed 16x
  the output cap or `MAX_INT_BITS`, checked before the C-level operations that the deadline
  cannot interrupt — and that raises on an unsafe attribute where a page prints nothing), so
  ``{{ ''.__class__ }}`` and friends reach no
  Python internals and are reported with their line;
* **errors are results**: a syntax error, a sandbox refusal or any other exception of the
  template (or of the chosen page's backend) becomes `Rendered.error` with the line of the
  typed source where Jinja reports it — never an exception for the caller;
* **bounded time**: the backend and the render share one deadline (`DEFAULT_TIMEOUT` seconds,
  setting ``CRM_PLAYGROUND_TIMEOUT``); when it passes, `RenderTimeout` is raised inside the
  rendering thread (CPython's ``PyThreadState_SetAsyncExc``), which stops pure-Python loops
  too; a call blocked in C (a store round trip) is stopped when it returns;
* **bounded output**: the render streams (``Template.generate``) and stops at `MAX_OUTPUT`
  characters (setting ``CRM_PLAYGROUND_MAX_OUTPUT``).

The page is rendered in a request context of its own (the page's URL, an empty session, a new
``g``), so the operator's request, session and form never reach the template.
"""

from __future__ import annotations

import ctypes
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

from flask import Flask, current_app
from jinja2.exceptions import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from ..model import Customer
from .builtin_pages import base_context
from .customers import request_crm
from .pages import Page, Variables, _run_backend
from .playground_bounds import MAX_VALUE_FACTOR, bound
from .preview import preview_crm
from .site import PageRoute
from .state import state

DEFAULT_TIMEOUT = 3.0  # seconds for the page backend and the render together
MAX_OUTPUT = 1024 * 1024  # characters of rendered HTML
SOURCE_NAME = "<template>"  # Jinja's filename of a template made from a string


class RenderTimeout(BaseException):
    """The render ran past its deadline. A BaseException, so that no ``except Exception`` on
    the way (a CRM function under ``on_error="log"``, a page backend) swallows it."""


@dataclass(frozen=True)
class RenderError:
    """Why a render failed: a message for the operator, and the line of the typed source (1-based)
    when Jinja tells it."""

    message: str
    line: int | None = None


@dataclass(frozen=True)
class Rendered:
    """The outcome of `render_source`: the HTML (possibly partial when ``error`` is set), the
    HTTP status the page would answer with, and a note (a backend that answered by itself)."""

    html: str
    status: int = 200
    error: RenderError | None = None
    note: str | None = None


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise `RenderTimeout` in this thread if the block runs longer than ``seconds``.

    A timer thread injects the exception asynchronously; the block's end disarms it, and clears
    an injected exception that was not raised yet, so it can never surface after the block.
    """
    target = threading.get_ident()
    lock = threading.Lock()
    flags = {"done": False, "fired": False}

    def fire() -> None:
        with lock:
            if flags["done"]:
                return
            flags["fired"] = True
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(target), ctypes.py_object(RenderTimeout)
            )

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            flags["done"] = True
        timer.cancel()
        if flags["fired"]:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), None)


def _refuse_unsafe(obj: Any, attribute: str) -> NoReturn:
    raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} is unsafe")


def playground_environment(app: Flask) -> SandboxedEnvironment:
    """The site's sandboxed environment as the playground uses it (made once per app): an
    overlay whose values are bounded in size (`playground_bounds`: ``*``, ``**``, ``+``, ``%``,
    ``~``, amplifying calls and filters, every call's result), and that raises at once on an
    unsafe attribute (``{{ ''.__class__ }}``), which the site's
    pages print as nothing, so that the operator sees the refusal and its line."""
    cached = app.extensions.get("crm_playground_env")
    if isinstance(cached, SandboxedEnvironment):
        return cached
    env = state().env.overlay()
    assert isinstance(env, SandboxedEnvironment)
    env.unsafe_undefined = _refuse_unsafe  # type: ignore[method-assign]
    cap = int(app.config.get("CRM_PLAYGROUND_MAX_OUTPUT", MAX_OUTPUT))
    bound(env, max_value=MAX_VALUE_FACTOR * cap, output_cap=cap)
    app.extensions["crm_playground_env"] = env
    return env


def _line(exc: BaseException) -> int | None:
    """The line of the typed source where ``exc`` happened (Jinja rewrites the traceback so
    template frames carry template lines), or None."""
    if isinstance(exc, TemplateSyntaxError):
        return exc.lineno if exc.name is None else None
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == SOURCE_NAME:
            line = frame.lineno
    return line


def _message(exc: BaseException) -> str:
    if isinstance(exc, TemplateSyntaxError):
        where = f" (in {exc.name})" if exc.name else ""
        return f"Syntax error{where}: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"Refused by the sandbox: {exc}"
    return f"{type(exc).__name__}: {exc}"


def render_source(
    app: Flask, source: str, customer: Customer, route: PageRoute | None = None
) -> Rendered:
    """Render ``source`` as ``customer``, read-only, within the bounds of the module docstring.

    With ``route`` (a page of the site) the page's URL is the request's and its backend runs
    first (read-only), its variables reaching the template as ``var``; a backend that answers
    by itself (JSON, a redirect, an error page) is reported in `Rendered.note`.
    """
    config = app.config
    timeout = float(config.get("CRM_PLAYGROUND_TIMEOUT", DEFAULT_TIMEOUT))
    cap = int(config.get("CRM_PLAYGROUND_MAX_OUTPUT", MAX_OUTPUT))
    url = route.url if route is not None else "/"
    env = playground_environment(app)
    chunks: list[str] = []
    size = 0
    # A new app context: its own g (the read-only service), nothing shared with the admin's.
    with app.app_context(), app.test_request_context(url):
        try:
            with deadline(timeout):
                preview_crm(customer)
                page = Page(crm=request_crm(), path=url, previewed=customer)
                if route is not None and route.backend is not None:
                    answer = _run_backend(route, page)
                    if answer is not None:
                        body = answer.get_data(as_text=True)
                        kind = answer.mimetype or "no body"
                        where = answer.headers.get("Location")
                        note = f"The page's backend answered by itself ({answer.status}, {kind}"
                        note += f", to {where})" if where else ")"
                        shown = answer.mimetype == "text/html" and not where
                        html = body if shown else ""
                        return Rendered(html[:cap], answer.status_code, note=note)
                template = env.from_string(source)
                context = base_context(
                    customer,
                    is_customer=page.is_customer,
                    preview=True,
                    variables=Variables(page.variables),
                )
                for chunk in template.generate(context):
                    size += len(chunk)
                    if size > cap:
                        chunks.append(chunk[: cap - (size - len(chunk))])
                        error = RenderError(
                            f"The output is longer than {cap // 1024} KB; the render was "
                            "stopped there."
                        )
                        return Rendered("".join(chunks), page.status, error)
                    chunks.append(chunk)
                return Rendered("".join(chunks), page.status)
        except RenderTimeout:
            message = f"The render took longer than {timeout:g} s and was stopped."
            return Rendered("".join(chunks), 200, RenderError(message))
        except Exception as exc:  # the template's failure is the playground's result
            current_app.logger.debug("playground render failed", exc_info=exc)
            return Rendered("".join(chunks), 200, RenderError(_message(exc), _line(exc)))
