"""What made the API's listing cheaper (issue 13, item 7: B9) changes no answer: orjson writes
the JSON the standard library wrote (hostile values included, on both backends), the quick
query checks agree with jsonschema, API requests open no cookie session, and API answers keep
the server's security headers."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from crm_templates.server.api.encoding import dumps, stdlib_dumps
from crm_templates.server.api.spec import OPERATIONS, quick_check
from tests.admin_world import BACKENDS
from tests.api_world import ApiWorld, make_api_world

HUGE = 10**40
NESTED: dict[str, Any] = {"a": [1, {"b": [None, True, False, "x"]}], "": {"": []}}
# Values the standard library and orjson write byte for byte alike.
SAME = [
    {"plain": "text", "n": 1, "f": 0.1, "neg": -0.0, "big": 1.5e300, "small": 5e-324},
    {"unicode": "é 😀 \u2028\u2029 </script> \x00\x1f\x7f \\ \" '"},
    {"keys": {2: "int", 1.5: "float", True: "bool", None: "none"}},
    {"nested": NESTED, "tuple": (1, 2), "empty": [{}, []]},
    {"edge ints": [2**63 - 1, -(2**63), 2**64 - 1, 0]},
    [NESTED] * 3,
]


@pytest.mark.parametrize("value", SAME)
def test_orjson_writes_what_the_standard_library_wrote(value: Any) -> None:
    assert dumps(value) == stdlib_dumps(value)


def test_integers_beyond_64_bits_fall_back_to_the_standard_library() -> None:
    value = {"huge": HUGE, "neg": -HUGE, "list": [HUGE, 2**64]}
    assert dumps(value) == stdlib_dumps(value)
    assert json.loads(dumps(value))["huge"] == HUGE


def test_floats_read_back_the_same_whatever_their_written_form() -> None:
    floats = [1e-7, 1e16, 1e22, 123456789.123, 2.5e-5, -1e-300, 1 / 3]
    assert json.loads(dumps(floats)) == json.loads(stdlib_dumps(floats)) == floats


def test_nan_and_infinity_are_written_as_null_not_a_failure() -> None:
    # The core never stores them (values.py refuses them); a store written around the core
    # could. The standard library refused the whole answer (500).
    with pytest.raises(ValueError):
        stdlib_dumps({"x": math.nan})
    assert json.loads(dumps({"x": math.nan, "y": [math.inf, -math.inf]})) == {
        "x": None,
        "y": [None, None],
    }


def test_what_json_cannot_hold_is_still_refused() -> None:
    for value in ({"when": datetime.datetime(2026, 1, 1)}, {"s": {1, 2}}):
        with pytest.raises(TypeError):
            dumps(value)

    @dataclasses.dataclass
    class Point:
        x: int

    with pytest.raises(TypeError):
        dumps({"p": Point(1)})


def test_a_lone_surrogate_is_handled_as_before() -> None:
    value = {"s": "\ud800"}
    with pytest.raises(UnicodeEncodeError):
        stdlib_dumps(value)
    with pytest.raises(UnicodeEncodeError):
        dumps(value)


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> ApiWorld:
    """The API world, once per backend."""
    return make_api_world(tmp_path, request.param, request)


def test_hostile_stored_values_answer_as_before(world: ApiWorld) -> None:
    created = world.post("/entities/deals/entries", {"reference_id": world.ann.id})
    assert created.status_code == 201
    store = world.crm.store
    entry = store.get_entry(created.get_json()["id"])
    hostile = {
        "note": "é 😀 \u2028 </script> \x00",
        "huge": HUGE,
        "nested": NESTED,
        "float": 1e-7,
    }
    store.update_entry(dataclasses.replace(entry, values=hostile), entry.version)
    got = world.get(f"/entries/{entry.id}")
    assert got.status_code == 200
    assert got.get_data().endswith(b"\n")
    body = got.get_json()
    assert body["values_flat"] == json.loads(json.dumps(hostile))
    assert body["values"] == [{"key": k, "value": v} for k, v in body["values_flat"].items()]
    assert body["values_flat"]["huge"] == HUGE
    listed = world.get("/entities/deals/entries?per_page=100").get_json()["data"]
    assert [e["values_flat"] for e in listed if e["id"] == entry.id] == [body["values_flat"]]


def test_quick_query_checks_agree_with_jsonschema() -> None:
    samples: list[Any] = [0, 1, 25, 100, 101, -1, 10**6, True, False, "", "x", "x" * 200]
    samples += ["x" * 201, "é" * 1000, "é" * 1001, None, 1.0, [], {}]
    checked = 0
    for op in OPERATIONS:
        for name, schema in op.query.items():
            check = quick_check(schema)
            if check is None:
                continue
            validator = Draft202012Validator(schema)
            for value in samples:
                # A quick "valid" must be jsonschema's "valid"; a quick "invalid" hands the
                # value to jsonschema, whose verdict and messages count.
                if check(value):
                    assert validator.is_valid(value), (op.operation_id, name, value)
                checked += 1
            assert check(schema.get("default", 1 if schema["type"] == "integer" else "x"))
    assert checked > 100
    assert quick_check({"type": "string", "pattern": "^a"}) is None
    assert quick_check({"type": "integer", "enum": [1]}) is None


def test_bad_query_values_are_still_refused_with_jsonschema_messages(world: ApiWorld) -> None:
    for query, field in (("per_page=0", "per_page"), ("per_page=x", "per_page")):
        response = world.get(f"/entities/deals/entries?{query}")
        assert response.status_code == 422
        assert field in response.get_json()["errors"]
    long = world.get("/entities/deals/entries?q=" + "a" * 201)
    assert long.status_code == 422 and "q" in long.get_json()["errors"]


def test_api_requests_open_no_cookie_session(world: ApiWorld) -> None:
    client = world.client
    # A page of the site still has its session (the sign-in page sets the CSRF token in it).
    page = client.get("/auth/sign-in")
    assert page.status_code == 200
    cookie = client.get_cookie("crm_session")
    assert cookie is not None
    answer = world.get("/entities/deals/entries")
    assert answer.status_code == 200
    assert "Set-Cookie" not in answer.headers
    assert "Cookie" not in answer.headers.get("Vary", "")
    # The cookie is neither read nor changed by the API.
    assert client.get_cookie("crm_session").value == cookie.value
    # A cookie alone still authenticates nothing.
    assert client.get("/api/crm/entities/deals/entries").status_code == 401


def test_api_answers_keep_the_security_headers(world: ApiWorld) -> None:
    for response in (
        world.get("/entities/deals/entries?per_page=1"),
        world.get("/entities/ghosts/entries"),
        world.client.get("/api/crm/entities/deals/entries"),
    ):
        headers = response.headers
        assert headers["Content-Security-Policy"] == world.app.config["CRM_CONTENT_SECURITY_POLICY"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["Cross-Origin-Resource-Policy"] == "same-origin"
        assert "Permissions-Policy" in headers
        if response.status_code >= 400:
            assert headers["Cache-Control"] == "no-store"


def test_the_session_wrapper_keeps_the_apps_own_interface() -> None:
    from flask import Flask
    from flask.sessions import SecureCookieSessionInterface

    from crm_templates.server.api import init_api

    class Custom(SecureCookieSessionInterface):
        def get_cookie_name(self, app: Flask) -> str:
            return "custom_cookie"

    app = Flask(__name__)
    app.secret_key = "test"
    app.session_interface = Custom()
    init_api(app)
    from crm_templates.server.api import sessions

    sessions.install(app)  # again: wrapped once
    wrapper = app.session_interface
    assert type(wrapper).__name__ == "ApiSkipsSessions"
    assert wrapper.inner.__class__ is Custom  # type: ignore[attr-defined]
    assert wrapper.get_cookie_name(app) == "custom_cookie"

    @app.get("/page")
    def page() -> str:
        from flask import session

        session["seen"] = True
        return "ok"

    client = app.test_client()
    assert "custom_cookie=" in client.get("/page").headers["Set-Cookie"]
