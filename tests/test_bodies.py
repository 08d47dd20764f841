"""Request bodies (issue 8, item 10): every body problem is a 4xx with a message — never a 500 —
through the sample sites' real backends, and nothing is written. `page.data` is a dict: a
form, or a JSON object parsed with a depth limit."""

from __future__ import annotations

import io
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crm_templates.server import create_app
from crm_templates.server.bodies import MAX_JSON_DEPTH, json_depth

SAMPLES = Path(__file__).resolve().parent.parent / "sample_sites"
ORIGIN = {"Origin": "http://localhost"}
# (site, page that reads page.data)
BACKENDS = [
    ("weight_tracker", "/checkin"),
    ("sales_pipeline", "/"),
    ("sales_pipeline", "/pipeline"),
]
BACKEND_IDS = [f"{site}{url}" for site, url in BACKENDS]


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Any]:
    """Build the app of a sample site copy; closed afterwards."""
    apps: list[Any] = []

    def make(name: str, **config: Any) -> Any:
        site = tmp_path / f"{name}{len(apps)}"
        shutil.copytree(SAMPLES / name, site, ignore=shutil.ignore_patterns("instance"))
        app = create_app(site, TESTING=True, **config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["crm"].close()


# A valid JSON object for each backend above: the baseline of the bad bodies below (same
# client, same Origin header), so their 4xx comes from the body alone.
VALID_JSON: dict[str, dict[str, Any]] = {
    "weight_tracker/checkin": {"weight": 71, "goal": 70},
    "sales_pipeline/": {
        "name": "Ann",
        "email": "ann@acme.example",
        "company": "Acme",
        "plan": "growth",
        "budget": 15000,
    },
    "sales_pipeline/pipeline": {"action": "lead-stage", "stage": "qualified"},
}


def entry_count(app: Any) -> int:
    """How many entries the store holds (the seed's included)."""
    return sum(1 for _ in app.extensions["crm"].crm.store.iter_entries())


def csrf_token(client: Any, url: str) -> str:
    """A CSRF token of the client's session, from the page's form."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).get_data(as_text=True))
    assert match
    return match.group(1)


def nested(depth: int) -> str:
    """A JSON object nested ``depth`` levels deep."""
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


# (JSON body as sent, status, words the message must contain)
JSON_BODIES = [
    (nested(1000), 400, "nests 1000 levels"),
    ("[" * 5000 + "]" * 5000, 400, "nests 5000 levels"),
    ('{"weight": ', 400, "not valid JSON"),
    ("{'weight': 70}", 400, "not valid JSON"),
    ('{"weight": NaN}', 400, "NaN is not a JSON value"),
    ('{"weight": Infinity}', 400, "Infinity is not a JSON value"),
    ('{"weight": 1e400}', 400, "1e400 is out of range"),
    ('{"weight": ' + "9" * 5000 + "}", 400, "not valid JSON"),
    ("[1]", 400, "the body is a list"),
    ("null", 400, "the body is null"),
    ('"s"', 400, "the body is a string"),
    ("7", 400, "the body is a number"),
    ("true", 400, "the body is a boolean"),
    ("   ", 400, "body is empty"),
]


@pytest.mark.parametrize(("site", "url"), BACKENDS, ids=BACKEND_IDS)
@pytest.mark.parametrize(
    ("body", "status", "message"), JSON_BODIES, ids=[b[2] for b in JSON_BODIES]
)
def test_bad_json_is_a_4xx_with_a_message(
    make_app: Any, site: str, url: str, body: str, status: int, message: str
) -> None:
    app = make_app(site)
    before = entry_count(app)
    response = app.test_client().post(
        url, data=body, content_type="application/json", headers=ORIGIN
    )
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert message in response.get_json()["error"]
    assert response.get_json()["status"] == status
    assert entry_count(app) == before


@pytest.mark.parametrize(("site", "url"), BACKENDS, ids=BACKEND_IDS)
def test_each_backend_takes_its_valid_json_object(make_app: Any, site: str, url: str) -> None:
    app = make_app(site)
    client = app.test_client()
    if url == "/pipeline":  # it moves the visitor's newest lead: make one first
        lead = client.post("/", json=VALID_JSON["sales_pipeline/"], headers=ORIGIN)
        assert lead.status_code == 303
    store = app.extensions["crm"].crm.store
    before = sorted(repr(e) for e in store.iter_entries())
    response = client.post(url, json=VALID_JSON[f"{site}{url}"], headers=ORIGIN)
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    assert sorted(repr(e) for e in store.iter_entries()) != before


@pytest.mark.parametrize(("site", "url"), BACKENDS, ids=BACKEND_IDS)
def test_json_that_is_not_utf8_is_400(make_app: Any, site: str, url: str) -> None:
    app = make_app(site)
    response = app.test_client().post(
        url, data=b'{"weight": "\xff"}', content_type="application/json", headers=ORIGIN
    )
    assert response.status_code == 400
    assert "not UTF-8" in response.get_json()["error"]


@pytest.mark.parametrize(("site", "url"), BACKENDS, ids=BACKEND_IDS)
def test_other_body_types_are_415(make_app: Any, site: str, url: str) -> None:
    app = make_app(site)
    client = app.test_client()
    token = csrf_token(client, "/checkin" if site == "weight_tracker" else "/")
    before = entry_count(app)
    response = client.post(
        url, data="weight=70", content_type="text/plain", headers={"X-CSRFToken": token}
    )
    assert response.status_code == 415
    text = response.get_data(as_text=True)
    assert "application/json" in text and "text/plain" in text
    assert "no-store" in response.headers["Cache-Control"]
    assert entry_count(app) == before


@pytest.mark.parametrize(("site", "url"), BACKENDS, ids=BACKEND_IDS)
def test_oversized_bodies_are_413(make_app: Any, site: str, url: str) -> None:
    app = make_app(site, CRM_MAX_BODY=1024)
    client = app.test_client()
    before = entry_count(app)
    declared = client.post(url, json={"note": "x" * 2000}, headers=ORIGIN)
    assert declared.status_code == 413
    assert "1 KB" in declared.get_json()["error"]
    # A chunked upload has no Content-Length: it is cut off at the cap while being read.
    chunked = client.post(
        url,
        input_stream=io.BytesIO(json.dumps({"note": "x" * 2000}).encode()),
        content_type="application/json",
        headers={**ORIGIN, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert chunked.status_code == 413
    chunked_form = client.post(
        url,
        input_stream=io.BytesIO(b"note=" + b"x" * 2000),
        content_type="application/x-www-form-urlencoded",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert chunked_form.status_code == 413
    assert entry_count(app) == before


def test_a_small_chunked_body_is_read_whole(make_app: Any) -> None:
    app = make_app("weight_tracker", CRM_MAX_BODY=1024)
    response = app.test_client().post(
        "/checkin",
        input_stream=io.BytesIO(json.dumps({"weight": 80, "goal": 70, "note": "y" * 150}).encode()),
        content_type="application/json",
        headers={**ORIGIN, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 303, response.get_data(as_text=True)


# (site, url, JSON object with wrongly typed values, status, {field: words of its error})
WRONG_TYPES = [
    ("weight_tracker", "/checkin", {"weight": [72], "goal": {"kg": 70}, "note": 5}, 422,
     {"weight": "must be a number", "goal": "must be a number", "note": "must be text"}),
    ("weight_tracker", "/checkin", {"weight": True, "goal": 1e300, "note": "x" * 300}, 422,
     {"weight": "must be a number", "goal": "between 20 and 400", "note": "under 200"}),
    ("sales_pipeline", "/", {"name": ["Ann"], "email": 5, "company": None, "plan": {}, "budget": "lots"}, 422,
     {"name": "text", "email": "text", "company": "text", "plan": "text", "budget": "must be a number"}),
]  # fmt: skip


@pytest.mark.parametrize(("site", "url", "body", "status", "errors"), WRONG_TYPES)
def test_wrongly_typed_json_values_are_422_with_field_errors(
    make_app: Any, site: str, url: str, body: dict[str, Any], status: int, errors: dict[str, str]
) -> None:
    app = make_app(site)
    before = entry_count(app)
    response = app.test_client().post(url, json=body, headers=ORIGIN)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    answer = response.get_json()
    assert answer["ok"] is False
    assert set(answer["errors"]) == set(errors)
    for key, words in errors.items():
        assert words in answer["errors"][key]
    assert entry_count(app) == before


@pytest.mark.parametrize(
    "body",
    [{"action": ["promote"]}, {"action": "lead-stage", "stage": ["won"]}, {"action": "fly"}, {}],
)
def test_pipeline_refuses_unknown_or_mistyped_actions(make_app: Any, body: dict[str, Any]) -> None:
    app = make_app("sales_pipeline")
    before = entry_count(app)
    response = app.test_client().post("/pipeline", json=body, headers=ORIGIN)
    assert response.status_code == 400
    assert "action=promote" in response.get_json()["error"]
    assert entry_count(app) == before


def test_weight_tracker_accepts_a_json_object(make_app: Any) -> None:
    app = make_app("weight_tracker")
    client = app.test_client()
    response = client.post(
        "/checkin", json={"weight": 71.04, "goal": "70,5", "note": " hi "}, headers=ORIGIN
    )
    assert response.status_code == 303
    crm = app.extensions["crm"].crm
    [customer] = [c for c in crm.store.list_customers() if c.email is None]  # the new visitor
    assert (
        crm.get_field(slug="weight-tracker", fieldKey="current_weight", referenceId=customer.id)
        == 71.0
    )
    assert (
        crm.get_field(slug="weight-tracker", fieldKey="goal_weight", referenceId=customer.id)
        == 70.5
    )


def test_sales_lead_accepts_a_json_object_with_a_numeric_budget(make_app: Any) -> None:
    app = make_app("sales_pipeline")
    client = app.test_client()
    body = {
        "name": "Ann",
        "email": "ann@acme.example",
        "company": "Acme",
        "plan": "growth",
        "budget": 15000,
    }
    response = client.post("/", json=body, headers=ORIGIN)
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    leads = [
        e
        for e in app.extensions["crm"].crm.store.iter_entries()
        if e.entity == "leads" and e.values.get("company") == "Acme"
    ]
    assert len(leads) == 1 and leads[0].values["budget"] == 15000


def test_form_posts_still_reach_the_backend_as_strings(make_app: Any) -> None:
    app = make_app("weight_tracker")
    client = app.test_client()
    token = csrf_token(client, "/checkin")
    response = client.post("/checkin", data={"csrf_token": token, "weight": "abc", "goal": "70"})
    assert response.status_code == 422
    assert "must be a number" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("{}", 1),
        ('[[1], {"a": [2]}]', 3),
        ('{"a": "[[[[{{{{"}', 1),  # brackets inside strings do not count
        ('{"a": "\\"[[["}', 1),  # nor after an escaped quote
        ('"[[[', 0),  # an unterminated string swallows the rest
        (nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH),
        ("5", 0),
    ],
)
def test_json_depth(text: str, depth: int) -> None:
    assert json_depth(text) == depth


def test_json_depth_is_linear_on_hostile_input() -> None:
    # Many quotes and backslashes, no closing quote: a regex that rescans from every quote
    # would take minutes on 64 KB.
    hostile = '"' + '\\"' * 32_000
    started = time.perf_counter()
    assert json_depth(hostile) == 0
    assert json_depth("[" * 65_000) == 65_000
    assert time.perf_counter() - started < 1.0


def test_the_depth_limit_admits_what_it_promises(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # A backend that echoes page.data: the deepest accepted body round-trips.
    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    (site / "pages" / "echo.py").write_text(
        "def handle(request, page):\n    return page.json(page.data)\n"
    )
    app = create_app(site, TESTING=True)
    request.addfinalizer(app.extensions["crm"].close)
    client = app.test_client()
    deepest = json.loads(nested(MAX_JSON_DEPTH))
    assert client.post("/echo", json=deepest, headers=ORIGIN).get_json() == deepest
    too_deep = client.post(
        "/echo", data=nested(MAX_JSON_DEPTH + 1), content_type="application/json", headers=ORIGIN
    )
    assert too_deep.status_code == 400
    assert client.get("/echo").get_json() == {}
