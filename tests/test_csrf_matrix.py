"""CSRF and same-origin checks on every state-changing route (issue 10, item 2).

The routes come from the app's own URL map (every rule taking POST, PUT, PATCH or DELETE) plus
every page backend of the sample sites; `test_the_table_covers_every_state_changing_route`
fails when a route is added without a row here. Each row puts a browser (the "victim") in the
state where a post to the route changes something — signed in for sign-out, an operator for
operator sign-out, previewing for "Leave preview", a link in hand for the confirmation — then:

- a form post with no token, another session's token, a forged token (right shape, wrong
  key) or a forged ``X-CSRFToken`` header answers 400;
- a JSON post from another origin, with the wrong scheme (``https://localhost`` to an ``http``
  app), the wrong port, or with neither ``Origin`` nor ``Referer`` answers 403 (and a JSON post
  with another session's or a forged ``X-CSRFToken`` 400);

and nothing changed: no entry, customer, rate-limit hit, used token, session generation, mail,
or change to the victim's session cookie. Then the same post with the session's own token (or
this site's Origin) goes through and — where the route changes anything — does change the
state, so the check that refused the attack is the one that mattered.

Earlier tests checked CSRF on some routes only: a token-less ``POST /auth/sign-in`` (which
mails a link) or ``POST /operator/sign-in`` could have gone unprotected unnoticed.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import itsdangerous
import pytest

from crm_templates.server import create_app
from crm_templates.server.security import UNSAFE_METHODS

SAMPLES = Path(__file__).resolve().parent.parent / "sample_sites"
PASSWORD = "correct horse battery staple"
VICTIM = "victim@example.com"
PREVIEWED = "cat@example.com"
TOKEN_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


# --- the browser and what the server knows about it -----------------------------------------


@dataclass
class Browser:
    """One app and the victim's test client, with what a row's form needs."""

    app: Any
    client: Any
    site: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def server(self) -> Any:
        return self.app.extensions["crm"]

    def token(self, client: Any | None = None) -> str:
        """The CSRF token of ``client``'s session (default: the victim's), from a server form."""
        html = (client or self.client).get("/auth/sign-in").get_data(as_text=True)
        match = TOKEN_FIELD.search(html)
        assert match, html[:300]
        return match.group(1)

    def session(self) -> dict[str, Any]:
        """The victim's session as the server reads it from the cookie."""
        cookie = self.client.get_cookie("crm_session")
        if cookie is None:
            return {}
        serializer = self.app.session_interface.get_signing_serializer(self.app)
        return dict(serializer.loads(cookie.value))

    def observe(self) -> dict[str, Any]:
        """Everything a state-changing post could change."""
        store = self.server.crm.store
        session = self.session()
        customers = store.list_customers(limit=1000)
        nonces = [
            itsdangerous.URLSafeTimedSerializer(self.app.secret_key, salt="crm-templates.sign-in")
            .loads(m.link.split("token=", 1)[1])["n"]
            for m in self.server.outbox
        ]  # fmt: skip
        sids = [session[k] for k in ("customer_sid", "operator_sid") if k in session]
        return {
            "entries": sorted((e.to_dict() for e in store.iter_entries()), key=lambda d: d["id"]),
            "customers": sorted((c.id, c.email) for c in customers),
            "entities": sorted((e.slug, e.version) for e in store.list_entities()),
            "api_keys": [k.to_dict() for k in store.list_api_keys()],
            "outbox": len(self.server.outbox),
            "webhooks": [(w.id, w.active) for w in store.list_webhook_endpoints()],
            "deliveries": [(d.id, d.status) for d in store.list_webhook_deliveries()],
            "session": session,
            "hits": {
                key: store.count_rate_hits(key, 3600)
                for key in (
                    "sign-in-ip:127.0.0.1",
                    f"sign-in-email:{VICTIM}",
                    "operator-sign-in:127.0.0.1",
                )
            },
            "generations": {
                key: store.session_generation(key)
                for key in ["operator", *(f"customer:{c.id}" for c in customers)]
            },
            "claims": {
                key: store.is_token_claimed(key)
                for key in [
                    *(f"sign-in:{n}" for n in nonces),
                    *(f"session-revoked:{s}" for s in sids),
                ]
            },
        }

    # --- setups: states in which a post to a route changes something ------------------

    def ask_link(self) -> None:
        """The victim asked for a sign-in link; its token is ``extra['link']``."""
        response = self.client.post(
            "/auth/sign-in", data={"csrf_token": self.token(), "email": VICTIM}
        )
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        self.extra["link"] = self.server.outbox[-1].link.split("token=", 1)[1]

    def sign_in(self) -> None:
        self.ask_link()
        data = {"csrf_token": self.token(), "token": self.extra["link"]}
        assert self.client.post("/auth/verify", data=data).status_code == 303
        assert self.session().get("customer_sid")

    def operator(self) -> None:
        data = {"csrf_token": self.token(), "password": PASSWORD}
        assert self.client.post("/operator/sign-in", data=data).status_code == 303
        assert self.session().get("operator_sid")

    def preview(self) -> None:
        self.operator()
        cat = self.server.crm.create_customer(PREVIEWED)
        assert self.client.get(f"/auth/sign-in?preview_customer={cat.id}").status_code == 200
        assert self.session().get("crm_preview") == cat.id

    def customer_for_operator(self) -> None:
        """An operator is signed in and a customer exists (``extra['customer']``)."""
        self.operator()
        self.extra["customer"] = self.server.crm.create_customer("cust@example.com").id

    def lead(self) -> None:
        """The visitor filed a lead on the sales site (so /pipeline has something to move)."""
        data = {"csrf_token": self.token(), "name": "Ann", "email": "ann@example.com",
                "company": "Acme", "plan": "growth"}  # fmt: skip
        assert self.client.post("/", data=data).status_code == 303

    def operator_entry(self) -> None:
        """An operator, with a weight-tracker entry to edit in the admin (``extra['entry']``)."""
        self.operator()
        store = self.server.crm.store
        self.extra["entry"] = next(e.id for e in store.iter_entries("weight-tracker"))

    def operator_webhook(self) -> None:
        """An operator, a webhook (``extra['webhook']``) and a failed delivery of it
        (``extra['delivery']``)."""
        from crm_templates import webhooks

        self.operator()
        store = self.server.crm.store
        # A closed loopback port: a delivery the retry wakes fails without leaving the machine.
        hook = webhooks.add_endpoint(store, "http://127.0.0.1:9/crm", ["*"], allow_private=True)
        self.extra["webhook"] = hook.id
        done = webhooks.WebhookDelivery(
            id="whd_0", endpoint_id=hook.id, event="entry.created", entry_id="e1",
            created_at="2026-01-01T00:00:00.000000Z", body="{}", status="failed", attempts=8,
        )  # fmt: skip
        store.enqueue_webhook_deliveries([done])
        self.extra["delivery"] = done.id

    def property_id(self) -> None:
        store = self.server.crm.store
        self.extra["property"] = next(e.id for e in store.iter_entries("properties"))


