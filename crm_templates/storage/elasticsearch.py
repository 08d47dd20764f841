"""The Elasticsearch / OpenSearch backend (scale-out), on the official ``elasticsearch`` client.

Layout: ``<prefix>entries``, ``<prefix>entities``, ``<prefix>customers``,
``<prefix>customer_emails`` (the uniqueness claims for customer emails), ``<prefix>security``
(used tokens, rate-limit hits and session generations; see `elasticsearch_security`) and
``<prefix>stage_history`` (see `history`), each
created with a strict mapping when the store opens and finds it missing (so a cluster from an
earlier version gains new indices on open). An entry's values are kept twice: ``values`` exactly
as written (an object with ``enabled: false``: stored, never mapped) and, for filtering and
aggregation, ``keys`` (the keys present, for ``has_key``) plus ``kv``, a ``nested`` list of
``{k, s, n, b}`` — key, string, number and boolean parts. No field is ever named after a value
key, so two entities using one key with different types can never collide in the mapping.

Consistency: every synchronous write refreshes (``refresh=true`` by default, ``?refresh=wait_for``
on busy clusters), so it is visible to the next search. Compare-and-set uses ``if_seq_no`` /
``if_primary_term``: each read remembers the ``(seq_no, primary_term)`` it saw for an
``(id, version)``, so a read-modify-write is one search plus one conditional index; within one
process `atomic()` also serialises such sections, so only other processes can conflict. ``batch()``
buffers the async writer's writes and sends them as one ``_bulk`` request; reads inside the batch
merge the buffer into the results.

The client is imported only here; its errors become the core's in `_translate` / `_error`.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import elastic_transport
from elastic_transport import HttpHeaders, Urllib3HttpNode
from elastic_transport._node import NodeApiResponse
from elastic_transport.client_utils import DEFAULT, DefaultType
from elasticsearch import ApiError, Elasticsearch, UnsupportedProductError

from ..conflicts import DEFAULT_DEADLINE, parse_deadline, retrying
from ..errors import (
    BadRequestError,
    ConflictError,
    CrmValidationError,
    DuplicateError,
    EntryNotFoundError,
    StoreError,
    StoreUnavailable,
)
from ..ids import utc_now
from ..model import (
    Customer,
    Entity,
    Entry,
    customer_from_dict,
    customer_to_dict,
    entity_from_dict,
    entity_to_dict,
    entry_from_dict,
    entry_to_dict,
)
from .api_keys import MAPPING as _API_KEYS_MAPPING
from .api_keys import ElasticsearchApiKeys
from .audit import MAPPING as _AUDIT_MAPPING
from .audit import ElasticsearchAudit
from .base import Store, not_text
from .boards import ElasticsearchBoards
from .conditional_delete import ElasticsearchConditionalDelete
from .elasticsearch_aggregations import STRING_PART, SearchAggregations
from .elasticsearch_security import MAPPING as _SECURITY_MAPPING
from .elasticsearch_security import SecurityIndex
from .entity_queries import ElasticsearchEntityQueries
from .history import ES_MAPPING as _HISTORY_MAPPING
from .history import ElasticsearchStageHistory
from .listing import ElasticsearchListing
from .operators import MAPPING as _OPERATORS_MAPPING
from .operators import ElasticsearchOperators
from .prefetch import ElasticsearchPrefetch
from .session_state import ElasticsearchSessionState
from .webhooks import DELIVERIES_MAPPING, ENDPOINTS_MAPPING, ElasticsearchWebhooks

DEFAULT_PREFIX = "crm_"
_SCHEMES: dict[str, tuple[str, bool]] = {  # URL scheme -> (HTTP scheme, speaks OpenSearch)
    "elasticsearch": ("http", False),
    "elasticsearch+https": ("https", False),
    "opensearch": ("http", True),
    "opensearch+https": ("https", True),
    "http": ("http", False),
    "https": ("https", False),
}
_URL_OPTIONS = (
    "prefix",
    "verify_certs",
    "ca_certs",
    "api_key",
    "request_timeout",
    "refresh",
    "conflict_deadline",
)
_PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")  # index names: lower case, no leading _ - +
_WINDOW = 10_000  # index.max_result_window: from + size beyond it needs search_after
_PAGE = 1_000
_MAX_TERM_CHARS = 1024  # longer strings stay in `values` only (Lucene terms are <= 32 KB)
_CLAIM_GRACE = timedelta(seconds=60)
# Entries are read with their whole _source (the index-only copies `keys` and `kv` come along
# and are ignored): source filtering re-parses the document and turns a value's dotted JSON
# keys into nested objects ({"a.b": 1} came back as {"a": {"b": 1}}; issue 9).
_NEWEST = [{"created_at": "desc"}, {"id": "desc"}]
_OLDEST = [{"created_at": "asc"}, {"id": "asc"}]

_KEYWORD = {"type": "keyword"}
_MAPPINGS: dict[str, dict[str, Any]] = {
    "entries": {
        "dynamic": "strict",
        "properties": {
            "id": _KEYWORD,
            "entity": _KEYWORD,
            "reference_type": _KEYWORD,
            "reference_id": _KEYWORD,
            "title": {"type": "keyword", "ignore_above": _MAX_TERM_CHARS},
            "pipeline_id": _KEYWORD,
            "stage_id": _KEYWORD,
            # ISO 8601 UTC with microseconds sorts correctly as a keyword, and keeps the
            # microseconds a `date` field would drop; `id` breaks ties.
            "created_at": _KEYWORD,
            "updated_at": _KEYWORD,
            "version": {"type": "long"},
            "values": {"type": "object", "enabled": False},
            "keys": _KEYWORD,
            "kv": {
                "type": "nested",
                "properties": {
                    "k": _KEYWORD,
                    "s": STRING_PART,  # + a `date` sub-field for date aggregations
                    "n": {"type": "double"},
                    "b": {"type": "boolean"},
                },
            },
        },
    },
    "entities": {
        "dynamic": "strict",
        "properties": {
            "slug": _KEYWORD,
            "version": {"type": "long"},
            "data": {"type": "object", "enabled": False},
        },
    },
    "customers": {
        "dynamic": "strict",
        "properties": {
            "id": _KEYWORD,
            "email": _KEYWORD,
            "first_name": _KEYWORD,
            "last_name": _KEYWORD,
            "created_at": _KEYWORD,
        },
    },
    "customer_emails": {
        "dynamic": "strict",
        "properties": {"customer_id": _KEYWORD, "claimed_at": _KEYWORD},
    },
    "security": _SECURITY_MAPPING,
    "stage_history": _HISTORY_MAPPING,
    "operators": _OPERATORS_MAPPING,
    "audit": _AUDIT_MAPPING,
    "api_keys": _API_KEYS_MAPPING,
    "webhook_endpoints": ENDPOINTS_MAPPING,
    "webhook_deliveries": DELIVERIES_MAPPING,
}

_VENDOR_MEDIA_TYPE = re.compile(
    r"application/vnd\.elasticsearch\+([a-z0-9-]+)(?:\s*;\s*compatible-with=\d+)?"
)


class OpenSearchNode(Urllib3HttpNode):
    """The HTTP node for ``opensearch://``: plain JSON on the wire, no Elasticsearch product check.

    elasticsearch-py 9 sends ``application/vnd.elasticsearch+json; compatible-with=9``, which
    OpenSearch refuses with 406, and refuses 2xx responses lacking ``X-Elastic-Product:
    Elasticsearch``, which OpenSearch never sends. The node class is the client's extension
    point for the wire, so both are handled here: media types become ``application/json`` /
    ``application/x-ndjson``, and the scheme — the operator's statement that the cluster is
    OpenSearch — stands in for the product header.
    """

    def perform_request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: HttpHeaders | None = None,
        request_timeout: DefaultType | float | None = DEFAULT,
    ) -> NodeApiResponse:
        if headers:
            headers = HttpHeaders(
                {
                    name: _VENDOR_MEDIA_TYPE.sub(r"application/\1", value)
                    if name.lower() in ("accept", "content-type")
                    else value
                    for name, value in headers.items()
                }
            )
        response = super().perform_request(
            method, target, body=body, headers=headers, request_timeout=request_timeout
        )
        if "x-elastic-product" not in response.meta.headers:
            response.meta.headers["x-elastic-product"] = "Elasticsearch"
        return response


# --- documents ------------------------------------------------------------------------------


def _value_parts(value: Any) -> dict[str, list[Any]]:
    """The string/number/boolean parts of a value (lists contribute every item)."""
    parts: dict[str, list[Any]] = {"s": [], "n": [], "b": []}
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, bool):
            parts["b"].append(item)
        elif isinstance(item, int | float):
            try:
                number = float(item)
            except OverflowError:  # a huge int inside a json value: not indexable as a double
                continue
            if math.isfinite(number):
                parts["n"].append(number)
        elif isinstance(item, str):
            parts["s"].append(item)
        # null, objects and nested lists are kept in `values` only
    return {name: items for name, items in parts.items() if items}


def _entry_doc(entry: Entry) -> dict[str, Any]:
    doc = entry_to_dict(entry)
    del doc["values_flat"]  # a template-facing alias, not stored
    doc["keys"] = list(entry.values)
    doc["kv"] = [{"k": key, **_value_parts(value)} for key, value in entry.values.items()]
    return doc


def _entity_doc(entity: Entity) -> dict[str, Any]:
    return {"slug": entity.slug, "version": entity.version, "data": entity_to_dict(entity)}


def _entry_filters(
    entity: str | None,
    reference_type: str | None,
    reference_id: str | None,
    has_key: str | None = None,
) -> list[dict[str, Any]]:
    pairs = (
        ("entity", entity),
        ("reference_type", reference_type),
        ("reference_id", reference_id),
        ("keys", has_key),
    )
    return [{"term": {name: value}} for name, value in pairs if value is not None]


def _query(filters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"bool": {"filter": filters}} if filters else {"match_all": {}}


def _matches(
    entry: Entry,
    entity: str | None,
    reference_type: str | None,
    reference_id: str | None,
    has_key: str | None = None,
) -> bool:
    """The Python twin of `_entry_filters`, for documents buffered in a batch."""
    return (
        (entity is None or entry.entity == entity)
        and (reference_type is None or entry.reference_type == reference_type)
        and (reference_id is None or entry.reference_id == reference_id)
        and (has_key is None or has_key in entry.values)
    )


def _newest_first(entries: list[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: (e.created_at, e.id), reverse=True)


@dataclass(frozen=True)
class _Pending:
    """A buffered write of one entry: its final state in the batch and its precondition."""

    entry: Entry | None  # None: deleted in this batch
    create: bool  # the id did not exist before the batch: a `create` op
    seq: tuple[int, int] | None  # the (seq_no, primary_term) the batch's first change read


class _SeqCache:
    """``(index, id, version) -> (seq_no, primary_term)`` as last read, bounded (LRU).

    A stale entry is harmless: a conditional write with an outdated seq_no is refused by the
    cluster, and the store then re-reads.
    """

    def __init__(self, size: int = 50_000) -> None:
        self._size = size
        self._data: OrderedDict[tuple[str, str, int], tuple[int, int]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, index: str, doc_id: str, version: int, seq: tuple[int, int]) -> None:
        with self._lock:
            self._data[(index, doc_id, version)] = seq
            self._data.move_to_end((index, doc_id, version))
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def get(self, index: str, doc_id: str, version: int) -> tuple[int, int] | None:
        with self._lock:
            return self._data.get((index, doc_id, version))


def _seq_of(hit: Mapping[str, Any]) -> tuple[int, int] | None:
    if "_seq_no" in hit and "_primary_term" in hit:
        return int(hit["_seq_no"]), int(hit["_primary_term"])
    return None


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class ClusterURL:
    """What a store URL says about the cluster, parsed without connecting.

    ``user:pass@`` is basic auth. Query parameters, or keyword options of the same names:
    ``prefix`` (index name prefix, default ``crm_``), ``verify_certs``, ``ca_certs`` and
    ``api_key`` (``https`` schemes), ``request_timeout`` (seconds) and ``refresh`` (``true`` or
    ``wait_for``), ``conflict_deadline`` (seconds a conflicting write keeps retrying, default
    10; `crm_templates.conflicts`).
    """

    url: str  #: the URL without credentials, for messages
    host: dict[str, str | int]
    client_args: dict[str, Any]
    prefix: str = DEFAULT_PREFIX
    refresh: str = "true"
    opensearch: bool = False
    conflict_deadline: float = DEFAULT_DEADLINE

    @classmethod
    def parse(cls, url: str, **options: Any) -> ClusterURL:
        """Parse a store URL; `CrmValidationError` names what is wrong and what is accepted."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise CrmValidationError(
                f"not an Elasticsearch/OpenSearch URL: {url!r}; use "
                f"{', '.join(s + '://' for s in _SCHEMES)}"
            )
        http_scheme, opensearch = _SCHEMES[scheme]
        try:
            port = parts.port or 9200
        except ValueError as exc:
            raise CrmValidationError(f"bad port in store URL {url!r}: {exc}") from None
        if not parts.hostname:
            raise CrmValidationError(f"store URL {url!r} names no host, e.g. {scheme}://host:9200")
        settings: dict[str, Any] = dict(parse_qsl(parts.query))
        settings.update(options)
        unknown = sorted(set(settings) - set(_URL_OPTIONS))
        if unknown:
            raise CrmValidationError(
                f"unknown Elasticsearch store option(s) {', '.join(map(repr, unknown))}; "
                f"accepted: {', '.join(_URL_OPTIONS)}"
            )
        try:
            timeout = float(settings.get("request_timeout", 30.0))
        except ValueError:
            raise CrmValidationError(
                f"request_timeout must be a number of seconds; got {settings['request_timeout']!r}"
            ) from None
        client_args: dict[str, Any] = {"request_timeout": timeout}
        if opensearch:
            client_args["node_class"] = OpenSearchNode
        if parts.username is not None:
            client_args["basic_auth"] = (unquote(parts.username), unquote(parts.password or ""))
        if settings.get("api_key"):
            if "basic_auth" in client_args:
                raise CrmValidationError("a store URL takes user:pass@ or api_key, not both")
            client_args["api_key"] = settings["api_key"]
        if http_scheme == "https":
            if "verify_certs" in settings:
                client_args["verify_certs"] = _flag(settings["verify_certs"])
            if settings.get("ca_certs"):
                client_args["ca_certs"] = settings["ca_certs"]
        elif "verify_certs" in settings or settings.get("ca_certs"):
            raise CrmValidationError(
                f"verify_certs/ca_certs need TLS: use {scheme.split('+')[0]}+https:// or https://"
            )
        host: dict[str, str | int] = {"scheme": http_scheme, "host": parts.hostname, "port": port}
        path = parts.path.rstrip("/")
        if path:
            host["path_prefix"] = path
        prefix = str(settings.get("prefix", DEFAULT_PREFIX))
        public = f"{scheme}://{parts.hostname}:{port}{path}"
        if prefix != DEFAULT_PREFIX:
            public += "?" + urlencode({"prefix": prefix})
        return cls(
            url=public,
            host=host,
            client_args=client_args,
            prefix=prefix,
            refresh=str(settings.get("refresh", "true")).lower(),
            opensearch=opensearch,
            conflict_deadline=parse_deadline(settings.get("conflict_deadline", DEFAULT_DEADLINE)),
        )

    def client(self) -> Elasticsearch:
        """A client for the cluster (it connects lazily, on the first request)."""
        try:
            return Elasticsearch(hosts=[self.host], **self.client_args)
        except (ValueError, TypeError) as exc:  # e.g. a ca_certs file that does not exist
            raise CrmValidationError(f"store URL {self.url!r}: {exc}") from None


