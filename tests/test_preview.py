"""Previews never write (issue 8, fault 6; SPEC §8): the read-only service view on every
backend (CRM functions, service methods, every writing Store method) and operator previews in
the page server (templates, page backends, form and JSON posts, banner, leaving)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from crm_templates import FUNCTIONS, Crm, PreviewError, Store
from crm_templates.access import STORE_METHODS, STORE_READS, STORE_WRITES, ReadOnlyStore
from crm_templates.server import create_app
from crm_templates.server.pages import render_as
from crm_templates.storage.aggregations import Aggregation

NOTES = {
    "slug": "notes",
    "fields": [
        {"key": "text", "type": "text"},
        {"key": "other", "type": "reference", "target_entity": "notes"},
    ],
    "pipelines": [{"slug": "flow", "stages": [{"slug": "open"}, {"slug": "done"}]}],
}


def snapshot(store: Store) -> tuple[Any, ...]:
    """Everything a store holds, comparable before and after."""
    return (
        [e.to_dict() for e in store.iter_entries()],
        store.list_customers(limit=1000),
        store.list_entities(),
    )


@pytest.fixture
def seeded(crm: Crm) -> Crm:
    """The service with a notes entity and a customer (cus_a) holding two notes."""
    crm.ensure_entity(NOTES)
    crm.create_customer("a@example.com")
    a = crm.bind("cus_a")
    a.set_field(slug="notes", fieldKey="text", value="a's")
    a.add_field_value(slug="notes", fieldKey="text", value="a's second")
    return crm


# --- the service's read-only view, on every backend -----------------------------------------


def test_store_interface_is_fully_classified() -> None:
    # Writes are what is not declared a read, so a new Store method is refused until someone
    # lists it in STORE_READS; here the known writes, and no stale read names.
    assert STORE_READS <= STORE_METHODS
    assert STORE_WRITES == STORE_METHODS - STORE_READS
    assert {
        "create_entity",
        "update_entity",
        "delete_entity",
        "create_customer",
        "update_customer",
        "insert_entries",
        "update_entry",
        "merge_into_newest",
        "delete_entries",
        "delete_entry",
        "atomic",
        "batch",
        "close",
    } <= STORE_WRITES
    assert not inspect.isabstract(ReadOnlyStore)


def test_every_writing_store_method_is_refused(seeded: Crm) -> None:
    store = seeded.bind("cus_a", read_only=True).store
    assert isinstance(store, ReadOnlyStore)
    entry = seeded.store.find_entries("notes", "customer", "cus_a", limit=1)[0]
    before = snapshot(seeded.store)
    for name in sorted(STORE_WRITES):
        with pytest.raises(PreviewError, match=rf"previews are read-only: Store\.{name}\(\)"):
            # Arguments that would succeed on the real store, where it is easy to give them.
            args = {
                "update_entry": (replace(entry, values={"text": "x"}), entry.version),
                "delete_entry": (entry.id,),
                "delete_entries": ("notes",),
                "insert_entries": ([replace(entry, id="e_new")],),
            }.get(name, ())
            getattr(store, name)(*args)
    assert snapshot(seeded.store) == before
    assert seeded.store.count_entries("notes") == 2  # the shared store was not closed


def test_backend_extras_are_refused_too(seeded: Crm) -> None:
    real = seeded.store
    view = seeded.bind("cus_a", read_only=True).store
    # The interface's two plain attributes: the URL, and a capability a view answers False
    # to (fail closed: no shortcut past the write checks; issue 14, B2).
    plain = ("url", "merges_without_conflicts")
    extras = [
        n for n in dir(real) if not n.startswith("_") and n not in STORE_METHODS and n not in plain
    ]
    assert extras  # each backend has some (a connection helper, a client, indices …)
    for name in extras:
        with pytest.raises(PreviewError):
            getattr(view, name)
    assert view.url == real.url
    assert view.merges_without_conflicts is False


def test_reads_pass_through(seeded: Crm) -> None:
    real = seeded.store
    view = seeded.bind("cus_a", read_only=True).store
    newest = real.find_entries("notes", "customer", "cus_a", limit=1)[0]
    assert newest.pipeline_id is not None  # so the board reads below find something
    calls: dict[str, tuple[Any, ...]] = {
        "get_entity": ("notes",),
        "list_entities": (),
        "get_customer": (real.list_customers()[0].id,),
        "get_customer_by_email": ("a@example.com",),
        "list_customers": (),
        "count_customers": (),
        "get_entries_by_ids": ([newest.id],),
        "get_entry": (newest.id,),
        "find_entries": ("notes", "customer", "cus_a"),
        "latest_values": ("notes", "customer", "cus_a", ["text"]),
        "count_entries": ("notes",),
        # crm_templates.storage.entity_queries (issue 12, item 2)
        "count_entries_with_field": ("notes", "text"),
        "count_entries_by_field": ("notes",),
        "count_entries_by_stage": ("notes",),
        "entity_versions": (),
        "stage_totals": ("notes", newest.pipeline_id, "text"),
        "stage_cards": ("notes", newest.pipeline_id, [newest.stage_id], 5),
        "aggregate": ("notes", [Aggregation("terms", "text")]),
        # crm_templates.storage.prefetch (issue 14, item 1)
        "prefetch_values": ([("notes", "customer", "cus_a", ["text"])],),
    }
    assert set(calls) | {"iter_entries"} == STORE_READS
    for name, args in calls.items():
        assert getattr(view, name)(*args) == getattr(real, name)(*args), name
    assert list(view.iter_entries("notes")) == list(real.iter_entries("notes"))


# Valid options for every CRM write function (each succeeds on a writable view).
WRITES: dict[str, dict[str, Any]] = {
    "EnsureCrmEntity": {"slug": "more", "fields": [{"key": "x"}]},
    "CreateCrmEntry": {"slug": "notes", "values": {"text": "new"}},
    "SetCrmField": {"slug": "notes", "fieldKey": "text", "value": "changed"},
    "SetCrmFields": {"slug": "notes", "fields": {"text": "changed"}},
    "AddCrmFieldValue": {"slug": "notes", "fieldKey": "text", "value": "added"},
    "ClearCrmEntries": {"slug": "notes"},
    "SetCrmRelation": {"slug": "notes", "relationKey": "other", "targetEntryId": "<entry>"},
    "RemoveCrmRelation": {"slug": "notes", "relationKey": "other", "targetEntryId": "<entry>"},
    "MoveCrmLead": {"slug": "notes", "pipelineSlug": "flow", "stageSlug": "done"},
    "MoveCrmToStage": {"slug": "notes", "stageSlug": "done"},
    "MoveCrmToPipeline": {"slug": "notes", "pipelineSlug": "flow"},
    "MoveCrmToEntity": {"fromSlug": "notes", "toSlug": "notes2", "fieldMap": {"text": "text"}},
    "ReassignCrmReference": {
        "slug": "*",
        "fromReferenceType": "customer",
        "fromReferenceId": "cus_a",
        "toReferenceId": "cus_b",
    },
}


def test_write_table_covers_every_write_function() -> None:
    assert set(WRITES) == {s.name for s in FUNCTIONS.values() if s.kind == "write"}


@pytest.mark.parametrize("name", sorted(WRITES))
@pytest.mark.parametrize("run_async", [False, True], ids=["sync", "async"])
def test_crm_write_functions_answer_preview(seeded: Crm, name: str, run_async: bool) -> None:
    seeded.ensure_entity(slug="notes2", fields=[{"key": "text"}])
    target = seeded.store.find_entries("notes", "customer", "cus_a", limit=1)[0].id
    options = {k: target if v == "<entry>" else v for k, v in WRITES[name].items()}
    if run_async and "async" in FUNCTIONS[name].options:
        options["async"] = True
    preview = seeded.bind("cus_a", read_only=True)
    before = snapshot(seeded.store)
    for result in (preview.call(name, options), getattr(preview, FUNCTIONS[name].method)(options)):
        assert result["ok"] is False and result["error"] == "preview" and result["preview"]
        assert result["message"] == (
            f"previews are read-only: {name} was not written (nothing was changed)"
        )
        assert str(result) == ""  # prints as nothing in a template
    assert seeded.flush(timeout=30)
    assert snapshot(seeded.store) == before
    # The same options write outside a preview: the table is not refused for another reason.
    writable = seeded if name == "ReassignCrmReference" else seeded.bind("cus_a")
    assert writable.call(name, options)["ok"] is True


def _service_writes(crm: Crm) -> dict[str, tuple[Any, ...]]:
    entry = crm.store.find_entries("notes", "customer", "cus_a", limit=1)[0]
    customer = crm.store.list_customers()[0]
    return {
        "update_entry": (entry.id, {"text": "edited"}),
        "delete_entry": (entry.id,),
        "create_customer": ("new@example.com",),
        "update_customer": (replace(customer, first_name="Changed"),),
        "close": (),
    }


# Public Crm members that only read (besides the CRM read functions); a new public method
# must be classified here or marked with the service's write guard.
SERVICE_READS = {
    "bind",
    "call",
    "check_targets",
    "customer_id",
    "default_placement",
    "entries_for_reference",
    "failed_writes",
    "find_customer",
    "flush",
    # Cache upkeep only (issue 12, item 2): they drop cached definitions, never write.
    "forget_entity",
    "refresh_entities",
    # ... and the same with versions read elsewhere; a cached definition (issue 14, item 3).
    "apply_entity_versions",
    "known_entity",
    "get_customer",
    "get_entity",
    "get_entries_by_ids",
    "get_entry",
    "list_entities",
    # The checked query of a planned GetCrmEntries / GetCrmFieldValues, and its answer's
    # shape (issue 14, B5): no store access at all.
    "listing_answer",
    "listing_query",
    "normalise_email",
    "placement_for",
    "store",
    "trusted",
}


def test_every_public_service_member_is_classified(seeded: Crm) -> None:
    functions = {s.method for s in FUNCTIONS.values()}
    guarded = {
        name
        for name, member in inspect.getmembers(Crm)
        if getattr(member, "crm_writes", False) and not name.startswith("_")
    }
    public = {name for name in dir(Crm) if not name.startswith("_")}
    # close() guards itself: the service's owner may close a read-only service, a view may not.
    assert public - functions - guarded - {"close"} - SERVICE_READS == set()
    assert guarded | {"close"} == set(_service_writes(seeded))


def test_service_writes_raise_preview_error(seeded: Crm) -> None:
    preview = seeded.bind("cus_a", read_only=True)
    before = snapshot(seeded.store)
    for name, args in _service_writes(seeded).items():
        with pytest.raises(PreviewError, match=rf"previews are read-only: Crm\.{name}\(\)"):
            getattr(preview, name)(*args)
        with pytest.raises(PermissionError):  # PreviewError is a PermissionError too
            getattr(preview, name)(*args)
    assert snapshot(seeded.store) == before
    # Reads still work in the preview, as the previewed customer.
    assert preview.customer_id == "cus_a"
    assert preview.get_field(slug="notes", fieldKey="text") == "a's second"
    assert preview.get_entry(seeded.store.find_entries(limit=1)[0].id) is not None


def test_read_only_cannot_be_lifted_by_binding_again(seeded: Crm) -> None:
    preview = seeded.bind("cus_a", read_only=True)
    for view in (preview.bind("cus_b", read_only=False), preview.bind(), preview.bind(None)):
        assert view.read_only and isinstance(view.store, ReadOnlyStore)
        result = view.set_field(slug="notes", fieldKey="text", value="x", referenceId="cus_b")
        assert result["error"] == "preview"
        with pytest.raises(PreviewError):
            view.create_customer()
    assert seeded.store.count_entries(None, "customer", "cus_b") == 0


def test_read_only_service_itself(store: Store) -> None:
    crm = Crm(store, read_only=True)
    assert crm.ensure_entity(NOTES)["error"] == "preview"
    with pytest.raises(PreviewError):
        crm.create_customer("x@example.com")
    with pytest.raises(PreviewError):
        crm.bind("c1").close()
    assert store.list_entities() == [] and store.count_customers() == 0


def test_read_only_service_can_be_closed_by_its_owner(tmp_path: Path) -> None:
    from crm_templates import open_store

    with Crm(open_store(f"sqlite:///{tmp_path / 'ro.db'}"), read_only=True) as crm:
        assert crm.list_entities() == []


# --- operator previews in the page server (real SQLite file) -------------------------------

CRM_YAML = """\
entities:
  - slug: notes
    fields:
      - {key: text, type: text}
