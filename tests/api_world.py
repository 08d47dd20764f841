"""An app with the REST API and its keys, on either backend, for tests/test_api_*.py.

`make_api_world` builds the admin test site (`tests.admin_world`: deals with a pipeline,
profile in data mode, customers Ann and Bob with a deal and a profile each) and makes three
API keys: write, read, and a revoked write key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crm_templates.api_keys import create_key, revoke_key
from tests.admin_world import make_admin_app, seed_two_customers

API = "/api/crm"


@dataclass
class ApiWorld:
    """The app, its test client, the keys' secrets and the two customers."""

    app: Any
    client: Any
    write: str
    read: str
    revoked: str
    write_id: str
    ann: Any
    bob: Any

    @property
    def crm(self) -> Any:
        return self.app.extensions["crm"].crm

    def headers(self, key: str | None = None, **extra: str) -> dict[str, str]:
        """``Authorization: Bearer`` with ``key`` (default: the write key)."""
        return {"Authorization": f"Bearer {key or self.write}", **extra}

    def get(self, path: str, key: str | None = None, **kw: Any) -> Any:
        return self.client.get(API + path, headers=self.headers(key, **kw.pop("headers", {})), **kw)

    def post(self, path: str, json: Any = None, key: str | None = None, **kw: Any) -> Any:
        headers = self.headers(key, **kw.pop("headers", {}))
        return self.client.post(API + path, json=json, headers=headers, **kw)

    def put(self, path: str, json: Any = None, key: str | None = None, **kw: Any) -> Any:
        headers = self.headers(key, **kw.pop("headers", {}))
        return self.client.put(API + path, json=json, headers=headers, **kw)

    def delete(self, path: str, key: str | None = None, **kw: Any) -> Any:
        headers = self.headers(key, **kw.pop("headers", {}))
        return self.client.delete(API + path, headers=headers, **kw)


def make_api_world(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> ApiWorld:
    """The world on ``backend`` (``sqlite`` or ``opensearch``)."""
    app = make_admin_app(tmp_path, backend, request)
    ann, bob = seed_two_customers(app)
    store = app.extensions["crm"].crm.store
    write, write_secret = create_key(store, name="writer", scope="write")
    _, read_secret = create_key(store, name="reader", scope="read")
    gone, gone_secret = create_key(store, name="gone", scope="write")
    revoke_key(store, gone.id)
    return ApiWorld(
        app=app,
        client=app.test_client(),
        write=write_secret,
        read=read_secret,
        revoked=gone_secret,
        write_id=write.id,
        ann=ann,
        bob=bob,
    )


def assert_error(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    """The response is ``status`` with the API's error shape (naming ``field`` if given)."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"message", "errors"}, body
    assert isinstance(body["message"], str) and body["message"]
    assert all(isinstance(v, list) and v for v in body["errors"].values()), body
    if field is not None:
        assert field in body["errors"], body
    return body
