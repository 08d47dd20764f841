"""`crm_templates.starlette.install` in a Starlette app (issue 11, item 2).

The customer comes from the request (a signed session cookie, Starlette's SessionMiddleware).
Two customers, alternately and in interleaved threads, read and write only their own data, in
async endpoints and in sync ones (Starlette's thread pool), through an imported macro too; the
app's lifespan closes the service, which drains queued async writes.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from jinja2 import Environment
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its test client and warns when it finds httpx (which
    # the test extra installs, as its older releases need).
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from crm_templates import Crm, CrmUsageError, open_store
from crm_templates.extension import CrmTemplateError
from crm_templates.starlette import install

ENTITY = {
    "slug": "weight",
    "fields": [{"key": "kg", "type": "number"}, {"key": "note", "type": "text"}],
}
TEMPLATES = {
    "weight.html": """\
{% if form %}{% set result = SetCrmFields(slug="weight", fields={"kg": form.kg, "note": form.note}) %}\
<p id="saved">{{ result.ok }}</p>{% endif %}
<p id="kg">{{ GetCrmField(slug="weight", fieldKey="kg") }}</p>
<p id="note">{{ "weight" | crm_field("note") }}</p>
""",
    "macros.html": """\
{% macro note() %}{{ GetCrmField(slug="weight", fieldKey="note") }}{% endmacro %}
{% set top = GetCrmField(slug="weight", fieldKey="kg") %}
""",
    "macro_page.html": """\
{% import "macros.html" as m %}<p id="note">{{ m.note() }}</p><p id="kg">{{ m.top }}</p>
""",
    "queue.html": """\
{% set r = SetCrmField(slug="weight", fieldKey="note", value=note, async=true) %}\
<p id="queued">{{ r.ok }}</p>""",
}


def make_app(tmp_path: Path, url: str) -> tuple[Starlette, Crm]:
    directory = tmp_path / "templates"
    directory.mkdir(exist_ok=True)
    for name, text in TEMPLATES.items():
        (directory / name).write_text(text, encoding="utf-8")
    crm = Crm(open_store(url))
    crm.ensure_entity(ENTITY)
    templates = Jinja2Templates(directory=directory)
    install(templates, crm, customer=lambda request: request.session.get("customer_id"))

    async def login(request: Request) -> Response:
        request.session["customer_id"] = request.path_params["customer"]
        return PlainTextResponse("ok")

    async def weight(request: Request) -> Response:  # async endpoint, in the event loop
        form = await request.json() if request.method == "POST" else None
        return templates.TemplateResponse(request, "weight.html", {"form": form})

    def macro(request: Request) -> Response:  # sync endpoint, in Starlette's thread pool
        return templates.TemplateResponse(request, "macro_page.html")

    async def queue(request: Request) -> Response:
        body = await request.json()
        return templates.TemplateResponse(request, "queue.html", {"note": body["note"]})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        crm.close()  # drains queued async writes

    app = Starlette(
        routes=[
            Route("/login/{customer}", login),
            Route("/weight", weight, methods=["GET", "POST"]),
            Route("/macro", macro),
            Route("/queue", queue, methods=["POST"]),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key="test only")],
        lifespan=lifespan,
    )
    return app, crm


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Starlette, Crm, str]]:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    app, crm = make_app(tmp_path, url)
    yield app, crm, url
    crm.close()


def shown(html: str, ident: str) -> str:
    match = re.search(rf'<p id="{ident}">(.*?)</p>', html, re.S)
    assert match is not None, f"no #{ident} in {html!r}"
    return match.group(1).strip()


def client_of(app: Starlette, customer: str | None) -> TestClient:
    client = TestClient(app)
    if customer is not None:
        assert client.get(f"/login/{customer}").text == "ok"
    return client


def save(client: TestClient, kg: Any, note: str) -> str:
    response = client.post("/weight", json={"kg": str(kg), "note": note})
    assert response.status_code == 200, response.text
    assert shown(response.text, "saved") == "True"
    return response.text


def test_two_customers_read_and_write_their_own_data(site: tuple[Starlette, Crm, str]) -> None:
    app, crm, _ = site
    ann, bob = client_of(app, "cus_ann"), client_of(app, "cus_bob")
    html = save(ann, 61, "ann's")
    assert (shown(html, "kg"), shown(html, "note")) == ("61.0", "ann&#39;s")
    html = bob.get("/weight").text  # nothing of Ann's
    assert (shown(html, "kg"), shown(html, "note")) == ("None", "None")
    save(bob, 92, "bob's")
    for i in range(3):
        save(ann, 60 + i, f"ann {i}")
        save(bob, 90 + i, f"bob {i}")
        a, b = ann.get("/weight").text, bob.get("/weight").text
        assert (shown(a, "kg"), shown(a, "note")) == (f"{60 + i}.0", f"ann {i}")
        assert (shown(b, "kg"), shown(b, "note")) == (f"{90 + i}.0", f"bob {i}")
        # A macro imported without context, in a sync endpoint: the render's customer.
        assert shown(ann.get("/macro").text, "note") == f"ann {i}"
        assert shown(bob.get("/macro").text, "kg") == f"{90 + i}.0"
    assert crm.bind("cus_ann").get_field(slug="weight", fieldKey="note") == "ann 2"
    assert crm.bind("cus_bob").get_field(slug="weight", fieldKey="note") == "bob 2"


def test_interleaved_threads_never_see_the_other_customer(
    site: tuple[Starlette, Crm, str],
) -> None:
    app, _, _ = site
    per_customer, rounds = 3, 12
    barrier = threading.Barrier(2 * per_customer)
    problems: list[str] = []

    def visit(customer: str, worker: int) -> None:
        client = client_of(app, customer)
        barrier.wait()
        for i in range(rounds):
            html = save(client, i, f"{customer}/{worker}/{i}")
            for page in (html, client.get("/weight").text, client.get("/macro").text):
                note = shown(page, "note")
                if not note.startswith(f"{customer}/"):
                    problems.append(f"{customer} saw {note!r}")

    threads = [
        threading.Thread(target=visit, args=(c, w))
        for w in range(per_customer)
        for c in ("cus_ann", "cus_bob")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []


def test_without_a_customer_reads_are_empty_and_writes_refused(
    site: tuple[Starlette, Crm, str],
) -> None:
    app, crm, _ = site
    save(client_of(app, "cus_ann"), 61, "ann's")
    visitor = client_of(app, None)
    html = visitor.get("/weight").text
    assert (shown(html, "kg"), shown(html, "note")) == ("None", "None")
    with pytest.raises(CrmTemplateError, match="no current customer"):
        visitor.post("/weight", json={"kg": "1", "note": "x"})
    assert crm.bind("cus_ann").get_field(slug="weight", fieldKey="note") == "ann's"


def test_an_explicit_customer_in_the_context_wins(site: tuple[Starlette, Crm, str]) -> None:
    app, crm, _ = site
    save(client_of(app, "cus_ann"), 61, "ann's")
    templates = Jinja2Templates(env=Environment(autoescape=True))
    install(templates, crm, customer=lambda request: "cus_bob")
    text = templates.env.from_string("{{ GetCrmField(slug='weight', fieldKey='note') }}")
    assert text.render(request=object(), customer_id="cus_ann") == "ann&#39;s"  # SPEC §7
    assert text.render(request=object()) == "None"  # Bob, who has no note
    assert text.render() == "None"  # no request: no customer, the callable is not asked
    install(templates, crm, customer=lambda request: ["not", "an", "id"])
    with pytest.raises(CrmTemplateError, match="context_customer callable must return") as bad:
        text.render(request=object())
    assert isinstance(bad.value.__cause__, CrmUsageError)


def test_install_refuses_what_is_not_a_templates_object(site: tuple[Starlette, Crm, str]) -> None:
    _, crm, _ = site
    with pytest.raises(TypeError, match="Jinja2Templates"):
        install(object(), crm, customer=lambda request: None)
    templates = Jinja2Templates(env=Environment())
    with pytest.raises(TypeError, match="callable"):
        install(templates, crm, customer="customer_id")  # type: ignore[arg-type]


def test_lifespan_close_drains_acknowledged_async_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    app, _ = make_app(tmp_path, url)
    with TestClient(app) as client:  # runs the lifespan: close() at the end
        client.get("/login/cus_ann")
        for i in range(40):
            assert shown(client.post("/queue", json={"note": f"q{i}"}).text, "queued") == "True"
    with Crm(open_store(url)) as fresh:
        assert fresh.bind("cus_ann").get_field(slug="weight", fieldKey="note") == "q39"
