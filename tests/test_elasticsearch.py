"""The Elasticsearch/OpenSearch backend itself: URLs, mappings, errors, wire format, B6 counts.

The behaviour every backend shares is in test_store_contract.py / test_service.py; these tests
are about what only this backend has. Round trips are counted at the HTTP connection pool, i.e.
requests actually sent, not client calls.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from crm_templates import Crm
from crm_templates.errors import (
    BadRequestError,
    ConflictError,
    CrmValidationError,
    DuplicateError,
    EntryNotFoundError,
    StoreError,
    StoreUnavailable,
)
from crm_templates.model import Entry, replace
from crm_templates.storage import open_store
from crm_templates.storage.elasticsearch import (
    ClusterURL,
    ElasticsearchStore,
    OpenSearchNode,
)

SLUG = "tracker"


class Wire:
    """Records every HTTP request the store's client sends (method, path, headers, body)."""

    def __init__(self, store: ElasticsearchStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes | None]] = []
        for node in store.client.transport.node_pool.all():
            pool = node.pool  # type: ignore[attr-defined]
            monkeypatch.setattr(pool, "urlopen", self._recording(pool.urlopen))

    def _recording(self, urlopen: Callable[..., Any]) -> Callable[..., Any]:
        def record(method: str, url: str, body: Any = None, headers: Any = None, **kw: Any) -> Any:
            self.requests.append((method, url, dict(headers or {}), body))
            return urlopen(method, url, body=body, headers=headers, **kw)

        return record

    def paths(self) -> list[str]:
        return [url.split("?")[0] for _, url, _, _ in self.requests]

    def clear(self) -> None:
        self.requests.clear()


@pytest.fixture
def es_store(search_store_factory: Callable[..., ElasticsearchStore]) -> ElasticsearchStore:
    """A fresh store on the test cluster under its own index prefix."""
    return search_store_factory()


@pytest.fixture
def es_crm(es_store: ElasticsearchStore) -> Iterator[Crm]:
    """A Crm over the search store with a tracker entity, bound to customer cus_1."""
    crm = Crm(es_store)
    crm.ensure_entity(
        slug=SLUG,
        fields=[
            {"key": "weight", "type": "number"},
            {"key": "goal", "type": "number"},
            {"key": "note", "type": "text"},
            {"key": "done", "type": "boolean"},
        ],
    )
    try:
        yield crm.bind("cus_1")
    finally:
        crm.flush()


def entry(entry_id: str, values: dict[str, Any], *, entity: str = SLUG, ref: str = "r1") -> Entry:
    stamp = f"2024-01-01T00:00:00.{int(entry_id[1:]):06d}Z"  # e<n>: created in n order
    return Entry(
        id=entry_id,
        entity=entity,
        reference_type="customer",
        reference_id=ref,
        values=values,
        created_at=stamp,
        updated_at=stamp,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "opensearch"),
    [
        ("elasticsearch://es.local:9201", "http", "es.local", 9201, False),
        ("elasticsearch+https://es.local", "https", "es.local", 9200, False),
        ("opensearch://os.local:9200", "http", "os.local", 9200, True),
        ("opensearch+https://os.local:443", "https", "os.local", 443, True),
        ("http://localhost:9200", "http", "localhost", 9200, False),
        ("https://cloud.example.com", "https", "cloud.example.com", 9200, False),
    ],
)
def test_url_schemes(url: str, scheme: str, host: str, port: int, opensearch: bool) -> None:
    target = ClusterURL.parse(url)
    assert (target.host["scheme"], target.host["host"], target.host["port"]) == (
        scheme,
        host,
        port,
    )
    assert target.opensearch is opensearch
    assert (target.client_args.get("node_class") is OpenSearchNode) is opensearch
    assert target.prefix == "crm_"


