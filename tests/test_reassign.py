"""ReassignCrmReference (SPEC §5; issue 8, fault 7): how entries merge (on every backend), the
rule that limits it in templates and page backends, and the attacks it stops."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from jinja2.sandbox import SandboxedEnvironment

from crm_templates import Crm, CrmExtension, CrmUsageError, Store
from crm_templates.server import create_app

PREFS = {
    "slug": "prefs",
    "entityMode": "data",
    "fields": [{"key": k, "type": "text"} for k in ("color", "size", "shape", "note")],
}
LEADS = {
    "slug": "leads",
    "fields": [{"key": "name", "type": "text"}],
    "pipelines": [{"slug": "in", "stages": [{"slug": "new"}, {"slug": "won"}]}],
}


@pytest.fixture
def schema(crm: Crm) -> Crm:
    """The service with the prefs and leads entities."""
    crm.ensure_entity(PREFS)
    crm.ensure_entity(LEADS)
    return crm


def refs(store: Store, slug: str, rid: str) -> list[dict[str, Any]]:
    """The reference's entries of ``slug`` (newest first) as dicts."""
    return [e.to_dict() for e in store.find_entries(slug, "customer", rid, limit=None)]


def reassign(crm: Crm, **options: Any) -> dict[str, Any]:
    """ReassignCrmReference from customer anon onto customer cus (unless overridden)."""
    options = {
        "slug": "*",
        "fromReferenceType": "customer",
        "fromReferenceId": "anon",
        "toReferenceId": "cus",
        **options,
    }
    return dict(crm.reassign_reference(options))


# --- merge semantics (the service used directly: trusted) ----------------------------------


def test_moves_entries_unchanged_when_the_customer_has_none(schema: Crm) -> None:
    anon = schema.bind("anon")
    anon.create_entry(slug="leads", values={"name": "first"}, stageSlug="won")
    anon.add_field_value(slug="prefs", fieldKey="note", value="one")
    anon.add_field_value(slug="prefs", fieldKey="note", value="two")
    before = {e["id"]: e for s in ("leads", "prefs") for e in refs(schema.store, s, "anon")}
    assert reassign(schema) == {"ok": True, "migrated": 3, "merged": False}
    after = {e["id"]: e for s in ("leads", "prefs") for e in refs(schema.store, s, "cus")}
    assert after.keys() == before.keys()
    for ident, entry in after.items():  # same entries: timestamps, stage and values kept
        old = before[ident]
        assert entry["reference_id"] == "cus"
        for key in ("created_at", "values", "stage_id", "pipeline_id", "title"):
            assert entry[key] == old[key], key
    cus = schema.bind("cus")
    assert cus.get_field_values(slug="prefs", fieldKey="note") == ["two", "one"]
    assert refs(schema.store, "prefs", "anon") == []


def test_customer_values_win_and_entries_are_consolidated(schema: Crm) -> None:
    cus = schema.bind("cus")
    cus.add_field_value(slug="prefs", fieldKey="color", value="blue")  # older entry
    cus.add_field_value(slug="prefs", fieldKey="size", value="L")  # newest entry
    anon = schema.bind("anon")  # written later, so its values are the newer ones
    anon.set_fields(slug="prefs", fields={"color": "red", "shape": "round"})
    anon.add_field_value(slug="prefs", fieldKey="size", value="S")
    anon.add_field_value(slug="prefs", fieldKey="note", value="from the visit")
    customer_entries = [e["id"] for e in refs(schema.store, "prefs", "cus")]

    assert reassign(schema) == {"ok": True, "migrated": 3, "merged": True}
    assert cus.get_fields(slug="prefs", fieldKeys=["color", "size", "shape", "note"]) == {
        "color": "blue",  # held by an older customer entry: still the customer's
        "size": "L",
        "shape": "round",  # keys the customer lacked come from the visitor
        "note": "from the visit",
    }
    # Consolidated: the customer keeps its own entries, the visitor's are gone.
    assert [e["id"] for e in refs(schema.store, "prefs", "cus")] == customer_entries
    assert refs(schema.store, "prefs", "anon") == []
    # Idempotent: a second call finds nothing to move and changes nothing.
    snapshot = refs(schema.store, "prefs", "cus")
    assert reassign(schema) == {"ok": True, "migrated": 0, "merged": False}
    assert refs(schema.store, "prefs", "cus") == snapshot


