"""Tests written for mutants that survived the targeted suites (issue 10, item 1).

Each test names the rule it pins and the mutant it was written to kill; `tools/mutation.py`
runs this file first for every module it mutates. They call the module's functions directly,
so they are fast and say exactly which comparison or branch broke.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask

from crm_templates.access import ReassignRule, may_reach
from crm_templates.model import Entry


def _entry(reference_type: str, reference_id: str) -> Entry:
    # Built at run time so the strings are not the interned literals: `is` and `==` differ.
    return Entry(
        id="e1",
        entity="notes",
        reference_type="".join(reference_type),
        reference_id="".join(reference_id),
    )


# --- access.may_reach (issue 8: one customer must never name another's entry) ---------------


@pytest.mark.parametrize(
    ("reference_type", "reference_id", "customer_id", "expected"),
    [
        ("customer", "c1", "c1", True),  # one's own
        ("customer", "c1", "c2", False),  # another customer's: `and` -> `or` leaked it
        ("customer", "c1", None, False),  # no customer bound
        ("customer", "None", None, False),
        ("company", "k1", None, True),  # shared reference types reach everyone
        ("company", "k1", "c2", True),
        ("site", "c1", "c2", True),
    ],
)
def test_may_reach_table(
    reference_type: str, reference_id: str, customer_id: str | None, expected: bool
) -> None:
    """Kills `!=` -> `==`/`is not` on the reference type and `and` -> `or` in the id check."""
    entry = _entry(list(reference_type), list(reference_id))  # type: ignore[arg-type]
    assert may_reach(entry, customer_id) is expected


# --- access.ReassignRule (SPEC §5: only the visitor's own entries, only onto the customer) ---


def _rule(visitor: str | None, customer: str | None, bound: Any = None) -> ReassignRule:
    return ReassignRule(
        None if visitor == "-" else (lambda: visitor),
        None if customer == "-" else (lambda: customer),
        bound,
    )


@pytest.mark.parametrize(
    ("visitor", "customer", "bound", "source", "target", "expected"),
    [
        ("v1", "c1", None, ("customer", "v1"), ("customer", "c1"), None),
        ("v1", "c1", None, ("customer", "v2"), ("customer", "c1"), "forbidden"),
        ("v1", "c1", None, ("company", "v1"), ("customer", "c1"), "forbidden"),
        ("-", "c1", None, ("customer", "v1"), ("customer", "c1"), "forbidden"),
        (None, "c1", None, ("customer", "v1"), ("customer", "c1"), "forbidden"),
        ("v1", "c1", None, ("customer", "v1"), ("customer", "c2"), "forbidden_target"),
        ("v1", "c1", None, ("customer", "v1"), None, "forbidden_target"),
        ("v1", None, None, ("customer", "v1"), ("customer", "c1"), "forbidden_target"),
        # Without a customer source, the bound customer (an id or a provider) is the target.
        ("v1", "-", "c1", ("customer", "v1"), ("customer", "c1"), None),
        ("v1", "-", "c1", ("customer", "v1"), ("customer", "c2"), "forbidden_target"),
        ("v1", "-", None, ("customer", "v1"), ("customer", "c1"), "forbidden_target"),
    ],
)
def test_reassign_rule_table(
    visitor: str | None,
    customer: str | None,
    bound: Any,
    source: tuple[str, str],
    target: tuple[str, str] | None,
    expected: str | None,
) -> None:
    assert _rule(visitor, customer, bound).refusal(source, target) == expected


def test_reassign_rule_asks_a_bound_provider_without_creating() -> None:
    asked: list[bool] = []

    def provider(create: bool) -> str | None:
        asked.append(create)
        return "c1"

    rule = _rule("v1", "-", provider)
    assert rule.refusal(("customer", "v1"), ("customer", "c1")) is None
    assert asked == [False]


# --- server.security / server.urls: same-origin and host trust -------------------------------


@pytest.fixture
def flask_app() -> Iterator[Flask]:
    app = Flask(__name__)
    app.config.update(TRUSTED_HOSTS=None, CRM_BASE_URL=None)
    yield app


def _origins(app: Flask, base_url: str) -> set[str]:
    from crm_templates.server.urls import own_origins

    with app.test_request_context("/", base_url=base_url):
        return own_origins()


def test_same_origin_compares_scheme_host_and_port(flask_app: Flask) -> None:
    """Issue 10: the scheme must match (`Origin: https://localhost` is not an http app's)."""
    from crm_templates.server.security import same_origin

    with flask_app.test_request_context("/", base_url="http://localhost:5000"):
        assert same_origin("http://localhost:5000")
        assert same_origin("HTTP://LOCALHOST:5000/any/path?q=1")
        assert not same_origin("https://localhost:5000")
        assert not same_origin("http://localhost:5001")
        assert not same_origin("http://localhost")
        assert not same_origin("http://evil.example:5000")
        assert not same_origin("")
        assert not same_origin(None)
        assert not same_origin("http://[::1")  # urlsplit raises ValueError: not ours


def test_own_origins_adds_the_base_url_without_its_default_port(flask_app: Flask) -> None:
    flask_app.config["CRM_BASE_URL"] = "https://Shop.Example:443/crm"
    assert _origins(flask_app, "http://127.0.0.1:8000") == {
        "http://127.0.0.1:8000",
        "https://shop.example",
    }
    flask_app.config["CRM_BASE_URL"] = "http://shop.example:8443"
    assert _origins(flask_app, "http://localhost") == {
        "http://localhost",
        "http://shop.example:8443",
    }
    flask_app.config["CRM_BASE_URL"] = "http://shop.example:80"
    assert "http://shop.example" in _origins(flask_app, "http://localhost")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/x", True),
        ("/", True),
        ("//evil.example/x", False),
        ("/\\evil.example", False),
        ("/x\ny", False),
        ("/x\x1fy", False),
        ("/x y", True),  # 0x20 itself is not a control character
        ("http://localhost/x", True),
        ("https://localhost/x", False),
        ("http://evil.example/x", False),
        ("x", False),
    ],
)
def test_is_same_site_url(flask_app: Flask, url: str, expected: bool) -> None:
    from crm_templates.server.security import is_same_site_url

    with flask_app.test_request_context("/", base_url="http://localhost"):
        assert is_same_site_url(url) is expected