"""
PASSWORD = "preview operator password"
SERVICE_OPS = {
    "update_entry": "page.crm.update_entry(newest.id, {'text': 'backend'})",
    "delete_entry": "page.crm.delete_entry(newest.id)",
    "create_customer": "page.crm.create_customer('new@example.com')",
    "update_customer": "page.crm.update_customer(replace(page.customer, first_name='X'))",
    "ensure_entity": "result = page.crm.ensure_entity(slug='evil', fields=[{'key': 'x'}])",
    "set_field": "result = page.crm.set_field(slug='notes', field_key='text', value='backend')",
    "call": "result = page.SetCrmField(slug='notes', fieldKey='text', value='backend')",
    "rebind": "result = page.crm.bind(page.customer_id).set_field("
    "slug='notes', field_key='text', value='backend')",
    "store.delete_entries": "page.crm.store.delete_entries('notes')",
    "store.update_entry": "page.crm.store.update_entry(replace(newest, values={'text': 'x'}), "
    "newest.version)",
    "store.insert_entries": "page.crm.store.insert_entries([replace(newest, id='e_x')])",
    "store.create_customer": "page.crm.store.create_customer(replace(page.customer, id='c_x'))",
    "store.close": "page.crm.store.close()",
    "close": "page.crm.close()",
}
BACKEND = """\
from dataclasses import replace