class ElasticsearchStore(
    ElasticsearchListing,
    ElasticsearchStageHistory,
    ElasticsearchEntityQueries,
    ElasticsearchBoards,
    ElasticsearchOperators,
    ElasticsearchAudit,
    SearchAggregations,
    ElasticsearchApiKeys,
    ElasticsearchPrefetch,
    ElasticsearchWebhooks,
    ElasticsearchConditionalDelete,
    ElasticsearchSessionState,
    Store,
):
    """Store on an Elasticsearch or OpenSearch cluster (see the module docstring)."""

    def __init__(
        self,
        client: Elasticsearch,
        *,
        url: str = "",
        prefix: str = DEFAULT_PREFIX,
        refresh: str = "true",
        opensearch: bool = False,
        startup_timeout: float = 5.0,
        conflict_deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        if not _PREFIX_RE.match(prefix):
            raise CrmValidationError(
                f"index prefix must be lower case letters, digits, '_', '.' or '-' and not start "
                f"with '_', '-' or '.'; got {prefix!r}"
            )
        if refresh not in ("true", "wait_for"):
            raise CrmValidationError(f"refresh must be 'true' or 'wait_for'; got {refresh!r}")
        self.client = client
        self.url = url or "elasticsearch://"
        self.prefix = prefix
        self.refresh = refresh
        self.conflict_deadline = parse_deadline(conflict_deadline)
        #: Index name by role: entries, entities, customers, customer_emails, security,
        #: stage_history.
        self.indices = {role: f"{prefix}{role}" for role in _MAPPINGS}
        self._entries = self.indices["entries"]
        self._security = SecurityIndex(self)
        self._seqs = _SeqCache()
        self._local = threading.local()
        self._rmw_lock = threading.RLock()
        try:
            self._check_cluster(opensearch, startup_timeout)
            self._create_indices()
        except BaseException:
            client.close()
            raise

    @classmethod
    def from_url(cls, url: str, **options: Any) -> ElasticsearchStore:
        """Open an ``elasticsearch://``, ``opensearch://`` (``+https``) or ``http(s)://`` URL.

        See `ClusterURL` for what the URL and ``options`` may say.
        """
        target = ClusterURL.parse(url, **options)
        return cls(
            target.client(),
            url=target.url,
            prefix=target.prefix,
            refresh=target.refresh,
            opensearch=target.opensearch,
            conflict_deadline=target.conflict_deadline,
        )

    # --- errors: the one place client exceptions become the core's ------------------------

    def _error(
        self, status: int, reason: str, what: str, conflict: type[StoreError] = ConflictError
    ) -> StoreError:
        """The core's error for an HTTP error status (also used for `_bulk` item failures)."""
        where = f"{what} on {self.url}"
        if status == 409:
            return conflict(f"{where}: {reason}")
        if status == 400:
            return BadRequestError(f"{where} was rejected as malformed: {reason}")
        if status in (401, 403):
            return StoreError(
                f"{where}: the cluster refused the credentials ({reason}); check the user:pass@ "
                "part or the api_key of the store URL"
            )
        if status in (429, 502, 503, 504):
            return StoreUnavailable(f"{where}: the cluster is busy or unavailable ({reason})")
        if status == 404:
            return StoreError(f"{where}: not found ({reason}); were the indices deleted?")
        return StoreError(f"{where} failed with HTTP {status}: {reason}")

    @contextmanager
    def _translate(self, what: str, conflict: type[StoreError] = ConflictError) -> Iterator[None]:
        try:
            yield
        except UnsupportedProductError as exc:
            raise StoreError(
                f"{what}: the server at {self.url} is not Elasticsearch ({exc}); for an "
                "OpenSearch cluster use an opensearch:// (or opensearch+https://) URL"
            ) from exc
        except ApiError as exc:
            raise self._error(
                exc.meta.status, _reason(exc.body, exc.message), what, conflict
            ) from exc
        except elastic_transport.TlsError as exc:
            raise StoreUnavailable(
                f"{what}: TLS handshake with {self.url} failed ({exc}); check ca_certs / "
                "verify_certs in the store URL"
            ) from exc
        except (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout) as exc:
            raise StoreUnavailable(
                f"{what}: cannot reach the search cluster ({exc}); is the cluster running at "
                f"{self.url}?"
            ) from exc
        except elastic_transport.TransportError as exc:
            raise StoreError(f"{what} on {self.url} failed: {exc}") from exc
        except UnicodeEncodeError as exc:
            raise not_text(exc) from exc
        except ValueError as exc:
            # The client refuses an empty document id (or another empty path part) before
            # sending anything: client input, never a fault of ours (a 500 in the REST API).
            if "Empty value passed for" not in str(exc):
                raise
            raise EntryNotFoundError(f"{what}: an empty id names nothing") from exc

    def _check_cluster(self, opensearch: bool, timeout: float) -> None:
        """Fail at startup, quickly and clearly, when the cluster is unreachable or mismatched."""
        with self._translate("connecting"):
            info = self.client.options(request_timeout=timeout, max_retries=0).info().body
        distribution = (info.get("version") or {}).get("distribution", "elasticsearch")
        if distribution == "opensearch" and not opensearch:
            raise StoreError(
                f"the server at {self.url} is OpenSearch "
                f"{info.get('version', {}).get('number', '')}; open it as "
                f"opensearch://{self.url.split('://', 1)[1]} so the client speaks plain JSON"
            )

    def _create_indices(self) -> None:
        for role, mappings in _MAPPINGS.items():
            name = self.indices[role]
            with self._translate(f"creating index {name!r}"):
                try:
                    self.client.indices.create(index=name, mappings=mappings)
                except ApiError as exc:  # another process created it first: that is fine
                    if exc.meta.status != 400 or "already_exists" not in str(exc.message):
                        raise

    def close(self) -> None:
        self.client.close()

    # --- generic document helpers ---------------------------------------------------------

    def _get(self, index: str, doc_id: str, what: str, **params: Any) -> dict[str, Any] | None:
        if not doc_id:  # no document has an empty id (SQLite finds no row either)
            return None
        with self._translate(what):
            resp = self.client.options(ignore_status=404).get(index=index, id=doc_id, **params)
        if not resp.body.get("found"):
            return None
        return dict(resp.body)

    def _hits(
        self,
        index: str,
        query: dict[str, Any],
        sort: list[dict[str, str]],
        *,
        size: int | None,
        offset: int = 0,
        what: str,
        source_excludes: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Up to ``size`` hits (None: all) after ``offset``, paging past the result window."""
        if size == 0:
            return []
        common: dict[str, Any] = {
            "index": index,
            "query": query,
            "sort": sort,
            "seq_no_primary_term": True,
            "track_total_hits": False,
        }
        if source_excludes:
            common["source_excludes"] = source_excludes
        if size is not None and offset + size <= _WINDOW:
            with self._translate(what):
                resp = self.client.search(from_=offset, size=size, **common)
            return list(resp["hits"]["hits"])
        hits: list[dict[str, Any]] = []
        after: list[Any] | None = None
        skip = offset
        while True:
            with self._translate(what):
                page = self.client.search(size=_PAGE, search_after=after, **common)
            batch = page["hits"]["hits"]
            for hit in batch:
                if skip:
                    skip -= 1
                    continue
                hits.append(hit)
                if size is not None and len(hits) >= size:
                    return hits
            if len(batch) < _PAGE:
                return hits
            after = batch[-1]["sort"]

    def _cas(
        self,
        index: str,
        doc_id: str,
        doc: dict[str, Any],
        expected_version: int,
        what: str,
        missing: type[Exception],
    ) -> None:
        """Index ``doc`` only if the stored one still has ``expected_version``.

        One request when this store read that version (its seq_no is remembered); otherwise a
        realtime GET first. A refused write with a remembered seq_no is re-checked once with a
        GET, since the seq_no may have moved without the version changing (e.g. a migration) —
        except inside `crm_templates.conflicts.retry_conflicts`, whose caller re-reads anyway:
        there the GET would only add a round trip to every lost race.
        """
        seq = self._seqs.get(index, doc_id, expected_version)
        remembered = seq is not None
        while True:
            if seq is None:
                current = self._get(index, doc_id, what)
                if current is None:
                    raise missing(f"{what}: it no longer exists")
                if current["_source"].get("version") != expected_version:
                    raise ConflictError(f"{what}: it was changed concurrently")
                seq = _seq_of(current)
                assert seq is not None
            try:
                with self._translate(what):
                    resp = self.client.index(
                        index=index,
                        id=doc_id,
                        document=doc,
                        if_seq_no=seq[0],
                        if_primary_term=seq[1],
                        refresh=self.refresh,
                    )
            except ConflictError:
                if not remembered or retrying():  # the caller re-reads and retries anyway
                    raise ConflictError(f"{what}: it was changed concurrently") from None
                remembered, seq = False, None
                continue
            self._remember(index, doc_id, doc["version"], resp.body)
            return

    def _remember(self, index: str, doc_id: str, version: Any, hit: Mapping[str, Any]) -> None:
        seq = _seq_of(hit)
        if seq is not None and isinstance(version, int):
            self._seqs.put(index, doc_id, version, seq)

    def _entry_hit(self, hit: Mapping[str, Any]) -> Entry:
        entry = entry_from_dict(hit["_source"])
        self._remember(self._entries, entry.id, entry.version, hit)
        return entry

    # --- sections and batches -------------------------------------------------------------

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Serialise this process's read-modify-write sections; other processes race on seq_no.

        Without it, threads of one server updating one hot entry would mostly refuse each
        other's compare-and-set: the deadline-bounded retry (`crm_templates.conflicts`) still
        gets every write through, but each lost race wastes a search and a refused index (8
        threads × 100 forced writes on one entry: ~1,400 conflicts and about half the
        throughput). With it, conflicts only come from other processes.
        """
        with self._rmw_lock:
            yield

    def _overlay(self) -> dict[str, _Pending] | None:
        """This thread's buffered batch writes by entry id, or None outside `batch()`."""
        return getattr(self._local, "batch", None)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Buffer the block's entry writes; send them as one ``_bulk`` request at the end.

        Reads in the block see its writes. If the block raises, nothing is sent. A bulk request
        is not a transaction: when some items fail, the others stay applied and the error is
        raised (the async writer then replays the writes one by one; replayed inserts of an
        identical document count as done). Entities and customers are written immediately.
        """
        if self._overlay() is not None:  # nested: join the outer batch
            yield
            return
        self._local.batch = {}
        try:
            yield
            pending: dict[str, _Pending] = self._local.batch
        finally:
            self._local.batch = None
        self._flush(pending)

    def _flush(self, pending: Mapping[str, _Pending]) -> None:
        ops: list[tuple[dict[str, Any], Entry | None]] = []
        for entry_id, p in pending.items():
            meta: dict[str, Any] = {"_index": self._entries, "_id": entry_id}
            if p.entry is None:
                if not p.create:  # created and deleted inside the batch: nothing to send
                    ops.append(({"delete": meta}, None))
            elif p.create:
                ops.append(({"create": meta}, p.entry))
            else:
                if p.seq is not None:
                    meta.update(if_seq_no=p.seq[0], if_primary_term=p.seq[1])
                ops.append(({"index": meta}, p.entry))
        self._bulk(ops)

    def _bulk(self, ops: Sequence[tuple[dict[str, Any], Entry | None]]) -> None:
        """Send entry operations as one ``_bulk`` request and raise for failed items."""
        if not ops:
            return
        body: list[dict[str, Any]] = []
        for action, entry in ops:
            body.append(action)
            if entry is not None:
                body.append(_entry_doc(entry))
        with self._translate(f"bulk write of {len(ops)} entries"):
            resp = self.client.bulk(operations=body, refresh=self.refresh)
        failed: list[tuple[str, dict[str, Any], Entry | None]] = []
        for (_action, entry), item in zip(ops, resp["items"], strict=True):
            kind, result = next(iter(item.items()))
            status = int(result.get("status", 500))
            if status < 300 or (kind == "delete" and status == 404):
                if entry is not None:
                    self._remember(self._entries, entry.id, entry.version, result)
                continue
            failed.append((kind, result, entry))
        if not failed:
            return
        # A create refused because the very same document exists was applied before (a replay
        # after a timeout or a partly failed bulk): count it as done.
        retried = [e.id for kind, r, e in failed if kind == "create" and e is not None]
        stored = self.get_entries_by_ids(retried) if retried else {}
        failed = [
            (kind, r, e)
            for kind, r, e in failed
            if not (kind == "create" and e is not None and stored.get(e.id) == e)
        ]
        if not failed:
            return
        kind, result, entry = failed[0]
        error = result.get("error") or {}
        raise self._error(
            int(result.get("status", 500)),
            _reason({"error": error}, str(error)),
            f"{len(failed)} of {len(ops)} bulk writes failed; first: {kind} of entry "
            f"{result.get('_id')!r}",
            DuplicateError if kind == "create" else ConflictError,
        )

    # --- entities -------------------------------------------------------------------------

    def get_entity(self, slug: str) -> Entity | None:
        index = self.indices["entities"]
        found = self._get(index, slug, f"reading entity {slug!r}")
        if found is None:
            return None
        entity = entity_from_dict(found["_source"]["data"])
        self._remember(index, slug, entity.version, found)
        return entity

    def list_entities(self) -> list[Entity]:
        hits = self._hits(
            self.indices["entities"],
            {"match_all": {}},
            [{"slug": "asc"}],
            size=None,
            what="listing entities",
        )
        return [entity_from_dict(h["_source"]["data"]) for h in hits]

    def create_entity(self, entity: Entity) -> None:
        index = self.indices["entities"]
        with self._translate(f"creating entity {entity.slug!r}", conflict=DuplicateError):
            resp = self.client.create(
                index=index, id=entity.slug, document=_entity_doc(entity), refresh=self.refresh
            )
        self._remember(index, entity.slug, entity.version, resp.body)

    def update_entity(self, entity: Entity, expected_version: int) -> Entity:
        stored = replace(entity, version=expected_version + 1)
        self._cas(
            self.indices["entities"],
            entity.slug,
            _entity_doc(stored),
            expected_version,
            f"updating entity {entity.slug!r}",
            ConflictError,
        )
        return stored

    def delete_entity(self, slug: str) -> bool:
        if not slug:  # as in `_get`: nothing has an empty id
            return False
        with self._translate(f"deleting entity {slug!r}"):
            resp = self.client.options(ignore_status=404).delete(
                index=self.indices["entities"], id=slug, refresh=self.refresh
            )
        return resp.body.get("result") == "deleted"

    # --- customers ------------------------------------------------------------------------

    def _claim_email(self, email: str, customer_id: str) -> bool:
        """Reserve ``email`` for the customer: a document keyed by the email, created once.

        True when this call made the claim, False when the customer already held it (then a
        failed write must not release it).

        A claim whose owner no longer holds the email (a crash between claim and customer
        write, or an email change cut short) is taken over once it is older than a grace
        period, so it cannot block the address forever.
        """
        index = self.indices["customer_emails"]
        what = f"claiming email {email!r}"
        taken = DuplicateError(f"a customer with email {email!r} exists")
        claim = {"customer_id": customer_id, "claimed_at": utc_now()}
        for _ in range(3):
            try:
                with self._translate(what, conflict=DuplicateError):
                    self.client.create(index=index, id=email, document=claim, refresh=self.refresh)
                return True
            except DuplicateError:
                pass
            current = self._get(index, email, what)
            if current is None:
                continue  # released meanwhile: try again
            owner = current["_source"]["customer_id"]
            if owner == customer_id:
                return False
            holder = self.get_customer(owner)
            claimed_at = str(current["_source"].get("claimed_at", ""))
            if (holder is not None and holder.email == email) or not _older_than(
                claimed_at, _CLAIM_GRACE
            ):
                raise taken
            seq = _seq_of(current)
            assert seq is not None
            try:
                with self._translate(what, conflict=DuplicateError):
                    self.client.index(
                        index=index,
                        id=email,
                        document=claim,
                        if_seq_no=seq[0],
                        if_primary_term=seq[1],
                        refresh=self.refresh,
                    )
                return True
            except DuplicateError:
                raise taken from None
        raise taken

    def _release_email(self, email: str, customer_id: str) -> None:
        index = self.indices["customer_emails"]
        what = f"releasing email {email!r}"
        current = self._get(index, email, what)
        if current is None or current["_source"]["customer_id"] != customer_id:
            return
        seq = _seq_of(current)
        assert seq is not None
        with self._translate(what):
            # 409: someone took the claim over meanwhile, and it is theirs now.
            self.client.options(ignore_status=(404, 409)).delete(
                index=index,
                id=email,
                if_seq_no=seq[0],
                if_primary_term=seq[1],
                refresh=self.refresh,
            )

    def create_customer(self, customer: Customer) -> None:
        self._write_customer(customer, None)

    def update_customer(self, customer: Customer) -> None:
        current = self._get(
            self.indices["customers"], customer.id, f"reading customer {customer.id!r}"
        )
        if current is None:
            return
        old = customer_from_dict(current["_source"])
        self._write_customer(replace(customer, created_at=old.created_at), old)

    def _write_customer(self, customer: Customer, old: Customer | None) -> None:
        """Claim a new email, write the customer, then release the email it no longer uses."""
        email = customer.email if old is None or customer.email != old.email else None
        claimed = self._claim_email(email, customer.id) if email else False
        try:
            with self._translate(
                f"{'creating' if old is None else 'updating'} customer {customer.id!r}",
                conflict=DuplicateError,
            ):
                (self.client.create if old is None else self.client.index)(
                    index=self.indices["customers"],
                    id=customer.id,
                    document=customer_to_dict(customer),
                    refresh=self.refresh,
                )
        except StoreError:
            if email and claimed:
                self._release_email(email, customer.id)
            raise
        if old is not None and old.email and old.email != customer.email:
            self._release_email(old.email, customer.id)

    def get_customer(self, customer_id: str) -> Customer | None:
        found = self._get(
            self.indices["customers"], customer_id, f"reading customer {customer_id!r}"
        )
        return None if found is None else customer_from_dict(found["_source"])

    def get_customer_by_email(self, email: str) -> Customer | None:
        hits = self._hits(
            self.indices["customers"],
            {"term": {"email": email}},
            [{"created_at": "asc"}, {"id": "asc"}],
            size=1,
            what="finding a customer by email",
        )
        return customer_from_dict(hits[0]["_source"]) if hits else None

    def list_customers(self, limit: int = 50, offset: int = 0) -> list[Customer]:
        hits = self._hits(
            self.indices["customers"],
            {"match_all": {}},
            _NEWEST,
            size=limit,
            offset=offset,
            what="listing customers",
        )
        return [customer_from_dict(h["_source"]) for h in hits]

    def count_customers(self) -> int:
        with self._translate("counting customers"):
            return int(self.client.count(index=self.indices["customers"])["count"])

    # --- entries --------------------------------------------------------------------------

    def insert_entries(self, entries: Sequence[Entry]) -> None:
        overlay = self._overlay()
        if overlay is None:
            self._bulk([({"create": {"_index": self._entries, "_id": e.id}}, e) for e in entries])
            return
        for e in entries:
            pending = overlay.get(e.id)
            if pending is not None and pending.entry is not None:
                raise DuplicateError(f"entry {e.id!r} already exists")
            # Re-inserting an id deleted earlier in the batch overwrites it unconditionally.
            overlay[e.id] = _Pending(e, create=pending is None, seq=None)

    def get_entries_by_ids(self, ids: Sequence[str]) -> dict[str, Entry]:
        wanted = list(dict.fromkeys(ids))
        out: dict[str, Entry] = {}
        overlay = self._overlay()
        if overlay:
            for entry_id in [i for i in wanted if i in overlay]:
                entry = overlay[entry_id].entry
                if entry is not None:
                    out[entry_id] = entry
            wanted = [i for i in wanted if i not in overlay]
        for start in range(0, len(wanted), _PAGE):
            with self._translate("reading entries by id"):
                resp = self.client.mget(
                    index=self._entries,
                    ids=wanted[start : start + _PAGE],
                )
            for doc in resp["docs"]:
                if doc.get("found"):
                    entry = self._entry_hit(doc)
                    out[entry.id] = entry
        return out

    def find_entries(
        self,
        entity: str | None = None,
        reference_type: str | None = None,
        reference_id: str | None = None,
        *,
        has_key: str | None = None,
        limit: int | None = 50,
        offset: int = 0,
    ) -> list[Entry]:
        query = _query(_entry_filters(entity, reference_type, reference_id, has_key))
        overlay = self._overlay()
        if not overlay:
            hits = self._hits(
                self._entries,
                query,
                _NEWEST,
                size=limit,
                offset=offset,
                what="finding entries",
            )
            return [self._entry_hit(h) for h in hits]
        # Each buffered write can hide at most one stored hit: fetch that many more, then merge.
        size = None if limit is None else offset + limit + len(overlay)
        hits = self._hits(
            self._entries,
            query,
            _NEWEST,
            size=size,
            what="finding entries",
        )
        merged = self._merge(
            [self._entry_hit(h) for h in hits],
            overlay,
            lambda e: _matches(e, entity, reference_type, reference_id, has_key),
        )
        return merged[offset:] if limit is None else merged[offset : offset + limit]

    @staticmethod
    def _merge(
        stored: list[Entry], overlay: Mapping[str, _Pending], keep: Callable[[Entry], bool]
    ) -> list[Entry]:
        """Stored hits with the batch's buffered state laid over them, newest first."""
        merged = [e for e in stored if e.id not in overlay]
        merged += [p.entry for p in overlay.values() if p.entry is not None and keep(p.entry)]
        return _newest_first(merged)

    def latest_values(
        self, entity: str, reference_type: str, reference_id: str, keys: Sequence[str]
    ) -> dict[str, Any]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        overlay = self._overlay() or {}
        # One `_msearch` round trip: per key, the newest entry holding it (plus one per
        # buffered write, which could hide a stored hit).
        searches: list[dict[str, Any]] = []
        for key in wanted:
            searches.append({"index": self._entries})
            searches.append(
                {
                    "query": _query(_entry_filters(entity, reference_type, reference_id, key)),
                    "sort": _NEWEST,
                    "size": 1 + len(overlay),
                    "seq_no_primary_term": True,
                    "track_total_hits": False,
                }
            )
        with self._translate("reading latest values"):
            resp = self.client.msearch(searches=searches)
        found: dict[str, Any] = {}
        for key, result in zip(wanted, resp["responses"], strict=True):
            if "error" in result:
                raise self._error(
                    int(result.get("status", 500)),
                    _reason(result, str(result["error"])),
                    f"reading the latest {key!r}",
                )
            entries = [self._entry_hit(h) for h in result["hits"]["hits"]]
            if overlay:

                def holds(e: Entry, key: str = key) -> bool:
                    return _matches(e, entity, reference_type, reference_id, key)

                entries = self._merge(entries, overlay, holds)
            if entries:
                found[key] = entries[0].values[key]
        return found

    def update_entry(self, entry: Entry, expected_version: int) -> Entry:
        stored = replace(entry, version=expected_version + 1)
        what = f"updating entry {entry.id!r}"
        overlay = self._overlay()
        if overlay is None:
            self._cas(
                self._entries,
                entry.id,
                _entry_doc(stored),
                expected_version,
                what,
                EntryNotFoundError,
            )
            return stored
        pending = overlay.get(entry.id)
        if pending is not None:
            if pending.entry is None:
                raise EntryNotFoundError(f"entry {entry.id!r} no longer exists")
            if pending.entry.version != expected_version:
                raise ConflictError(f"entry {entry.id!r} was changed concurrently")
            overlay[entry.id] = replace(pending, entry=stored)
            return stored
        seq = self._seqs.get(self._entries, entry.id, expected_version)
        if seq is None:
            current = self._get(self._entries, entry.id, what, source_excludes=["values", "kv"])
            if current is None:
                raise EntryNotFoundError(f"entry {entry.id!r} no longer exists")
            if current["_source"].get("version") != expected_version:
                raise ConflictError(f"entry {entry.id!r} was changed concurrently")
            seq = _seq_of(current)
        overlay[entry.id] = _Pending(stored, create=False, seq=seq)
        return stored

    def delete_entries(
        self, entity: str, reference_type: str | None = None, reference_id: str | None = None
    ) -> int:
        overlay = self._overlay()
        if overlay is not None:
            doomed = self.find_entries(entity, reference_type, reference_id, limit=None)
            for e in doomed:
                pending = overlay.get(e.id)
                overlay[e.id] = _Pending(
                    None, create=pending is not None and pending.create, seq=None
                )
            return len(doomed)
        query = _query(_entry_filters(entity, reference_type, reference_id))
        deleted = 0
        # An entry updated while the delete runs is skipped (`conflicts=proceed`), then caught
        # by the next pass.
        for _ in range(5):
            with self._translate(f"deleting entries of {entity!r}"):
                resp = self.client.delete_by_query(
                    index=self._entries, query=query, refresh=True, conflicts="proceed"
                )
            deleted += int(resp.get("deleted", 0))
            if not resp.get("version_conflicts"):
                break
        return deleted

    def delete_entry(self, entry_id: str) -> bool:
        if not entry_id:  # as in `_get`: nothing has an empty id
            return False
        overlay = self._overlay()
        if overlay is not None:
            pending = overlay.get(entry_id)
            if pending is None:
                if self._get(self._entries, entry_id, f"reading entry {entry_id!r}") is None:
                    return False
                overlay[entry_id] = _Pending(None, create=False, seq=None)
                return True
            if pending.entry is None:
                return False
            overlay[entry_id] = _Pending(None, create=pending.create, seq=None)
            return True
        with self._translate(f"deleting entry {entry_id!r}"):
            resp = self.client.options(ignore_status=404).delete(
                index=self._entries, id=entry_id, refresh=self.refresh
            )
        return resp.body.get("result") == "deleted"

    def count_entries(
        self,
        entity: str | None = None,
        reference_type: str | None = None,
        reference_id: str | None = None,
    ) -> int:
        filters = _entry_filters(entity, reference_type, reference_id)
        with self._translate("counting entries"):
            count = int(self.client.count(index=self._entries, query=_query(filters))["count"])
        overlay = self._overlay()
        if not overlay:
            return count
        # Buffered writes replace stored matches (-) and may add matches of their own (+).
        with self._translate("counting entries"):
            shadowed = int(
                self.client.count(
                    index=self._entries,
                    query=_query([*filters, {"ids": {"values": list(overlay)}}]),
                )["count"]
            )
        added = sum(
            1
            for p in overlay.values()
            if p.entry is not None and _matches(p.entry, entity, reference_type, reference_id)
        )
        return count - shadowed + added

    def iter_entries(self, entity: str | None = None, batch_size: int = 500) -> Iterator[Entry]:
        # search_after on (created_at, id): no scroll context to keep alive, safe with writers.
        query = _query(_entry_filters(entity, None, None))
        after: list[Any] | None = None
        while True:
            with self._translate("reading entries"):
                page = self.client.search(
                    index=self._entries,
                    query=query,
                    sort=_OLDEST,
                    size=batch_size,
                    search_after=after,
                    seq_no_primary_term=True,
                    track_total_hits=False,
                )
            hits = page["hits"]["hits"]
            for hit in hits:
                yield self._entry_hit(hit)
            if len(hits) < batch_size:
                return
            after = hits[-1]["sort"]

    # --- security records (issue 8): see elasticsearch_security -----------------------------

    def claim_token(self, key: str, expires_at: float) -> bool:
        return self._security.claim_token(key, expires_at)

    def is_token_claimed(self, key: str) -> bool:
        return self._security.is_token_claimed(key)

    def hit_rate_limit(self, key: str, limit: int, window: float) -> bool:
        return self._security.hit_rate_limit(key, limit, window)

    def count_rate_hits(self, key: str, window: float) -> int:
        return self._security.count_rate_hits(key, window)

    def clear_rate_hits(self, key: str) -> None:
        self._security.clear_rate_hits(key)

    def session_generation(self, key: str) -> int:
        return self._security.session_generation(key)

    def bump_session_generation(self, key: str) -> int:
        return self._security.bump_session_generation(key)

    def purge_security_records(self, now: float | None = None) -> int:
        return self._security.purge(now)


def _reason(body: Any, fallback: str) -> str:
    """The most useful line of an error body: ``type: reason`` of the root cause."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        causes = error.get("root_cause") or [error]
        cause = causes[0] if isinstance(causes[0], Mapping) else error
        return f"{cause.get('type', 'error')}: {cause.get('reason', '')}".strip()
    return str(error or fallback)


def _older_than(stamp: str, age: timedelta) -> bool:
    try:
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return True
    return datetime.now(timezone.utc) - when > age


__all__ = ["ClusterURL", "ElasticsearchStore", "OpenSearchNode"]