def test_is_same_site_url_refuses_non_strings(flask_app: Flask) -> None:
    from crm_templates.server.security import is_same_site_url

    with flask_app.test_request_context("/", base_url="http://localhost"):
        assert is_same_site_url(None) is False  # type: ignore[arg-type]
        assert is_same_site_url(b"/x") is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "status", "expected"),
    [
        ("/", 200, False),
        ("/", 399, False),
        ("/", 400, True),  # exactly at the limit: every error is no-store
        ("/", 500, True),
        ("/auth", 200, True),
        ("/auth/sign-in", 200, True),
        ("/operator", 302, True),
        ("/admin/x", 200, True),
        ("/authors", 200, False),
        ("/static/a.css", 304, False),
    ],
)
def test_no_store(path: str, status: int, expected: bool) -> None:
    from crm_templates.server.security import _no_store

    assert _no_store(path, status) is expected


# --- server.urls: CRM_BASE_URL and TRUSTED_HOSTS checks ------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),
        ("https://shop.example", "https://shop.example"),
        ("https://shop.example/", "https://shop.example"),
        ("http://shop.example:8080/crm/", "http://shop.example:8080/crm"),
    ],
)
def test_check_base_url_accepts(value: Any, expected: str | None) -> None:
    from crm_templates.server.urls import check_base_url

    assert check_base_url(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (42, "without spaces"),
        ("https://shop .example", "without spaces"),
        ("https://shop.example\x01", "without spaces"),
        ("https://shop.example:99999", "not a valid URL"),
        ("ftp://shop.example", "must start with"),
        ("https:///path", "no host name"),
        ("https://user@shop.example", "user name or password"),
        ("https://:pw@shop.example", "user name or password"),
        ("https://shop.example/?q=1", "query or fragment"),
        ("https://shop.example/#top", "query or fragment"),
        ("https://shop.example/?", "query or fragment"),
        ("https://shop.example/#", "query or fragment"),
    ],
)
def test_check_base_url_refuses(value: Any, message: str) -> None:
    from crm_templates.server.urls import check_base_url

    with pytest.raises(ValueError, match=message):
        check_base_url(value)


