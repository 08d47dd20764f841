"""Webhooks (issue 13, item 8): operators register URLs per entry event; each event is queued
in the store and POSTed, signed, by a delivery worker, with retries and a delivery log.

**Registering** (`add_endpoint`; the CLI ``crm-templates webhooks add`` and the admin's
Webhooks page): an ``http://`` or ``https://`` URL without credentials, the events
(`crm_templates.events.EVENT_NAMES`), and a generated secret (``whsec_`` + 32 random bytes,
URL-safe base64) shown once. Loopback, private, link-local and other non-public addresses are
refused — at registration for a literal address (in any spelling the resolver reads:
``2130706433``, ``0177.0.0.1``…) or ``localhost``, and at every attempt for whatever the host
name resolves to — unless the setting ``CRM_WEBHOOKS_ALLOW_PRIVATE=1`` (environment) allows
them: webhooks are operator-only, but a URL that reaches the server's own network is still a
way in (SSRF). The name is looked up once per attempt and the connection made to exactly the
checked addresses (no DNS-rebinding window between the check and the connection).

**Queueing**: a receiver on the entry signals (`crm_templates.events`) writes one
`WebhookDelivery` per subscribed active endpoint into the store, in the writing thread, right
after the write committed and before the write call returns. Nothing is lost once that insert
is done (a restart finds the queue in the store); a process killed between the write's commit
and the queue insert (the receiver's own few milliseconds) loses those events, and a store that
fails the insert loses them with an error in the log. A process reads a store's endpoint
list when its service is made, then keeps a copy: re-read off the write path once older than
`ENDPOINT_CACHE_SECONDS` (30 s), every poll by a running worker, and at once after a change made
in the same process; so an endpoint added by another process gets events within that time.

**Delivering** (`DeliveryWorker`: a thread the page server and the Flask integration's
``CrmTemplates`` start and stop, or ``crm-templates webhooks deliver [--once]`` for cron): claim
due deliveries under a lease (two processes never send one delivery at the same time; see
`crm_templates.storage.webhooks`), POST the stored body with headers

* ``CRM-Webhook-Id``: the event id (``evt_…``; the same on every retry: deduplicate on it),
* ``CRM-Webhook-Event``: the event name, ``CRM-Webhook-Timestamp``: Unix seconds of the attempt,
* ``CRM-Signature: t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``
  (Stripe's scheme; `verify` checks it),

with a timeout (`Settings.timeout` per connect/read/write, twice that for the whole attempt)
and no redirects followed (a 3xx is a failed attempt). Any
2xx is delivered; anything else (status, timeout, refused connection, refused address) is
retried after ``backoff * 2**(attempts-1)`` seconds (capped at `Settings.backoff_cap`), of
which a random half is jitter, until `Settings.max_attempts` attempts or `Settings.max_age`
seconds since it was queued; then it is ``failed``. An operator can retry any delivery that
is not being sent (`retry`).

This is the core: stdlib only (``http.client``), no Flask, no Jinja2 (SPEC §2).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import os
import random
import re
import secrets
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from . import events
from .errors import CrmValidationError, EntryNotFoundError
from .ids import new_id, utc_now
from .storage.base import Store
from .storage.webhooks import WebhookDelivery, WebhookEndpoint

log = logging.getLogger("crm_templates.webhooks")

ENV_ALLOW_PRIVATE = "CRM_WEBHOOKS_ALLOW_PRIVATE"
ID_HEADER = "CRM-Webhook-Id"
EVENT_HEADER = "CRM-Webhook-Event"
TIMESTAMP_HEADER = "CRM-Webhook-Timestamp"
SIGNATURE_HEADER = "CRM-Signature"
USER_AGENT = "crm-templates-webhooks/1"
ENDPOINT_PREFIX = "whe_"
DELIVERY_PREFIX = "whd_"
EVENT_PREFIX = "evt_"
SECRET_PREFIX = "whsec_"
MAX_URL = 2048
#: How old a process's copy of a store's endpoint list may get before it is read again, off
#: the write path (seconds); a running delivery worker re-reads it every poll.
ENDPOINT_CACHE_SECONDS = 30.0
#: How much of a response body is read (and dropped) before the connection closes.
MAX_RESPONSE = 65_536
#: How often a running worker prunes the delivery log (seconds).
PRUNE_EVERY = 3_600.0
#: A signature older or newer than this many seconds fails `verify` (replays).
DEFAULT_TOLERANCE = 300


class WebhookNotFoundError(EntryNotFoundError):
    """No endpoint or delivery has that id."""


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise CrmValidationError(f"{name} must be a number of seconds; got {raw!r}") from None
    if value <= 0:
        raise CrmValidationError(f"{name} must be more than 0; got {raw!r}")
    return value


def allow_private_from_env() -> bool:
    """``CRM_WEBHOOKS_ALLOW_PRIVATE`` as a flag (``1``/``true``/``yes``/``on``)."""
    return os.environ.get(ENV_ALLOW_PRIVATE, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    """How deliveries are sent. Seconds throughout; `from_env` reads ``CRM_WEBHOOKS_*``."""

    timeout: float = 10.0  #: connecting, each read or write; the whole attempt: twice this
    max_attempts: int = 8
    max_age: float = 3 * 86_400.0  #: since queued (or retried by hand)
    backoff: float = 30.0  #: the first retry's delay; doubles per attempt
    backoff_cap: float = 3_600.0
    poll_interval: float = 5.0  #: how often the worker looks for due deliveries
    batch: int = 1  #: deliveries claimed at once (each claim's lease covers them all)
    keep_days: float = 30.0  #: the worker prunes finished deliveries older than this, hourly
    allow_private: bool = False

    @property
    def lease_seconds(self) -> float:
        """How long a claim holds: longer than the batch's attempts can take (each: a
        connection and a read, ``timeout`` each, plus 5 s). A delivery claimed by a process
        that died is sent again once its lease ran out."""
        return self.batch * (self.timeout * 2 + 5)

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Settings from ``CRM_WEBHOOKS_TIMEOUT``, ``_MAX_ATTEMPTS``, ``_MAX_AGE``,
        ``_BACKOFF``, ``_BACKOFF_CAP``, ``_POLL``, ``_KEEP_DAYS`` and ``_ALLOW_PRIVATE``;
        keywords win.
        `CrmValidationError` for a value that is not a positive number."""
        attempts = _env_float("CRM_WEBHOOKS_MAX_ATTEMPTS", cls.max_attempts)
        values: dict[str, Any] = {
            "timeout": _env_float("CRM_WEBHOOKS_TIMEOUT", cls.timeout),
            "max_attempts": max(1, int(attempts)),
            "max_age": _env_float("CRM_WEBHOOKS_MAX_AGE", cls.max_age),
            "backoff": _env_float("CRM_WEBHOOKS_BACKOFF", cls.backoff),
            "backoff_cap": _env_float("CRM_WEBHOOKS_BACKOFF_CAP", cls.backoff_cap),
            "poll_interval": _env_float("CRM_WEBHOOKS_POLL", cls.poll_interval),
            "keep_days": _env_float("CRM_WEBHOOKS_KEEP_DAYS", cls.keep_days),
            "allow_private": allow_private_from_env(),
        }
        values.update(overrides)
        return cls(**values)