@dataclass(frozen=True)
class Row:
    """A state-changing route: how to reach a state where posting to it changes something,
    the body to post, and what a post that passes the checks does (status, whether the state
    changes) for a form and for a JSON body."""

    rule: str  # the URL-map rule (a page backend's path for pages)
    site: str
    url: Callable[[Browser], str]
    setup: Callable[[Browser], None]
    body: Callable[[Browser], dict[str, str]]
    form: tuple[int, bool]  # a valid form post: (status, changes the state)
    json: tuple[int, bool]  # a same-origin JSON post: (status, changes the state)


def nothing(b: Browser) -> None:
    return None


def empty(b: Browser) -> dict[str, str]:
    return {}


def at(path: str) -> Callable[[Browser], str]:
    return lambda b: path


WT, SALES, PROPERTIES = "weight_tracker", "sales_pipeline", "property_listings"
_E = "/admin/entities/weight-tracker"


def _v(b: Browser) -> dict[str, str]:
    """The weight tracker entity's current version (what the admin's forms carry)."""
    entity = b.server.crm.store.get_entity("weight-tracker")
    return {"version": str(entity.version)}


def _second_pipeline(b: Browser) -> None:
    """An operator, and a second (empty) pipeline ``extra`` the remove row can remove."""
    from crm_templates import entity_admin

    b.operator()
    definition = {"slug": "extra", "stages": [{"slug": "a"}]}
    entity_admin.add_pipeline(b.server.crm, "weight-tracker", _v(b)["version"], definition)