def test_one_slug_only_and_every_slug(schema: Crm) -> None:
    anon = schema.bind("anon")
    anon.create_entry(slug="leads", values={"name": "lead"})
    anon.set_field(slug="prefs", fieldKey="color", value="red")
    schema.bind("cus").set_field(slug="prefs", fieldKey="color", value="blue")
    assert reassign(schema, slug="leads") == {"ok": True, "migrated": 1, "merged": False}
    assert len(refs(schema.store, "prefs", "anon")) == 1  # other entities stay
    assert reassign(schema) == {"ok": True, "migrated": 1, "merged": True}
    assert schema.bind("cus").get_field(slug="prefs", fieldKey="color") == "blue"
    assert schema.store.count_entries(None, "customer", "anon") == 0


def test_onto_itself_and_async(schema: Crm) -> None:
    schema.bind("anon").set_field(slug="prefs", fieldKey="color", value="red")
    assert reassign(schema, toReferenceId="anon") == {"ok": True, "migrated": 0, "merged": False}
    assert reassign(schema, **{"async": True}) == {"ok": True, "pending": True}
    assert schema.flush(timeout=30)
    assert schema.bind("cus").get_field(slug="prefs", fieldKey="color") == "red"


# --- the rule for views (templates and page backends) --------------------------------------


def victim_and_visitor(crm: Crm) -> tuple[list[Any], list[Any]]:
    """A victim customer's entries and the visitor 'anon's entries."""
    crm.bind("victim").set_fields(slug="prefs", fields={"color": "victim's", "size": "M"})
    crm.bind("anon").set_field(slug="prefs", fieldKey="shape", value="anon's")
    return refs(crm.store, "prefs", "victim"), refs(crm.store, "prefs", "anon")


ANON = {"slug": "*", "fromReferenceType": "customer", "fromReferenceId": "anon"}


@pytest.mark.parametrize(
    ("view_of", "options", "error"),
    [
        # A view without a session visitor may move nothing at all.
        (lambda c: c.bind("cus"), {"fromReferenceId": "victim"}, "forbidden"),
        (lambda c: c.bind("cus"), {}, "forbidden"),
        # With one, only that visitor moves, and only onto the current signed-in customer.
        (lambda c: c.bind("cus", reassign_from=lambda: "anon"),
         {"fromReferenceId": "victim"}, "forbidden"),
        (lambda c: c.bind("cus", reassign_from=lambda: "anon"),
         {"fromReferenceType": "order"}, "forbidden"),
        (lambda c: c.bind("cus", reassign_from=lambda: "anon"),
         {"toReferenceId": "victim"}, "forbidden_target"),
        (lambda c: c.bind("cus", reassign_from=lambda: "anon"),
         {"toReferenceType": "order", "toReferenceId": "cus"}, "forbidden_target"),
        (lambda c: c.bind("cus", reassign_from=lambda: "anon", reassign_to=lambda: None),
         {}, "forbidden_target"),
        # A view of a view keeps the rule: rebinding to the victim does not make it the target.
        (lambda c: c.bind("cus", reassign_from=lambda: "anon").bind("victim"),
         {}, "forbidden_target"),
        (lambda c: c.bind("cus", reassign_from=lambda: "anon"),
         {"toReferenceId": "victim", "async": True}, "forbidden_target"),
    ],
)  # fmt: skip
def test_views_may_not_move_anything_else(
    schema: Crm, view_of: Any, options: dict[str, Any], error: str
) -> None:
    victim, visitor = victim_and_visitor(schema)
    result = view_of(schema).reassign_reference({**ANON, **options})
    assert result["ok"] is False and result["error"] == error and result["migrated"] == 0
    assert "nothing was moved" in result["message"]
    assert schema.flush(timeout=30)
    assert refs(schema.store, "prefs", "victim") == victim
    assert refs(schema.store, "prefs", "anon") == visitor
    assert refs(schema.store, "prefs", "cus") == []


def test_a_view_moves_its_own_visitor_onto_the_signed_in_customer(schema: Crm) -> None:
    victim, _ = victim_and_visitor(schema)
    schema.bind("cus").set_field(slug="prefs", fieldKey="shape", value="customer's")
    view = schema.bind("cus", reassign_from=lambda: "anon")
    assert dict(view.reassign_reference(ANON)) == {"ok": True, "migrated": 1, "merged": True}
    assert view.get_field(slug="prefs", fieldKey="shape") == "customer's"  # the customer wins
    assert dict(view.reassign_reference(ANON)) == {"ok": True, "migrated": 0, "merged": False}
    assert refs(schema.store, "prefs", "victim") == victim


