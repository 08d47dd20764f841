"""Tests written for mutants of crm_templates/server/sessions.py and server/preview.py that
survived their targeted tests (issue 10, item 1; tools/mutation.py, notes in
/work/notes/mut-service.md). Each one pins a rule those modules promise: the session id's
size and lifetime, what a half-formed cookie is worth, the claim margin, the operator
fingerprint's key, the hourly housekeeping, and the preview's banner, way out and refusals.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from crm_templates import open_store
from crm_templates.server import sessions
from tests import test_auth_links, test_preview
from tests.test_preview import csrf as preview_csrf
from tests.test_server_security import PASSWORD, crm_of, make_site, operator_sign_in
from tests.test_sessions import COOKIE, home, post, signed_in

# Fixtures reused, not copied: apps over test_server_security's site (`make`), and
# test_preview's site with two customers and a signed-in operator.
make = test_auth_links.make
app = test_preview.app
server_crm = test_preview.server_crm
two = test_preview.two
preview_operator = test_preview.operator


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The test site of test_server_security."""
    return make_site(tmp_path / "site")


def state_of(app: Any) -> Any:
    """The app's server state (rate limits, single-use tokens, housekeeping)."""
    return app.extensions["crm"]


# --- session ids and cookies ------------------------------------------------------------------


