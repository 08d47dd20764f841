"""API keys in the admin and on the command line (issue 13, item 3), on both backends.

The admin lists keys (never a secret), creates one and shows it once (``no-store``, a copy
button), revokes with a confirmation, records both in the audit trail; only operators reach
it. ``crm-templates apikey`` does the same in a real process: ``create`` prints only the key
on stdout; ``list`` never shows it; every change is audited.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from crm_templates import api_keys
from crm_templates.api_keys import ApiKeyInvalid, authenticate, create_key
from crm_templates.storage import open_store
from tests.admin_world import (
    BACKENDS,
    csrf_token,
    customer_client,
    make_admin_app,
    operator_client,
    seed_two_customers,
)

ROOT = Path(__file__).resolve().parent.parent
KEY_RE = re.compile(r"crm_live_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    application = make_admin_app(tmp_path, request.param, request)
    yield application
    application.extensions["crm"].close()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'keys.db'}"
        return
    search_url = request.getfixturevalue("search_url")
    admin = request.getfixturevalue("search_admin")
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    yield f"{search_url}?prefix={prefix}"
    admin.client.options(ignore_status=404).indices.delete(index=f"{prefix}*")


def store_of(app: Any) -> Any:
    return app.extensions["crm"].crm.store


def create_in_admin(client: Any, **form: str) -> Any:
    data = {"csrf_token": csrf_token(client, "/admin/api-keys"), **form}
    return client.post("/admin/api-keys", data=data)


# --- the admin ---------------------------------------------------------------------------------


def test_only_operators_reach_the_api_keys_pages(app: Any) -> None:
    ann, _ = seed_two_customers(app)
    key, _secret = create_key(store_of(app), name="k", scope="read")
    urls = ["/admin/api-keys", f"/admin/api-keys/{key.id}/revoke"]
    anonymous = app.test_client()
    for url in urls:
        response = anonymous.get(url)
        assert response.status_code == 302 and "/operator/sign-in" in response.location
    customer = customer_client(app, ann.email)
    for url in urls:
        assert customer.get(url).status_code == 403
    response = customer.post(
        f"/admin/api-keys/{key.id}/revoke",
        data={"csrf_token": csrf_token(customer, "/auth/sign-in")},
    )
    assert response.status_code == 403
    assert not api_keys.get_key(store_of(app), key.id).revoked
    assert operator_client(app).get("/admin/api-keys").status_code == 200


def test_create_show_once_list_and_revoke_two_keys(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = operator_client(app)
    empty = client.get("/admin/api-keys").get_data(as_text=True)
    assert "No API keys yet." in empty
    nav = BeautifulSoup(empty, "html.parser").select_one('nav[aria-label="Admin"]')
    assert nav is not None and nav.find("a", string="API keys") is not None

    made = create_in_admin(client, name="Checkout", scope="write", rate_limit="120")
    assert made.status_code == 200, made.get_data(as_text=True)
    assert made.headers["Cache-Control"] == "no-store"
    page = BeautifulSoup(made.get_data(as_text=True), "html.parser")
    field = page.select_one("#new-key")
    assert field is not None and field.has_attr("readonly")
    secret = str(field["value"])
    assert KEY_RE.fullmatch(secret)
    assert page.select_one("#copy-key") is not None  # the copy button (shown by api_keys.js)
    assert authenticate(store_of(app), secret, scope="write").name == "Checkout"

    second = create_in_admin(client, name="Forms", scope="read")
    reader = str(
        BeautifulSoup(second.get_data(as_text=True), "html.parser").select_one("#new-key")["value"]
    )  # type: ignore[index]
    assert reader != secret

    listing = client.get("/admin/api-keys").get_data(as_text=True)
    assert secret not in listing and reader not in listing  # never shown again
    assert secret.rsplit("_", 1)[-1] not in listing
    rows = BeautifulSoup(listing, "html.parser").select("table.keys-table tbody tr")
    cells = [[td.get_text(" ", strip=True) for td in row.find_all("td")] for row in rows]
    keys = api_keys.list_keys(store_of(app))
    assert [c[0] for c in cells] == ["Checkout", "Forms"]
    assert [c[1] for c in cells] == [k.id for k in keys]
    assert [c[2] for c in cells] == ["write", "read"]
    assert cells[0][3] == keys[0].prefix + "…" and cells[0][4] == "120"
    assert cells[1][4] == str(api_keys.DEFAULT_RATE_LIMIT)
    assert "never" not in cells[0][6] and cells[1][6] == "never"  # Checkout was used above
    assert cells[0][7].startswith("active")

    checkout = keys[0]
    confirm = client.get(f"/admin/api-keys/{checkout.id}/revoke")
    assert confirm.status_code == 200
    assert "Revoke the key “Checkout”" in confirm.get_data(as_text=True)
    assert not api_keys.get_key(store_of(app), checkout.id).revoked  # asking changes nothing
    token = csrf_token(client, f"/admin/api-keys/{checkout.id}/revoke")
    done = client.post(f"/admin/api-keys/{checkout.id}/revoke", data={"csrf_token": token})
    assert done.status_code == 303 and done.location.endswith("/admin/api-keys")
    after = client.get("/admin/api-keys").get_data(as_text=True)
    assert f"({checkout.id}) is revoked" in after
    with pytest.raises(ApiKeyInvalid):
        authenticate(store_of(app), secret, scope="read")
    assert authenticate(store_of(app), reader, scope="read").name == "Forms"
    rows = BeautifulSoup(after, "html.parser").select("table.keys-table tbody tr")
    assert rows[0].find_all("td")[7].get_text(strip=True).startswith("revoked")
    assert "keys-revoked" in rows[0]["class"]
    # Revoked already: the confirmation page says so; posting again records nothing new.
    assert "was revoked at" in client.get(f"/admin/api-keys/{checkout.id}/revoke").get_data(
        as_text=True
    )
    client.post(f"/admin/api-keys/{checkout.id}/revoke", data={"csrf_token": token})

    records = store_of(app).list_audit_records()
    actions = sorted(
        (r.action, r.details["key_id"]) for r in records if r.action.startswith("apikey")
    )
    assert actions == sorted(
        [
            ("apikey.create", checkout.id),
            ("apikey.create", keys[1].id),
            ("apikey.revoke", checkout.id),
        ]
    )
    assert all(r.operator_id == "operator" for r in records if r.action.startswith("apikey"))
    everything = json.dumps([r.details for r in records])
    assert secret not in everything and reader not in everything
    assert secret not in caplog.text and reader not in caplog.text
    assert "apikey.create" in caplog.text  # the audit log line was written, without the key


@pytest.mark.parametrize(
    ("form", "field_id", "message"),
    [
        ({"name": "", "scope": "read"}, "key-name", "1 to 100 characters"),
        ({"name": "x" * 101, "scope": "read"}, "key-name", "1 to 100 characters"),
        ({"name": "n", "scope": "admin"}, "key-scope-read", "Choose a scope"),
        ({"name": "n"}, "key-scope-read", "Choose a scope"),
        ({"name": "n", "scope": "read", "rate_limit": "0"}, "key-rate-limit", "from 1 to"),
        ({"name": "n", "scope": "read", "rate_limit": "-5"}, "key-rate-limit", "from 1 to"),
        ({"name": "n", "scope": "read", "rate_limit": "1.5"}, "key-rate-limit", "from 1 to"),
        ({"name": "n", "scope": "read", "rate_limit": "9" * 40}, "key-rate-limit", "from 1 to"),
        ({"name": "n", "scope": "read", "rate_limit": "١٢"}, "key-rate-limit", "from 1 to"),
    ],
)
def test_bad_create_forms_are_422_and_create_nothing(
    app: Any, form: dict[str, str], field_id: str, message: str
) -> None:
    client = operator_client(app)
    response = create_in_admin(client, **form)
    assert response.status_code == 422
    page = BeautifulSoup(response.get_data(as_text=True), "html.parser")
    link = page.select_one(f'#error-summary a[href="#{field_id}"]')
    assert link is not None and message in link.get_text(), page.select_one("#error-summary")
    assert page.select_one(f"#{field_id}") is not None
    assert api_keys.list_keys(store_of(app)) == []
    assert not [r for r in store_of(app).list_audit_records() if r.action == "apikey.create"]


def test_an_unknown_key_is_404(app: Any) -> None:
    client = operator_client(app)
    for key_id in ["key_0000000000000000", "nope", "window:x"]:
        assert client.get(f"/admin/api-keys/{key_id}/revoke").status_code == 404
        token = csrf_token(client, "/admin/api-keys")
        response = client.post(f"/admin/api-keys/{key_id}/revoke", data={"csrf_token": token})
        assert response.status_code == 404


# --- the command line, in a real process --------------------------------------------------------


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CRM_STORE_URL"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "crm_templates", "apikey", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_apikey_commands_end_to_end(store_url: str) -> None:
    made = cli("create", "--name", "checkout", "--scope", "write", "--rate-limit", "30",
               "--store", store_url)  # fmt: skip
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert made.stdout == secret + "\n" and KEY_RE.fullmatch(secret)  # only the key on stdout
    assert "created API key key_" in made.stderr and "only this once" in made.stderr
    assert secret not in made.stderr
    reader = cli("create", "--name", "forms", "--scope", "read", "--store", store_url)
    assert reader.returncode == 0, reader.stderr

    store = open_store(store_url)
    try:
        key = authenticate(store, secret, scope="write")
        assert (key.name, key.scope, key.rate_limit) == ("checkout", "write", 30)
    finally:
        store.close()

    listed = cli("list", "--store", store_url)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{key.id}\tcheckout\twrite\t{key.prefix}…")
    assert "30/min" in lines[0] and lines[0].endswith("active")
    assert secret not in listed.stdout and reader.stdout.strip() not in listed.stdout
    as_json = json.loads(cli("list", "--json", "--store", store_url).stdout)
    assert [k["name"] for k in as_json] == ["checkout", "forms"]
    assert as_json[0]["last_used_at"] is not None and as_json[1]["last_used_at"] is None
    assert "secret" not in json.dumps(as_json) and secret not in json.dumps(as_json)

    revoked = cli("revoke", key.id, "--store", store_url)
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked API key {key.id}" in revoked.stdout
    store = open_store(store_url)
    try:
        with pytest.raises(ApiKeyInvalid):
            authenticate(store, secret, scope="read")
        records = [r for r in store.list_audit_records() if r.action.startswith("apikey.")]
        assert sorted(r.action for r in records) == [
            "apikey.create",
            "apikey.create",
            "apikey.revoke",
        ]
        assert {r.operator_id for r in records} == {"cli"}
        assert secret not in json.dumps([r.details for r in records])
    finally:
        store.close()
    assert (
        cli("list", "--store", store_url)
        .stdout.strip()
        .splitlines()[0]
        .split("\t")[-1]
        .startswith("revoked ")
    )


def test_apikey_commands_refuse_bad_input_and_change_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    for args, code, message in [
        (["create", "--name", "x", "--scope", "admin"], 2, "'admin' is not one of"),
        (["create", "--scope", "read"], 2, "Missing option '--name'"),
        (["create", "--name", "x", "--scope", "read", "--rate-limit", "0"], 1, "from 1 to"),
        (["create", "--name", "x", "--scope", "read", "--rate-limit", "many"], 2, "many"),
        (["create", "--name", "", "--scope", "read"], 1, "1 to 100 characters"),
        (["revoke", "key_0000000000000000"], 1, "there is no API key"),
    ]:
        result = cli(*args, "--store", url)
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr and result.stdout == "", (args, result.stderr)
    assert cli("list", "--store", url).stdout == ""
    missing = cli("list", "--store", f"sqlite:///{tmp_path / 'none.db'}")
    assert missing.returncode == 1 and "there is no store" in missing.stderr
    no_store = cli("list")
    assert no_store.returncode == 2 and "no store" in no_store.stderr


def test_apikey_create_with_site_uses_the_sites_store(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    made = cli("create", "--name", "n", "--scope", "read", "--site", str(site))
    assert made.returncode == 0, made.stderr
    store = open_store(f"sqlite:///{site / 'instance' / 'crm.db'}")
    try:
        assert authenticate(store, made.stdout.strip(), scope="read").name == "n"
    finally:
        store.close()


# --- in a browser -----------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.allow_console_errors(r"status of 422 ")  # the form sent with an error
def test_create_copy_and_revoke_in_a_browser_axe_clean_light_and_dark(
    tmp_path: Path, request: pytest.FixtureRequest, page: Any
) -> None:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect

    from tests.admin_world import PASSWORD
    from tests.test_server_browser import LiveServer

    app = make_admin_app(tmp_path, "sqlite", request)
    app.config["TRUSTED_HOSTS"] = ["127.0.0.1"]
    app.config["CRM_COOKIE_SECURE"] = False
    app.config["SESSION_COOKIE_SECURE"] = False
    create_key(store_of(app), name="Existing import job", scope="read")
    server = LiveServer(app)
    axe = Axe()
    problems: list[str] = []

    def check(state: str) -> None:
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            for violation in axe.run(page).response["violations"]:
                if violation["impact"] in ("serious", "critical"):
                    targets = [n["target"] for n in violation["nodes"]][:4]
                    problems.append(f"{state} ({scheme}): {violation['id']} {targets}")
        page.emulate_media(color_scheme="light")

    try:
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
        page.goto(server.url + "/operator/sign-in?next=/admin/api-keys")
        page.fill("#password", PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(server.url + "/admin/api-keys")
        check("list")
        # A form with an error: the summary is focused and links to the field.
        page.get_by_role("button", name="Create key").click()
        expect(page.locator("#error-summary")).to_be_focused()
        check("create form with an error")
        page.get_by_label("Name").fill("Checkout")
        page.get_by_label("write — reads and writes").check()
        page.get_by_label("Requests per minute").fill("120")
        page.get_by_role("button", name="Create key").click()
        field = page.locator("#new-key")
        expect(field).to_have_value(KEY_RE)
        secret = field.input_value()
        copy = page.get_by_role("button", name="Copy")
        expect(copy).to_be_visible()  # api_keys.js shows it
        copy.click()
        expect(page.locator("#copy-status")).to_have_text("Copied to the clipboard.")
        assert page.evaluate("navigator.clipboard.readText()") == secret
        check("created")
        page.screenshot(path=str(tmp_path / "api_key_created.png"), full_page=True)
        page.get_by_role("link", name="Back to the API keys").click()
        table = page.locator("table.keys-table")
        expect(table).to_contain_text("Checkout")
        expect(table).not_to_contain_text(secret)
        page.get_by_role("link", name="Revoke Checkout").click()
        check("revoke confirmation")
        page.get_by_role("button", name="Revoke key").click()
        page.wait_for_url(server.url + "/admin/api-keys")
        expect(page.get_by_role("status")).to_contain_text("is revoked")
        with pytest.raises(ApiKeyInvalid):
            authenticate(store_of(app), secret, scope="read")
        check("list after revoking")
        page.screenshot(path=str(tmp_path / "api_keys_list.png"), full_page=True)
    finally:
        server.stop()
        app.extensions["crm"].close()
    assert not problems, "\n".join(problems)