def test_a_refused_reassign_creates_no_customer(schema: Crm) -> None:
    asked: list[bool] = []

    def provider(create: bool) -> str | None:
        asked.append(create)
        return None

    view = schema.bind(provider, reassign_from=lambda: "anon")
    assert view.reassign_reference(ANON)["error"] == "forbidden_target"
    assert True not in asked


def test_views_cannot_change_their_rule(schema: Crm) -> None:
    view = schema.bind("cus")
    assert schema.trusted and not view.trusted and not view.bind("x").trusted
    with pytest.raises(CrmUsageError, match="reassign_from"):
        view.bind("cus", reassign_from=lambda: "victim")
    with pytest.raises(CrmUsageError):
        view.bind("cus", reassign_to=lambda: "victim")


def test_previews_refuse_before_the_rule(schema: Crm) -> None:
    view = schema.bind("cus", read_only=True, reassign_from=lambda: "anon")
    schema.bind("anon").set_field(slug="prefs", fieldKey="color", value="red")
    assert reassign(view, toReferenceId="cus")["error"] == "preview"
    assert schema.store.count_entries(None, "customer", "anon") == 1


ATTACK = (
    "{% set r = ReassignCrmReference(slug='*', fromReferenceType='customer', "
    "fromReferenceId='victim') %}{{ r.ok }}:{{ r.error }}:{{ r.migrated }}"
)


@pytest.mark.parametrize(
    ("installed", "context"),
    [
        (lambda c: c, {"customer_id": "c1"}),
        (lambda c: c, {}),  # no customer: the template still gets a view, not the service
        (lambda c: c.bind("c1"), {}),
        (lambda c: c.bind("c1"), {"customer_id": "c1"}),
    ],
    ids=["service+customer_id", "service", "bound", "bound+customer_id"],
)
def test_bare_environment_refuses(schema: Crm, installed: Any, context: dict[str, Any]) -> None:
    victim, _ = victim_and_visitor(schema)
    env = SandboxedEnvironment(extensions=[CrmExtension], autoescape=True)
    env.install_crm(installed(schema))  # type: ignore[attr-defined]
    assert env.from_string(ATTACK).render(**context) == "False:forbidden:0"
    with_target = ATTACK.replace("'victim')", "'victim', toReferenceId='c1')")
    assert env.from_string(with_target).render(**context) == "False:forbidden:0"
    assert refs(schema.store, "prefs", "victim") == victim
    assert schema.store.count_entries(None, "customer", "c1") == 0


def test_template_reassign_invalidates_the_render_cache(schema: Crm) -> None:
    schema.bind("anon").set_field(slug="prefs", fieldKey="color", value="red")
    env = SandboxedEnvironment(extensions=[CrmExtension], autoescape=True)
    env.install_crm(  # type: ignore[attr-defined]
        schema, request_crm=lambda: schema.bind("cus", reassign_from=lambda: "anon")
    )
    source = (
        "{{ GetCrmField(slug='prefs', fieldKey='color') }}|"
        "{% do ReassignCrmReference(slug='*', fromReferenceType='customer', "
        "fromReferenceId='anon') %}{{ GetCrmField(slug='prefs', fieldKey='color') }}"
    )
    assert env.from_string(source).render() == "None|red"


# --- in the page server (Flask client, SQLite file) ----------------------------------------

