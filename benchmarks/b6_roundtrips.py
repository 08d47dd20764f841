"""B6: Elasticsearch/OpenSearch round trips (SPEC §10).

Counts the HTTP requests the store's client actually sends (at the connection pool):
GetCrmFields of four keys must be 1 request, SetCrmFields at most 2 (one search, one conditional
index), async writes must go out at least 100 per ``_bulk`` request on average (1,000 async
AddCrmFieldValue, then flush), and a B1m page (30 fields of 6 entities through a layout and
imported macros, `benchmarks.b1m_render`) rendered as the page server renders one — the session
customer's record, the entity-cache check and the page's compiled reads prefetched together
(`crm_templates.extension.prefetch_page`) — must be 1 request (issue 14). Runs against
``CRM_TEST_ELASTICSEARCH_URL`` when set, else an osmem-server started for the run. Reported
ratio = mean writes per ``_bulk`` / 100 (≥ 1 meets).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks.harness import quick_default, result
from crm_templates import Crm
from crm_templates.storage.elasticsearch import ElasticsearchStore

SLUG = "bench"


@contextmanager
def cluster_url() -> Iterator[str]:
    given = os.environ.get("CRM_TEST_ELASTICSEARCH_URL")
    if given:
        yield given
        return
    from osmem_server import OsmemServer

    server = OsmemServer.start(japanese=False)
    try:
        yield server.url.replace("http://", "opensearch://", 1)
    finally:
        server.close()


class Counter:
    """Wraps the store's connection pools and counts requests per path."""

    def __init__(self, store: ElasticsearchStore) -> None:
        self.sent: list[tuple[str, bytes]] = []
        for node in store.client.transport.node_pool.all():
            pool = node.pool  # type: ignore[attr-defined]
            pool.urlopen = self._wrap(pool.urlopen)

    def _wrap(self, urlopen: Callable[..., Any]) -> Callable[..., Any]:
        def counted(method: str, url: str, body: Any = None, **kw: Any) -> Any:
            self.sent.append((url.split("?")[0], body or b""))
            return urlopen(method, url, body=body, **kw)

        return counted

    def measure(self, fn: Callable[[], Any]) -> list[tuple[str, bytes]]:
        self.sent.clear()
        fn()
        return list(self.sent)


def b1m_page_requests(crm: Crm, counter: Counter) -> int:
    """HTTP requests of one warm B1m page render for a customer, as the page server renders
    it (`crm_templates.server.pages`)."""
    import tempfile
    from pathlib import Path

    from jinja2 import FileSystemLoader
    from jinja2.sandbox import SandboxedEnvironment

    from benchmarks import b1m_render
    from crm_templates import CrmExtension
    from crm_templates.extension import fold_entity_refresh, prefetch_page

    for slug, keys in b1m_render.ENTITIES.items():
        crm.ensure_entity(slug=slug, entityMode="data", fields=[{"key": k} for k in keys])
    customer = crm.create_customer()
    view = crm.bind(customer.id)
    for slug, keys in b1m_render.ENTITIES.items():
        view.set_fields(slug=slug, fields={k: f"{slug}:{k}" for k in keys})
    with tempfile.TemporaryDirectory() as folder:
        for name, source in b1m_render.templates().items():
            (Path(folder) / name).write_text(source, encoding="utf-8")
        env = SandboxedEnvironment(
            loader=FileSystemLoader(folder), extensions=[CrmExtension], autoescape=True
        )
        env.install_crm(crm)  # type: ignore[attr-defined]

        def page() -> str:
            template = env.get_template("page.html")
            prefetched = prefetch_page(template, crm, customer.id)
            assert prefetched.customer == customer
            with fold_entity_refresh(prefetched):
                return template.render(customer_id=customer.id, customer=prefetched.customer)

        page()  # compile, cache the definitions
        sent = counter.measure(page)
        html = page()
        if any(f"{slug}:{k}" not in html for slug, keys in b1m_render.ENTITIES.items()
               for k in keys):  # fmt: skip
            raise AssertionError("B6: the B1m page misses values; the benchmark is broken")
    return len(sent)


def run(quick: bool = False) -> dict[str, Any]:
    writes = 300 if quick else 1000
    with cluster_url() as url:
        store = ElasticsearchStore.from_url(url, prefix=f"b6{uuid.uuid4().hex[:8]}_")
        try:
            crm = Crm(store)
            crm.ensure_entity(
                slug=SLUG, fields=[{"key": k, "type": "number"} for k in ("a", "b", "c", "d")]
            )
            ann = crm.bind("cus_bench")
            ann.set_fields(slug=SLUG, fields={"a": 1, "b": 2})  # warm caches, create the entry
            counter = Counter(store)
            keys = ["a", "b", "c", "d"]
            get_n = len(counter.measure(lambda: ann.get_fields(slug=SLUG, fieldKeys=keys)))
            set_n = len(counter.measure(lambda: ann.set_fields(slug=SLUG, fields={"c": 3})))

            def async_adds() -> None:
                for n in range(writes):
                    ann.add_field_value(slug=SLUG, fieldKey="d", value=n, **{"async": True})
                crm.flush()

            bulks = [b for path, b in counter.measure(async_adds) if path == "/_bulk"]
            per_bulk = [body.count(b"\n") // 2 for body in bulks]
            mean = sum(per_bulk) / max(len(per_bulk), 1)
            page_n = b1m_page_requests(crm, counter)
            ok = get_n == 1 and set_n <= 2 and mean >= 100 and page_n == 1
            return result(
                "B6",
                f"ES round trips: GetCrmFields {get_n}, SetCrmFields {set_n}, "
                f"async {mean:.0f} writes/_bulk, B1m page {page_n}",
                mean / 100,
                "GetCrmFields 1, SetCrmFields ≤ 2, ≥ 100 writes/_bulk, B1m page 1",
                ok,
                bulks=len(bulks),
                smallest_bulk=min(per_bulk, default=0),
            )
        finally:
            store.client.options(ignore_status=404).indices.delete(
                index=",".join(store.indices.values())
            )
            store.close()


if __name__ == "__main__":
    print(run(quick_default() or "--quick" in sys.argv))