# --- URLs and events ------------------------------------------------------------------------


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


_NUMERIC_HOST = re.compile(r"[0-9a-fx.]+")


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` spells, in any form the resolver reads as one: a dotted quad or an
    IPv6 literal, and the decimal, octal, hex and short IPv4 forms (``2130706433``,
    ``0177.0.0.1``, ``0x7f.1``, ``127.1``) that ``getaddrinfo`` turns into an address without
    asking DNS; None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_url(url: Any, *, allow_private: bool = False) -> str:
    """``url`` if it is an ``http(s)://host[:port]/…`` URL without credentials or fragment, of
    at most `MAX_URL` characters, whose host — when it is an IP address or ``localhost`` — is
    public unless ``allow_private``; else `CrmValidationError` saying which rule failed."""
    if not isinstance(url, str) or not url.strip():
        raise CrmValidationError("a webhook URL is required, e.g. https://example.com/hooks/crm")
    url = url.strip()
    if len(url) > MAX_URL or any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise CrmValidationError(
            f"a webhook URL has at most {MAX_URL} characters and no spaces or control characters"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CrmValidationError(f"not a valid webhook URL: {url!r} ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise CrmValidationError(f"a webhook URL must start with http:// or https://; got {url!r}")
    if not parts.hostname:
        raise CrmValidationError(f"a webhook URL needs a host name; got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise CrmValidationError(
            "a webhook URL cannot carry credentials (user:pass@); receivers check the "
            "CRM-Signature header instead"
        )
    if parts.fragment:
        raise CrmValidationError("a webhook URL cannot have a #fragment")
    if port == 0:
        raise CrmValidationError("a webhook URL's port must be 1 to 65535")
    try:
        parts.hostname.encode("idna")
    except UnicodeError:
        raise CrmValidationError(
            f"a webhook URL needs a valid host name (labels of 1 to 63 characters); got {url!r}"
        ) from None
    if not (parts.path + parts.query).isascii():
        raise CrmValidationError(
            f"a webhook URL's path and query must be ASCII: percent-encode the rest; got {url!r}"
        )
    if not allow_private:
        host = parts.hostname.lower().rstrip(".")
        address = _literal_address(host)
        if (
            host == "localhost"
            or host.endswith(".localhost")
            or (address is not None and not _public(address))
        ):
            raise CrmValidationError(
                f"webhook URL {url!r} points at a loopback or private address; set "
                f"{ENV_ALLOW_PRIVATE}=1 to allow that (for local receivers and tests)"
            )
    return url


def check_events(names: Any) -> tuple[str, ...]:
    """The subscribed events, in `EVENT_NAMES` order: a non-empty list of event names (``*``
    for all); `CrmValidationError` naming an unknown one."""
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, Iterable) or isinstance(names, Mapping):
        raise CrmValidationError("events must be a list of event names")
    wanted = {str(n).strip() for n in names}
    if "*" in wanted:
        return events.EVENT_NAMES
    unknown = sorted(wanted - set(events.EVENT_NAMES))
    if unknown:
        raise CrmValidationError(
            f"unknown webhook event {unknown[0]!r}; the events are "
            f"{', '.join(events.EVENT_NAMES)} (or * for all)"
        )
    if not wanted:
        raise CrmValidationError(
            f"subscribe to at least one event: {', '.join(events.EVENT_NAMES)} (or * for all)"
        )
    return tuple(n for n in events.EVENT_NAMES if n in wanted)


# --- endpoints ------------------------------------------------------------------------------

_cache: weakref.WeakKeyDictionary[Store, tuple[float, list[WebhookEndpoint]]] = (
    weakref.WeakKeyDictionary()
)
_cache_lock = threading.Lock()


def _forget(store: Store) -> None:
    with _cache_lock:
        _cache.pop(store, None)
    events.invalidate()  # the writes' cached "who wants this store's events" (`events.wanted`)


def _load(store: Store) -> list[WebhookEndpoint]:
    """Read the store's active endpoints into the cache."""
    found = [e for e in store.list_webhook_endpoints() if e.active]
    with _cache_lock:
        _cache[store] = (time.monotonic(), found)
    events.invalidate()
    return found


class _Refresher:
    """One daemon thread re-reading stale endpoint lists, so a write never waits for (or
    pays a round trip for) that read; it holds the stores weakly."""

    def __init__(self) -> None:
        self._wanted: dict[int, weakref.ref[Store]] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def ask(self, store: Store) -> None:
        with self._cond:
            self._wanted[id(store)] = weakref.ref(store)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="crm-webhooks-endpoints", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._wanted:
                    self._cond.wait()
                refs = list(self._wanted.values())
                self._wanted.clear()
            for ref in refs:
                store = ref()
                if store is None:
                    continue
                try:
                    _load(store)
                except Exception as exc:  # a closed or unreachable store: keep the old copy
                    log.debug("could not re-read the webhooks of %s: %s", store.url, exc)
                del store


_refresher = _Refresher()


def _active_endpoints(store: Store) -> list[WebhookEndpoint]:
    """The store's active endpoints: read once per process (`prime`, or the first write),
    then from the cache, re-read in the background once older than
    `ENDPOINT_CACHE_SECONDS` (and at once after this process changes them)."""
    with _cache_lock:
        cached = _cache.get(store)
    if cached is None:
        return _load(store)
    if time.monotonic() - cached[0] >= ENDPOINT_CACHE_SECONDS:
        _refresher.ask(store)
    return cached[1]


def prime(store: Store) -> None:
    """Read the store's webhook list now (the service does when it is made), so the first
    write does not; errors are left for the first write to meet."""
    try:
        _load(store)
    except Exception as exc:
        log.debug("could not read the webhooks of %s yet: %s", store.url, exc)


def add_endpoint(
    store: Store, url: str, event_names: Any, *, allow_private: bool | None = None
) -> WebhookEndpoint:
    """Register an endpoint (active, with a new secret) and return it — the only time its
    secret is shown. `CrmValidationError` for a bad URL or event list (`check_url`,
    `check_events`); ``allow_private`` defaults to ``CRM_WEBHOOKS_ALLOW_PRIVATE``."""
    private = allow_private_from_env() if allow_private is None else allow_private
    now = utc_now()
    endpoint = WebhookEndpoint(
        id=new_id(ENDPOINT_PREFIX),
        url=check_url(url, allow_private=private),
        events=check_events(event_names),
        secret=SECRET_PREFIX + secrets.token_urlsafe(32),
        active=True,
        created_at=now,
        updated_at=now,
    )
    store.create_webhook_endpoint(endpoint)
    _forget(store)
    return endpoint


def get_endpoint(store: Store, endpoint_id: Any) -> WebhookEndpoint:
    """The endpoint with this id; `WebhookNotFoundError` when there is none."""
    found = store.get_webhook_endpoint(endpoint_id) if isinstance(endpoint_id, str) else None
    if found is None:
        raise WebhookNotFoundError(f"there is no webhook {endpoint_id!r}")
    return found


def list_endpoints(store: Store) -> list[WebhookEndpoint]:
    """Every endpoint, oldest first."""
    return store.list_webhook_endpoints()


def remove_endpoint(store: Store, endpoint_id: str) -> WebhookEndpoint:
    """Delete an endpoint and its delivery log (queued deliveries are not sent);
    `WebhookNotFoundError` when there is none."""
    endpoint = get_endpoint(store, endpoint_id)
    if not store.delete_webhook_endpoint(endpoint.id):
        raise WebhookNotFoundError(f"there is no webhook {endpoint_id!r}")
    _forget(store)
    return endpoint


def set_active(store: Store, endpoint_id: str, active: bool) -> WebhookEndpoint:
    """Pause (no new deliveries queued) or resume an endpoint."""
    endpoint = replace(get_endpoint(store, endpoint_id), active=bool(active), updated_at=utc_now())
    if not store.update_webhook_endpoint(endpoint):
        raise WebhookNotFoundError(f"there is no webhook {endpoint_id!r}")
    _forget(store)
    return endpoint


def deliveries(
    store: Store,
    *,
    endpoint_id: str | None = None,
    failed: bool = False,
    limit: int = 50,
) -> list[WebhookDelivery]:
    """The delivery log, newest first (only ``failed`` ones with ``failed=True``)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise CrmValidationError(f"limit must be a whole number from 1 to 1000; got {limit!r}")
    return store.list_webhook_deliveries(
        endpoint_id=endpoint_id, status="failed" if failed else None, limit=limit
    )


def prune(store: Store, older_than_days: float) -> int:
    """Delete delivered and failed deliveries that finished more than ``older_than_days``
    days ago (pending ones stay); how many. `CrmValidationError` for a negative age."""
    if isinstance(older_than_days, bool) or not isinstance(older_than_days, int | float):
        raise CrmValidationError(f"the age must be a number of days; got {older_than_days!r}")
    if older_than_days < 0:
        raise CrmValidationError(f"the age must be 0 days or more; got {older_than_days!r}")
    cutoff = datetime.now(timezone.utc) - timedelta(days=older_than_days)
    return store.prune_webhook_deliveries(cutoff.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def retry(store: Store, delivery_id: str) -> WebhookDelivery:
    """Queue a delivery again now (attempts start over); `WebhookNotFoundError` for an unknown
    id, `CrmValidationError` for one that is being sent right now."""
    found = store.get_webhook_delivery(delivery_id) if isinstance(delivery_id, str) else None
    if found is None:
        raise WebhookNotFoundError(f"there is no webhook delivery {delivery_id!r}")
    if not store.retry_webhook_delivery(found.id, time.time()):
        raise CrmValidationError(
            f"webhook delivery {delivery_id!r} is being sent right now; try again in a minute"
        )
    _wake(store)
    again = store.get_webhook_delivery(found.id)
    assert again is not None
    return again


# --- queueing: the receiver on the entry signals ---------------------------------------------


def body_for(event: events.EntryEvent, event_id: str) -> str:
    """The JSON body a webhook POSTs for ``event``: ``{id, event, created_at, data}``."""
    return json.dumps(
        {"id": event_id, "event": event.name, "created_at": event.at, "data": event.data()},
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )


def enqueue(store: Store, event: events.EntryEvent) -> list[WebhookDelivery]:
    """Queue ``event`` for every active endpoint subscribed to it; the deliveries queued."""
    targets = [e for e in _active_endpoints(store) if event.name in e.events]
    if not targets:
        return []
    event_id = new_id(EVENT_PREFIX)
    body = body_for(event, event_id)
    now = time.time()
    queued = [
        WebhookDelivery(
            id=new_id(DELIVERY_PREFIX),
            endpoint_id=endpoint.id,
            event=event.name,
            entry_id=event.entry_id,
            created_at=event.at,
            body=body,
            queued_at=now,
            next_attempt_at=now,
        )
        for endpoint in targets
    ]
    store.enqueue_webhook_deliveries(queued)
    _wake(store)
    return queued


def _on_entry_event(store: Any, event: events.EntryEvent) -> None:
    try:
        enqueue(event.store, event)
    except Exception:
        log.exception(
            "could not queue webhook deliveries of %s for entry %s; they are lost",
            event.name,
            event.entry_id,
        )


def _wants(store: Any, name: str) -> bool:
    """Whether ``store`` has an active webhook for the event ``name`` (cached)."""
    try:
        return any(name in e.events for e in _active_endpoints(store))
    except Exception:  # the store failed: let the receiver try (and log) the enqueue
        return True


events.connect_gated(_on_entry_event, _wants, events.EVENT_NAMES)


# --- signing ---------------------------------------------------------------------------------


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``CRM-Signature`` value: ``t=<timestamp>,v1=<hex HMAC-SHA256>`` over
    ``b"<timestamp>." + body``, keyed with the secret's UTF-8 bytes."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (a ``CRM-Signature`` value) signs ``body`` (the exact received bytes)
    with ``secret``, at a timestamp within ``tolerance`` seconds of ``now``. For receivers
    written in Python; compares in constant time."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).rpartition("v1=")[2]
    return any(
        hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))
        for given in parts.get("v1", [])
    )


# --- sending --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """What one POST got: an HTTP ``status`` or an ``error``, and how long it took (ms)."""

    status: int | None
    error: str | None
    duration_ms: float

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return self.status is not None and 200 <= self.status < 300


Resolver = Callable[..., list[Any]]


def _resolve(host: str, port: int, *, allow_private: bool, resolver: Resolver) -> list[Any]:
    """``host``'s addresses (``getaddrinfo`` rows), looked up once per attempt; unless
    ``allow_private``, `CrmValidationError` when any of them is not public. The connection is
    then made to these very addresses (no second look-up: no DNS-rebinding window)."""
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ConnectionError(f"cannot resolve {host}: {exc}") from None
    if not infos:
        raise ConnectionError(f"cannot resolve {host}: no addresses")
    if not allow_private:
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if not _public(address):
                raise CrmValidationError(
                    f"{host} resolves to {address}, a loopback or private address; set "
                    f"{ENV_ALLOW_PRIVATE}=1 to allow it"
                )
    return infos


def _connect(infos: list[Any], timeout: float | None) -> socket.socket:
    """A TCP connection to the first of the checked addresses that answers."""
    last: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or ConnectionError("no address to connect to")


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to already-checked addresses (the Host header keeps the name)."""

    def __init__(self, host: str, port: int, infos: list[Any], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._infos = infos

    def connect(self) -> None:
        self.sock = _connect(self._infos, self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """An HTTPS connection to already-checked addresses; TLS verifies the host name."""

    def __init__(self, host: str, port: int, infos: list[Any], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._infos = infos

    def connect(self) -> None:
        sock = _connect(self._infos, self.timeout)
        try:
            self.sock = self._context.wrap_socket(  # type: ignore[attr-defined]
                sock, server_hostname=self.host
            )
        except BaseException:
            sock.close()
            raise


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    allow_private: bool,
    resolver: Resolver = socket.getaddrinfo,
) -> Attempt:
    """POST ``body`` to ``url`` once and never raise: no redirects followed; the host name is
    looked up once (``resolver``, `socket.getaddrinfo`), checked (unless ``allow_private``)
    and the connection made to those very addresses; ``timeout`` seconds for the connection
    and for each read or write, and **2 × timeout for the whole attempt** (a receiver
    dripping its answer a byte at a time is cut there: inside `Settings.lease_seconds`, so no
    other process sends the delivery meanwhile). The DNS look-up itself is not covered by the
    deadline (the system resolver has its own timeouts)."""
    started = time.monotonic()

    def took() -> float:
        return round((time.monotonic() - started) * 1000, 1)

    conn: http.client.HTTPConnection | None = None
    expired = threading.Event()

    def cut() -> None:  # the attempt's deadline: end any read or write in progress
        expired.set()
        sock = conn.sock if conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    watchdog = threading.Timer(2 * timeout, cut)
    watchdog.daemon = True
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        infos = _resolve(host, port, allow_private=allow_private, resolver=resolver)
        if parts.scheme == "https":
            conn = _PinnedHTTPS(host, port, infos, timeout)
        else:
            conn = _PinnedHTTP(host, port, infos, timeout)
        watchdog.start()
        try:
            conn.request("POST", path, body=body, headers=dict(headers))
            response = conn.getresponse()
            response.read(MAX_RESPONSE)
            status = response.status
        finally:
            watchdog.cancel()
            conn.close()
        if expired.is_set():
            raise TimeoutError
    except CrmValidationError as exc:
        return Attempt(None, f"refused: {exc}", took())
    except TimeoutError:
        return Attempt(None, f"timed out after {timeout:g} s", took())
    except Exception as exc:  # OSError, HTTPException, a URL http.client cannot encode, …
        if expired.is_set():
            return Attempt(
                None, f"timed out: the attempt took over {2 * timeout:g} s in all", took()
            )
        return Attempt(None, f"{type(exc).__name__}: {exc}"[:500], took())
    if 300 <= status < 400:
        return Attempt(status, f"HTTP {status}: redirects are not followed", took())
    return Attempt(status, None if 200 <= status < 300 else f"HTTP {status}", took())


def backoff_delay(attempts: int, settings: Settings) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: ``backoff *
    2**(attempts-1)`` capped at ``backoff_cap``, the second half of it random (jitter)."""
    delay = min(settings.backoff_cap, settings.backoff * 2 ** max(0, attempts - 1))
    return delay / 2 + random.uniform(0, delay / 2)


# --- the worker ------------------------------------------------------------------------------

_workers: weakref.WeakSet[DeliveryWorker] = weakref.WeakSet()


def _wake(store: Store) -> None:
    """Wake this process's workers on ``store`` (a delivery was queued or retried)."""
    for worker in list(_workers):
        if worker.store is store:
            worker.wake()


class DeliveryWorker:
    """Sends due deliveries of one store: `run_once` (cron, tests) or `start`/`stop` (a
    background thread that wakes when this process queues a delivery, and every
    ``settings.poll_interval`` seconds for the others')."""

    def __init__(
        self, store: Store, settings: Settings | None = None, *, autostart: bool = False
    ) -> None:
        self.store = store
        self.settings = settings or Settings.from_env()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{new_id()}"
        #: Start the thread the first time this process queues a delivery on the store.
        self.autostart = autostart
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._closed = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        _workers.add(self)

    def wake(self) -> None:
        """Look for due deliveries now (starting the thread first with ``autostart``)."""
        if self.autostart and self._thread is None and not self._closed:
            self.start()
        self._wakeup.set()

    def start(self) -> None:
        """Start the background thread (once; not again after `stop`)."""
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._run, name="crm-webhooks", daemon=True)
            self._thread.start()

    def start_if_configured(self) -> bool:
        """Start the thread when the store has webhooks (one read); whether it started."""
        if self.store.list_webhook_endpoints():
            self.start()
        return self.running

    def watch(self) -> None:
        """Until the thread runs: read the store's webhook list every
        ``settings.poll_interval`` seconds (a daemon thread, one read each) and start the
        thread once there is one. So a process that had no webhooks at start-up delivers what
        other processes queue (an endpoint added by the CLI, a write by a cron job), not only
        what it queues itself."""
        with self._lock:
            if self._thread is not None or self._closed or self._watcher is not None:
                return
            self._watcher = threading.Thread(
                target=self._watch, name="crm-webhooks-watch", daemon=True
            )
            self._watcher.start()

    def _watch(self) -> None:
        while not self._stopping.wait(self.settings.poll_interval):
            if self._thread is not None:
                return
            try:
                if self.store.list_webhook_endpoints():
                    self.start()
                    return
            except Exception as exc:  # a store that is closing or unreachable: try again
                log.debug("could not read the webhooks of %s: %s", self.store.url, exc)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread after the attempt in progress, for good (an unfinished claim
        expires with its lease and is sent again then, by this or another process)."""
        with self._lock:
            self._closed = True
            self._stopping.set()
            self._wakeup.set()
            thread, self._thread = self._thread, None
            watcher, self._watcher = self._watcher, None
        for running in (watcher, thread):
            if running is not None and running is not threading.current_thread():
                running.join(timeout)

    @property
    def running(self) -> bool:
        """True while the background thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        pruned_at = 0.0
        while not self._stopping.is_set():
            self._wakeup.clear()
            try:
                _load(self.store)  # this process sees other processes' webhook changes
            except Exception:
                log.exception("reading the webhooks failed; trying again later")
            if time.monotonic() - pruned_at > PRUNE_EVERY:
                pruned_at = time.monotonic()
                try:
                    prune(self.store, self.settings.keep_days)
                except Exception:
                    log.exception("pruning the webhook delivery log failed")
            try:
                sent = self.run_once()
            except Exception:
                log.exception("webhook delivery round failed; trying again later")
                sent = 0
            if sent < self.settings.batch:  # a full batch: there may be more due at once
                self._wakeup.wait(self.settings.poll_interval)

    def run_once(self, now: float | None = None) -> int:
        """Claim and attempt up to ``settings.batch`` due deliveries; how many were
        attempted."""
        claimed = self.store.claim_webhook_deliveries(
            time.time() if now is None else now,
            self.owner,
            self.settings.lease_seconds,
            self.settings.batch,
        )
        for delivery in claimed:
            if self._stopping.is_set() and self._thread is not None:
                break  # left claimed: the lease runs out and it is sent later
            self._attempt(delivery)
        return len(claimed)

    def _attempt(self, delivery: WebhookDelivery) -> None:
        settings = self.settings
        endpoint = self.store.get_webhook_endpoint(delivery.endpoint_id)
        if endpoint is None or not endpoint.active:
            result = Attempt(None, "the webhook was removed or paused", 0.0)
            give_up = True
        else:
            timestamp = int(time.time())
            body = delivery.body.encode()
            result = post(
                endpoint.url,
                body,
                {
                    "Content-Type": "application/json",
                    "User-Agent": USER_AGENT,
                    ID_HEADER: _event_id(delivery),
                    EVENT_HEADER: delivery.event,
                    TIMESTAMP_HEADER: str(timestamp),
                    SIGNATURE_HEADER: signature(endpoint.secret, timestamp, body),
                },
                timeout=settings.timeout,
                allow_private=settings.allow_private,
            )
            give_up = False
        attempts = delivery.attempts + 1
        now = time.time()
        done = utc_now()
        common: dict[str, Any] = {
            "attempts": attempts,
            "last_status": result.status,
            "last_error": result.error,
            "last_attempt_at": done,
            "last_duration_ms": result.duration_ms,
            "lease_owner": None,
            "lease_until": None,
        }
        if result.ok:
            outcome = replace(delivery, status="delivered", finished_at=done, **common)
        elif (
            give_up
            or attempts >= settings.max_attempts
            or now - delivery.queued_at >= settings.max_age
        ):
            outcome = replace(delivery, status="failed", finished_at=done, **common)
        else:
            outcome = replace(
                delivery,
                status="pending",
                next_attempt_at=now + backoff_delay(attempts, settings),
                **common,
            )
        if not self.store.finish_webhook_delivery(outcome, self.owner):
            log.warning(
                "webhook delivery %s: the lease ran out before the attempt was recorded",
                delivery.id,
            )
        elif not result.ok:
            log.info(
                "webhook delivery %s failed (%s): %s", delivery.id, outcome.status, result.error
            )


def start_worker(store: Store, settings: Settings | None = None) -> DeliveryWorker:
    """A worker for a long-running process (the page server, `CrmTemplates`): its thread
    starts now when the store has webhooks, else the first time this process queues a
    delivery or a `DeliveryWorker.watch` read (every poll) finds a webhook added elsewhere.
    Settings from the environment (`Settings.from_env`) unless given."""
    worker = DeliveryWorker(store, settings, autostart=True)
    if not worker.start_if_configured():
        worker.watch()
    return worker


def _event_id(delivery: WebhookDelivery) -> str:
    try:
        return str(json.loads(delivery.body)["id"])
    except (ValueError, KeyError, TypeError):
        return delivery.id


__all__ = [
    "ENV_ALLOW_PRIVATE",
    "EVENT_HEADER",
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Attempt",
    "DeliveryWorker",
    "Settings",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookNotFoundError",
    "add_endpoint",
    "backoff_delay",
    "check_events",
    "check_url",
    "deliveries",
    "enqueue",
    "get_endpoint",
    "list_endpoints",
    "post",
    "prune",
    "remove_endpoint",
    "retry",
    "set_active",
    "signature",
    "start_worker",
    "verify",
]