def handle(request, page):
    op = request.args.get('op')
    newest = page.crm.get_entries(slug='notes', limit=1)[0] if page.customer_id else None
    result = None
{ops}
    if result is not None:
        return page.json(dict(result))
    return page.json({{'done': op}})
"""
PAGES = {
    "form.html": "<form method=post>{{ csrf_field() }}</form>",
    "read.html": (
        "<html><body>note={{ GetCrmField(slug='notes', fieldKey='text') }} "
        "who={{ customer_id }} signed={{ is_customer }} preview={{ preview }} "
        "<a href='/read'>again</a></body></html>"
    ),
    "write.html": (
        "{% set r = SetCrmField(slug='notes', fieldKey='text', value='template') %}"
        "<html><body>ok={{ r.ok }} error={{ r.error }}</body></html>"
    ),
    "who.py": (
        "def handle(request, page):\n"
        "    c = page.customer\n"
        "    return page.json({'customer': c and c.id, 'customer_id': page.customer_id,\n"
        "                      'is_customer': page.is_customer, 'preview': page.preview,\n"
        "                      'visitor_id': page.visitor_id})\n"
    ),
    "save.py": (
        "def handle(request, page):\n"
        "    data = page.data if isinstance(page.data, dict) else {}\n"
        "    result = page.SetCrmField(slug='notes', fieldKey='text', value=data.get('text', 'x'))\n"
        "    return page.json(dict(result))\n"
    ),
    "edit.py": (
        "def handle(request, page):\n"
        "    newest = page.crm.get_entries(slug='notes', limit=1)[0]\n"
        "    page.crm.update_entry(newest.id, {'text': 'edited'})\n"
    ),
    "ops.py": BACKEND.format(
        ops="\n".join(f"    if op == {op!r}:\n        {code}" for op, code in SERVICE_OPS.items())
    ),
}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    """A site with reading, writing and backend pages over a SQLite file; operator enabled."""
    site = tmp_path / "site"
    for name, text in PAGES.items():
        path = site / "pages" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (site / "crm.yaml").write_text(CRM_YAML)
    application = create_app(
        site,
        f"sqlite:///{tmp_path / 'crm.db'}",
        TESTING=True,
        CRM_OPERATOR_PASSWORD=PASSWORD,
        CRM_ON_ERROR="log",
    )
    yield application
    application.extensions["crm"].close()


@pytest.fixture
def server_crm(app: Any) -> Crm:
    """The app's (trusted) service."""
    crm = app.extensions["crm"].crm
    assert isinstance(crm, Crm)
    return crm