def test_a_session_id_is_24_random_bytes(make: Any) -> None:
    """192 bits, URL-safe base64 (32 characters), fresh at each sign-in."""
    app = make()
    ann = signed_in(app)
    with ann.session_transaction() as session:
        first = session["customer_sid"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", first), first
    again = signed_in(app)
    with again.session_transaction() as session:
        assert session["customer_sid"] != first


@pytest.mark.parametrize("who", ["operator", "customer"])
def test_a_signed_in_session_cookie_outlives_the_browser(make: Any, who: str) -> None:
    """Signing in makes the session permanent: the cookie carries an expiry of the session
    lifetime, even for a client that never was an anonymous visitor (which also sets it)."""
    app = make()
    if who == "operator":
        client = app.test_client()
        assert operator_sign_in(client).status_code == 303
    else:
        client = signed_in(app)
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None and cookie.expires is not None
    lifetime = app.permanent_session_lifetime.total_seconds()
    assert abs(cookie.expires.timestamp() - (time.time() + lifetime)) < 120


def test_a_generation_without_a_session_id_is_signed_out_not_an_error(make: Any) -> None:
    """A cookie forged (or cut) to hold a current generation but no session id: signed out,
    never a server error, and another customer's data stays out of reach."""
    app = make()
    crm = crm_of(app)
    ann = crm.create_customer("ann@example.com")
    bob = crm.create_customer("bob@example.com")
    crm.set_field(slug="notes", fieldKey="text", value="ann's", referenceId=ann.id)
    crm.set_field(slug="notes", fieldKey="text", value="bob's", referenceId=bob.id)
    generation = crm.store.session_generation(sessions.customer_generation_key(ann.id))
    client = app.test_client()
    with client.session_transaction() as session:
        session.update(customer_id=ann.id, signed_in=True, customer_generation=generation)
    assert home(client) == "home:none:False:"
    with app.test_request_context():
        fingerprint = sessions.operator_fingerprint()
    generation = crm.store.session_generation(sessions.OPERATOR_GENERATION)
    operator = app.test_client()
    with operator.session_transaction() as session:
        session.update(operator=fingerprint, operator_generation=generation)
    assert operator.get("/operator/").status_code == 302
    assert operator.get(f"/?preview_customer={bob.id}").status_code == 403


# --- claims and housekeeping ------------------------------------------------------------------


def test_a_revocation_lasts_as_long_as_the_cookie_could_plus_the_margin(
    make: Any, tmp_path: Path
) -> None:
    """Sign-out claims ``session-revoked:<sid>`` until the session lifetime plus
    `CLAIM_MARGIN` from now (a copied cookie stays refused as long as it could be presented);
    the other customer's session id gets no record."""
    db = tmp_path / "revoked.db"
    app = make(CRM_STORE_URL=f"sqlite:///{db}")
    ann = signed_in(app)
    bob = signed_in(app, "bob@example.com")
    sids = []
    for client in (ann, bob):
        with client.session_transaction() as session:
            sids.append(session["customer_sid"])
    before = time.time()
    assert post(ann, "/auth/sign-out").status_code == 303
    after = time.time()
    with sqlite3.connect(db) as connection:
        rows = dict(
            connection.execute("SELECT key, expires_at FROM security_records WHERE kind = 'claim'")
        )
    lifetime = app.permanent_session_lifetime.total_seconds()
    until = rows["session-revoked:" + sids[0]]
    assert before + lifetime + 300 <= until <= after + lifetime + 300
    assert "session-revoked:" + sids[1] not in rows
    assert (
        home(bob) == f"home:{crm_of(app).find_customer('bob@example.com').id}:True:bob@example.com"
    )


def test_a_claim_outlives_its_token_by_exactly_the_margin(tmp_path: Path) -> None:
    """`CLAIM_MARGIN` is 300 s: a nonce of a link that stopped working 299.5 s ago is still
    used; one that stopped 300.5 s ago may be claimed again (its record has expired)."""
    store = open_store(f"sqlite:///{tmp_path / 'claims.db'}")
    try:
        tokens = sessions.SingleUseTokens(store)
        now = time.time()
        assert tokens.use("recent", now - 299.5)
        assert tokens.is_used("recent")
        assert not tokens.use("recent", now)
        assert tokens.use("old", now - 300.5)
        assert not tokens.is_used("old")
    finally:
        store.close()


def test_housekeeping_runs_once_an_hour(tmp_path: Path) -> None:
    """The default `Housekeeping` is due again 3,600 s after a purge (the purge itself and
    "not again within the hour" are tested in test_sessions)."""
    store = open_store(f"sqlite:///{tmp_path / 'purge.db'}")
    try:
        housekeeping = sessions.Housekeeping(store)
        before = time.monotonic()
        housekeeping.now_and_then()
        after = time.monotonic()
        assert before + 3600 <= housekeeping._due <= after + 3600
    finally:
        store.close()


# --- the operator fingerprint ----------------------------------------------------------------


def test_the_operator_fingerprint_is_keyed_with_the_site_secret(make: Any) -> None:
    """The fingerprint sits in a readable (signed, not encrypted) cookie: keyed with the site's
    secret, it tells nothing about the password to someone without the key."""
    first = make(SECRET_KEY="secret-one")
    second = make(SECRET_KEY="secret-two")
    prints = []
    for app in (first, second):
        with app.test_request_context():
            prints.append(sessions.operator_fingerprint())
    unkeyed = hmac.new(b"", b"crm-operator:" + PASSWORD.encode(), hashlib.sha256).hexdigest()
    keyed = hmac.new(b"secret-one", b"crm-operator:" + PASSWORD.encode(), hashlib.sha256)
    assert prints[0] == keyed.hexdigest()
    assert prints[0] != prints[1]
    assert unkeyed not in prints


# --- shared objects are immutable -------------------------------------------------------------


def test_session_slots_rate_limits_and_token_sets_are_frozen(make: Any) -> None:
    """One app's rate limits and token sets serve every thread of every request, and the
    session slots are module constants: none of them can be changed after it is made."""
    state = state_of(make())
    for thing, name in (
        (sessions.CUSTOMER, "sid_key"),
        (state.sign_in_per_email, "limit"),
        (state.sign_in_tokens, "name"),
    ):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(thing, name, getattr(thing, name))


# --- previews (server/preview.py) -------------------------------------------------------------


def test_previewing_an_unknown_customer_is_404_and_starts_nothing(
    preview_operator: Any, two: Any
) -> None:
    a, _ = two
    response = preview_operator.get("/read?preview_customer=cus_nobody")
    assert response.status_code == 404
    assert "no customer &#39;cus_nobody&#39; to preview" in response.get_data(as_text=True)
    with preview_operator.session_transaction() as session:
        assert "crm_preview" not in session
    assert "preview=False" in preview_operator.get("/read").get_data(as_text=True)
    # A known customer still starts one.
    assert "note=ann-note" in preview_operator.get(f"/read?preview_customer={a.id}").get_data(
        as_text=True
    )


def test_a_remembered_preview_of_a_customer_that_is_gone_is_404_and_ends(
    preview_operator: Any, two: Any
) -> None:
    """A session still previewing a customer the store no longer has (a restored backup, a
    moved store): 404 naming it, the preview is forgotten, the next page is the operator's own."""
    a, _ = two
    assert "note=ann-note" in preview_operator.get(f"/read?preview_customer={a.id}").get_data(
        as_text=True
    )
    with preview_operator.session_transaction() as session:
        session["crm_preview"] = "cus_gone"
    response = preview_operator.get("/read")
    assert response.status_code == 404
    assert "previewed customer &#39;cus_gone&#39; no longer exists" in response.get_data(
        as_text=True
    )
    page = preview_operator.get("/read").get_data(as_text=True)
    assert "preview=False" in page and "ann-note" not in page and "bob-note" not in page


@pytest.mark.parametrize("token", ["none", "forged", "another session's"])
def test_a_previewing_operators_post_is_read_only_whatever_its_token(
    app: Any, preview_operator: Any, server_crm: Any, two: Any, token: str
) -> None:
    """The preview's refusal runs before the CSRF check (`install`): a post without a valid
    token gets the same 403 "read-only" answer as one with, and writes nothing for anyone."""
    a, b = two
    preview_operator.get(f"/read?preview_customer={a.id}")
    data = {"text": "overwritten"}
    if token == "forged":
        data["csrf_token"] = "forged-token"
    elif token == "another session's":
        data["csrf_token"] = preview_csrf(app.test_client())
    response = preview_operator.post("/save", data=data)
    assert response.status_code == 403
    assert "Previews are read-only" in response.get_data(as_text=True)
    for customer, note in ((a, "ann-note"), (b, "bob-note")):
        assert server_crm.get_field(slug="notes", fieldKey="text", referenceId=customer.id) == (
            note
        )


def test_the_host_check_runs_before_the_preview(make: Any) -> None:
    """An untrusted Host gets the host check's plain 400 before any preview logic (which would
    answer 403 or 404), and a previewing operator's post from one is refused the same way."""
    app = make()
    crm = crm_of(app)
    ann = crm.create_customer("ann@example.com")
    evil = {"Host": "evil.example"}
    client = app.test_client()
    assert client.get(f"/?preview_customer={ann.id}", headers=evil).status_code == 400
    assert client.get("/?preview_customer=cus_nobody", headers=evil).status_code == 400
    operator = app.test_client()
    assert operator_sign_in(operator).status_code == 303
    assert operator.get(f"/?preview_customer={ann.id}").status_code == 200
    refused = operator.post("/save", data={"text": "x"}, headers=evil)
    assert refused.status_code == 400
    assert "read-only" not in refused.get_data(as_text=True)


def test_install_puts_the_preview_right_after_the_host_check() -> None:
    """`install` on apps whose hooks differ: none yet, an unrelated one first, the host check
    first (the preview hooks then come second and third)."""
    from flask import Flask

    from crm_templates.server import preview
    from crm_templates.server.urls import refuse_untrusted_host

    def other() -> None:
        return None

    def set_request_id() -> None:  # sorts after refuse_untrusted_host
        return None

    bare = Flask("bare")
    preview.install(bare)
    assert bare.before_request_funcs[None] == [preview.decide_preview, preview.refuse_writes]
    unrelated = Flask("unrelated")
    unrelated.before_request(other)
    preview.install(unrelated)
    assert unrelated.before_request_funcs[None] == [
        preview.decide_preview,
        preview.refuse_writes,
        other,
    ]
    later = Flask("later")
    later.before_request(set_request_id)
    preview.install(later)
    assert later.before_request_funcs[None] == [
        preview.decide_preview,
        preview.refuse_writes,
        set_request_id,
    ]
    hosted = Flask("hosted")
    hosted.before_request(refuse_untrusted_host)
    hosted.before_request(other)
    preview.install(hosted)
    assert hosted.before_request_funcs[None] == [
        refuse_untrusted_host,
        preview.decide_preview,
        preview.refuse_writes,
        other,
    ]


def test_leaving_goes_back_to_the_page_without_the_preview_parameter(
    preview_operator: Any, two: Any
) -> None:
    """The banner's way out returns to the page shown, minus ``preview_customer`` (keeping
    the page's other parameters, repeated ones too): following it shows the operator's own view, not the
    previewed customer's again."""
    a, _ = two
    html = preview_operator.get(f"/read?x=1&preview_customer={a.id}&y=2&x=3").get_data(as_text=True)
    match = re.search(r'name="next" value="([^"]+)"', html)
    assert match, html
    target = match.group(1).replace("&amp;", "&")
    assert target == "/read?x=1&x=3&y=2"  # a repeated parameter keeps every value
    left = preview_operator.post(
        "/_crm/preview/leave", data={"csrf_token": preview_csrf(preview_operator), "next": target}
    )
    assert left.headers["Location"] == target
    page = preview_operator.get(target).get_data(as_text=True)
    assert "ann-note" not in page and "preview=False" in page
