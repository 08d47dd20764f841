"""``request`` in templates (`pages.RequestView`, issue 14 B5): ``url``, ``args`` and ``form``
are copied from the request only when a template reads them, and are then exactly what the
eager copies were — with and without ``CRM_BASE_URL`` — plain values a sandboxed template cannot
get past."""

from __future__ import annotations

import pytest
from flask import Flask, request
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from crm_templates.server.pages import RequestView
from crm_templates.server.urls import current_url


@pytest.mark.parametrize("base", [None, "https://shop.example"])
@pytest.mark.parametrize(
    ("method", "url", "data"),
    [
        ("GET", "/a/b?x=1&x=2&y=%C3%A9", None),
        ("GET", "/", None),
        ("POST", "/form?next=/x", {"name": "Ann", "tags": ["a", "b"]}),
    ],
)
def test_the_lazy_view_equals_the_eager_copies(
    base: str | None, method: str, url: str, data: dict | None
) -> None:
    app = Flask(__name__)
    if base:
        app.config["CRM_BASE_URL"] = base
    with app.test_request_context(url, method=method, data=data):
        eager = (
            request.path,
            request.method,
            current_url(),
            request.args.to_dict(),
            request.form.to_dict() if request.method == "POST" else {},
        )
        view = RequestView.current()
        assert (view.path, view.method, view.url, view.args, view.form) == eager
        assert view == RequestView(*eager)
        assert "RequestView(path=" in repr(view)
        if base:
            assert view.url.startswith(base)


def test_given_values_are_used_as_they_are() -> None:
    app = Flask(__name__)
    with app.test_request_context("/real?q=1", method="POST", data={"f": "1"}):
        view = RequestView("/shown", "POST", url="u", args={}, form={})
        assert (view.path, view.url, view.args, view.form) == ("/shown", "u", {}, {})


def test_a_sandboxed_template_reads_the_values_and_nothing_behind_them() -> None:
    app = Flask(__name__)
    env = SandboxedEnvironment()
    with app.test_request_context("/p?q=2"):
        view = RequestView.current()
        out = env.from_string("{{ r.path }} {{ r.args.q }} {{ r.url }}").render(r=view)
        assert out == "/p 2 http://localhost/p?q=2"
        # Private slots are unsafe attributes: the sandbox answers them as undefined.
        for hidden in ("r._url", "r._args", "r._form", "r.__slots__", "r.current.__func__"):
            assert env.from_string("{{ " + hidden + " }}").render(r=view) == "", hidden
        with pytest.raises(SecurityError):
            env.from_string("{{ r.url.__class__.__subclasses__() }}").render(r=view)
