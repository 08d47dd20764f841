"""An empty id is client input, never a fault of ours: every store finds nothing under it (as
SQLite does), so the REST API answers 4xx, not 500. Found by the random-seed schemathesis run:
``POST /api/crm/entities`` with ``"slug": ""`` and a preset reached the search client, which
refuses an empty document id with a bare ``ValueError``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crm_templates.errors import CrmError
from tests.admin_world import BACKENDS
from tests.api_world import ApiWorld, assert_error, make_api_world

GETTERS = (
    "get_api_key",
    "get_customer",
    "get_customer_by_email",
    "get_entity",
    "get_entry",
    "get_operator",
    "get_operator_by_email",
    "get_webhook_delivery",
    "get_webhook_endpoint",
)


@pytest.mark.parametrize("getter", GETTERS)
def test_every_store_finds_nothing_under_an_empty_id(store: Any, getter: str) -> None:
    assert getattr(store, getter)("") is None


def test_deleting_an_empty_id_changes_nothing(store: Any) -> None:
    # Either "nothing there" or the core's own error: never the search client's ValueError.
    for call in (lambda: store.delete_entry(""), lambda: store.delete_entity("")):
        try:
            call()
        except CrmError:
            pass


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> ApiWorld:
    """The API world, once per backend."""
    return make_api_world(tmp_path, request.param, request)


def test_the_api_refuses_an_empty_slug_with_a_preset(world: ApiWorld) -> None:
    before = [e.slug for e in world.crm.store.list_entities()]
    response = world.post("/entities", {"slug": "", "preset": "deals"})
    assert 400 <= response.status_code < 500, response.get_json()
    assert_error(response, response.status_code)
    assert [e.slug for e in world.crm.store.list_entities()] == before