@pytest.fixture
def two(server_crm: Crm) -> tuple[Any, Any]:
    """Customers A and B, each with a note of their own."""
    a = server_crm.create_customer("a@example.com", first_name="Ann")
    b = server_crm.create_customer("b@example.com", first_name="Bob")
    server_crm.set_field(slug="notes", fieldKey="text", value="ann-note", referenceId=a.id)
    server_crm.set_field(slug="notes", fieldKey="text", value="bob-note", referenceId=b.id)
    return a, b


def csrf(client: Any) -> str:
    """A CSRF token for the client's session."""
    match = re.search(r'value="([^"]+)"', client.get("/form").get_data(as_text=True))
    assert match
    return match.group(1)


@pytest.fixture
def operator(app: Any, server_crm: Crm) -> Any:
    """A client that wrote a note of its own as a visitor, then signed in as operator."""
    client = app.test_client()
    saved = client.post("/save", data={"csrf_token": csrf(client), "text": "operator-own"})
    assert saved.get_json()["ok"] is True
    response = client.post(
        "/operator/sign-in", data={"csrf_token": csrf(client), "password": PASSWORD}
    )
    assert response.status_code == 303
    return client


def own_customer(server_crm: Crm) -> Any:
    """The operator-own (anonymous) customer."""
    return next(c for c in server_crm.store.list_customers(limit=100) if c.email is None)


