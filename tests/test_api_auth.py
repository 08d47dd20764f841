"""Who may call the REST API (issue 13, items 3 and 6), on both backends: no key, a bad key,
a revoked key, a read key on a write, a browser session alone (401: cookies are never
accepted), the platform's EF-Access-Key alias, no CSRF token needed with a key, and the
public description."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.admin_world import BACKENDS, customer_client, operator_client
from tests.api_world import API, ApiWorld, assert_error, make_api_world

# One route of each kind: (method, path, body).
READS = [
    ("GET", "/entities", None),
    ("GET", "/entity-presets", None),
    ("GET", "/entities/deals/entries", None),
]
WRITES = [
    ("POST", "/entities/deals/entries", {"reference_id": "cus_x", "values": {}}),
    ("PUT", "/entities/deals", {"name": "Deals!"}),
    ("DELETE", "/entities/profile?confirm=true", None),
]


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> ApiWorld:
    """The API world, once per backend."""
    return make_api_world(tmp_path, request.param, request)


def _call(client: object, method: str, path: str, body: object, headers: dict[str, str]) -> object:
    kwargs: dict[str, object] = {"headers": headers}
    if body is not None:
        kwargs["json"] = body
    return client.open(API + path, method=method, **kwargs)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("method", "path", "body"), READS + WRITES)
def test_no_key_bad_key_revoked_key_are_401(
    world: ApiWorld, method: str, path: str, body: object
) -> None:
    bad = world.write[:-4] + "AAAA"
    for headers in (
        {},
        {"Authorization": f"Bearer {bad}"},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": f"Basic {world.write}"},
        {"Authorization": f"Bearer {world.revoked}"},
        {"EF-Access-Key": world.revoked},
    ):
        response = _call(world.client, method, path, body, headers)
        assert_error(response, 401, "Authorization")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")  # type: ignore[attr-defined]
    assert world.crm.get_entity("deals").name == "Deals"
    assert world.crm.store.get_entity("profile") is not None


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_read_key_may_not_write(world: ApiWorld, method: str, path: str, body: object) -> None:
    response = _call(world.client, method, path, body, world.headers(world.read))
    assert_error(response, 403, "Authorization")
    assert world.crm.get_entity("deals").name == "Deals"


@pytest.mark.parametrize(("method", "path", "body"), READS)
def test_read_key_reads_and_alias_header_works(
    world: ApiWorld, method: str, path: str, body: object
) -> None:
    assert _call(world.client, method, path, body, world.headers(world.read)).status_code == 200  # type: ignore[attr-defined]
    alias = _call(world.client, method, path, body, {"EF-Access-Key": world.read})
    assert alias.status_code == 200  # type: ignore[attr-defined]


def test_write_key_writes_without_csrf_or_origin(world: ApiWorld) -> None:
    # No CSRF token, no Origin header: a key-authenticated request needs neither.
    response = world.put("/entities/deals", {"name": "Pipeline deals"})
    assert response.status_code == 200, response.get_json()
    alias = world.client.put(
        API + "/entities/deals", json={"name": "Alias"}, headers={"EF-Access-Key": world.write}
    )
    assert alias.status_code == 200
    assert world.crm.get_entity("deals").name == "Alias"


def test_browser_sessions_are_not_accepted(world: ApiWorld) -> None:
    # A signed-in operator's or customer's cookies authenticate nothing on the API.
    for client in (operator_client(world.app), customer_client(world.app, "ann@example.com")):
        assert_error(client.get(API + "/entities"), 401)
        assert_error(client.put(API + "/entities/deals", json={"name": "Cookie"}), 401)
        assert_error(client.get(API + f"/customers/{world.ann.id}/entries"), 401)
        # With a cookie AND a key the key decides (a read key may not write).
        assert_error(
            client.put(
                API + "/entities/deals", json={"name": "X"}, headers=world.headers(world.read)
            ),
            403,
        )
    assert world.crm.get_entity("deals").name == "Deals"


def test_description_is_public(world: ApiWorld) -> None:
    document = world.client.get(API + "/openapi.json")
    assert document.status_code == 200 and document.get_json()["openapi"] == "3.1.0"
    page = world.client.get(API + "/docs")
    assert page.status_code == 200 and b"swagger-ui" in page.data


def test_rate_limited_key_gets_429_with_retry_after(world: ApiWorld) -> None:
    from crm_templates.api_keys import create_key

    _, secret = create_key(world.crm.store, name="slow", scope="read", rate_limit=2)
    # Two a minute: of five requests at least three fall in one clock-aligned window.
    answers = [world.get("/entities", key=secret) for _ in range(5)]
    statuses = [a.status_code for a in answers]
    assert statuses[:2] == [200, 200] and 429 in statuses, statuses
    response = answers[statuses.index(429)]
    assert_error(response, 429)
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # Another key is not slowed down.
    assert world.get("/entities").status_code == 200