CRM_YAML = """\
entities:
  - slug: prefs
    entityMode: data
    fields:
      - {key: color, type: text}
      - {key: size, type: text}
"""
STEAL = (
    "{% set r = ReassignCrmReference(slug='*', fromReferenceType='customer', "
    "fromReferenceId=query.victim) %}{{ r.ok }}:{{ r.error }}:{{ r.migrated }}"
)
PAGES = {
    "form.html": "<form method=post>{{ csrf_field() }}</form>",
    "read.html": "{{ GetCrmField(slug='prefs', fieldKey='color') }}/"
    "{{ GetCrmField(slug='prefs', fieldKey='size') }}",
    "steal.html": STEAL,
    "steal_to.html": STEAL.replace("query.victim)", "query.victim, toReferenceId=query.to)"),
    # The template names another customer as "current": the target stays the signed-in one.
    "steal_as.html": "{% set customer_id = query.to %}" + STEAL,
    "steal_api.py": (
        "def handle(request, page):\n"
        "    options = {'slug': '*', 'fromReferenceType': 'customer',\n"
        "               'fromReferenceId': request.args['victim']}\n"
        "    if 'to' in request.args:\n"
        "        options['toReferenceId'] = request.args['to']\n"
        "    a = page.ReassignCrmReference(options)\n"
        "    b = page.crm.reassign_reference(options)\n"
        "    c = page.crm.bind(request.args['victim']).reassign_reference(options)\n"
        "    return page.json([dict(a), dict(b), dict(c)])\n"
    ),
    "save.py": (
        "def handle(request, page):\n"
        "    fields = {k: v for k, v in page.data.items() if k in ('color', 'size')}\n"
        "    return page.json(dict(page.SetCrmFields(slug='prefs', fields=fields)))\n"
    ),
    # The documented way: the session's own visitor, from a template and from a backend.
    "claim.html": STEAL.replace("query.victim", "visitor_id"),
    "claim_api.py": (
        "def handle(request, page):\n"
        "    return page.json(dict(page.ReassignCrmReference(slug='*',\n"
        "        fromReferenceType='customer', fromReferenceId=page.visitor_id)))\n"
    ),
    # Writes to the visitor reference explicitly (any template may write any reference).
    "to_visitor.html": "{% do SetCrmField(slug='prefs', fieldKey='size', value='XL', "
    "referenceId=query.visitor) %}ok",
}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    """A site over a SQLite file with pages that try to reassign."""
    site = tmp_path / "site"
    for name, text in PAGES.items():
        path = site / "pages" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (site / "crm.yaml").write_text(CRM_YAML)
    application = create_app(
        site, f"sqlite:///{tmp_path / 'crm.db'}", TESTING=True, TRUSTED_HOSTS=["localhost"]
    )
    yield application
    application.extensions["crm"].close()


def service(app: Any) -> Crm:
    """The app's trusted service."""
    crm = app.extensions["crm"].crm
    assert isinstance(crm, Crm)
    return crm


def csrf(client: Any) -> str:
    """A CSRF token for the client's session."""
    match = re.search(r'value="([^"]+)"', client.get("/form").get_data(as_text=True))
    assert match
    return match.group(1)


def save(client: Any, **fields: str) -> None:
    """Post the prefs form."""
    response = client.post("/save", data={"csrf_token": csrf(client), **fields})
    assert response.get_json()["ok"] is True


def sign_in(app: Any, client: Any, email: str) -> None:
    """Request a magic link, open it in ``client`` and press the confirmation button."""
    client.post("/auth/sign-in", data={"csrf_token": csrf(client), "email": email})
    link = app.extensions["crm"].outbox[-1].link
    parts = urlsplit(link)
    page = client.get(parts.path + "?" + parts.query).get_data(as_text=True)
    token = re.search(r'name="token" value="([^"]+)"', page)
    form_csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token and form_csrf, page
    response = client.post(
        "/auth/verify", data={"csrf_token": form_csrf.group(1), "token": token.group(1)}
    )
    assert response.status_code in (302, 303), response.get_data(as_text=True)


@pytest.fixture
def victim(app: Any) -> Any:
    """A signed-in customer with preferences of her own."""
    client = app.test_client()
    save(client, color="victim-red", size="S")
    sign_in(app, client, "victim@example.com")
    customer = service(app).find_customer("victim@example.com")
    assert client.get("/read").get_data(as_text=True) == "victim-red/S"
    return customer


def session_customer(client: Any) -> str:
    """The id of the client's session customer (its anonymous visitor before sign-in)."""
    with client.session_transaction() as session:
        cid = session["customer_id"]
    assert isinstance(cid, str)
    return cid


def victim_entries(app: Any, victim: Any) -> list[dict[str, Any]]:
    """The victim's entries."""
    return refs(service(app).store, "prefs", victim.id)


@pytest.mark.parametrize("signed_in", [True, False], ids=["signed-in", "anonymous"])
def test_template_cannot_take_another_customers_entries(
    app: Any, victim: Any, signed_in: bool
) -> None:
    before = victim_entries(app, victim)
    attacker = app.test_client()
    save(attacker, color="attacker")
    if signed_in:
        sign_in(app, attacker, "attacker@example.com")
    body = attacker.get(f"/steal?victim={victim.id}").get_data(as_text=True)
    assert body == "False:forbidden:0"
    assert victim_entries(app, victim) == before
    assert attacker.get("/read").get_data(as_text=True) == "attacker/"