def test_preview_page_customer_is_the_previewed_one(operator: Any, two: Any) -> None:
    a, _ = two
    who = operator.get(f"/who?preview_customer={a.id}").get_json()
    assert who == {
        "customer": a.id,
        "customer_id": a.id,
        "is_customer": True,
        "preview": True,
        "visitor_id": None,  # the operator's own visitor is not offered in a preview
    }
    html = operator.get("/read").get_data(as_text=True)  # no parameter: still the preview
    assert f"note=ann-note who={a.id} signed=True preview=True" in html
    assert "crm-preview-banner" in html and "Ann" in html and "a@example.com" in html


@pytest.mark.parametrize("op", sorted(SERVICE_OPS))
def test_page_backend_writes_are_refused(operator: Any, server_crm: Crm, two: Any, op: str) -> None:
    a, _ = two
    before = snapshot(server_crm.store)
    response = operator.get(f"/ops?op={op}&preview_customer={a.id}")
    if response.is_json and "done" not in response.get_json():
        body = response.get_json()  # a CRM function: refused, not raised
        assert (body["ok"], body["error"], body["preview"]) == (False, "preview", True)
    else:
        assert response.status_code == 403
        text = response.get_data(as_text=True)
        assert "tried to write during a preview" in text and "was not written" in text
        assert "crm-preview-banner" in text  # the way out is still there
    assert snapshot(server_crm.store) == before
    # The store is still open and writable outside the preview.
    assert server_crm.get_field(slug="notes", fieldKey="text", referenceId=a.id) == "ann-note"


def test_the_same_backend_writes_outside_a_preview(app: Any, server_crm: Crm) -> None:
    client = app.test_client()
    client.post("/save", data={"csrf_token": csrf(client), "text": "mine"})
    assert client.get("/ops?op=update_entry").get_json() == {"done": "update_entry"}
    assert client.get("/read").get_data(as_text=True).startswith("<html><body>note=backend")


def test_template_writes_are_refused(operator: Any, server_crm: Crm, two: Any) -> None:
    a, _ = two
    before = snapshot(server_crm.store)
    html = operator.get(f"/write?preview_customer={a.id}").get_data(as_text=True)
    assert "ok=False error=preview" in html
    assert snapshot(server_crm.store) == before


def test_form_and_json_posts_are_refused(operator: Any, server_crm: Crm, two: Any) -> None:
    a, _ = two
    operator.get(f"/read?preview_customer={a.id}")
    before = snapshot(server_crm.store)
    token = csrf(operator)
    form = operator.post("/save", data={"csrf_token": token, "text": "form"})
    assert form.status_code == 403
    assert "Previews are read-only" in form.get_data(as_text=True)
    assert "crm-preview-banner" in form.get_data(as_text=True)
    with_param = operator.post(f"/save?preview_customer={a.id}", data={"csrf_token": token})
    assert with_param.status_code == 403
    as_json = operator.post("/save", json={"text": "json"}, headers={"Origin": "http://localhost"})
    assert as_json.status_code == 403
    assert as_json.get_json()["error"].startswith("Previews are read-only")
    assert snapshot(server_crm.store) == before
    # Neither the previewed customer nor the operator-own customer changed.
    assert server_crm.get_field(slug="notes", fieldKey="text", referenceId=a.id) == "ann-note"
    own = own_customer(server_crm)
    assert server_crm.get_field(slug="notes", fieldKey="text", referenceId=own.id) == "operator-own"


