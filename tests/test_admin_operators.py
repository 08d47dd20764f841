"""Operator accounts and the audit trail (issue 12, item 1), on both backends.

Accounts live in the store with Werkzeug scrypt hashes; ``crm-templates operator`` manages them
in a real process; an account signs in with email and password beside the bootstrap password;
removing an account or changing its password ends its sessions at once, in this app and in a
second app on the same store; every admin action, sign-in and sign-out is kept in the audit
trail with the operator's id, readable at /admin/audit and per entry.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup
from flask import render_template

from crm_templates import audit
from crm_templates.errors import CrmValidationError, DuplicateError
from crm_templates.operators import (
    BOOTSTRAP_ID,
    OperatorNotFoundError,
    add_operator,
    authenticate,
    remove_operator,
    set_password,
)
from crm_templates.server import create_app
from crm_templates.storage import open_store
from crm_templates.storage.audit import AuditRecord
from crm_templates.storage.operators import OperatorAccount
from tests.admin_world import (
    BACKENDS,
    csrf_token,
    customer_client,
    make_admin_app,
    operator_client,
    seed_two_customers,
)

ROOT = Path(__file__).resolve().parent.parent
ANN_OP, ANN_PW = "ops.ann@example.com", "correct horse battery"


@pytest.fixture(params=BACKENDS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    application = make_admin_app(tmp_path, request.param, request)
    yield application
    application.extensions["crm"].close()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store URL on each backend (search indices dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ops.db'}"
        return
    search_url = request.getfixturevalue("search_url")
    admin = request.getfixturevalue("search_admin")
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    yield f"{search_url}?prefix={prefix}"
    admin.client.options(ignore_status=404).indices.delete(index=f"{prefix}*")


def store_of(app: Any) -> Any:
    return app.extensions["crm"].crm.store


def account_client(app: Any, email: str = ANN_OP, password: str = ANN_PW) -> Any:
    client = app.test_client()
    response = client.post(
        "/operator/sign-in",
        data={"csrf_token": csrf_token(client), "email": email, "password": password},
    )
    assert response.status_code == 303, response.get_data(as_text=True)
    return client


# --- the store contract ---------------------------------------------------------------------


def test_operator_accounts_in_the_store(store_url: str) -> None:
    store = open_store(store_url)
    try:
        assert not store.has_operators() and store.list_operators() == []
        a = OperatorAccount("op_a", "a@example.com", "h1", "2026-01-01T00:00:00Z", "t")
        b = OperatorAccount("op_b", "b@example.com", "h2", "2026-01-02T00:00:00Z", "t")
        store.create_operator(b)
        store.create_operator(a)
        assert store.has_operators()
        assert [x.email for x in store.list_operators()] == ["a@example.com", "b@example.com"]
        assert store.get_operator("op_a") == a
        assert store.get_operator_by_email("b@example.com") == b
        assert store.get_operator("op_nobody") is None
        with pytest.raises(DuplicateError):
            store.create_operator(OperatorAccount("op_c", "a@example.com", "h", "t", "t"))
        assert store.update_operator(OperatorAccount("op_a", "a@example.com", "h9", "x", "u2"))
        changed = store.get_operator("op_a")
        assert changed is not None and changed.password_hash == "h9"
        assert changed.created_at == a.created_at  # an update keeps the creation time
        assert not store.update_operator(OperatorAccount("op_x", "x@example.com", "h", "t", "t"))
        assert store.delete_operator("op_a") and not store.delete_operator("op_a")
        assert store.get_operator_by_email("a@example.com") is None
        assert [x.id for x in store.list_operators()] == ["op_b"]
    finally:
        store.close()


def test_the_audit_trail_in_the_store_pages_by_keyset(store_url: str) -> None:
    store = open_store(store_url)
    try:
        made = [
            audit.record(
                store,
                "op_a" if i % 2 else "op_b",
                "value.edit",
                entry_id="e1" if i % 3 == 0 else "e2",
                entity="deals",
                details={"i": i, "html": "<b>"},
            )
            for i in range(7)
        ]
        newest_first = list(reversed(made))
        assert store.list_audit_records(limit=100) == newest_first
        assert store.list_audit_records(entry_id="e1") == [
            r for r in newest_first if r.entry_id == "e1"
        ]
        assert store.list_audit_records(operator_id="op_a", entry_id="e2") == [
            r for r in newest_first if r.operator_id == "op_a" and r.entry_id == "e2"
        ]
        # Keyset pages: 3 + 3 + 1, no record twice, none left out.
        seen: list[AuditRecord] = []
        cursor = None
        while True:
            page, cursor = audit.records(store, before=cursor, limit=3)
            seen += page
            if cursor is None:
                break
        assert seen == newest_first
        assert made[0].details == {"i": 0, "html": "<b>"}
    finally:
        store.close()


def test_bad_audit_input_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        for action in ("", "Value.Edit", "x y", "a" * 101, None):
            with pytest.raises(CrmValidationError):
                audit.record(store, "op", action)  # type: ignore[arg-type]
        with pytest.raises(CrmValidationError):
            audit.record(store, "", "value.edit")
        with pytest.raises(CrmValidationError):
            audit.record(store, "op", "value.edit", details={"x": "y" * 20_000})
        with pytest.raises(CrmValidationError):
            audit.records(store, limit=0)
        for token in ("nope", audit.encode_cursor(("a", "")), "W10"):
            with pytest.raises(CrmValidationError):
                audit.decode_cursor(token)
        assert store.list_audit_records() == []
    finally:
        store.close()


# --- the core -------------------------------------------------------------------------------


def test_accounts_keep_a_scrypt_hash_and_authenticate(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        account = add_operator(store, " Ops.Ann@Example.COM ", ANN_PW)
        assert account.email == ANN_OP and account.id.startswith("op_")
        assert account.password_hash.startswith("scrypt:") and ANN_PW not in account.password_hash
        assert authenticate(store, ANN_OP.upper(), ANN_PW) == account
        assert authenticate(store, ANN_OP, "wrong password") is None
        assert authenticate(store, "nobody@example.com", ANN_PW) is None
        assert authenticate(store, "not an email", ANN_PW) is None
        with pytest.raises(DuplicateError):
            add_operator(store, ANN_OP, "another password")
        for email, password in (("nope", "long enough"), ("b@example.com", "short"),
                                ("b@example.com", "line\nbreak!")):  # fmt: skip
            with pytest.raises(CrmValidationError):
                add_operator(store, email, password)
        assert [a.email for a in store.list_operators()] == [ANN_OP]
        changed = set_password(store, ANN_OP, "a new password")
        assert authenticate(store, ANN_OP, ANN_PW) is None
        assert authenticate(store, ANN_OP, "a new password") == changed
        with pytest.raises(OperatorNotFoundError):
            remove_operator(store, "nobody@example.com")
        assert remove_operator(store, ANN_OP).id == account.id
        assert not store.has_operators()
    finally:
        store.close()


# --- the command, in a real process ---------------------------------------------------------


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CRM_STORE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "crm_templates", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


@pytest.mark.slow
def test_operator_add_list_remove_through_the_command(store_url: str) -> None:
    added = run_cli("operator", "add", "Ops.Ann@Example.com", "--password-stdin", "--store",
                    store_url, stdin=ANN_PW + "\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert f"added operator {ANN_OP}" in added.stdout
    assert ANN_PW not in added.stdout + added.stderr
    listed = run_cli("operator", "list", "--store", store_url)
    assert listed.returncode == 0 and listed.stdout.startswith(ANN_OP + "\top_")
    assert "scrypt" not in listed.stdout  # never the hash
    # Bad input: clear message, non-zero exit, nothing changed.
    for args, stdin, message in [
        (("add", "bob@example.com", "--password-stdin"), "short\n", "at least 8 characters"),
        (("add", "not-an-email", "--password-stdin"), "long enough\n", "not a valid email"),
        (("add", ANN_OP, "--password-stdin"), "long enough\n", "exists"),
        (("add", "bob@example.com", "--password-stdin"), "", "standard input was empty"),
        (("add", "bob@example.com"), "long enough\n", "pass --password-stdin"),
        (("remove", "nobody@example.com"), None, "there is no operator nobody@example.com"),
    ]:
        result = run_cli("operator", *args, "--store", store_url, stdin=stdin)
        assert result.returncode != 0, args
        assert message in result.stderr, (args, result.stderr)
    store = open_store(store_url)
    try:
        [account] = store.list_operators()
        assert authenticate(store, ANN_OP, ANN_PW) == account
    finally:
        store.close()
    removed = run_cli("operator", "remove", ANN_OP, "--store", store_url)
    assert removed.returncode == 0, removed.stderr
    listed = run_cli("operator", "list", "--json", "--store", store_url)
    assert listed.returncode == 0 and listed.stdout.strip() == "[]"
    store = open_store(store_url)
    try:
        actions = [(r.operator_id, r.action) for r in store.list_audit_records()]
        assert actions == [("cli", "operator.remove"), ("cli", "operator.add")]
    finally:
        store.close()


# --- signing in with an account -------------------------------------------------------------


def test_an_account_signs_in_and_its_id_is_on_the_audit_records(app: Any) -> None:
    store = store_of(app)
    account = add_operator(store, ANN_OP, ANN_PW)
    ann, _ = seed_two_customers(app)
    client = account_client(app)
    assert client.get("/admin/").status_code == 200
    token = csrf_token(client, "/admin/")
    response = client.post(
        f"/admin/customers/{ann.id}/sign-out-everywhere", data={"csrf_token": token}
    )
    assert response.status_code == 303
    assert client.post("/operator/sign-out", data={"csrf_token": token}).status_code == 303
    records = store.list_audit_records()
    assert [(r.operator_id, r.action) for r in records] == [
        (account.id, "operator.sign_out"),
        (account.id, "customer.sign_out_everywhere"),
        (account.id, "operator.sign_in"),
    ]
    assert records[1].details["customer_id"] == ann.id
    # The bootstrap password alone (email left empty) is the account "operator".
    operator_client(app)
    assert store.list_audit_records(limit=1)[0].operator_id == BOOTSTRAP_ID


def test_a_wrong_email_or_password_is_refused_and_counts_as_an_attempt(app: Any) -> None:
    add_operator(store_of(app), ANN_OP, ANN_PW)
    app.config["CRM_OPERATOR_LIMIT"] = 3
    app.extensions["crm"].operator_attempts = type(app.extensions["crm"].operator_attempts)(
        store_of(app), "operator-sign-in", 3, 300
    )
    client = app.test_client()
    for email, password in ((ANN_OP, "wrong password"), ("nobody@example.com", ANN_PW)):
        response = client.post(
            "/operator/sign-in",
            data={"csrf_token": csrf_token(client), "email": email, "password": password},
        )
        assert response.status_code == 403
        assert "not right" in response.get_data(as_text=True)
        assert client.get("/admin/").status_code == 302
    # An account's password is no bootstrap password, and the reverse.
    response = client.post(
        "/operator/sign-in", data={"csrf_token": csrf_token(client), "password": ANN_PW}
    )
    assert response.status_code == 403
    response = client.post(
        "/operator/sign-in",
        data={"csrf_token": csrf_token(client), "email": ANN_OP, "password": ANN_PW},
    )
    assert response.status_code == 429  # three failures from this address
    assert store_of(app).list_audit_records() == []


def test_operator_features_are_on_with_an_account_and_no_bootstrap_password(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    application = make_admin_app(tmp_path, "sqlite", request)
    application.config["CRM_OPERATOR_PASSWORD"] = None
    try:
        client = application.test_client()
        assert client.get("/admin/").status_code == 403
        assert client.get("/operator/sign-in").status_code == 403
        add_operator(store_of(application), ANN_OP, ANN_PW)
        form = client.get("/operator/sign-in")
        assert form.status_code == 200
        email = BeautifulSoup(form.get_data(as_text=True), "html.parser").select_one("#email")
        assert email is not None and email.has_attr("required")  # no password-only sign-in
        response = client.post(
            "/operator/sign-in", data={"csrf_token": csrf_token(client), "password": ANN_PW}
        )
        assert response.status_code == 403
        assert account_client(application).get("/admin/").status_code == 200
    finally:
        application.extensions["crm"].close()


def second_app(app: Any) -> Any:
    """Another app instance (a second process's view) on the same site and store."""
    config = {k: app.config[k] for k in ("CRM_OPERATOR_PASSWORD", "CRM_BASE_URL", "SECRET_KEY")}
    return create_app(
        app.extensions["crm"].site.root, app.config["CRM_STORE_URL"], TESTING=True, **config
    )


def copy_cookie(source: Any, target: Any) -> None:
    cookie = source.get_cookie("crm_session")
    assert cookie is not None
    target.set_cookie("crm_session", cookie.value)


@pytest.mark.parametrize("change", ["remove", "password"])
def test_removing_an_account_or_changing_its_password_ends_its_sessions(
    app: Any, change: str
) -> None:
    add_operator(store_of(app), ANN_OP, ANN_PW)
    other = add_operator(store_of(app), "ops.bob@example.com", "bob's long password")
    client = account_client(app)
    bob = account_client(app, other.email, "bob's long password")
    elsewhere_app = second_app(app)
    try:
        elsewhere = elsewhere_app.test_client()
        copy_cookie(client, elsewhere)
        assert client.get("/admin/").status_code == 200
        assert elsewhere.get("/admin/").status_code == 200
        if change == "remove":
            remove_operator(store_of(app), ANN_OP)
        else:
            set_password(store_of(app), ANN_OP, "a brand new password")
        assert client.get("/admin/").status_code == 302  # to sign-in
        assert elsewhere.get("/admin/").status_code == 302
        assert bob.get("/admin/").status_code == 200  # another account's session stays
        if change == "password":
            assert (
                account_client(app, ANN_OP, "a brand new password").get("/admin/").status_code
                == 200
            )
    finally:
        elsewhere_app.extensions["crm"].close()


def test_a_removed_accounts_copied_cookie_does_not_come_back_with_a_new_account(app: Any) -> None:
    add_operator(store_of(app), ANN_OP, ANN_PW)
    client = account_client(app)
    thief = app.test_client()
    copy_cookie(client, thief)
    remove_operator(store_of(app), ANN_OP)
    add_operator(store_of(app), ANN_OP, ANN_PW)  # the same email and password again
    assert thief.get("/admin/").status_code == 302


def test_sign_out_everywhere_ends_only_that_operators_sessions(app: Any) -> None:
    add_operator(store_of(app), ANN_OP, ANN_PW)
    first, second = account_client(app), account_client(app)
    bootstrap = operator_client(app)
    token = csrf_token(first, "/admin/")
    assert (
        first.post("/operator/sign-out-everywhere", data={"csrf_token": token}).status_code == 303
    )
    assert first.get("/admin/").status_code == 302
    assert second.get("/admin/").status_code == 302
    assert bootstrap.get("/admin/").status_code == 200


# --- the audit views ------------------------------------------------------------------------


def test_the_audit_view_permissions(app: Any) -> None:
    seed_two_customers(app)
    assert app.test_client().get("/admin/audit").status_code == 302
    assert customer_client(app, "ann@example.com").get("/admin/audit").status_code == 403
    assert operator_client(app).get("/admin/audit").status_code == 200


def test_the_audit_view_lists_newest_first_pages_and_filters(app: Any) -> None:
    store = store_of(app)
    account = add_operator(store, ANN_OP, ANN_PW)
    for i in range(55):
        audit.record(store, account.id, "value.edit", entry_id=f"e{i % 2}", entity="deals",
                     details={"n": i, "note": "<script>alert(1)</script>"})  # fmt: skip
    client = operator_client(app)  # records operator.sign_in by "operator"
    html = client.get("/admin/audit").get_data(as_text=True)
    page = BeautifulSoup(html, "html.parser")
    rows = page.select("table.admin-table tbody tr")
    assert len(rows) == 50
    assert rows[0].find_all("td")[2].get_text(strip=True) == "operator.sign_in"
    assert rows[0].find_all("td")[1].get_text(strip=True) == "Site operator password"
    assert rows[1].find_all("td")[1].get_text(strip=True) == ANN_OP
    assert "<script>alert(1)" not in html
    older = page.select_one('a[rel="next"]')
    assert older is not None
    rest = BeautifulSoup(client.get(older["href"]).get_data(as_text=True), "html.parser")
    assert len(rest.select("table.admin-table tbody tr")) == 6
    assert rest.select_one('a[rel="next"]') is None
    numbers = [
        int(td.get_text().split('"n":')[1].split(",")[0])
        for td in (
            page.select("tbody tr td:nth-of-type(5)") + rest.select("tbody tr td:nth-of-type(5)")
        )
        if '"n":' in td.get_text()
    ]
    assert numbers == list(range(54, -1, -1))
    only = BeautifulSoup(client.get("/admin/audit?entry=e1").get_data(as_text=True), "html.parser")
    assert len(only.select("tbody tr")) == 27
    by_bootstrap = client.get(f"/admin/audit?operator={BOOTSTRAP_ID}").get_data(as_text=True)
    assert len(BeautifulSoup(by_bootstrap, "html.parser").select("tbody tr")) == 1
    assert client.get("/admin/audit?before=not-a-token").status_code == 400
    assert client.get("/admin/audit?entry=" + "x" * 201).status_code == 400


def test_the_entry_audit_partial(app: Any) -> None:
    from crm_templates.server.admin.audit import audit_context, audit_for_entry

    store = store_of(app)
    audit.record(store, BOOTSTRAP_ID, "value.edit", entry_id="e1", details={"key": "<i>x</i>"})
    audit.record(store, BOOTSTRAP_ID, "entry.stage", entry_id="e2")
    client = operator_client(app)
    assert client.get("/admin/").status_code == 200
    with app.test_request_context("/admin/audit"):
        assert [r.action for r in audit_for_entry("e1")] == ["value.edit"]
        html = render_template("admin/_audit.html", **audit_context("e1"))
        assert "value.edit" in html and "entry.stage" not in html
        assert "Site operator password" in html and "<i>x</i>" not in html
        assert 'href="/admin/audit?entry=e1"' in html
        empty = render_template("admin/_audit.html", **audit_context("e3"))
        assert "No operator has changed this entry yet." in empty