def test_page_backend_cannot_take_another_customers_entries(app: Any, victim: Any) -> None:
    before = victim_entries(app, victim)
    attacker = app.test_client()
    save(attacker, color="attacker")
    sign_in(app, attacker, "attacker@example.com")
    results = attacker.get(f"/steal_api?victim={victim.id}").get_json()
    assert [(r["ok"], r["error"], r["migrated"]) for r in results] == [(False, "forbidden", 0)] * 3
    assert victim_entries(app, victim) == before


def test_own_visitor_cannot_be_pushed_onto_another_customer(app: Any, victim: Any) -> None:
    before = victim_entries(app, victim)
    visitor = app.test_client()
    save(visitor, size="visitor-size")
    anon = session_customer(visitor)
    for page in ("steal_to", "steal_as"):
        body = visitor.get(f"/{page}?victim={anon}&to={victim.id}").get_data(as_text=True)
        assert body == "False:forbidden_target:0", page
    api = visitor.get(f"/steal_api?victim={anon}&to={victim.id}").get_json()
    assert [r["error"] for r in api] == ["forbidden_target"] * 3
    assert victim_entries(app, victim) == before
    assert visitor.get("/read").get_data(as_text=True) == "/visitor-size"


def test_own_visitor_onto_the_signed_in_customer(app: Any) -> None:
    crm = service(app)
    existing = crm.create_customer("ann@example.com")
    crm.set_field(slug="prefs", fieldKey="color", value="ann-blue", referenceId=existing.id)
    client = app.test_client()
    save(client, color="visitor-red", size="M")
    visitor = crm.get_customer(session_customer(client))
    assert visitor is not None and visitor.email is None
    # Not signed in yet: the visitor is the current customer, but not a signed-in one.
    steal = f"/steal?victim={visitor.id}"
    assert client.get(steal).get_data(as_text=True) == "False:forbidden_target:0"
    # Signing in merges the visitor (trusted code): Ann's own value wins, the size comes along.
    sign_in(app, client, "ann@example.com")
    assert client.get("/read").get_data(as_text=True) == "ann-blue/M"
    assert refs(crm.store, "prefs", visitor.id) == []
    # Now the session's own visitor may be reassigned from a template: nothing left (idempotent).
    assert client.get(steal).get_data(as_text=True) == "True::0"
    assert client.get("/claim").get_data(as_text=True) == "True::0"  # visitor_id is that id
    # Entries that reach the visitor reference later are consolidated, the customer winning.
    client.get(f"/to_visitor?visitor={visitor.id}")
    assert client.get("/claim").get_data(as_text=True) == "True::1"
    client.get(f"/to_visitor?visitor={visitor.id}")
    assert client.get("/claim_api").get_json() == {"ok": True, "migrated": 1, "merged": True}
    assert client.get("/read").get_data(as_text=True) == "ann-blue/M"
    assert refs(crm.store, "prefs", visitor.id) == []
    assert len(refs(crm.store, "prefs", existing.id)) == 1


def test_visitor_id_is_the_sessions_own(app: Any) -> None:
    fresh = app.test_client()
    save(fresh, color="c")
    visitor = session_customer(fresh)
    assert fresh.get("/claim").get_data(as_text=True) == "False:forbidden_target:0"
    sign_in(app, fresh, "fresh@example.com")
    assert fresh.get("/claim").get_data(as_text=True) == "True::0"
    # Signed out, the session has no visitor of its own any more.
    fresh.post("/auth/sign-out", data={"csrf_token": csrf(fresh)})
    assert fresh.get(f"/steal?victim={visitor}").get_data(as_text=True) == "False:forbidden:0"


def test_another_sessions_visitor_is_not_this_sessions(app: Any) -> None:
    other = app.test_client()
    save(other, color="other-visitor")
    other_visitor = session_customer(other)
    client = app.test_client()
    save(client, size="mine")
    sign_in(app, client, "me@example.com")
    body = client.get(f"/steal?victim={other_visitor}").get_data(as_text=True)
    assert body == "False:forbidden:0"
    assert other.get("/read").get_data(as_text=True) == "other-visitor/"