def test_sign_in_and_sign_out_forms_are_refused_too(app: Any, operator: Any, two: Any) -> None:
    a, _ = two
    operator.get(f"/read?preview_customer={a.id}")
    outbox = app.extensions["crm"].outbox
    sent = len(outbox)
    token = csrf(operator)
    for url, data in [
        ("/auth/sign-in", {"email": "a@example.com"}),
        ("/auth/sign-out", {}),
    ]:
        response = operator.post(url, data={"csrf_token": token, **data})
        assert response.status_code == 403, url
        assert "crm-preview-banner" in response.get_data(as_text=True)
    assert len(outbox) == sent  # no sign-in mail went out
    # The operator's own customer is still this session's once the preview is left.
    operator.post("/_crm/preview/leave", data={"csrf_token": token})
    assert "note=operator-own" in operator.get("/read").get_data(as_text=True)


def test_switching_previews_shows_only_that_customer(operator: Any, two: Any) -> None:
    a, b = two
    html = operator.get(f"/read?preview_customer={a.id}").get_data(as_text=True)
    assert "note=ann-note" in html
    html = operator.get(f"/read?preview_customer={b.id}").get_data(as_text=True)
    assert "note=bob-note" in html and "ann-note" not in html and a.id not in html
    assert "note=bob-note" in operator.get("/read").get_data(as_text=True)


def test_leaving_the_preview(operator: Any, server_crm: Crm, two: Any) -> None:
    a, _ = two
    operator.get(f"/read?preview_customer={a.id}")
    assert operator.post("/_crm/preview/leave", data={"next": "/read"}).status_code == 400
    assert "crm-preview-banner" in operator.get("/read").get_data(as_text=True)  # still on
    left = operator.post(
        "/_crm/preview/leave", data={"csrf_token": csrf(operator), "next": "/read"}
    )
    assert (left.status_code, left.headers["Location"]) == (303, "/read")
    html = operator.get("/read").get_data(as_text=True)
    assert "crm-preview-banner" not in html
    assert "note=operator-own" in html and "preview=False" in html
    # Leaving goes only to this site's pages.
    operator.get(f"/read?preview_customer={a.id}")
    away = operator.post(
        "/_crm/preview/leave", data={"csrf_token": csrf(operator), "next": "//evil.example/"}
    )
    assert away.headers["Location"] == "/"


def test_operator_sign_out_ends_the_preview(operator: Any, two: Any) -> None:
    a, _ = two
    operator.get(f"/read?preview_customer={a.id}")
    operator.post("/operator/sign-out", data={"csrf_token": csrf(operator)})
    html = operator.get("/read").get_data(as_text=True)
    assert "crm-preview-banner" not in html and "ann-note" not in html
    with operator.session_transaction() as session:
        assert "crm_preview" not in session


def test_non_operators_cannot_preview(app: Any, two: Any) -> None:
    a, _ = two
    client = app.test_client()
    response = client.get(f"/read?preview_customer={a.id}")
    assert response.status_code == 403
    assert "ann-note" not in response.get_data(as_text=True)
    # Even with the session key set (as a stale cookie would), only an operator previews.
    with client.session_transaction() as session:
        session["crm_preview"] = a.id
    html = client.get("/read").get_data(as_text=True)
    assert "ann-note" not in html and "crm-preview-banner" not in html


def test_render_command_uses_the_same_policy(app: Any, server_crm: Crm, two: Any) -> None:
    a, _ = two
    before = snapshot(server_crm.store)
    status, body = render_as(app, "/edit", a.id)
    assert status == 403 and "was not written" in body
    status, body = render_as(app, "/write", a.id)
    assert status == 200 and "error=preview" in body and "crm-preview-banner" not in body
    assert snapshot(server_crm.store) == before


# --- found by attacking the first version -----------------------------------------------------


def leave_token(html: str) -> str:
    """The CSRF token of the banner's Leave preview form."""
    match = re.search(
        r'action="/_crm/preview/leave">\s*<input type="hidden" name="csrf_token" value="([^"]+)"',
        html,
    )
    assert match, html
    return match.group(1)


def page_token(html: str) -> str:
    """The CSRF token of the page's own form (after the banner's)."""
    tokens = re.findall(r'name="csrf_token" value="([^"]+)"', html)
    assert tokens, html
    return str(tokens[-1])