def _api_key(b: Browser) -> None:
    """An operator, and an API key (``extra['key']``) the revoke row can revoke."""
    from crm_templates.api_keys import create_key

    b.operator()
    b.extra["key"] = create_key(b.server.crm.store, name="k", scope="read")[0].id


ROWS: list[Row] = [
    # JSON bodies reach the server's own forms empty: sign-in and the confirmation find no
    # address or token (400), a wrong (empty) password counts as a failed attempt.
    Row("/auth/sign-in", WT, at("/auth/sign-in"), nothing,
        lambda b: {"email": VICTIM}, (200, True), (400, False)),
    Row("/auth/verify", WT, at("/auth/verify"), Browser.ask_link,
        lambda b: {"token": b.extra["link"]}, (303, True), (400, False)),
    Row("/auth/sign-out", WT, at("/auth/sign-out"), Browser.sign_in, empty, (303, True),
        (303, True)),
    Row("/auth/sign-out-everywhere", WT, at("/auth/sign-out-everywhere"), Browser.sign_in,
        empty, (303, True), (303, True)),
    Row("/operator/sign-in", WT, at("/operator/sign-in"), nothing,
        lambda b: {"password": PASSWORD}, (303, True), (403, True)),
    Row("/operator/sign-out", WT, at("/operator/sign-out"), Browser.operator, empty,
        (303, True), (303, True)),
    Row("/operator/sign-out-everywhere", WT, at("/operator/sign-out-everywhere"),
        Browser.operator, empty, (303, True), (303, True)),
    Row("/admin/customers/<customer_id>/sign-out-everywhere", WT,
        lambda b: f"/admin/customers/{b.extra['customer']}/sign-out-everywhere",
        Browser.customer_for_operator, empty, (303, True), (303, True)),
    Row("/_crm/preview/leave", WT, at("/_crm/preview/leave"), Browser.preview,
        lambda b: {"next": "/"}, (303, True), (303, True)),
    # the admin playground renders read-only: a valid post changes nothing (JSON bodies reach
    # it without a source: nothing to render)
    Row("/admin/playground", WT, at("/admin/playground"), Browser.operator,
        lambda b: {"source": "<p>{{ customer.email }}</p>"}, (200, False), (200, False)),
    Row("/admin/playground/render", WT, at("/admin/playground/render"), Browser.operator,
        lambda b: {"source": "<p>{{ customer.email }}</p>"}, (200, False), (200, False)),
    # the admin's import upload (issue 11, item 5): a post without a file is refused (422)
    Row("/admin/entities/<slug>/import", WT, at("/admin/entities/weight-tracker/import"),
        Browser.operator, empty, (422, False), (422, False)),
    # webhooks (issue 13, item 8): a JSON body carries no form fields (no URL, no active flag)
    Row("/admin/webhooks", WT, at("/admin/webhooks"), Browser.operator,
        lambda b: {"url": "https://hooks.example.com/a", "events": "entry.created"},
        (200, True), (422, False)),
    Row("/admin/webhooks/<webhook_id>/active", WT,
        lambda b: f"/admin/webhooks/{b.extra['webhook']}/active", Browser.operator_webhook,
        lambda b: {"active": "0"}, (303, True), (400, False)),
    Row("/admin/webhooks/<webhook_id>/remove", WT,
        lambda b: f"/admin/webhooks/{b.extra['webhook']}/remove", Browser.operator_webhook,
        empty, (303, True), (303, True)),
    Row("/admin/webhooks/deliveries/<delivery_id>/retry", WT,
        lambda b: f"/admin/webhooks/deliveries/{b.extra['delivery']}/retry",
        Browser.operator_webhook, empty, (303, True), (303, True)),
    # the admin (issue 12): a JSON body carries no form fields, so no value or stage
    Row("/admin/entries/<entry_id>/values/<field_key>", WT,
        lambda b: f"/admin/entries/{b.extra['entry']}/values/goal_weight", Browser.operator_entry,
        lambda b: {"value": "71"}, (303, True), (400, False)),
    Row("/admin/entries/<entry_id>/stage", WT,
        lambda b: f"/admin/entries/{b.extra['entry']}/stage", Browser.operator_entry,
        lambda b: {"stage": "goal-reached"}, (303, True), (422, False)),
    # page backends
    Row("/checkin", WT, at("/checkin"), nothing, lambda b: {"weight": "80", "goal": "70"},
        (303, True), (303, True)),
    Row("/", SALES, at("/"), nothing,
        lambda b: {"name": "Bo", "email": "bo@example.com", "company": "Bolt", "plan": "starter"},
        (303, True), (303, True)),
    Row("/pipeline", SALES, at("/pipeline"), Browser.lead,
        lambda b: {"action": "lead-stage", "stage": "contacted"}, (303, True), (303, True)),
    Row("/property", PROPERTIES, lambda b: f"/property?id={b.extra['property']}",
        Browser.property_id, empty, (200, False), (200, False)),
    # a page without a backend takes no POST (405) — after the checks
    Row("/", WT, at("/"), nothing, lambda b: {"weight": "80"}, (405, False), (405, False)),
    # the admin's entity pages (issue 12, item 2): a JSON body reaches them as an empty form,
    # without the entity version, so a JSON post that passes the checks is refused (422).
    Row("/admin/entities", WT, at("/admin/entities"), Browser.operator,
        lambda b: {"slug": "tickets"}, (303, True), (422, False)),
    Row("/admin/entities/<slug>/settings", WT, at(f"{_E}/settings"), Browser.operator,
        lambda b: {**_v(b), "name": "WT"}, (303, True), (422, False)),
    Row("/admin/entities/<slug>/fields", WT, at(f"{_E}/fields"), Browser.operator,
        lambda b: {**_v(b), "key": "city"}, (303, True), (422, False)),
    Row("/admin/entities/<slug>/fields/<key>", WT, at(f"{_E}/fields/goal_weight"),
        Browser.operator, lambda b: {**_v(b), "label": "Goal", "type": "number"}, (303, True),
        (422, False)),
    Row("/admin/entities/<slug>/fields/<key>/remove", WT, at(f"{_E}/fields/goal_weight/remove"),
        Browser.operator, lambda b: {**_v(b), "confirm": "yes"}, (303, True), (422, False)),
    Row("/admin/entities/<slug>/pipelines", WT, at(f"{_E}/pipelines"), Browser.operator,
        lambda b: {**_v(b), "slug": "second", "stage_slug": "a"}, (303, True), (422, False)),
    Row("/admin/entities/<slug>/pipelines/<pipeline_slug>/settings", WT,
        at(f"{_E}/pipelines/progress/settings"), Browser.operator,
        lambda b: {**_v(b), "name": "P"}, (303, True), (422, False)),
    Row("/admin/entities/<slug>/pipelines/<pipeline_slug>/remove", WT,
        at(f"{_E}/pipelines/extra/remove"), lambda b: _second_pipeline(b), _v, (303, True),
        (422, False)),
    Row("/admin/entities/<slug>/pipelines/<pipeline_slug>/stages", WT,
        at(f"{_E}/pipelines/progress/stages"), Browser.operator,
        lambda b: {**_v(b), "slug": "extra"}, (303, True), (422, False)),
    Row("/admin/entities/<slug>/pipelines/<pipeline_slug>/stages/<stage_slug>", WT,
        at(f"{_E}/pipelines/progress/stages/starting"), Browser.operator,
        lambda b: {**_v(b), "name": "Start"}, (303, True), (422, False)),
    Row("/admin/entities/<slug>/pipelines/<pipeline_slug>/stages/<stage_slug>/move", WT,
        at(f"{_E}/pipelines/progress/stages/starting/move"), Browser.operator,
        lambda b: {**_v(b), "direction": "down"}, (303, True), (422, False)),
    Row("/admin/entities/<slug>/pipelines/<pipeline_slug>/stages/<stage_slug>/remove", WT,
        at(f"{_E}/pipelines/progress/stages/goal-reached/remove"), Browser.operator, _v,
        (303, True), (422, False)),
    # API keys in the admin (issue 13, item 3): a JSON body carries no name (422); revoking
    # takes no field, so a same-origin JSON post revokes.
    Row("/admin/api-keys", WT, at("/admin/api-keys"), Browser.operator,
        lambda b: {"name": "n", "scope": "read"}, (200, True), (422, False)),
    Row("/admin/api-keys/<key_id>/revoke", WT,
        lambda b: f"/admin/api-keys/{b.extra['key']}/revoke", _api_key, empty, (303, True),
        (303, True)),
]  # fmt: skip
ROW_IDS = [f"{r.site}{r.rule}" for r in ROWS]