def test_check_trusted_hosts() -> None:
    from crm_templates.server.urls import check_trusted_hosts

    assert check_trusted_hosts(None) is None
    assert check_trusted_hosts("") is None
    assert check_trusted_hosts([]) is None
    assert check_trusted_hosts(" Shop.Example , ,.sub.example,localhost:8000") == [
        "shop.example",
        ".sub.example",
        "localhost:8000",
    ]
    assert check_trusted_hosts(("[::1]:80",)) == ["[::1]:80"]
    for bad in (["https://shop.example"], ["shop.example/x"], ["a b"], [1], 5, {"a": 1}):
        with pytest.raises(ValueError):
            check_trusted_hosts(bad)


@pytest.mark.parametrize(
    ("trusted", "base_url", "expected"),
    [
        (["localhost"], "http://localhost:5000", "localhost:5000"),
        (["localhost:5000"], "http://localhost:5000", "localhost:5000"),
        (["localhost:5001"], "http://localhost:5000", None),  # the port must match
        # a port-bound entry for another port is skipped, not the end of the search
        # (urls.py:181 `continue` -> `break` survived)
        (["localhost:5001", "localhost:5000"], "http://localhost:5000", "localhost:5000"),
        (["localhost:80"], "http://localhost", "localhost"),  # default port of the scheme
        (["localhost:443"], "https://localhost", "localhost"),
        (["localhost:80"], "https://localhost", None),
        ([".shop.example"], "http://a.shop.example", "a.shop.example"),
        ([".shop.example"], "http://shop.example", "shop.example"),
        ([".shop.example"], "http://evilshop.example", None),
        (["shop.example"], "http://a.shop.example", None),
        # werkzeug lets zzz.example through (it ignores ports); the port-bound entry refuses
        # it, and ".shop.example" must not match a name that merely sorts after it
        # (urls.py:184 `name == wanted[1:]` -> `>=` survived).
        ([".shop.example", "zzz.example:9"], "http://zzz.example:8000", None),
        ([".shop.example", "zzz.example:8000"], "http://zzz.example:8000", "zzz.example:8000"),
        (None, "http://localhost", None),
    ],
)
def test_trusted_request_host(
    flask_app: Flask, trusted: list[str] | None, base_url: str, expected: str | None
) -> None:
    from crm_templates.server.urls import trusted_request_host

    flask_app.config["TRUSTED_HOSTS"] = trusted
    with flask_app.test_request_context("/", base_url=base_url):
        assert trusted_request_host() == expected


def test_split_host() -> None:
    from crm_templates.server.urls import _split_host

    assert _split_host("Shop.Example:8080", "80") == ("shop.example", "8080")
    assert _split_host("shop.example", "80") == ("shop.example", "80")
    assert _split_host("shop.example", None) == ("shop.example", None)
    assert _split_host("[::1]:8000", None) == ("[::1]", "8000")
    assert _split_host("[::1]", "443") == ("[::1]", "443")


def test_trust_loopback_and_hint() -> None:
    from crm_templates.server.urls import missing_address_hint, trust_loopback

    app = Flask(__name__)
    assert missing_address_hint(app) is not None
    trust_loopback(app, "127.0.0.1", 8000)
    assert app.config["TRUSTED_HOSTS"] == ["localhost:8000", "127.0.0.1:8000", "[::1]:8000"]
    assert missing_address_hint(app) is None
    app = Flask(__name__)
    trust_loopback(app, "::1", None)
    assert app.config["TRUSTED_HOSTS"] == ["localhost", "127.0.0.1", "[::1]"]
    app = Flask(__name__)
    app.config["TRUSTED_HOSTS"] = ["shop.example"]
    trust_loopback(app, "127.0.0.1", 8000)
    assert app.config["TRUSTED_HOSTS"] == ["shop.example"]
    app = Flask(__name__)
    app.config["CRM_BASE_URL"] = "https://shop.example"
    trust_loopback(app, "127.0.0.1", 8000)
    assert "TRUSTED_HOSTS" not in app.config or not app.config["TRUSTED_HOSTS"]
    assert missing_address_hint(app) is None


# --- functions: the FUNCTIONS table and option parsing ------------------------------------


def _nested(levels: int) -> list[Any]:
    """A list nested ``levels`` deep (``[]`` is one level)."""
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_failure_value_is_a_fresh_container() -> None:
    """The `log` policy's failure value must not be a shared mutable object."""
    from crm_templates.functions import FUNCTIONS

    spec = FUNCTIONS["GetCrmEntries"]
    first = spec.failure_value("boom")
    assert first == [] and first is not spec.failure
    first.append("x")
    assert spec.failure_value("boom") == []
    assert FUNCTIONS["GetCrmField"].failure_value("boom") is None
    assert FUNCTIONS["SetCrmField"].failure_value("boom") == {"ok": False, "error": "boom"}