@pytest.mark.parametrize("ended_by", ["leave", "operator sign-out"])
def test_a_form_shown_in_a_preview_never_writes_after_the_preview_ends(
    operator: Any, server_crm: Crm, two: Any, ended_by: str
) -> None:
    a, _ = two
    shown = operator.get(f"/form?preview_customer={a.id}").get_data(as_text=True)
    stale = page_token(shown)  # a tab left open on the preview
    if ended_by == "leave":  # ... while another tab leaves the preview
        assert operator.post("/_crm/preview/leave", data={"csrf_token": leave_token(shown)})
    else:
        assert operator.post("/operator/sign-out", data={"csrf_token": leave_token(shown)})
    assert operator.get("/who").get_json()["preview"] is False
    before = snapshot(server_crm.store)
    response = operator.post("/save", data={"csrf_token": stale, "text": "ANN-PRIVATE"})
    assert response.status_code == 400  # the preview's token is never accepted
    assert snapshot(server_crm.store) == before
    # Pages outside a preview carry ordinary tokens, which still work.
    fresh = page_token(operator.get("/form").get_data(as_text=True))
    assert operator.post("/save", data={"csrf_token": fresh, "text": "mine"}).get_json()["ok"]


def test_operator_sign_out_ends_the_preview_for_good(operator: Any, two: Any) -> None:
    a, _ = two
    shown = operator.get(f"/read?preview_customer={a.id}").get_data(as_text=True)
    assert "ann-note" in shown
    assert operator.post("/operator/sign-out", data={"csrf_token": leave_token(shown)})
    # Signing in again before any page request: the old preview must not come back.
    form = operator.get("/operator/sign-in").get_data(as_text=True)
    assert operator.post(
        "/operator/sign-in", data={"csrf_token": page_token(form), "password": PASSWORD}
    )
    html = operator.get("/read").get_data(as_text=True)
    assert "ann-note" not in html and "preview=False" in html
    assert "crm-preview-banner" not in html


@pytest.mark.parametrize("url", ["/no-such-page", "/auth/sign-in", "/operator/"])
def test_every_html_answer_in_a_preview_shows_the_banner(operator: Any, two: Any, url: str) -> None:
    a, _ = two
    operator.get(f"/read?preview_customer={a.id}")
    html = operator.get(url).get_data(as_text=True)
    assert "crm-preview-banner" in html and "Leave preview" in html


def test_security_record_reads_are_refused_in_a_preview_without_calling_them_writes(
    seeded: Crm,
) -> None:
    store = seeded.bind("cus_a", read_only=True).store
    for name, args in [
        ("session_generation", ("k",)),
        ("is_token_claimed", ("k",)),
        ("session_state", ("k", "k")),
        ("count_rate_hits", ("k", 60.0)),
        ("get_operator", ("op_x",)),
        ("get_operator_by_email", ("a@example.com",)),
        ("list_operators", ()),
        ("has_operators", ()),
        ("list_audit_records", ()),
        ("get_api_key", ("key_0000000000000000",)),
        ("list_api_keys", ()),
        ("get_webhook_endpoint", ("whe_x",)),
        ("list_webhook_endpoints", ()),
        ("get_webhook_delivery", ("whd_x",)),
        ("list_webhook_deliveries", ()),
    ]:
        with pytest.raises(PreviewError) as info:
            getattr(store, name)(*args)
        assert "not available in a preview" in str(info.value)
        assert "was not written" not in str(info.value)


def test_render_command_writes_nothing_even_with_a_changed_schema(
    app: Any, server_crm: Crm, two: Any, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from crm_templates.cli import main

    a, _ = two
    site = Path(app.config["CRM_SITE_DIR"])
    db = tmp_path / "crm.db"
    server_crm.flush()
    (site / "crm.yaml").write_text(
        CRM_YAML + "      - {key: added, type: text}\n  - slug: brand_new\n    fields: []\n"
    )
    before = snapshot(server_crm.store)
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["render", "/read", "--site", str(site), "--customer", a.id, "--store", f"sqlite:///{db}"],
    )
    assert result.exit_code == 0, result.output
    assert "ann-note" in result.output
    assert server_crm.store.get_entity("brand_new") is None
    assert "added" not in server_crm.store.get_entity("notes").field_keys  # type: ignore[union-attr]
    assert snapshot(server_crm.store) == before
    missing = tmp_path / "nowhere" / "crm.db"
    result = runner.invoke(
        main,
        [
            "render",
            "/read",
            "--site",
            str(site),
            "--customer",
            a.id,
            "--store",
            f"sqlite:///{missing}",
        ],
    )
    assert result.exit_code != 0 and "there is no store" in result.output
    assert not missing.exists() and not missing.parent.exists()
