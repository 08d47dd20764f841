"""A view reaches by id only shared entries and its own customer's (issue 8: a visitor's form
value copied into a reference field showed another customer's entry as its label).

Another customer's entry id is answered exactly like an id that does not exist — as a
reference target, as a relation's ``entryId``, and as a rendered reference label — on every
backend, in a bare environment and in the page server. Ids made in the same millisecond are
not guessable from a neighbour.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jinja2.sandbox import SandboxedEnvironment

from crm_templates import Crm, CrmExtension, EntryNotFoundError
from crm_templates.ids import new_id
from crm_templates.server import create_app
from tests.test_server import make_site

NOTES = {
    "slug": "notes",
    "entityMode": "data",
    "fields": [{"key": "secret", "type": "text"}],
}
ORDERS = {
    "slug": "orders",
    "entityMode": "data",
    "fields": [
        {"key": "item", "type": "reference", "target_entity": "notes", "display_field": "secret"},
        {"key": "items", "type": "multi_reference", "target_entity": "notes"},
    ],
}


@pytest.fixture
def crm(store: Any) -> Iterator[Crm]:
    service = Crm(store)
    service.ensure_entity(NOTES)
    service.ensure_entity(ORDERS)
    yield service
    service.close()


def note(crm: Crm, owner: dict[str, str], secret: str) -> str:
    result = crm.create_entry(slug="notes", title=secret, values={"secret": secret}, **owner)
    return str(result["id"])


def refusal(call: Any) -> str:
    with pytest.raises(EntryNotFoundError) as info:
        call()
    # The message names the id given and nothing about whose it is.
    return re.sub(r"'[0-9a-f]{32}'|'nope[^']*'", "<id>", str(info.value))


def test_a_view_cannot_reference_another_customers_entry(crm: Crm) -> None:
    alices = note(crm, {"referenceId": "alice"}, "ALICE-SECRET")
    shared = note(crm, {"referenceType": "site", "referenceId": "catalog"}, "public")
    bob = crm.bind("bob")
    bobs = note(bob, {}, "bob-own")
    foreign = refusal(lambda: bob.set_field(slug="orders", fieldKey="item", value=alices))
    missing = refusal(lambda: bob.set_field(slug="orders", fieldKey="item", value="nope" * 8))
    assert foreign == missing
    refusal(lambda: bob.set_field(slug="orders", fieldKey="items", value=[bobs, alices]))
    refusal(lambda: bob.set_relation(slug="orders", relationKey="items", targetEntryId=alices))
    refusal(lambda: bob.create_entry(slug="orders", values={"item": alices}, referenceId="bob"))
    assert bob.get_entries(slug="orders") == []  # nothing written by any refusal
    # Shared data and the customer's own entries are fine; the trusted service is not limited.
    assert bob.set_field(slug="orders", fieldKey="items", value=[bobs, shared])["ok"]
    assert crm.set_field(slug="orders", fieldKey="item", value=alices, referenceId="bob")["ok"]


def test_a_view_cannot_write_a_relation_onto_another_customers_entry(crm: Crm) -> None:
    alices_order = crm.create_entry(slug="orders", values={}, referenceId="alice")["id"]
    shared = note(crm, {"referenceType": "site", "referenceId": "catalog"}, "public")
    bob = crm.bind("bob")
    foreign = refusal(
        lambda: bob.set_relation(
            slug="orders", relationKey="items", targetEntryId=shared, entryId=alices_order
        )
    )
    missing = refusal(
        lambda: bob.set_relation(
            slug="orders", relationKey="items", targetEntryId=shared, entryId="nope" * 8
        )
    )
    assert foreign == missing
    refusal(
        lambda: bob.remove_relation(
            slug="orders", relationKey="items", targetEntryId=shared, entryId=alices_order
        )
    )
    entry = crm.get_entry(alices_order)
    assert entry is not None and entry.values.get("items") is None


def test_labels_never_show_another_customers_entry(crm: Crm) -> None:
    alices = note(crm, {"referenceId": "alice"}, "ALICE-SECRET")
    shared = note(crm, {"referenceType": "site", "referenceId": "catalog"}, "public-label")
    # Trusted code (an import, an admin) may store anything: renders still check the owner.
    crm.set_field(slug="orders", fieldKey="item", value=alices, referenceId="bob")
    crm.set_field(slug="orders", fieldKey="items", value=[alices, shared], referenceId="bob")
    crm.set_field(slug="orders", fieldKey="item", value=alices, referenceId="alice")
    env = SandboxedEnvironment(extensions=[CrmExtension], autoescape=True)
    env.install_crm(crm)  # type: ignore[attr-defined]
    page = env.from_string("{{ 'orders' | crm_text('item') }}|{{ 'orders' | crm_render('items') }}")
    for_bob = page.render(customer_id="bob")
    assert "ALICE-SECRET" not in for_bob
    assert alices in for_bob and "public-label" in for_bob
    assert page.render(customer_id="alice").startswith("ALICE-SECRET|")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    schema = (
        "entities:\n"
        "  - slug: notes\n    entityMode: data\n    fields:\n      - {key: secret, type: text}\n"
        "  - slug: orders\n    entityMode: data\n    fields:\n"
        "      - {key: item, type: reference, target_entity: notes, display_field: secret}\n"
    )
    pages = {
        "note.html": "{% do SetCrmField(slug='notes', fieldKey='secret', value=query.v) %}ok",
        "mynote.html": "{{ GetCrmEntries(slug='notes')[0].id }}",
        "order.py": """
            def handle(request, page):
                if request.method == "POST":
                    page.SetCrmField(slug="orders", fieldKey="item", value=page.data.get("item"))
                    return page.redirect("/order")
            """,
        "order.html": "[{{ 'orders' | crm_text('item') }}]",
        "form.html": "{{ csrf_field() }}",
    }
    return make_site(tmp_path / "site", pages, schema)


def test_a_visitors_form_value_cannot_read_another_customers_entry(site: Path) -> None:
    app = create_app(site, TESTING=True, CRM_SEED=False, TRUSTED_HOSTS=["localhost"])
    try:
        victim, attacker = app.test_client(), app.test_client()
        victim.get("/note?v=VICTIM-SECRET")
        victims_note = victim.get("/mynote").get_data(as_text=True)
        attacker.get("/note?v=mine")
        own_note = attacker.get("/mynote").get_data(as_text=True)

        def order(item: str) -> Any:
            token = re.search(r'value="([^"]+)"', attacker.get("/form").get_data(as_text=True))
            assert token
            return attacker.post("/order", data={"csrf_token": token.group(1), "item": item})

        foreign, missing = order(victims_note), order("f" * 32)
        # Refused, as a bad value (400), and indistinguishable from an id that does not exist.
        assert foreign.status_code == missing.status_code == 400
        assert foreign.get_data(as_text=True).replace(victims_note, "<id>") == missing.get_data(
            as_text=True
        ).replace("f" * 32, "<id>")
        assert "VICTIM-SECRET" not in attacker.get("/order").get_data(as_text=True)
        assert order(own_note).status_code == 303
        assert attacker.get("/order").get_data(as_text=True) == "[mine]"
    finally:
        app.extensions["crm"].close()


def test_ids_made_in_one_millisecond_stay_ordered_but_are_not_neighbours() -> None:
    ids = [new_id() for _ in range(2000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    steps = [
        int(b[12:], 16) - int(a[12:], 16) for a, b in itertools.pairwise(ids) if a[:12] == b[:12]
    ]
    assert steps, "no two ids were made in the same millisecond"
    assert all(step >= 1 for step in steps)
    assert sum(step == 1 for step in steps) <= len(steps) // 100  # a +1 step is a rare accident