@pytest.fixture
def browser_for(tmp_path: Path) -> Iterator[Callable[[str], Browser]]:
    """Builds a sample site's app (in-memory store, trusted host, operator password) and a
    fresh victim client; closes the apps afterwards."""
    apps: list[Any] = []

    def make(site: str) -> Browser:
        root = tmp_path / f"{site}{len(apps)}"
        shutil.copytree(SAMPLES / site, root, ignore=shutil.ignore_patterns("instance"))
        app = create_app(root, "sqlite:///:memory:", TESTING=True, TRUSTED_HOSTS=["localhost"],
                         CRM_OPERATOR_PASSWORD=PASSWORD)  # fmt: skip
        apps.append(app)
        return Browser(app, app.test_client(), site)

    yield make
    for app in apps:
        app.extensions["crm"].close()


def forged_token() -> str:
    """A token in Flask-WTF's shape, signed with another key."""
    signer = itsdangerous.URLSafeTimedSerializer("not-this-sites-key", salt="wtf-csrf-token")
    return str(signer.dumps("0" * 40))


# (how the attacker's form post carries a token)
FORM_ATTACKS: dict[str, Callable[[Browser], tuple[dict[str, str], dict[str, str]]]] = {
    "no-token": lambda b: ({}, {}),
    "another-sessions-token": lambda b: ({"csrf_token": b.token(b.app.test_client())}, {}),
    "forged-token": lambda b: ({"csrf_token": forged_token()}, {}),
    "forged-header": lambda b: ({}, {"X-CSRFToken": forged_token()}),
}
# (headers of the attacker's JSON post, the status it must get)
JSON_ATTACKS: dict[str, Callable[[Browser], tuple[dict[str, str], int]]] = {
    "cross-origin": lambda b: ({"Origin": "https://evil.example"}, 403),
    # Origin decides when both are sent; Referer stands in only for a missing Origin.
    "cross-origin-own-referer": lambda b: (
        {"Origin": "https://evil.example", "Referer": "http://localhost/"},
        403,
    ),
    "wrong-scheme": lambda b: ({"Origin": "https://localhost"}, 403),
    "wrong-scheme-referer": lambda b: ({"Referer": "https://localhost/checkin"}, 403),
    "wrong-port": lambda b: ({"Origin": "http://localhost:8080"}, 403),
    "no-origin-or-referer": lambda b: ({}, 403),
    "another-sessions-header": lambda b: ({"X-CSRFToken": b.token(b.app.test_client())}, 400),
    "forged-header": lambda b: ({"X-CSRFToken": forged_token()}, 400),
}