def test_suggest() -> None:
    from crm_templates.functions import suggest

    assert suggest("slgu", ["slug", "limit"]) == " Did you mean 'slug'?"
    assert suggest("zzzz", ["slug"]) == ""


def test_option_depth_limit_exactly_at_and_one_past() -> None:
    """`MAX_OPTION_DEPTH` (80): a value nested exactly 80 levels passes, 81 is refused, also
    when a plain value comes before the deep one."""
    from crm_templates.errors import CrmValidationError
    from crm_templates.functions import FUNCTIONS, MAX_OPTION_DEPTH, parse_options

    spec = FUNCTIONS["GetCrmFields"]
    ok = {"slug": "s", "fieldKeys": _nested(MAX_OPTION_DEPTH)}
    assert parse_options(spec, ok, {}) == ok
    with pytest.raises(CrmValidationError, match="nested more than 80"):
        parse_options(spec, {"slug": "s", "fieldKeys": _nested(MAX_OPTION_DEPTH + 1)}, {})
    with pytest.raises(CrmValidationError, match="nested more than 80"):
        parse_options(spec, {"slug": "s", "fieldKeys": [_nested(MAX_OPTION_DEPTH), 1]}, {})
    with pytest.raises(CrmValidationError, match="nested more than 80"):
        parse_options(spec, {}, {"slug": "s", "field_keys": _nested(MAX_OPTION_DEPTH + 1)})


def test_option_int_limit_exactly_at_and_one_past() -> None:
    from crm_templates.errors import CrmValidationError
    from crm_templates.functions import FUNCTIONS, MAX_OPTION_INT_BITS, parse_options

    spec = FUNCTIONS["GetCrmEntries"]
    assert MAX_OPTION_INT_BITS == 13_000  # the documented limit: more than 3,900 digits
    at = 1 << 12_999  # exactly 13,000 bits (the test must not read the limit it checks)
    assert parse_options(spec, {"slug": "s", "limit": [at]}, {})["limit"] == [at]
    with pytest.raises(CrmValidationError, match="3,900 digits"):
        parse_options(spec, {"slug": "s", "limit": [at << 1]}, {})


def test_field_values_are_left_to_their_type_check() -> None:
    """`value`, `values` and SetCrmFields' `fields` skip the option depth walk (values.coerce
    checks them with messages naming the field); EnsureCrmEntity's `fields` do not."""
    from crm_templates.errors import CrmValidationError
    from crm_templates.functions import FUNCTIONS, parse_options

    deep = _nested(100)
    parse_options(FUNCTIONS["SetCrmField"], {"slug": "s", "fieldKey": "k", "value": deep}, {})
    parse_options(FUNCTIONS["CreateCrmEntry"], {"slug": "s", "values": {"k": deep}}, {})
    parse_options(FUNCTIONS["SetCrmFields"], {"slug": "s", "fields": {"k": deep}}, {})
    with pytest.raises(CrmValidationError):
        parse_options(FUNCTIONS["EnsureCrmEntity"], {"slug": "s", "fields": [deep]}, {})


@pytest.mark.parametrize("use_kwargs", [False, True])
def test_fast_path_still_checks_unknown_and_missing(use_kwargs: bool) -> None:
    from crm_templates.errors import MissingOptionError, UnknownOptionError
    from crm_templates.functions import FUNCTIONS, parse_options

    spec = FUNCTIONS["GetCrmField"]

    def parse(options: dict[str, Any]) -> dict[str, Any]:
        return parse_options(spec, {}, options) if use_kwargs else parse_options(spec, options, {})

    assert parse({"slug": "s", "fieldKey": "k"}) == {"slug": "s", "fieldKey": "k"}
    with pytest.raises(UnknownOptionError, match="bogus"):
        parse({"slug": "s", "fieldKey": "k", "bogus": 1})
    with pytest.raises(MissingOptionError, match="fieldKey"):
        parse({"slug": "s"})


