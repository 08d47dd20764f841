"""Every documented limit, exactly at it (accepted) and one past it (refused) (issue 10).

A limit tested only far from its edge survives an off-by-one: ``len(s) > MAX_STRING`` turned
into ``>=`` passed the whole suite. Each limit here is taken from the docs (docs/), SPEC §4 or the
code's own messages, and tested at the value the documentation promises to accept and at the
first value it promises to refuse — with what was accepted read back through the store (every
backend) and nothing written for what was refused.

Limits tested elsewhere at their edge: JSON request-body depth 32/33
(`test_bodies.test_the_depth_limit_admits_what_it_promises`) and security-record keys of
512/513 characters (`test_security_store`).
"""

from __future__ import annotations

import email.utils
import io
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import itsdangerous.timed
import pytest

from crm_templates import Crm, CrmValidationError, EntryNotFoundError
from crm_templates.ids import new_id
from crm_templates.model import Entry
from crm_templates.server import create_app
from crm_templates.server.state import MailMessage
from tests.test_serve import SAMPLES, Served

# SPEC §4 "strings at most 10,000 chars"; docs/reference/field-types.md "≤ 10,000 characters"
MAX_STRING = 10_000
MAX_JSON = 10 * 1024  # SPEC §4 "JSON values at most 10 KB serialized" (bytes of compact JSON)
MAX_REFERENCE_ID = 512  # SPEC §4 "referenceId … at most 512 chars"
MAX_LIMIT = 200  # docs/reference/functions.md "limit (50, max 200)"
SCAN = 100  # docs/reference/functions.md "SetCrmField scans the newest 100 entries"
MAX_RULES = 10_000  # validation_rules "at most 10 KB serialised" (schema.MAX_RULES_BYTES)
MAX_RULES_DEPTH = 32  # validation_rules "32 levels deep"
MAX_TEAM_IDS = 1000  # visible_to_team_ids "at most 1,000", strings "1–200 characters"
MAX_NAME = 200  # labels and names: "a string of at most 200 characters" (schema._text)
MAX_COLOUR = 100  # colours: "more than 100 characters" refused
MAX_BODY = 64 * 1024  # CRM_MAX_BODY default 65536

# === values (SPEC §4), through the service, on every backend ============================