def test_url_auth_tls_and_prefix() -> None:
    target = ClusterURL.parse(
        "opensearch+https://ad%40min:p%3Ass@os.local:9200/search/"
        "?prefix=shop_&verify_certs=false&ca_certs=/etc/ca.pem&refresh=wait_for"
    )
    assert target.client_args["basic_auth"] == ("ad@min", "p:ss")
    assert target.client_args["verify_certs"] is False
    assert target.client_args["ca_certs"] == "/etc/ca.pem"
    assert target.host["path_prefix"] == "/search"
    assert (target.prefix, target.refresh) == ("shop_", "wait_for")
    assert "p:ss" not in target.url and "ad@min" not in target.url
    assert target.url == "opensearch+https://os.local:9200/search?prefix=shop_"


def test_url_options_as_keywords_override_the_query() -> None:
    target = ClusterURL.parse("elasticsearch://h?prefix=a_", prefix="b_", api_key="id:key")
    assert target.prefix == "b_"
    assert target.client_args["api_key"] == "id:key"
    client = target.client()
    try:
        assert client._headers["authorization"].startswith("ApiKey ")
    finally:
        client.close()


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("ftp://h", {}, "not an Elasticsearch/OpenSearch URL"),
        ("opensearch://", {}, "names no host"),
        ("opensearch://h:notaport", {}, "bad port"),
        ("opensearch://h?prefx=a_", {}, "unknown Elasticsearch store option(s) 'prefx'"),
        ("opensearch://h", {"request_timeout": "soon"}, "request_timeout must be a number"),
        ("opensearch://u:p@h?api_key=k", {}, "not both"),
        ("opensearch://h?verify_certs=false", {}, "need TLS"),
    ],
)
def test_bad_urls(url: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(CrmValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ClusterURL.parse(url, **options)


def test_bad_prefix_is_refused_before_connecting() -> None:
    with pytest.raises(CrmValidationError, match="index prefix"):
        ElasticsearchStore.from_url(f"opensearch://127.0.0.1:{free_port()}?prefix=Bad_")


# --- startup and error translation ----------------------------------------------------------


def test_unreachable_cluster_fails_fast_with_a_hint() -> None:
    url = f"opensearch://127.0.0.1:{free_port()}"
    with pytest.raises(
        StoreUnavailable, match=r"is the cluster running at opensearch://127\.0\.0\.1"
    ):
        open_store(url)


def test_elasticsearch_scheme_on_an_opensearch_server_says_what_to_use(search_url: str) -> None:
    if not search_url.startswith("opensearch"):
        pytest.skip("the test cluster is not OpenSearch")
    url = search_url.replace("opensearch", "elasticsearch", 1)
    with pytest.raises(StoreError, match="opensearch://"):
        ElasticsearchStore.from_url(url, prefix="never_")


def test_conflicts_are_translated(es_store: ElasticsearchStore) -> None:
    e = entry("e001", {"weight": 1.0})
    es_store.insert_entries([e])
    with pytest.raises(DuplicateError):
        es_store.insert_entries([replace(e, values={"weight": 2.0})])
    updated = es_store.update_entry(replace(e, values={"weight": 3.0}), 1)
    assert updated.version == 2
    with pytest.raises(ConflictError):
        es_store.update_entry(replace(e, values={"weight": 4.0}), 1)
    with pytest.raises(EntryNotFoundError):
        es_store.update_entry(entry("e999", {}), 1)
    assert es_store.get_entry("e001").values == {"weight": 3.0}  # type: ignore[union-attr]


def test_a_write_from_another_process_is_a_conflict(
    es_store: ElasticsearchStore, search_store_factory: Callable[..., ElasticsearchStore]
) -> None:
    """Another store (another server process) wins the race: the remembered seq_no is refused."""
    other = search_store_factory(prefix=es_store.prefix)
    es_store.insert_entries([entry("e001", {"weight": 1.0})])
    mine = es_store.find_entries(SLUG)[0]  # remembers the seq_no of version 1
    theirs = other.get_entry("e001")
    assert theirs is not None
    other.update_entry(replace(theirs, values={"weight": 2.0}), 1)
    with pytest.raises(ConflictError):
        es_store.update_entry(replace(mine, values={"weight": 5.0}), 1)
    assert es_store.get_entry("e001").values == {"weight": 2.0}  # type: ignore[union-attr]


def test_a_malformed_request_is_a_bad_request(es_store: ElasticsearchStore) -> None:
    with pytest.raises(BadRequestError), es_store._translate("a bad search"):
        es_store.client.search(index=es_store.indices["entries"], query={"no_such_query": {}})


def test_duplicate_entity_and_customer_email(es_store: ElasticsearchStore) -> None:
    from crm_templates.model import Customer, Entity

    entity = Entity(id="ent_1", slug="x", name="x", singular_name="x", plural_name="xs")
    es_store.create_entity(entity)
    with pytest.raises(DuplicateError):
        es_store.create_entity(entity)
    es_store.create_customer(Customer(id="c1", email="a@example.com", created_at="1"))
    with pytest.raises(DuplicateError):
        es_store.create_customer(Customer(id="c2", email="a@example.com", created_at="2"))
    with pytest.raises(DuplicateError):  # the same id again must not free c1's address
        es_store.create_customer(Customer(id="c1", email="a@example.com", created_at="9"))
    with pytest.raises(DuplicateError):
        es_store.create_customer(Customer(id="c4", email="a@example.com", created_at="4"))
    es_store.create_customer(Customer(id="c3", email="b@example.com", created_at="3"))
    with pytest.raises(DuplicateError):
        es_store.update_customer(Customer(id="c3", email="a@example.com"))
    # Moving c1 to a new address frees the old one.
    es_store.update_customer(Customer(id="c1", email="new@example.com"))
    es_store.update_customer(Customer(id="c3", email="a@example.com"))
    assert es_store.get_customer_by_email("a@example.com").id == "c3"  # type: ignore[union-attr]
    assert es_store.get_customer("c1").created_at == "1"  # type: ignore[union-attr]
    assert es_store.count_customers() == 2


# --- mappings -------------------------------------------------------------------------------


def test_same_key_with_different_types_never_conflicts(es_store: ElasticsearchStore) -> None:
    crm = Crm(es_store)
    crm.ensure_entity(slug="a", fields=[{"key": "size", "type": "number"}])
    crm.ensure_entity(slug="b", fields=[{"key": "size", "type": "text"}])
    crm.ensure_entity(slug="c", fields=[{"key": "size", "type": "json"}])
    crm.set_field(slug="a", fieldKey="size", value=42, referenceId="r")
    crm.set_field(slug="b", fieldKey="size", value="large", referenceId="r")
    crm.set_field(slug="c", fieldKey="size", value={"w": [1, "x", None]}, referenceId="r")
    assert crm.get_field(slug="a", fieldKey="size", referenceId="r") == 42.0
    assert crm.get_field(slug="b", fieldKey="size", referenceId="r") == "large"
    assert crm.get_field(slug="c", fieldKey="size", referenceId="r") == {"w": [1, "x", None]}

    mapping = es_store.client.indices.get_mapping(index=es_store.indices["entries"])
    props = next(iter(mapping.body.values()))["mappings"]
    assert props["dynamic"] == "strict"
    assert "size" not in json.dumps(props), "a value key leaked into the mapping"
    assert set(props["properties"]["kv"]["properties"]) == {"k", "s", "n", "b"}


def test_typed_values_can_be_filtered_and_aggregated(es_crm: Crm) -> None:
    """The `kv` copy serves numeric range filters and per-key aggregations."""
    for w in (70, 80, 90):
        es_crm.add_field_value(slug=SLUG, fieldKey="weight", value=w)
    es_crm.add_field_value(slug=SLUG, fieldKey="note", value="x" * 5000)  # too long to index
    store = es_crm.store
    assert isinstance(store, ElasticsearchStore)
    resp = store.client.search(
        index=store.indices["entries"],
        size=0,
        query={"nested": {"path": "kv", "query": {"range": {"kv.n": {"gte": 75}}}}},
        aggs={
            "kv": {
                "nested": {"path": "kv"},
                "aggs": {
                    "weight": {
                        "filter": {"term": {"kv.k": "weight"}},
                        "aggs": {"avg": {"avg": {"field": "kv.n"}}},
                    }
                },
            }
        },
    )
    assert resp["hits"]["total"]["value"] == 2
    assert resp["aggregations"]["kv"]["weight"]["avg"]["value"] == 85.0
    assert es_crm.get_field(slug=SLUG, fieldKey="note") == "x" * 5000


# --- wire format ----------------------------------------------------------------------------


def test_opensearch_scheme_sends_plain_json(
    es_crm: Crm, monkeypatch: pytest.MonkeyPatch, search_url: str
) -> None:
    if not search_url.startswith("opensearch"):
        pytest.skip("the test cluster is not reached through opensearch://")
    store = es_crm.store
    assert isinstance(store, ElasticsearchStore)
    wire = Wire(store, monkeypatch)
    es_crm.set_fields(slug=SLUG, fields={"weight": 80, "goal": 75})
    es_crm.get_fields(slug=SLUG, fieldKeys=["weight", "goal"])
    with store.batch():
        es_crm.add_field_value(slug=SLUG, fieldKey="weight", value=81)
    sent = {
        (name.lower(), value)
        for _, _, headers, _ in wire.requests
        for name, value in headers.items()
        if name.lower() in ("accept", "content-type")
    }
    assert sent, "no requests were recorded"
    assert not [v for _, v in sent if "vnd.elasticsearch" in v], sent
    assert ("content-type", "application/x-ndjson") in sent  # _bulk and _msearch
    assert ("content-type", "application/json") in sent


class _NoProductHeader(BaseHTTPRequestHandler):
    """A minimal OpenSearch look-alike that, like OpenSearch, sends no X-Elastic-Product."""

    seen: list[dict[str, str]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        if self.path.split("?")[0] == "/":
            body: dict[str, Any] = {"version": {"distribution": "opensearch", "number": "2.19.0"}}
        else:
            body = {"acknowledged": True}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json; charset=UTF-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_HEAD = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def no_product_server() -> Iterator[str]:
    """A loopback HTTP server answering like OpenSearch (no product header); yields host:port."""
    _NoProductHeader.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoProductHeader)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_opensearch_without_product_header_is_accepted(no_product_server: str) -> None:
    store = ElasticsearchStore.from_url(f"opensearch://{no_product_server}")
    store.close()
    seen = _NoProductHeader.seen
    assert len(seen) == 1 + len(store.indices)  # info + one create per index
    for headers in seen:
        assert "vnd.elasticsearch" not in headers.get("accept", "")
        assert "vnd.elasticsearch" not in headers.get("content-type", "")
    assert seen[1]["content-type"] == "application/json"


def test_elasticsearch_scheme_refuses_a_server_without_product_header(
    no_product_server: str,
) -> None:
    with pytest.raises(StoreError, match=r"not Elasticsearch.*opensearch://"):
        ElasticsearchStore.from_url(f"elasticsearch://{no_product_server}")


# --- B6: round trips ------------------------------------------------------------------------


def test_b6_get_crm_fields_is_one_request(es_crm: Crm, monkeypatch: pytest.MonkeyPatch) -> None:
    es_crm.set_fields(slug=SLUG, fields={"weight": 80, "goal": 75})
    es_crm.add_field_value(slug=SLUG, fieldKey="note", value="hi")
    es_crm.get_fields(slug=SLUG, fieldKeys=["weight"])  # warm the service's entity cache
    store = es_crm.store
    assert isinstance(store, ElasticsearchStore)
    wire = Wire(store, monkeypatch)
    got = es_crm.get_fields(slug=SLUG, fieldKeys=["weight", "goal", "note", "done"])
    assert got == {"weight": 80.0, "goal": 75.0, "note": "hi", "done": None}
    assert wire.paths() == ["/_msearch"]


def test_b6_set_crm_fields_is_at_most_two_requests(
    es_crm: Crm, monkeypatch: pytest.MonkeyPatch
) -> None:
    es_crm.get_fields(slug=SLUG, fieldKeys=["weight"])  # warm the service's entity cache
    store = es_crm.store
    assert isinstance(store, ElasticsearchStore)
    wire = Wire(store, monkeypatch)
    es_crm.set_fields(slug=SLUG, fields={"weight": 80})  # creates the entry
    assert len(wire.requests) <= 2, wire.paths()
    for n in range(5):  # updates it: one search + one conditional index
        wire.clear()
        es_crm.set_fields(slug=SLUG, fields={"weight": 81 + n, "goal": 70})
        assert len(wire.requests) <= 2, wire.paths()
        assert "if_seq_no=" in wire.requests[-1][1]
    assert es_crm.get_fields(slug=SLUG, fieldKeys=["weight", "goal"]) == {
        "weight": 85.0,
        "goal": 70.0,
    }


def test_b6_async_writes_go_out_at_least_100_per_bulk(
    es_crm: Crm, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = es_crm.store
    assert isinstance(store, ElasticsearchStore)
    es_crm.get_fields(slug=SLUG, fieldKeys=["weight"])  # warm the service's entity cache
    wire = Wire(store, monkeypatch)
    for n in range(1000):
        es_crm.add_field_value(slug=SLUG, fieldKey="weight", value=n, **{"async": True})
    assert es_crm.flush(timeout=120)
    assert es_crm.failed_writes == []
    bulks = [body for m, url, _, body in wire.requests if url.split("?")[0] == "/_bulk"]
    items = [(body or b"").count(b"\n") // 2 for body in bulks]
    assert sum(items) == 1000
    print(f"B6 async: {len(bulks)} _bulk requests for 1000 writes, items per bulk {items}")
    # The writer lingers briefly to fill batches, so even the first bulk carries ≥ 100 writes.
    assert min(items) >= 100, items
    assert wire.paths().count("/_bulk") == len(wire.requests), "async adds only bulk"
    assert store.count_entries(SLUG, "customer", "cus_1") == 1000


@pytest.mark.parametrize("refresh", ["true", "wait_for"])
def test_read_your_writes_after_a_sync_write(
    search_store_factory: Callable[..., ElasticsearchStore], refresh: str
) -> None:
    crm = Crm(search_store_factory(refresh=refresh)).bind("cus_1")
    crm.ensure_entity(slug=SLUG, fields=[{"key": "weight", "type": "number"}])
    for n in range(5 if refresh == "wait_for" else 20):
        crm.set_field(slug=SLUG, fieldKey="weight", value=n)
        assert crm.get_field(slug=SLUG, fieldKey="weight") == float(n)
        crm.add_field_value(slug=SLUG, fieldKey="weight", value=-n)
        assert crm.get_field_values(slug=SLUG, fieldKey="weight", limit=1) == [float(-n)]


# --- batches --------------------------------------------------------------------------------


def test_batch_is_one_bulk_and_reads_see_its_writes(
    es_store: ElasticsearchStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    es_store.insert_entries([entry("e001", {"weight": 1.0}), entry("e002", {"note": "a"})])
    wire = Wire(es_store, monkeypatch)
    with es_store.batch():
        es_store.insert_entries([entry("e003", {"weight": 3.0})])
        old = es_store.get_entry("e002")
        assert old is not None
        es_store.update_entry(replace(old, values={"note": "b", "weight": 2.0}), old.version)
        assert es_store.delete_entry("e001") is True
        assert es_store.delete_entry("e001") is False
        assert [e.id for e in es_store.find_entries(SLUG)] == ["e003", "e002"]
        assert [e.id for e in es_store.find_entries(SLUG, has_key="note")] == ["e002"]
        assert es_store.latest_values(SLUG, "customer", "r1", ["weight", "note"]) == {
            "weight": 3.0,
            "note": "b",
        }
        assert es_store.count_entries(SLUG) == 2
        assert set(es_store.get_entries_by_ids(["e001", "e002", "e003"])) == {"e002", "e003"}
        assert "/_bulk" not in wire.paths()
    assert wire.paths().count("/_bulk") == 1
    assert [e.id for e in es_store.find_entries(SLUG)] == ["e003", "e002"]
    assert es_store.get_entry("e002").version == 2  # type: ignore[union-attr]


def test_a_failing_batch_sends_nothing(es_store: ElasticsearchStore) -> None:
    with pytest.raises(RuntimeError), es_store.batch():
        es_store.insert_entries([entry("e001", {"weight": 1.0})])
        raise RuntimeError("boom")
    assert es_store.count_entries() == 0


def test_batch_delete_entries_and_reinsert(es_store: ElasticsearchStore) -> None:
    es_store.insert_entries([entry("e001", {"weight": 1.0}), entry("e002", {"weight": 2.0})])
    with es_store.batch():
        es_store.insert_entries([entry("e003", {"weight": 3.0})])
        assert es_store.delete_entries(SLUG, "customer", "r1") == 3
        assert es_store.find_entries(SLUG) == []
        es_store.insert_entries([entry("e002", {"weight": 9.0})])
    assert [(e.id, e.values) for e in es_store.find_entries(SLUG)] == [("e002", {"weight": 9.0})]


def test_a_conflicting_bulk_item_raises_conflict(
    es_store: ElasticsearchStore, search_store_factory: Callable[..., ElasticsearchStore]
) -> None:
    other = search_store_factory(prefix=es_store.prefix)
    es_store.insert_entries([entry("e001", {"weight": 1.0})])
    with pytest.raises(ConflictError), es_store.batch():
        mine = es_store.find_entries(SLUG)[0]
        es_store.update_entry(replace(mine, values={"weight": 5.0}), 1)
        es_store.insert_entries([entry("e002", {"weight": 2.0})])
        theirs = other.get_entry("e001")
        assert theirs is not None
        other.update_entry(replace(theirs, values={"weight": 7.0}), 1)
    # Not a transaction: the insert landed, the stale update did not.
    assert es_store.get_entry("e001").values == {"weight": 7.0}  # type: ignore[union-attr]
    assert es_store.get_entry("e002") is not None


def test_replayed_inserts_of_identical_entries_count_as_done(es_store: ElasticsearchStore) -> None:
    e = entry("e001", {"weight": 1.0})
    es_store.insert_entries([e])
    with es_store.batch():
        es_store.insert_entries([e])
    es_store.insert_entries([e])
    assert es_store.count_entries() == 1


def test_find_entries_pages_past_the_result_window(es_store: ElasticsearchStore) -> None:
    es_store.insert_entries([entry(f"e{n:04d}", {"n": n}) for n in range(1200)])
    assert len(es_store.find_entries(SLUG, limit=None)) == 1200
    page = es_store.find_entries(SLUG, limit=5, offset=1100)
    assert [e.values["n"] for e in page] == [99, 98, 97, 96, 95]
    assert [e.id for e in es_store.iter_entries(SLUG, batch_size=500)][:2] == ["e0000", "e0001"]


def test_a_stale_email_claim_is_taken_over(es_store: ElasticsearchStore) -> None:
    """A claim left by a crash between claiming and writing the customer does not block."""
    from crm_templates.model import Customer

    claims = es_store.indices["customer_emails"]
    es_store.client.index(
        index=claims,
        id="a@example.com",
        document={"customer_id": "gone", "claimed_at": "2020-01-01T00:00:00.000000Z"},
        refresh=True,
    )
    es_store.create_customer(Customer(id="c1", email="a@example.com", created_at="1"))
    assert es_store.get_customer_by_email("a@example.com").id == "c1"  # type: ignore[union-attr]
    fresh = {"customer_id": "busy", "claimed_at": "9999-01-01T00:00:00.000000Z"}
    es_store.client.index(index=claims, id="b@example.com", document=fresh, refresh=True)
    with pytest.raises(DuplicateError):  # a fresh claim may be a create still in flight
        es_store.create_customer(Customer(id="c2", email="b@example.com", created_at="2"))