def test_options_and_keywords_together_are_both_checked() -> None:
    """A mapping and keywords together take the slow path: neither is dropped or unchecked."""
    from crm_templates.errors import UnknownOptionError
    from crm_templates.functions import FUNCTIONS, parse_options

    spec = FUNCTIONS["GetCrmField"]
    both = parse_options(spec, {"slug": "s", "async": True}, {"slug": "s", "fieldKey": "k"})
    assert both == {"slug": "s", "async": True, "fieldKey": "k"}
    with pytest.raises(UnknownOptionError, match="bogus"):
        parse_options(spec, {"bogus": 1}, {"slug": "s", "fieldKey": "k"})


# --- server.security.check_request: a chunked body is measured before any form parsing -------


def _capped_app(cap: int) -> Flask:
    from crm_templates.server.security import init_security

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="k",
        MAX_CONTENT_LENGTH=cap,
        CRM_CONTENT_SECURITY_POLICY="default-src 'self'",
    )
    init_security(app)
    app.post("/form")(lambda: "reached")
    return app


@pytest.mark.parametrize("size", [99, 100, 101, 400])
def test_chunked_form_body_at_and_past_the_cap(size: int) -> None:
    """A chunked urlencoded body is cut off at the cap (100 bytes) by werkzeug; one of exactly
    the cap or more is 413, one byte less passes the cap and meets the CSRF check (400).
    Written for ``parse_form_data=False`` -> ``True`` at security.py:91, which turned out
    equivalent (see EQUIVALENT in tools/mutation.py); kept as the at/one-past limit test."""
    body = b"note=" + b"x" * (size - 5)
    response = (
        _capped_app(100)
        .test_client()
        .post(
            "/form",
            input_stream=io.BytesIO(body),
            content_type="application/x-www-form-urlencoded",
            headers={"Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )
    )
    if size < 100:
        assert response.status_code == 400
        assert "CSRF token is missing" in response.get_data(as_text=True)
    else:
        assert response.status_code == 413


# --- server.urls.init_urls: the host check runs before every other request hook -------------


def test_init_urls_puts_the_host_check_first() -> None:
    """Docstring of `init_urls`: nothing else runs for a host the server does not serve. Kills
    ``insert(0, …)`` -> ``insert(1, …)`` / ``insert(-1, …)`` at urls.py:103."""
    from crm_templates.server.urls import init_urls, refuse_untrusted_host

    app = Flask(__name__)
    app.config.update(TRUSTED_HOSTS=["shop.example"], CRM_BASE_URL=None)
    ran: list[str] = []
    app.before_request(lambda: ran.append("first") and None)
    app.before_request(lambda: ran.append("second") and None)
    init_urls(app)
    assert app.before_request_funcs[None][0] is refuse_untrusted_host
    app.get("/")(lambda: "ok")
    response = app.test_client().get("/", headers={"Host": "attacker.example"})
    assert response.status_code == 400
    assert ran == []


# --- renderers.links: the phone renderer takes what the core takes; file names --------------


@pytest.mark.parametrize(
    ("value", "href"),
    [
        (2025550143, "tel:+12025550143"),  # the core stores a number given for a phone as text
        (2025550143.0, "tel:20255501430"),
        ("(202) 555-0143", "tel:+12025550143"),
        (True, None),  # a bool is not a number here
        (Decimal("2025550143"), None),  # nor is any other non-str type the core refuses
    ],
)
def test_phone_renderer_turns_only_numbers_into_text(value: Any, href: str | None) -> None:
    """Issue 9: the phone renderer accepts what `fieldtypes.phone_number` accepts, plus int and
    float (not bool) as the core stores them. Kills links.py:58 `not` added, `not` removed and
    `and` -> `or` (the last turns any object's str() into a number to dial)."""
    import renderers
    from renderers.options import RenderOptions

    html = str(renderers.render(value, {"type": "phone"}, RenderOptions(locale="en_US")))
    if href is None:
        assert "href" not in html and "crm-invalid" in html
    else:
        assert f'href="{href}"' in html and "crm-invalid" not in html


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://files.example", "https://files.example"),  # no path segment: the URL itself
        ("https://files.example/", "https://files.example/"),
        ("https://files.example/a/b%20c.pdf", "b c.pdf"),
        ("/x.pdf", "x.pdf"),
    ],
)
def test_file_name(url: str, name: str) -> None:
    """Kills links.py:82 `[-1]` -> `[1]` (an IndexError for a URL without a path) and the
    neighbouring index mutants."""
    import renderers
    from renderers.links import file_name

    assert file_name(url) == name
    assert f">{name}</a>" in str(renderers.render(url, {"type": "file"}))
