"""The REST API on the real `crm-templates serve` process, doing what /work/notes/api.md's
curl examples do (issue 13, item 9): a key from `crm-templates apikey create`, then create an
entry from a form conversion, move it to a stage, page through entries, fetch a customer's CRM
data; a read key cannot write; a browser-style cookie alone is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.admin_world import CRM_YAML, PAGES
from tests.test_serve import ROOT, Served

pytestmark = __import__("pytest").mark.slow


def _apikey(site: Path, scope: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "crm_templates", "apikey", "create", "--site", str(site),
         "--name", f"curl-{scope}", "--scope", scope],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert key.startswith("crm_live_") and "\n" not in key
    return key


def _call(
    served: Served, method: str, path: str, key: str | None, body: Any = None, **headers: str
) -> tuple[int, Any, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(served.url(path), data=data, method=method)
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in headers.items():
        request.add_header(name.replace("_", "-"), value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


def test_curl_examples_against_the_real_server(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    for name, text in PAGES.items():
        (site / "pages" / name).write_text(text)
    (site / "crm.yaml").write_text(CRM_YAML)
    # A customer the site already knows (signed up on a page earlier), in the site's store.
    from crm_templates import Crm, open_store

    (site / "instance").mkdir()
    with Crm(open_store(f"sqlite:///{site / 'instance' / 'crm.db'}")) as crm:
        customer = crm.create_customer("buyer@example.com", first_name="Buyer").id
    served = Served(site, None)
    try:
        write, read = _apikey(site, "write"), _apikey(site, "read")
        # Create an entry from a form conversion (the customer's id from the checkout).
        status, headers, entry = _call(
            served, "POST", "/api/crm/entities/deals/entries", write,
            {"reference_type": "customer", "reference_id": customer, "title": "Order 1001",
             "values": {"amount": "149.00", "note": "from the checkout form"}},
        )  # fmt: skip
        assert status == 201, entry
        assert headers["ETag"] == '"1"' and entry["values_flat"]["amount"] == 149.0
        # Move it to a stage, guarded by its ETag.
        status, headers, moved = _call(
            served, "PUT", f"/api/crm/entries/{entry['id']}/stage", write, {"stage_id": "won"},
            If_Match='"1"',
        )  # fmt: skip
        assert status == 200 and headers["ETag"] == '"2"', moved
        status, _, stale = _call(
            served, "PUT", f"/api/crm/entries/{entry['id']}/stage", write, {"stage_id": "lost"},
            If_Match='"1"',
        )  # fmt: skip
        assert status == 409 and set(stale) == {"message", "errors"}
        # Page through entries by cursor.
        for i in range(4):
            _call(served, "POST", "/api/crm/entities/deals/entries", write,
                  {"reference_id": "cus_checkout_2", "values": {"amount": i}})  # fmt: skip
        seen: list[str] = []
        path: str | None = "/api/crm/entities/deals/entries?per_page=2"
        while path:
            status, headers, page = _call(served, "GET", path, read)
            assert status == 200, page
            seen += [e["id"] for e in page["data"]]
            path = page["next_url"]
            assert (path is None) == (headers.get("Link") is None)
        assert len(seen) == len(set(seen)) == 5
        # A customer's CRM data.
        status, _, crm_tab = _call(served, "GET", f"/api/crm/customers/{customer}/entries", read)
        assert status == 200, crm_tab
        assert crm_tab["customer"]["email"] == "buyer@example.com"
        assert [e["id"] for e in crm_tab["data"]] == [entry["id"]]
        assert crm_tab["data"][0]["stage_id"] == moved["stage_id"]
        status, _, refused = _call(
            served, "POST", "/api/crm/entities/deals/entries", read, {"reference_id": "x"}
        )
        assert status == 403 and "errors" in refused
        status, headers, _ = _call(served, "GET", "/api/crm/entities", None, Cookie="crm_session=x")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    finally:
        served.stop()