def prepared(browser_for: Callable[[str], Browser], row: Row) -> Browser:
    b = browser_for(row.site)
    b.token()  # the victim's session has a token of its own
    row.setup(b)
    return b


def check_changes(b: Browser, before: dict[str, Any], changes: bool) -> None:
    after = b.observe()
    if changes:
        assert after != before, "the control post changed nothing: the row tests nothing"
    else:
        assert after == before


@pytest.mark.parametrize("attack", sorted(FORM_ATTACKS))
@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_a_form_post_without_the_sessions_token_is_400_and_changes_nothing(
    browser_for: Callable[[str], Browser], row: Row, attack: str
) -> None:
    b = prepared(browser_for, row)
    fields, headers = FORM_ATTACKS[attack](b)
    before = b.observe()
    response = b.client.post(row.url(b), data={**row.body(b), **fields}, headers=headers)
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert "CSRF" in response.get_data(as_text=True)
    assert b.observe() == before
    # The same post with the session's own token passes the check.
    valid = b.client.post(row.url(b), data={**row.body(b), "csrf_token": b.token()})
    assert valid.status_code == row.form[0], valid.get_data(as_text=True)[:300]
    check_changes(b, before, row.form[1])


@pytest.mark.parametrize("attack", sorted(JSON_ATTACKS))
@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_a_json_post_not_from_this_site_is_refused_and_changes_nothing(
    browser_for: Callable[[str], Browser], row: Row, attack: str
) -> None:
    b = prepared(browser_for, row)
    headers, status = JSON_ATTACKS[attack](b)
    before = b.observe()
    response = b.client.post(row.url(b), json=row.body(b), headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.get_json()["ok"] is False
    assert b.observe() == before
    # From this site's own origin the same post passes the check.
    valid = b.client.post(row.url(b), json=row.body(b), headers={"Origin": "http://localhost"})
    assert valid.status_code == row.json[0], valid.get_data(as_text=True)[:300]
    check_changes(b, before, row.json[1])


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_a_json_post_with_only_a_same_site_referer_passes_the_check(
    browser_for: Callable[[str], Browser], row: Row
) -> None:
    b = prepared(browser_for, row)
    before = b.observe()
    valid = b.client.post(row.url(b), json=row.body(b), headers={"Referer": "http://localhost/x"})
    assert valid.status_code == row.json[0], valid.get_data(as_text=True)[:300]
    check_changes(b, before, row.json[1])


@pytest.mark.parametrize("method", sorted(UNSAFE_METHODS - {"POST"}))
@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_other_unsafe_methods_are_checked_before_routing(
    browser_for: Callable[[str], Browser], row: Row, method: str
) -> None:
    # No route takes PUT, PATCH or DELETE, but the checks come first: 400/403, not 405. In a
    # preview, every unsafe request but leaving it is refused first ("previews are read-only"),
    # and a PUT to the leave URL is not leaving it.
    b = prepared(browser_for, row)
    in_preview = row.setup is Browser.preview
    before = b.observe()
    form = b.client.open(row.url(b), method=method, data=row.body(b))
    assert form.status_code == (403 if in_preview else 400)
    cross = b.client.open(row.url(b), method=method, json=row.body(b),
                          headers={"Origin": "https://localhost"})  # fmt: skip
    assert cross.status_code == 403
    assert b.observe() == before
    valid = b.client.open(row.url(b), method=method, data={"csrf_token": b.token()})
    assert valid.status_code == (403 if in_preview else 405)
    assert b.observe() == before


def unsafe_rules(app: Any) -> set[str]:
    return {
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.methods is not None and rule.methods & UNSAFE_METHODS
    }


@pytest.mark.parametrize("site", [WT, SALES, PROPERTIES])
def test_the_table_covers_every_state_changing_route(
    browser_for: Callable[[str], Browser], site: str
) -> None:
    app = browser_for(site).app
    # The REST API takes keys, never cookies, so CSRF does not apply: tests/test_api_auth.py.
    api = {rule for rule in unsafe_rules(app) if rule.startswith("/api/crm/")}
    server_rules = unsafe_rules(app) - {"/", "/<path:path>"} - api
    assert server_rules == {r.rule for r in ROWS if r.site == WT and r.rule != "/"} - {"/checkin"}
    assert {"/", "/<path:path>"} <= unsafe_rules(app)  # pages: every backend below
    site_state = app.extensions["crm"].site
    backends = {url for url in site_state.urls if site_state.route(url).backend is not None}
    covered = {r.rule for r in ROWS if r.site == site and r.rule not in server_rules}
    assert backends <= covered