FIELDS = [
    {"key": "text"},
    {"key": "textarea", "type": "textarea"},
    {"key": "rich", "type": "rich_text"},
    {"key": "url", "type": "url"},
    {"key": "image", "type": "image"},
    {"key": "json", "type": "json"},
    {"key": "company", "type": "reference", "target_entity": "things"},
]
URL = "https://example.com/"
# (field key, value exactly at the limit, its stored form, the same one past the limit)
VALUE_LIMITS: list[tuple[str, Any, Any, Any]] = [
    ("text", "x" * MAX_STRING, "x" * MAX_STRING, "x" * (MAX_STRING + 1)),
    # Characters, not bytes: 10,000 two-byte characters are within the limit.
    ("text", "é" * MAX_STRING, "é" * MAX_STRING, "é" * (MAX_STRING + 1)),
    ("textarea", "a\n" * (MAX_STRING // 2), "a\n" * (MAX_STRING // 2), "a\n" * (MAX_STRING // 2) + "a"),
    ("rich", "y" * MAX_STRING, "y" * MAX_STRING, "y" * (MAX_STRING + 1)),
    ("url", URL + "a" * (MAX_STRING - len(URL)), URL + "a" * (MAX_STRING - len(URL)),
     URL + "a" * (MAX_STRING - len(URL) + 1)),
    ("image", "/" + "i" * (MAX_STRING - 1), "/" + "i" * (MAX_STRING - 1), "/" + "i" * MAX_STRING),
    # ["…"] serialises to the string plus 4 bytes.
    ("json", ["j" * (MAX_JSON - 4)], ["j" * (MAX_JSON - 4)], ["j" * (MAX_JSON - 3)]),
    ("json", {"k": "v" * (MAX_JSON - 8)}, {"k": "v" * (MAX_JSON - 8)}, {"k": "v" * (MAX_JSON - 7)}),
    # JSON text is measured as the value it holds.
    ("json", '["' + "t" * (MAX_JSON - 4) + '"]', ["t" * (MAX_JSON - 4)],
     '["' + "t" * (MAX_JSON - 3) + '"]'),
]  # fmt: skip
VALUE_IDS = [f"{k}-{i}" for i, (k, *_) in enumerate(VALUE_LIMITS)]


@pytest.fixture
def limits(crm: Crm) -> Crm:
    """An entity with one field of each limited type; the view for cus_1."""
    crm.ensure_entity(slug="things", entityMode="data", fields=[{"key": "name"}])
    crm.ensure_entity(slug="limits", entityMode="data", fields=FIELDS)
    return crm.bind("cus_1")


@pytest.mark.parametrize(("key", "at", "stored", "past"), VALUE_LIMITS, ids=VALUE_IDS)
def test_a_value_at_its_limit_is_kept_and_one_past_is_refused(
    limits: Crm, key: str, at: Any, stored: Any, past: Any
) -> None:
    too_long = rf"field '{key}' (is [\d,]+ (characters|bytes)|\(json\) expects a JSON value of at most 10 KB \(got [\d,]+ bytes\))"
    with pytest.raises(CrmValidationError, match=too_long):
        limits.set_field(slug="limits", fieldKey=key, value=past)
    assert limits.get_entries(slug="limits") == []
    assert limits.set_field(slug="limits", fieldKey=key, value=at)["created"] is True
    assert limits.get_field(slug="limits", fieldKey=key) == stored
    assert limits.store.find_entries("limits", "customer", "cus_1")[0].values == {key: stored}


def test_entry_titles_at_their_limit(limits: Crm) -> None:
    with pytest.raises(CrmValidationError, match="title is 10,001 characters; the limit is 10,000"):
        limits.create_entry(slug="limits", title="t" * (MAX_STRING + 1))
    made = limits.create_entry(slug="limits", title="t" * MAX_STRING)
    assert limits.store.get_entry(made["id"]).title == "t" * MAX_STRING  # type: ignore[union-attr]
    assert len(limits.get_entries(slug="limits")) == 1


def test_customer_names_at_their_limit(crm: Crm) -> None:
    for name in ("first_name", "last_name"):
        with pytest.raises(CrmValidationError, match=f"{name} is 10,001 characters"):
            crm.create_customer(**{name: "n" * (MAX_STRING + 1)})
    assert crm.store.count_customers() == 0
    made = crm.create_customer(first_name="f" * MAX_STRING, last_name="l" * MAX_STRING)
    got = crm.get_customer(made.id)
    assert got is not None and (got.first_name, got.last_name) == (
        "f" * MAX_STRING,
        "l" * MAX_STRING,
    )


def test_reference_ids_at_their_limit(limits: Crm) -> None:
    at, past = "r" * MAX_REFERENCE_ID, "r" * (MAX_REFERENCE_ID + 1)
    with pytest.raises(CrmValidationError, match="referenceId is 513 characters; the limit is 512"):
        limits.set_field(slug="limits", fieldKey="text", value="x", referenceId=past)
    with pytest.raises(CrmValidationError, match="the limit is 512"):
        limits.get_field(slug="limits", fieldKey="text", referenceId=past)
    assert limits.store.count_entries("limits") == 0
    limits.set_field(slug="limits", fieldKey="text", value="x", referenceId=at)
    assert limits.get_field(slug="limits", fieldKey="text", referenceId=at) == "x"
    assert limits.store.find_entries("limits", "customer", at)[0].reference_id == at


def test_reference_field_ids_at_their_limit(limits: Crm) -> None:
    # An id of 512 characters is a well-formed id (then looked up: no such entry); 513 is not.
    with pytest.raises(EntryNotFoundError, match="which is not an entry of 'things'"):
        limits.set_field(slug="limits", fieldKey="company", value="e" * MAX_REFERENCE_ID)
    with pytest.raises(CrmValidationError, match="expects an entry id of 'things'") as past:
        limits.set_field(slug="limits", fieldKey="company", value="e" * (MAX_REFERENCE_ID + 1))
    assert type(past.value) is CrmValidationError
    assert limits.store.count_entries("limits") == 0


# === read limits and SetCrmField's scan depth ==========================================

BASE = datetime(2020, 1, 1)


def stamp(n: int) -> str:
    """The n-th second after BASE as the store's timestamps are written."""
    return (BASE + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def history(crm: Crm, count: int, customer: str = "cus_1", holder: int | None = None) -> list[str]:
    """``count`` entries of ``log`` for ``customer``, oldest first, in one bulk insert; only
    the one at index ``holder`` holds ``key``. Their ids, oldest first."""
    entries = [
        Entry(
            id=new_id(),
            entity="log",
            reference_type="customer",
            reference_id=customer,
            values={"key": "held"} if n == holder else {"n": float(n)},
            created_at=stamp(n),
            updated_at=stamp(n),
        )
        for n in range(count)
    ]
    crm.store.insert_entries(entries)
    return [e.id for e in entries]


@pytest.fixture
def log(crm: Crm) -> Crm:
    """A data-mode entity ``log`` (keys ``n`` and ``key``)."""
    crm.ensure_entity(
        slug="log", entityMode="data", fields=[{"key": "n", "type": "number"}, {"key": "key"}]
    )
    return crm


@pytest.mark.parametrize("function", ["GetCrmEntries", "GetCrmFieldValues"])
def test_read_limits_at_their_edges(log: Crm, function: str) -> None:
    ids = history(log, MAX_LIMIT + 1)
    view = log.bind("cus_1")
    options = (
        {"slug": "log", "fieldKey": "n"} if function == "GetCrmFieldValues" else {"slug": "log"}
    )

    def read(**extra: Any) -> list[Any]:
        result = view.call(function, {**options, **extra})
        return [e.id for e in result] if function == "GetCrmEntries" else result

    expected = (
        ids[::-1] if function == "GetCrmEntries" else [float(n) for n in range(MAX_LIMIT, -1, -1)]
    )
    assert read(limit=1) == expected[:1]  # the smallest limit
    with pytest.raises(CrmValidationError, match="limit must be a whole number of at least 1"):
        read(limit=0)
    assert read() == expected[:50]  # the default
    assert read(limit=MAX_LIMIT) == expected[:MAX_LIMIT]
    assert read(limit=MAX_LIMIT + 1) == expected[:MAX_LIMIT]  # capped at the maximum


@pytest.mark.parametrize("function", ["SetCrmField", "SetCrmFields"])
def test_the_scan_for_an_entry_holding_the_key_reaches_exactly_100_back(
    log: Crm, function: str
) -> None:
    # The holder is the 100th newest entry: found and updated.
    at = history(log, SCAN, "cus_at", holder=0)
    # The holder is the 101st newest: not found, so the value merges into the newest entry.
    past = history(log, SCAN + 1, "cus_past", holder=0)
    for customer, target in (("cus_at", at[0]), ("cus_past", past[-1])):
        options: dict[str, Any] = {"slug": "log", "referenceId": customer}
        if function == "SetCrmField":
            options |= {"fieldKey": "key", "value": "new"}
        else:
            options["fields"] = {"key": "new"}
        result = log.call(function, options)
        assert (result["id"], result["created"]) == (target, False), customer
        assert log.store.get_entry(target).values["key"] == "new"  # type: ignore[union-attr]
    assert log.store.get_entry(past[0]).values == {"key": "held"}  # type: ignore[union-attr]


# === entity definitions (EnsureCrmEntity), stored on every backend =====================


def nested(depth: int, leaf: Any) -> Any:
    """``depth`` objects nested in each other, the innermost holding ``leaf``."""
    value: Any = {"r": leaf}
    for _ in range(depth - 1):
        value = {"r": value}
    return value


def field(**extra: Any) -> dict[str, Any]:
    return {"fields": [{"key": "f", **extra}]}


def stage(**extra: Any) -> dict[str, Any]:
    return {"pipelines": [{"slug": "p", "stages": [{"slug": "s", **extra}]}]}


def first_field(e: Any) -> Any:
    return e.fields[0]


def first_stage(e: Any) -> Any:
    return e.pipelines[0].stages[0]


RULE_TEXT = MAX_RULES - len('{"r":""}')
# (what, EnsureCrmEntity options at the limit, what the stored entity returns for it, the
#  value that must come back, options one past the limit, words of the refusal)
SCHEMA_LIMITS: list[tuple[str, dict[str, Any], Callable[[Any], Any], Any, dict[str, Any], str]] = [
    ("rules-bytes", field(validation_rules={"r": "a" * RULE_TEXT}),
     lambda e: first_field(e).validation_rules, {"r": "a" * RULE_TEXT},
     field(validation_rules={"r": "a" * (RULE_TEXT + 1)}), "at most 10 KB as JSON"),
    # Bytes of UTF-8, not characters: é is two bytes.
    ("rules-utf8", field(validation_rules={"r": "é" * (RULE_TEXT // 2)}),
     lambda e: first_field(e).validation_rules, {"r": "é" * (RULE_TEXT // 2)},
     field(validation_rules={"r": "é" * (RULE_TEXT // 2) + "a"}), "at most 10 KB as JSON"),
    ("rules-depth", field(validation_rules=nested(MAX_RULES_DEPTH, 1)),
     lambda e: first_field(e).validation_rules, nested(MAX_RULES_DEPTH, 1),
     field(validation_rules=nested(MAX_RULES_DEPTH + 1, 1)), "at most 32 levels"),
    ("rules-depth-empty", field(validation_rules=nested(MAX_RULES_DEPTH - 1, {})),
     lambda e: first_field(e).validation_rules, nested(MAX_RULES_DEPTH - 1, {}),
     field(validation_rules=nested(MAX_RULES_DEPTH, {})), "at most 32 levels"),
    ("team-ids", field(visible_to_team_ids=list(range(MAX_TEAM_IDS))),
     lambda e: first_field(e).visible_to_team_ids, tuple(range(MAX_TEAM_IDS)),
     field(visible_to_team_ids=list(range(MAX_TEAM_IDS + 1))), "more than 1000 team ids"),
    ("team-id-length", field(visible_to_team_ids=["t" * 200, "u"]),
     lambda e: first_field(e).visible_to_team_ids, ("t" * 200, "u"),
     field(visible_to_team_ids=["t" * 201]), "strings of 1-200 characters"),
    ("team-id-empty", field(visible_to_team_ids=["t"]),
     lambda e: first_field(e).visible_to_team_ids, ("t",),
     field(visible_to_team_ids=[""]), "strings of 1-200 characters"),
    ("team-id-int", field(visible_to_team_ids=[2**63 - 1, -(2**63 - 1)]),
     lambda e: first_field(e).visible_to_team_ids, (2**63 - 1, -(2**63 - 1)),
     field(visible_to_team_ids=[2**63]), "whole numbers"),
    ("field-label", field(label="L" * MAX_NAME), lambda e: first_field(e).label, "L" * MAX_NAME,
     field(label="L" * (MAX_NAME + 1)), "at most 200 characters"),
    ("entity-name", {"name": "N" * MAX_NAME}, lambda e: e.name, "N" * MAX_NAME,
     {"name": "N" * (MAX_NAME + 1)}, "name must be a string of at most 200"),
    ("singular-name", {"singularName": "S" * MAX_NAME}, lambda e: e.singular_name, "S" * MAX_NAME,
     {"singularName": "S" * (MAX_NAME + 1)}, "singularName must be a string of at most 200"),
    ("plural-name", {"pluralName": "P" * MAX_NAME}, lambda e: e.plural_name, "P" * MAX_NAME,
     {"pluralName": "P" * (MAX_NAME + 1)}, "pluralName must be a string of at most 200"),
    ("icon", {"icon": "I" * MAX_NAME}, lambda e: e.icon, "I" * MAX_NAME,
     {"icon": "I" * (MAX_NAME + 1)}, "icon must be a string of at most 200"),
    ("pipeline-name", {"pipelines": [{"slug": "p", "name": "Q" * MAX_NAME, "stages": [{"slug": "s"}]}]},
     lambda e: e.pipelines[0].name, "Q" * MAX_NAME,
     {"pipelines": [{"slug": "p", "name": "Q" * (MAX_NAME + 1), "stages": [{"slug": "s"}]}]},
     "at most 200 characters"),
    ("stage-name", stage(name="T" * MAX_NAME), lambda e: first_stage(e).name, "T" * MAX_NAME,
     stage(name="T" * (MAX_NAME + 1)), "at most 200 characters"),
    # rgb(0…01 2 3) with zeros padding it to exactly 100 characters.
    ("entity-colour", {"color": "rgb(" + "0" * 90 + "1 2 3)"}, lambda e: e.color,
     "rgb(" + "0" * 90 + "1 2 3)", {"color": "rgb(" + "0" * 91 + "1 2 3)"},
     "at most 100 characters"),
    ("stage-colour", stage(color="rgb(" + "0" * 90 + "1 2 3)"), lambda e: first_stage(e).color,
     "rgb(" + "0" * 90 + "1 2 3)", stage(color="rgb(" + "0" * 91 + "1 2 3)"),
     "at most 100 characters"),
    ("colour-number", {"color": "lab(50 1000000 -1000000)"}, lambda e: e.color,
     "lab(50 1000000 -1000000)", {"color": "lab(50 1000001 0)"}, "must be one CSS colour"),
    ("probability-top", stage(probability=100), lambda e: first_stage(e).probability, 100.0,
     stage(probability=100.001), "between 0 and 100"),
    ("probability-bottom", stage(probability=0), lambda e: first_stage(e).probability, 0.0,
     stage(probability=-0.001), "between 0 and 100"),
    ("bucket-size", field(type="number", reporting_config={"bucket_size": 0.001}),
     lambda e: first_field(e).reporting_config.bucket_size, 0.001,
     field(type="number", reporting_config={"bucket_size": 0}), "greater than 0"),
    ("baseline", field(type="number", reporting_config={"baseline": {"min": 5, "max": 5}}),
     lambda e: (first_field(e).reporting_config.baseline_min,
                first_field(e).reporting_config.baseline_max), (5.0, 5.0),
     field(type="number", reporting_config={"baseline": {"min": 5.001, "max": 5}}),
     "must not exceed"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("at", "read", "stored", "past", "message"),
    [case[1:] for case in SCHEMA_LIMITS],
    ids=[case[0] for case in SCHEMA_LIMITS],
)
def test_a_definition_at_its_limit_is_stored_and_one_past_is_refused(
    crm: Crm,
    at: dict[str, Any],
    read: Callable[[Any], Any],
    stored: Any,
    past: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(CrmValidationError, match=re.escape(message)):
        crm.ensure_entity(slug="refused", **past)
    assert crm.store.get_entity("refused") is None
    crm.ensure_entity(slug="kept", **at)
    entity = crm.store.get_entity("kept")  # read back from the store, not the service's cache
    assert entity is not None and read(entity) == stored


# === the page server ===================================================================

ECHO = (
    "def handle(request, page):\n"
    "    return page.json({'pad': len(page.data.get('pad', '')), 'keys': sorted(page.data)})\n"
)
ORIGIN = {"Origin": "http://localhost"}


@pytest.fixture
def echo_app(tmp_path: Path) -> Iterator[Any]:
    """A site whose ``/echo`` backend answers with the body's keys and the length of its
    ``pad`` (so a body cut short would show)."""
    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    (site / "pages" / "echo.py").write_text(ECHO)
    (site / "pages" / "form.html").write_text("{{ csrf_token() }}")
    app = create_app(site, "sqlite:///:memory:", TESTING=True, CRM_SEED=False)
    yield app
    app.extensions["crm"].close()


def json_of_size(size: int) -> bytes:
    body = b'{"pad":"' + b"x" * (size - 10) + b'"}'
    assert len(body) == size
    return body


def test_a_json_body_of_exactly_the_cap_is_read_and_one_byte_more_is_413(echo_app: Any) -> None:
    client = echo_app.test_client()
    at = client.post("/echo", data=json_of_size(MAX_BODY), content_type="application/json",
                     headers=ORIGIN)  # fmt: skip
    assert at.status_code == 200, at.get_data(as_text=True)[:200]
    assert at.get_json() == {"pad": MAX_BODY - 10, "keys": ["pad"]}
    past = client.post("/echo", data=json_of_size(MAX_BODY + 1),
                       content_type="application/json", headers=ORIGIN)  # fmt: skip
    assert past.status_code == 413
    assert (
        past.get_json()["error"] == "The request body is larger than the 64 KB this site accepts."
    )


def test_a_form_body_of_exactly_the_cap_is_read_and_one_byte_more_is_413(echo_app: Any) -> None:
    client = echo_app.test_client()
    token = client.get("/form").get_data(as_text=True)
    head = f"csrf_token={token}&pad=".encode()
    form = "application/x-www-form-urlencoded"
    at = client.post("/echo", data=head + b"x" * (MAX_BODY - len(head)), content_type=form)
    assert at.status_code == 200 and at.get_json() == {
        "pad": MAX_BODY - len(head),
        "keys": ["csrf_token", "pad"],
    }
    past = client.post("/echo", data=head + b"x" * (MAX_BODY + 1 - len(head)), content_type=form)
    assert past.status_code == 413


def test_a_chunked_body_is_refused_when_it_reaches_the_cap(echo_app: Any) -> None:
    # Without a Content-Length the body is read up to the cap: a body of cap - 1 bytes is
    # known to be complete, one of exactly the cap may have been cut off
    # (docs/how-to/page-backends.md: "a chunked body when it reaches the cap").
    client = echo_app.test_client()

    def chunked(size: int) -> Any:
        return client.post(
            "/echo",
            input_stream=io.BytesIO(json_of_size(size)),
            content_type="application/json",
            headers={**ORIGIN, "Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )

    below = chunked(MAX_BODY - 1)
    assert below.status_code == 200 and below.get_json()["pad"] == MAX_BODY - 11
    assert chunked(MAX_BODY).status_code == 413


def test_waitress_takes_a_body_of_exactly_the_cap_and_refuses_one_byte_more(
    tmp_path: Path,
) -> None:
    # `crm-templates serve` hands waitress its own body limit (which refuses sizes >= its
    # setting), so the app's promise of "larger than CRM_MAX_BODY → 413" holds at the edge.
    site = tmp_path / "site"
    shutil.copytree(SAMPLES / "weight_tracker", site, ignore=shutil.ignore_patterns("instance"))
    served = Served(site, tmp_path / "crm.db")
    try:

        def post(size: int, *, send_body: bool) -> bytes:
            """The status line answering a JSON post of ``size`` bytes (the body sent only
            when ``send_body``: a refusal comes from the headers, before any body)."""
            prefix = b'{"weight": 80, "goal": 70, "pad": "'
            body = prefix + b"x" * (size - len(prefix) - 2) + b'"}'
            assert len(body) == size
            host = f"127.0.0.1:{served.port}".encode()
            with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
                conn.sendall(
                    b"POST /checkin HTTP/1.1\r\nHost: " + host + b"\r\nOrigin: http://" + host
                    + b"\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    + f"Content-Length: {size}\r\n\r\n".encode() + (body if send_body else b"")
                )  # fmt: skip
                answer = b""
                while b"\r\n" not in answer and (chunk := conn.recv(4096)):
                    answer += chunk
            return answer.split(b"\r\n", 1)[0]

        assert post(MAX_BODY, send_body=True).startswith(b"HTTP/1.1 303 ")  # saved, sent to /
        assert post(MAX_BODY + 1, send_body=False).startswith(b"HTTP/1.1 413 ")
    finally:
        served.stop()


# --- rate limits, link lifetime, session lifetime, outbox ------------------------------


@pytest.fixture(params=["sqlite-memory", "sqlite-file", "opensearch"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL for an app (the limits are counted in the store), once per backend."""
    if request.param == "sqlite-memory":
        yield "sqlite:///:memory:"
    elif request.param == "sqlite-file":
        yield f"sqlite:///{tmp_path / 'crm.db'}"
    else:
        search_url = request.getfixturevalue("search_url")
        admin = request.getfixturevalue("search_admin")
        prefix = f"t{uuid.uuid4().hex[:12]}_"
        yield f"{search_url}?prefix={prefix}"
        from crm_templates.storage.elasticsearch import ElasticsearchStore

        leftover = ElasticsearchStore.from_url(search_url, prefix=prefix)
        names = ",".join(leftover.indices.values())
        leftover.close()
        admin.client.options(ignore_status=404).indices.delete(index=names)


PASSWORD = "correct horse battery staple"


@pytest.fixture
def auth_app(store_url: str, tmp_path: Path) -> Iterator[Any]:
    """A site with the server's default limits, an operator password and a trusted host."""
    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    (site / "pages" / "form.html").write_text("{{ csrf_token() }}")
    app = create_app(site, store_url, TESTING=True, CRM_SEED=False, TRUSTED_HOSTS=["localhost"],
                     CRM_OPERATOR_PASSWORD=PASSWORD)  # fmt: skip
    yield app
    app.extensions["crm"].close()


def token(client: Any) -> str:
    return str(client.get("/form").get_data(as_text=True))


def ask_link(client: Any, email: str) -> int:
    response = client.post("/auth/sign-in", data={"csrf_token": token(client), "email": email})
    return int(response.status_code)


def test_sign_in_links_per_address_exactly_at_the_default_limit(auth_app: Any) -> None:
    outbox = auth_app.extensions["crm"].outbox
    client = auth_app.test_client()
    assert auth_app.config["CRM_SIGN_IN_LIMIT"] == 5
    assert [ask_link(client, "ann@example.com") for _ in range(5)] == [200] * 5
    assert ask_link(client, "ann@example.com") == 429
    assert len(outbox) == 5


def test_sign_in_links_per_ip_exactly_at_the_default_limit(auth_app: Any) -> None:
    outbox = auth_app.extensions["crm"].outbox
    client = auth_app.test_client()
    assert auth_app.config["CRM_SIGN_IN_IP_LIMIT"] == 20
    assert [ask_link(client, f"u{n}@example.com") for n in range(20)] == [200] * 20
    assert ask_link(client, "u20@example.com") == 429
    assert len(outbox) == 20


def operator(client: Any, password: str) -> int:
    data = {"csrf_token": token(client), "password": password}
    return int(client.post("/operator/sign-in", data=data).status_code)


def test_operator_sign_ins_exactly_at_the_default_limit(auth_app: Any) -> None:
    assert auth_app.config["CRM_OPERATOR_LIMIT"] == 10
    client = auth_app.test_client()
    # Nine failures leave room for the right password, which clears them.
    assert [operator(client, "wrong") for _ in range(9)] == [403] * 9
    assert operator(client, PASSWORD) == 303
    # Ten failures in a row: the limit is reached, even the right password is refused.
    other = auth_app.test_client()
    assert [operator(other, "wrong") for _ in range(10)] == [403] * 10
    assert operator(other, PASSWORD) == 429
    assert other.get("/operator/").status_code == 302  # not signed in


def test_a_sign_in_link_works_to_the_last_second_of_its_lifetime(
    auth_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    max_age = auth_app.config["CRM_SIGN_IN_MAX_AGE"]
    assert max_age == 900
    issued = int(time.time())
    signer = itsdangerous.timed.TimestampSigner
    monkeypatch.setattr(signer, "get_timestamp", lambda self: issued)
    client = auth_app.test_client()
    assert ask_link(client, "ann@example.com") == 200
    link = auth_app.extensions["crm"].outbox[-1].link
    path = link[link.index("/auth/verify") :]
    monkeypatch.setattr(signer, "get_timestamp", lambda self: issued + max_age + 1)
    expired = client.get(path)
    assert expired.status_code == 400 and "expired" in expired.get_data(as_text=True)
    monkeypatch.setattr(signer, "get_timestamp", lambda self: issued + max_age)
    page = client.get(path)
    assert page.status_code == 200
    form = re.search(r'name="token" value="([^"]+)"', page.get_data(as_text=True))
    assert form is not None
    confirmed = client.post("/auth/verify", data={"csrf_token": token(client), "token": form[1]})
    assert confirmed.status_code == 303
    assert auth_app.extensions["crm"].crm.find_customer("ann@example.com") is not None


def test_sessions_last_the_configured_days(auth_app: Any) -> None:
    client = auth_app.test_client()
    assert ask_link(client, "ann@example.com") == 200
    link = auth_app.extensions["crm"].outbox[-1].link
    page = client.get(link[link.index("/auth/verify") :]).get_data(as_text=True)
    form = re.search(r'name="token" value="([^"]+)"', page)
    assert form is not None
    signed = client.post("/auth/verify", data={"csrf_token": token(client), "token": form[1]})
    cookie = signed.headers["Set-Cookie"]
    expires = re.search(r"Expires=([^;]+)", cookie)
    assert expires is not None, cookie
    lifetime = email.utils.parsedate_to_datetime(expires[1]) - datetime.now(timezone.utc)
    assert timedelta(days=30) - timedelta(minutes=5) < lifetime <= timedelta(days=30)


def test_the_outbox_keeps_exactly_the_last_100_messages(auth_app: Any) -> None:
    server = auth_app.extensions["crm"]
    for n in range(101):
        server.mailer(MailMessage(f"u{n}@example.com", "s", "b", f"http://localhost/{n}"))
    assert len(server.outbox) == 100
    assert [m.to for m in server.outbox][:1] == ["u1@example.com"]
    assert server.outbox[-1].to == "u100@example.com"
